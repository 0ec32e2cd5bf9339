"""convscope models package: the engine (TensorFlow/Keras; no Flask, Celery or Redis).

Importing it before TensorFlow turns on TensorFlow's oneDNN kernels unless
``TF_ENABLE_ONEDNN_OPTS`` is set already (``0`` keeps them off). TensorFlow enables them by
itself only on CPUs with AVX-512 VNNI, BF16 or AMX; on an AVX2 CPU (an AMD EPYC here) it
leaves them off, and with them on, measured here side by side at one thread: the ``shapes``
forward pass to ``conv4`` took 0.45 ms per image instead of 1.1, ResNet50 Grad-CAM ran at
16 images/s instead of 13.8 on two threads. Every process that computes (the worker's
children, the benchmarks and their in-process references, the tests) gets the same kernels.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
