"""Import TensorFlow once per worker child, quietly: its start-up chatter on a machine without
a GPU (``failed call to cuInit``, "Could not find cuda drivers", the oneDNN notice) looks like
failure but is not. It is dropped; anything else TensorFlow prints is passed on, and one line
says what the process runs on."""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile

log = logging.getLogger("convscope.worker")
NOISE = re.compile(
    r"cuInit|cuda_platform|cudart_stub|Could not find cuda drivers|oneDNN custom operations|"
    r"All log messages before absl::InitializeLog|Unable to register cu(DNN|FFT|BLAS) factory|"
    r"computation_placer|TF-TRT Warning|rebuild TensorFlow with the appropriate compiler flags|"
    r"This TensorFlow binary is optimized to use available CPU instructions"
)


def _quiet_import() -> tuple[str, list[str]]:
    """Import TensorFlow and list its devices with fd 2 captured; returns (stderr, GPUs)."""
    with tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors="replace"))  # all of it, to debug
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        return capture.read().decode(errors="replace"), gpus


def start_tensorflow() -> None:
    """Import TensorFlow (once per process) and log ``running on CPU`` or the GPUs."""
    if "tensorflow" in sys.modules:
        return
    import models  # noqa: F401  (here, not above: the API imports this module; it sets the
    # default of TF_ENABLE_ONEDNN_OPTS, read when TensorFlow loads)

    text, gpus = _quiet_import()
    kept = [line for line in text.splitlines() if line.strip() and not NOISE.search(line)]
    if kept:
        sys.stderr.write("\n".join(kept) + "\n")
    import tensorflow as tf

    from worker.settings import get_settings

    threads = get_settings().tf_threads
    if threads > 0:  # before the first op: the pools are made then
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    where = f"{len(gpus)} GPU(s)" if gpus else "CPU"
    log.info("TensorFlow %s running on %s (%s threads)", tf.__version__, where,
             threads or "default")
