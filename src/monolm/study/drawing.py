"""The report's figures, drawn by `monolm.figures` from the numbers in results.json (and,
for the training curves, the logged curves): quality vs robustness per subject and attack,
success (or mean best gain) vs budget with the control dashed, the transfer heat map, training
curves and a forest plot per headline comparison. A figure whose input is unusable is skipped
with its reason, never half drawn."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from monolm import figures as fig
from monolm.study.data import StudyData

TRAINING_LABELS = {
    "val/loss": "validation loss (nats per token)",
    "train/loss": "training loss (nats per token)",
}


def _stem(*parts: str) -> str:
    return "-".join(re.sub(r"[^A-Za-z0-9._]+", "_", p) for p in parts)


def _interval(found: dict[str, Any] | None) -> fig.Interval:
    assert found is not None
    return fig.Interval(found["mean"], found.get("low"), found.get("high"))


def _quality(results: dict, subject: str) -> list[tuple[str, str, Callable[[Path], list[Path]]]]:
    view = results["subjects"][subject]["quality_view"]
    if view is None:
        return []
    direction = "lower" if view["quality_lower_is_better"] else "higher"
    jobs = []
    for attack, arms in view["arms"].items():
        if not arms:
            continue
        tradeoffs = [
            fig.ArmTradeoff(
                arm,
                e["quality"],
                e["robustness"],
                _interval(e["mean_quality"]),
                _interval(e["mean_robustness"]),
                e["paths"] if len(results["study"]["checkpoints"]) else (),
            )
            for arm, e in arms.items()
        ]
        title = f"{subject}: {attack}, checkpoints and final model"

        def draw(out: Path, tradeoffs=tradeoffs, title=title) -> list[Path]:
            return fig.quality_vs_robustness(
                tradeoffs,
                out,
                title=title,
                x_label=f"clean {view['quality']} ({direction} is better)",
                y_label="attack success rate (fraction of decided examples)",
            )

        jobs.append((_stem("quality_vs_robustness", subject, attack), title, draw))
    return jobs


def _budget(results: dict, subject: str) -> list[tuple[str, str, Callable[[Path], list[Path]]]]:
    jobs = []
    for attack, found in results["subjects"][subject]["budget_curves"].items():
        if found is None:
            continue
        curves = []
        for arm, entry in found["arms"].items():
            control = entry.get("control")
            curves.append(
                fig.BudgetCurves(
                    arm,
                    found["queries"],
                    [_interval(p) for p in entry["attack"]["points"]],
                    [_interval(p) for p in control["points"]] if control else None,
                )
            )
        success = found["mode"] == "success"
        title = f"{subject}: {attack} by queries (mean over seeds)"

        def draw(
            out: Path, curves=curves, title=title, success=success, attack=attack
        ) -> list[Path]:
            return fig.success_vs_budget(
                curves,
                out,
                title=title,
                x_label="queries (sequences through the model)",
                y_label="attack success rate (fraction of decided examples)"
                if success
                else "mean best NLL gain (nats per token)",
                attack_label=attack,
            )

        name = "success_vs_budget" if success else "gain_vs_budget"
        jobs.append((_stem(name, subject, attack), title, draw))
    return jobs


def _transfer(results: dict, subject: str) -> list[tuple[str, str, Callable[[Path], list[Path]]]]:
    jobs = []
    for attack, matrix in results["subjects"][subject]["transfer"].items():
        values = [
            [
                (matrix["cells"][s][t]["success_rate"] or {}).get("mean", math.nan)
                for t in matrix["targets"]
            ]
            for s in matrix["sources"]
        ]
        if all(math.isnan(v) for row in values for v in row):
            continue
        title = f"{subject}: {attack} transfer (success rate, mean over seeds)"

        def draw(out: Path, values=values, matrix=matrix, title=title) -> list[Path]:
            return fig.transfer_heatmap(
                values, matrix["sources"], matrix["targets"], out, title=title
            )

        jobs.append((_stem("transfer", subject, attack), title, draw))
    return jobs


def _training(data: StudyData, subject: str) -> list[tuple[str, str, Callable]]:
    jobs = []
    for column, label in TRAINING_LABELS.items():
        arms = []
        for arm in data.arms:
            seeds = []
            for seed in data.settings.seeds:
                logged = (data.curves.get((subject, arm, seed)) or {}).get(column)
                if logged:
                    steps, values = zip(*logged, strict=True)
                    seeds.append(fig.SeedCurve(steps, values))
            if seeds:
                arms.append(fig.ArmCurves(arm, seeds))
        if not arms:
            continue
        title = f"{subject}: {column}"

        def draw(out: Path, arms=arms, label=label, title=title) -> list[Path]:
            return fig.training_curves(arms, out, y_label=label, title=title)

        jobs.append((_stem("training", subject, column), title, draw))
    return jobs


def headline_measures(results: dict, subject: str) -> list[str]:
    """The declared primary measures, or when none are: the clean-quality metric and each
    attack's success rate and delta NLL."""
    if results["study"]["primary"]:
        return list(results["study"]["primary"])
    view = results["subjects"][subject]["quality_view"]
    found = [view["quality"]] if view else []
    for attack in results["study"]["attacks"]:
        found += [f"attack/{attack}/success_rate", f"attack/{attack}/delta_nll"]
    return found


def _forest(results: dict, subject: str) -> list[tuple[str, str, Callable]]:
    jobs = []
    wanted = headline_measures(results, subject)
    for comparison in results["subjects"][subject]["comparisons"]:
        if not comparison["computed"] or comparison["measure"] not in wanted:
            continue
        seeds = comparison["per_seed"]["seeds"]
        title = f"{subject}: {comparison['measure']}"

        def draw(out: Path, c=comparison, seeds=seeds, title=title) -> list[Path]:
            return fig.forest_plot(
                [
                    _interval({"mean": s["mean_difference"], "low": s["low"], "high": s["high"]})
                    for s in seeds
                ],
                fig.Interval.from_result(c["multi_bootstrap"]),
                out,
                metric=c["measure"],
                arm_a=c["a"],
                arm_b=c["b"],
                seed_labels=[f"seed {s['seed']}" for s in seeds],
                title=title,
            )

        name = _stem("forest", subject, comparison["arm"], comparison["measure"])
        jobs.append((name, title, draw))
    return jobs


def _representations(results: dict, subject: str) -> list[tuple[str, str, Callable]]:
    found = results["subjects"][subject].get("representations")
    if not found:
        return []
    comparisons = found["comparisons"]
    layers = [d["layer"] for d in comparisons[0]["layers"]]

    def curve(c: dict[str, Any]) -> fig.LayerCurve:
        by_layer = {d["layer"]: d for d in c["layers"]}
        if [d["layer"] for d in c["layers"]] != layers:
            raise ValueError(f"{c['a']} vs {c['b']} has other layers than {layers}")
        return fig.LayerCurve(
            f"{c['a']} vs {c['b']}",
            tuple(
                fig.Interval(by_layer[n]["cka"], by_layer[n]["low"], by_layer[n]["high"])
                for n in layers
            ),
        )

    def draw(out: Path) -> list[Path]:
        return fig.layer_similarity(
            layers,
            [curve(c) for c in comparisons if not c["floor"]],
            out,
            [curve(c) for c in comparisons if c["floor"]],
            title=f"{subject}: CKA per layer",
        )

    return [(_stem(subject, "cka_layers"), f"{subject}: CKA per layer, seed floors shaded", draw)]


def draw_figures(
    data: StudyData, results: dict[str, Any], out: Path
) -> tuple[list[dict[str, str]], list[Path]]:
    """Every figure into `out` (stale .png/.pdf there from an earlier report are removed);
    returns what each figure is (paths relative to the report dir, or why it was skipped) and
    the files written."""
    drawn, written = [], []
    for subject in data.subjects:
        jobs = [
            *_quality(results, subject),
            *_budget(results, subject),
            *_transfer(results, subject),
            *_training(data, subject),
            *_forest(results, subject),
            *_representations(results, subject),
        ]
        for name, title, draw in jobs:
            try:
                paths = draw(out / name)
            except ValueError as exc:
                drawn.append(
                    {"subject": subject, "name": name, "title": title, "skipped": str(exc)}
                )
                continue
            written.extend(paths)
            drawn.append(
                {
                    "subject": subject,
                    "name": name,
                    "title": title,
                    **{p.suffix[1:]: f"{out.name}/{p.name}" for p in paths},
                }
            )
    if out.is_dir():
        for stale in sorted(out.iterdir()):
            if stale.suffix in (".png", ".pdf") and stale not in written:
                stale.unlink()
    return drawn, written
