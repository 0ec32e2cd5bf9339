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


def test_tensorflow_computes_with_onednn_unless_told_not_to() -> None:
    """A worker child's TensorFlow has its oneDNN kernels on (TensorFlow itself turns them on
    only for AVX-512 VNNI/BF16/AMX CPUs); ``TF_ENABLE_ONEDNN_OPTS=0`` still turns them off."""
    code = ("from worker.tensorflow_startup import start_tensorflow; start_tensorflow(); "
            "from tensorflow.python.util import _pywrap_util_port as port; "
            "print(port.IsMklEnabled())")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    seen = []
    for extra in ({}, {"TF_ENABLE_ONEDNN_OPTS": "0"}):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                             text=True, env={**env, **extra}, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        seen.append(out.stdout.split()[-1])
    assert seen == ["True", "False"]
