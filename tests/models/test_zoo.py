"""The built-in model zoo: architectures, seeded random weights, local weights files."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.keras_internals import seeded_weights
from models.zoo import RANDOM_WEIGHTS_SEED, UnknownModelError, load_builtin, load_uploaded
from tests.models import tiny_models as tm

ROOT = Path(__file__).resolve().parents[2]
# Keras's own saving code converts variables with np.array(copy=False): not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def digest(model: keras.Model) -> str:
    """SHA-256 of all of ``model``'s weights, in order."""
    return hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()


def assert_same_weights(a: keras.Model, b: keras.Model) -> None:
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb) > 0
    for x, y in zip(wa, wb, strict=True):
        np.testing.assert_array_equal(x, y)


def disturb_global_random_state(seed: int) -> None:
    """Every global generator a model build might read, set to a state of its own."""
    keras.utils.set_random_seed(seed)
    random.seed(seed + 1)
    np.random.seed(seed + 2)
    tf.random.set_seed(seed + 3)
    keras.random.normal((2,))  # advances Keras's global SeedGenerator
    keras.layers.Dense(3).build((None, 4))  # an unseeded initializer draws from `random`


def test_cifar10_is_the_course_architecture(tmp_path: Path) -> None:
    loaded = load_builtin("cifar10", tmp_path)
    model, info = loaded.model, loaded.info
    types = [type(layer).__name__ for layer in model.layers[1:]]
    assert types == ["Rescaling", "Conv2D", "Conv2D", "MaxPooling2D", "Conv2D", "Conv2D",
                     "MaxPooling2D", "Flatten", "Dense", "Dense"]
    # 32 same → 32, valid 3×3 → 30, pool → 15, same → 15, valid → 13, pool → 6: 6·6·64 values
    flat = 6 * 6 * 64
    expected = {
        "conv1": 3 * 3 * 3 * 32 + 32,  # 896
        "conv2": 3 * 3 * 32 * 32 + 32,  # 9248
        "conv3": 3 * 3 * 32 * 64 + 64,  # 18496
        "conv4": 3 * 3 * 64 * 64 + 64,  # 36928
        "fc1": flat * 512 + 512,  # 1180160
        "predictions": 512 * 10 + 10,  # 5130
    }
    assert expected["conv1"] == 896 and expected["predictions"] == 5130
    assert {name: model.get_layer(name).count_params() for name in expected} == expected
    assert model.get_layer("flatten").output.shape[-1] == flat
    assert info.status == "untrained" and info.random_weights and info.id == "cifar10"
    assert info.input_shape == [32, 32, 3] and info.preprocess == "raw"
    assert info.classes is not None and len(info.classes) == 10 and info.classes[0] == "airplane"


def test_mobilenetv2_architecture_without_weights(tmp_path: Path) -> None:
    info = load_builtin("mobilenetv2", tmp_path).info
    assert info.input_shape == [224, 224, 3]
    assert info.preprocess == "tf" and info.status == "untrained" and info.random_weights
    assert info.classes is None and "weights=None" in info.source


@pytest.mark.parametrize("model_id", ["mobilenetv2", "cifar10"])
def test_random_weights_are_the_same_on_every_load(tmp_path: Path, model_id: str) -> None:
    disturb_global_random_state(1)
    first = load_builtin(model_id, tmp_path).model
    disturb_global_random_state(2)
    state = random.getstate()
    second = load_builtin(model_id, tmp_path).model
    assert random.getstate() == state  # the caller's random state is left alone
    assert_same_weights(first, second)
    kernel = next(w for w in first.get_weights() if w.ndim == 4)
    assert kernel.std() > 0  # random, not constant
    shape = (2, *first.inputs[0].shape[1:])
    x = np.random.default_rng(0).uniform(-1.0, 1.0, shape).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(first(x)), np.asarray(second(x)))


def test_the_seed_is_what_fixes_the_weights() -> None:
    """Two seeds give two models; the same seed gives the same one (so it is not a constant)."""
    def build(seed: int) -> keras.Model:
        with seeded_weights(seed):
            inputs = keras.Input((8, 8, 3))
            x = keras.layers.Conv2D(4, 3)(inputs)
            return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))

    assert digest(build(1)) == digest(build(1))
    assert digest(build(1)) != digest(build(2))


_DIGESTS = """
import hashlib, sys, tempfile
from models.zoo import load_builtin
data_dir = tempfile.mkdtemp()
for model_id in sys.argv[1:]:
    weights = load_builtin(model_id, data_dir).model.get_weights()
    print(model_id, hashlib.sha256(b"".join(w.tobytes() for w in weights)).hexdigest())
"""


def test_random_weights_are_the_same_in_another_process(tmp_path: Path) -> None:
    ids = ["mobilenetv2", "cifar10"]
    env = {**os.environ, "PYTHONHASHSEED": "4242", "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", _DIGESTS, *ids], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300, check=True).stdout
    theirs = dict(line.split() for line in out.splitlines() if line.split(" ")[0] in ids)
    disturb_global_random_state(3)
    assert theirs == {i: digest(load_builtin(i, tmp_path).model) for i in ids}


def test_a_local_weights_file_is_loaded_and_not_random(tmp_path: Path) -> None:
    with seeded_weights(RANDOM_WEIGHTS_SEED + 1):  # other weights than the zoo's random ones
        trained = keras.applications.MobileNetV2(weights=None)
    (tmp_path / "weights").mkdir()
    trained.save_weights(tmp_path / "weights" / "mobilenetv2.weights.h5")
    loaded = load_builtin("mobilenetv2", tmp_path)
    assert loaded.info.random_weights is False and loaded.info.status == "ready"
    assert "mobilenetv2.weights.h5" in loaded.info.source
    assert_same_weights(loaded.model, trained)
    random_one = load_builtin("mobilenetv2", tmp_path / "elsewhere").model
    assert digest(random_one) != digest(trained)


def test_the_legacy_file_keras_downloads_is_loaded_too(tmp_path: Path) -> None:
    """ImageNet weights as Keras publishes them: weights-only HDF5 in the legacy layout,
    installed as ``<id>.h5`` (what ``convscope models weights`` does with such a file)."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with seeded_weights(RANDOM_WEIGHTS_SEED + 2):
        trained = keras.applications.MobileNetV2(weights=None)
    (tmp_path / "weights").mkdir()
    with h5py.File(tmp_path / "weights" / "mobilenetv2.h5", "w") as fh:
        legacy_h5_format.save_weights_to_hdf5_group(fh, trained)
    loaded = load_builtin("mobilenetv2", tmp_path)
    assert loaded.info.random_weights is False and "mobilenetv2.h5" in loaded.info.source
    assert_same_weights(loaded.model, trained)


def test_an_uploaded_model_has_its_own_weights(tmp_path: Path) -> None:
    path = tmp_path / "up.keras"
    tm.functional().save(path)
    info = load_uploaded(path, "u1", "upload").info
    assert info.random_weights is False and info.status == "ready"


def test_unknown_model_id(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError, match="alexnet"):
        load_builtin("alexnet", tmp_path)
