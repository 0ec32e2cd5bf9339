"""TensorFlow threads per worker process: a share of the host's cores each."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from service.launcher import tf_threads

ROOT = Path(__file__).resolve().parents[2]


def test_workers_get_a_share_of_the_cores() -> None:
    assert [tf_threads(n, cores=2) for n in (1, 2, 3)] == [2, 1, 1]
    assert [tf_threads(n, cores=8) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    assert tf_threads(1) == len(os.sched_getaffinity(0))


def test_a_worker_child_starts_tensorflow_with_the_setting() -> None:
    code = ("from worker.tensorflow_startup import start_tensorflow; start_tensorflow(); "
            "import tensorflow as tf; t = tf.config.threading; "
            "print(t.get_intra_op_parallelism_threads(), t.get_inter_op_parallelism_threads())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "CONVSCOPE_TF_THREADS": "1"}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["1", "1"]
