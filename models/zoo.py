"""The model zoo: built-in ``shapes``, the course ``cifar10`` CNN, ``keras.applications`` by
name, and uploaded ``.keras`` files. Each comes back with a :class:`ModelInfo`.

Files live under ``data_dir``: ``models/`` (trained built-ins), ``weights/`` (local weights for
applications, ``<id>.weights.h5``, and ``imagenet_class_index.json``), ``uploads/``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import keras

from models.cifar_cnn import CIFAR10_CLASSES, build_cifar_cnn
from models.keras_internals import seeded_weights
from models.preprocess import check_mode
from models.safe_load import ArchiveLimits, check_image_model, load_keras_file

# id -> (keras.applications constructor name, preprocess mode)
APPLICATIONS: dict[str, tuple[str, str]] = {
    "vgg16": ("VGG16", "caffe"),
    "vgg19": ("VGG19", "caffe"),
    "resnet50": ("ResNet50", "caffe"),
    "mobilenetv2": ("MobileNetV2", "tf"),
    "xception": ("Xception", "tf"),
    "inceptionv3": ("InceptionV3", "tf"),
    "densenet121": ("DenseNet121", "torch"),
    "efficientnetb0": ("EfficientNetB0", "raw"),
}
BUILTIN = ("shapes", "cifar10", *APPLICATIONS)
# Seed of the initial weights of a model without trained weights: the same random weights on
# every load, in every process, so the same request gets the same answer.
RANDOM_WEIGHTS_SEED = 0


class UnknownModelError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class ModelInfo:
    id: str
    name: str
    input_shape: list[int | None]
    classes: list[str] | None
    source: str
    preprocess: str
    status: str = "ready"  # or "untrained" (random weights)
    random_weights: bool = False  # True: initial random weights (seeded), not trained ones

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LoadedModel:
    model: keras.Model
    info: ModelInfo


def _input_shape(model: keras.Model) -> list[int | None]:
    return list(check_image_model(model))


def _imagenet_classes(weights_dir: Path) -> list[str] | None:
    path = weights_dir / "imagenet_class_index.json"
    if not path.exists():
        return None
    index = json.loads(path.read_text())
    return [index[str(i)][1] for i in range(len(index))]


def weights_files(data_dir: str | os.PathLike, model_id: str) -> list[Path]:
    """Where an application's local weights may be, in order: Keras 3's ``<id>.weights.h5``
    or the legacy HDF5 file Keras downloads, renamed ``<id>.h5`` (the suffix picks the
    reader). ``worker.uploads.weights_paths`` installs to these names (a test checks)."""
    folder = Path(data_dir) / "weights"
    return [folder / f"{model_id}.weights.h5", folder / f"{model_id}.h5"]


def model_files(data_dir: str | os.PathLike, model_id: str) -> list[Path]:
    """The files a built-in model is loaded from when they exist (trained weights, local
    weights): a worker loads the model again when one of them appears or changes."""
    from models.shapes_model import MODEL_FILE

    if model_id == "shapes":
        return [Path(data_dir) / "models" / MODEL_FILE]
    if model_id == "cifar10":
        return [Path(data_dir) / "models" / "cifar10.keras"]
    return weights_files(data_dir, model_id)


def load_application(model_id: str, data_dir: str | os.PathLike,
                     allow_download: bool = False) -> LoadedModel:
    """``keras.applications`` model: local weights file, else download if allowed, else none.

    Without weights the model gets seeded random weights (:data:`RANDOM_WEIGHTS_SEED`): the
    same on every load.
    """
    ctor_name, mode = APPLICATIONS[model_id]
    weights_dir = Path(data_dir) / "weights"
    local = next((p for p in weights_files(data_dir, model_id) if p.exists()), None)
    if local is not None:
        weights, source = str(local), f"keras.applications.{ctor_name} ({local.name})"
    elif allow_download:
        weights, source = "imagenet", f"keras.applications.{ctor_name} (imagenet download)"
    else:
        weights, source = None, f"keras.applications.{ctor_name} (weights=None)"
    constructor = getattr(keras.applications, ctor_name)
    if weights is None:
        with seeded_weights(RANDOM_WEIGHTS_SEED):
            model = constructor(weights=None)
    else:
        model = constructor(weights=weights)
    classes = _imagenet_classes(weights_dir) if weights else None
    status = "ready" if weights else "untrained"
    info = ModelInfo(model_id, ctor_name, _input_shape(model), classes, source, mode, status,
                     random_weights=weights is None)
    return LoadedModel(model, info)


def load_cifar10(data_dir: str | os.PathLike) -> LoadedModel:
    """The course CNN: trained weights if ``models/cifar10.keras`` exists, else untrained
    (seeded random weights, the same on every load)."""
    path = Path(data_dir) / "models" / "cifar10.keras"
    trained = path.exists()
    if trained:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    else:
        model = build_cifar_cnn(RANDOM_WEIGHTS_SEED)
    info = ModelInfo("cifar10", "Course CIFAR-10 CNN", _input_shape(model), CIFAR10_CLASSES,
                     "convscope (keras.datasets.cifar10)", "raw",
                     "ready" if trained else "untrained", random_weights=not trained)
    return LoadedModel(model, info)


def load_shapes(data_dir: str | os.PathLike,
                progress: Callable[[int, int], None] | None = None) -> LoadedModel:
    from models.shapes_data import CLASSES
    from models.shapes_model import load_or_train_shapes

    model = load_or_train_shapes(Path(data_dir) / "models", progress=progress)
    info = ModelInfo("shapes", "Shapes demo CNN", _input_shape(model), list(CLASSES),
                     "convscope (trained on generated shapes)", "raw")
    return LoadedModel(model, info)


def load_uploaded(path: str | os.PathLike, model_id: str, name: str, preprocess: str = "raw",
                  classes: list[str] | None = None, max_bytes: int = 200 * 2**20,
                  limits: ArchiveLimits | None = None) -> LoadedModel:
    """An uploaded ``.keras`` file, loaded safely (see :mod:`models.safe_load`) within the
    archive ``limits`` (default: :class:`ArchiveLimits`' own)."""
    model = load_keras_file(path, max_bytes=max_bytes, limits=limits)
    info = ModelInfo(model_id, name, _input_shape(model), classes, "upload", check_mode(preprocess))
    return LoadedModel(model, info)


def load_builtin(model_id: str, data_dir: str | os.PathLike, allow_download: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> LoadedModel:
    """Load a built-in model by id (see :data:`BUILTIN`)."""
    if model_id == "shapes":
        return load_shapes(data_dir, progress)
    if model_id == "cifar10":
        return load_cifar10(data_dir)
    if model_id in APPLICATIONS:
        return load_application(model_id, data_dir, allow_download)
    raise UnknownModelError(f"unknown model {model_id!r}; built-in models: {', '.join(BUILTIN)}")
