"""``benchmarks/methods.py`` on 8 two-shape images: the table has a row for every method of the
contract and both reference maps, every tf-keras-vis reference agrees with ours, and
integrated gradients' sums are complete, refined to within 1 % (tf-keras-vis is in the ``test``
extra)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The structure of `inputs`:UserWarning")  # tf-keras-vis's calls
def test_quick_table_covers_every_method_and_agrees_with_tf_keras_vis(shapes_model) -> None:
    from benchmarks.methods import Settings, measure
    from benchmarks.methods_references import TKV_METHODS
    from benchmarks.methods_report import table_lines
    from models.quality_scan import REFERENCES
    from worker.contract import CAM_METHODS, SALIENCY_METHODS

    report = measure(shapes_model, Settings(images=8, reference_images=8, faster_images=4))
    rows = {row["method"]: row for row in report["rows"]}
    assert list(rows) == [*CAM_METHODS, *SALIENCY_METHODS, *REFERENCES]
    assert len(table_lines(report)) == 2 + len(rows)
    for name in (*CAM_METHODS, *SALIENCY_METHODS):
        row = rows[name]
        assert row["images"] == 8 and 0.0 <= row["pointing_game"] <= 1.0
        assert 0.0 <= row["deletion_auc"] <= 1.0 and row["ms_per_image"] > 0, name
    for name in TKV_METHODS:
        assert rows[name]["agreement"]["maps"] >= 4, name
        assert rows[name]["agreement"]["min"] >= 0.99, (name, rows[name]["agreement"])
    gaps = report["ig_completeness"]
    assert gaps["images"] == 8
    assert np.isfinite(gaps["median"]) and gaps["median"] < 0.01, gaps
    assert gaps["max"] <= 0.01 or gaps["steps"]["max"] == 1024, gaps
