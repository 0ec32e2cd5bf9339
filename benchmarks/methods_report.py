"""The report of ``benchmarks/methods.py``: its targets, checked, and its table in Markdown."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks.methods_references import TKV_METHODS

TARGETS = {"gradcam_pointing": 0.95, "gradcam_deletion_vs_random": 0.5, "agreement_r": 0.99,
           "ig_gap": 0.01}


def target_checks(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each target with the measured figure and whether it is met."""
    rows = {row["method"]: row for row in report["rows"]}
    grad, random = rows["gradcam"], rows["random"]
    ratio = grad["deletion_auc"] / random["deletion_auc"]
    checks = [
        {"target": "Grad-CAM pointing game >= 95 %", "value": grad["pointing_game"],
         "measured": f"{100 * grad['pointing_game']:.1f} %",
         "met": grad["pointing_game"] >= TARGETS["gradcam_pointing"]},
        {"target": "Grad-CAM deletion AUC <= 0.5x the random map's", "value": ratio,
         "measured": f"{grad['deletion_auc']:.3f} / {random['deletion_auc']:.3f} = {ratio:.2f}x",
         "met": ratio <= TARGETS["gradcam_deletion_vs_random"]},
    ]
    for name in TKV_METHODS:
        r = rows[name]["agreement"]["median"]
        checks.append({"target": f"{name} agrees with tf-keras-vis, median r >= 0.99",
                       "value": r, "measured": "n/a" if r is None else f"r = {r:.4f}",
                       "met": r is not None and r >= TARGETS["agreement_r"]})
    gap = report["ig_completeness"]
    checks.append({"target": "integrated gradients completeness within 1 % (every image)",
                   "value": gap["max"], "met": gap["max"] <= TARGETS["ig_gap"],
                   "measured": f"median {100 * gap['median']:.2f} %, max "
                               f"{100 * gap['max']:.2f} %; {100 * gap['within_1pct']:.1f} % of "
                               f"{gap['images']} images within 1 %" + (
                                   f"; {100 * gap['steps']['refined']:.0f} % refined, steps "
                                   f"median {gap['steps']['median']:.0f}, max "
                                   f"{gap['steps']['max']}" if "steps" in gap else "")})
    return checks


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table_lines(report: Mapping[str, Any]) -> list[str]:
    """The table as Markdown, one line per method and reference map."""
    lines = ["| method | pointing game | deletion AUC | insertion AUC | ms / image | first s "
             "| tf-keras-vis ms / image | their time / ours | r with tf-keras-vis, median (min) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        ours, theirs = row.get("ms_per_image"), row.get("tkv_ms_per_image")
        agree = row.get("agreement")
        r = "-" if not agree or agree["median"] is None else \
            f"{agree['median']:.4f} ({agree['min']:.4f})"
        ratio = None if ours is None or theirs is None else theirs / ours
        lines.append(
            f"| {row['method']} | {100 * row['pointing_game']:.1f} % "
            f"| {row['deletion_auc']:.3f} | {row['insertion_auc']:.3f} "
            f"| {_cell(ours, '.2f')} | {_cell(row.get('first_s'), '.1f')} "
            f"| {_cell(theirs, '.2f')} | {_cell(ratio, '.1f')}{'x' if ratio else ''} | {r} |")
    return lines


def print_report(report: Mapping[str, Any], quick: bool) -> None:
    env, settings = report["environment"], report["settings"]
    print(f"convscope methods benchmark ({'quick' if quick else 'full'} run): "
          f"{settings['images']} two-shape images (seed {settings['seed']}), layer "
          f"{report['layer']!r}, batch {report['batch']}")
    print(f"CPU cores: {env['cpu_cores']} ({env['processor']}), Python {env['python']}, "
          f"TensorFlow {env['tensorflow']}, Keras {env['keras']}, tf-keras-vis "
          f"{env['tf_keras_vis']}\n")
    print("\n".join(table_lines(report)))
    smooth = report["smoothgrad"]
    own, other = smooth["r_own_noise"], smooth["r_other_seed"]
    print(f"\nsmoothgrad ({smooth['samples']} samples, noise {smooth['noise']}): r in the table "
          f"is tf-keras-vis fed our noise, on the first {smooth['images']} images. Each with "
          f"its own noise (statistical): median r {own['median']:.4f} (min {own['min']:.4f}) "
          f"over {own['maps']} images; ours against ours with another seed "
          f"{other['median']:.4f} (min {other['min']:.4f}).")
    print(f"faster_scorecam: r in the table is tf-keras-vis explaining one image per call, on "
          f"the first {report['faster_scorecam']['images']} images (at batch 32 it picks the "
          f"top channels over the whole batch); its time is at batch 32.")
    print(f"tf-keras-vis explained the first {report['tkv_images']} images (its times and r); "
          f"ours all {settings['images']}.")
    gap = report["ig_completeness"]
    if "worst_again" in gap:
        again = gap["worst_again"]
        print(f"integrated gradients: the {again['images']} images furthest from complete, at "
              f"{again['steps']} steps: median gap {100 * again['median']:.2f} %, max "
              f"{100 * again['max']:.2f} % ({100 * again['within_1pct']:.0f} % within 1 %); "
              f"the max is on an image whose |f(x) - f(x')| is {again['max_abs_gain']:.3f} "
              f"(median over all images {gap['median_abs_gain']:.2f}).")
    print(f"load average at the end: {', '.join(map(str, env['load_average_end']))}")
    note = " (quick run: indicative only)" if quick else ""
    print(f"\nTargets{note}:")
    for check in target_checks(report):
        print(f"  {check['target']}: {check['measured']}: "
              f"{'met' if check['met'] else 'MISSED'}")
