"""The engine's own names and limits agree with the contract (worker/contract.py), and the
kinds registry, the catalog and the settings follow it."""

from __future__ import annotations

import pytest

from worker import contract
from worker.catalog import APPLICATION_MODELS, BUILTIN_MODELS, TRAINABLE_MODELS
from worker.settings import Settings


def test_cam_methods_are_the_engines() -> None:
    from models.cam import METHODS

    assert tuple(METHODS) == contract.CAM_METHODS


def test_cam_targets_and_quality_are_the_engines() -> None:
    from models.cam import METHODS
    from models.cam.base import TARGETS
    from models.quality import BASELINES

    assert TARGETS == contract.TARGETS
    assert {name for name, cls in METHODS.items() if not cls.explains_class} == \
        set(contract.CLASS_FREE_CAM_METHODS)
    assert BASELINES == contract.QUALITY_BASELINES
    assert contract.QUALITY_OPTION_DEFAULTS["baseline"] in BASELINES


def test_filter_objectives_are_the_engines() -> None:
    from models.filters.objectives import MAX_DIVERSITY_IMAGES, OBJECTIVES

    assert tuple(OBJECTIVES) == contract.FILTER_OBJECTIVES
    assert MAX_DIVERSITY_IMAGES == contract.MAX_DIVERSITY_IMAGES
    assert {name for name, cls in OBJECTIVES.items() if not cls.spatial} == \
        set(contract.FLAT_LAYER_OBJECTIVES)
    defaults = contract.OPTION_DEFAULTS["filters"]
    assert {o for names in contract.OBJECTIVE_OPTIONS.values() for o in names} <= set(defaults)


def test_preprocess_modes_are_the_engines() -> None:
    from models.preprocess import PREPROCESS_MODES

    assert PREPROCESS_MODES == contract.PREPROCESS_MODES


def test_catalog_lists_the_zoos_builtin_models() -> None:
    from models.zoo import APPLICATIONS, BUILTIN

    assert tuple(BUILTIN_MODELS) == BUILTIN
    assert set(APPLICATION_MODELS) == set(APPLICATIONS)
    assert set(TRAINABLE_MODELS) | set(APPLICATION_MODELS) == set(BUILTIN_MODELS)


def test_weights_files_are_where_the_zoo_looks(tmp_path) -> None:
    from models.zoo import weights_files
    from worker.uploads import weights_paths

    for model_id in APPLICATION_MODELS:
        assert weights_paths(tmp_path, model_id) == weights_files(tmp_path, model_id)


def test_every_kind_has_a_runner_and_defaults() -> None:
    from worker.kinds import KINDS

    assert tuple(KINDS) == contract.KINDS
    assert tuple(contract.OPTION_DEFAULTS) == contract.KINDS
    for group in (contract.IMAGELESS_KINDS, contract.SINGLE_IMAGE_KINDS,
                  contract.SPATIAL_KINDS, contract.CONV_KINDS):
        assert set(group) <= set(contract.KINDS)


def test_filter_limits_are_the_engines() -> None:
    from models.errors import InvalidInputError
    from models.filters import AscentOptions

    low, high = contract.FILTER_SIZE_RANGE
    assert AscentOptions(size=low).size == low and AscentOptions(size=high).size == high
    for size in (low - 1, high + 1):
        with pytest.raises(InvalidInputError):
            AscentOptions(size=size)
    assert AscentOptions(steps=contract.MAX_FILTER_STEPS).steps == contract.MAX_FILTER_STEPS
    with pytest.raises(InvalidInputError):
        AscentOptions(steps=contract.MAX_FILTER_STEPS + 1)
    assert AscentOptions().steps == contract.OPTION_DEFAULTS["filters"]["steps"]


def test_statuses_partition() -> None:
    assert set(contract.ACTIVE) | set(contract.TERMINAL) == set(contract.STATUSES)
    assert not set(contract.ACTIVE) & set(contract.TERMINAL)


def test_step_budget_cannot_pass_the_engines_ceiling() -> None:
    assert Settings(max_filter_steps=contract.MAX_FILTER_STEPS).max_filter_steps > 0
    with pytest.raises(ValueError, match="MAX_FILTER_STEPS"):
        Settings(max_filter_steps=contract.MAX_FILTER_STEPS + 1)
    with pytest.raises(ValueError, match="MAX_FILTER_STEPS"):
        Settings.from_env({"CONVSCOPE_MAX_FILTER_STEPS": "0"})


def test_saliency_names_and_limits_are_the_engines() -> None:
    from models.saliency import METHODS
    from models.saliency.base import TARGETS
    from models.saliency.baselines import BASELINES
    from models.saliency.occlusion import MAX_WINDOWS, window_starts
    from service.options import _window_count

    assert tuple(METHODS) == contract.SALIENCY_METHODS
    assert TARGETS == contract.SALIENCY_TARGETS
    assert BASELINES == contract.SALIENCY_BASELINES
    assert MAX_WINDOWS == contract.MAX_OCCLUSION_WINDOWS
    for size in (1, 7, 16, 64, 224):  # the API counts the engine's windows
        for window in (1, 3, 8, 16, 300):
            for stride in range(1, min(window, 9) + 1):
                assert _window_count(size, window, stride) == \
                    len(window_starts(size, window, stride)), (size, window, stride)
