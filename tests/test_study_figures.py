"""Figures of the study report: files written, byte-identical for the same input, a fixed colour
scale, line styles and arm colours as specified, and bad input refused by name."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib
import pytest
from matplotlib.colors import to_hex

from monolm import figures
from monolm.figures import (
    OKABE_ITO,
    ArmCurves,
    ArmTradeoff,
    BudgetCurves,
    Interval,
    LayerCurve,
    SeedCurve,
    arm_colours,
    build_forest_plot,
    build_quality_vs_robustness,
    build_success_vs_budget,
    build_training_curves,
    build_transfer_heatmap,
)

plt = figures.plt

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def no_figure_left_open():
    """Every test closes what it builds, and every saving function closes what it drew."""
    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before


def tradeoff(arm: str, shift: float = 0.0, checkpoints: bool = False) -> ArmTradeoff:
    quality = [0.30 + shift, 0.32 + shift, 0.31 + shift]
    robustness = [0.60 - shift, 0.55 - shift, 0.58 - shift]
    paths = [[(q - 0.05, r + 0.1), (q, r)] for q, r in zip(quality, robustness, strict=True)]
    return ArmTradeoff(
        arm,
        quality,
        robustness,
        Interval(0.31 + shift, 0.29 + shift, 0.33 + shift),
        Interval(0.577 - shift, 0.54 - shift, 0.61 - shift),
        paths if checkpoints else (),
    )


def budget_curves(arm: str, control: bool = True) -> BudgetCurves:
    budgets = [0, 1, 2, 3]
    attack = [Interval(0.0, 0.0, 0.0), Interval(0.3, 0.2, 0.4), Interval(0.5, 0.4, 0.6)]
    attack.append(Interval(0.7))  # an undefined interval is a gap in the band, not an error
    random = [Interval(0.0, 0.0, 0.0), Interval(0.05, 0.0, 0.1), Interval(0.1, 0.05, 0.15)]
    random.append(Interval(0.12, 0.07, 0.17))
    return BudgetCurves(arm, budgets, attack, random if control else None)


def arm_curves(arm: str) -> ArmCurves:
    return ArmCurves(
        arm,
        [
            SeedCurve([0, 10, 20, 30], [4.0, 3.0, 2.5, 2.2]),
            SeedCurve([0, 10, 20], [4.2, 3.2, 2.7]),
        ],
    )


TRANSFER = [[0.9, 0.4, math.nan], [0.35, 0.85, 0.2]]
LAYERS = ["layer.0", "layer.1", "layer.2"]
CKA = [[0.95, 0.6, 0.4], [0.5, 0.9, -0.01], [math.nan, 0.5, 0.85]]


def layer_curve(name: str, level: float) -> LayerCurve:
    return LayerCurve(name, tuple(Interval(level - 0.1 * i, level - 0.1 * i - 0.05,
                                           level - 0.1 * i + 0.05) for i in range(3)))  # fmt: skip


SOURCES, TARGETS = ["none", "monotonic"], ["none", "monotonic", "pythia-70m"]

FIGURES: dict[str, Callable[[Path], list[Path]]] = {
    "quality_vs_robustness": lambda out: figures.quality_vs_robustness(
        [tradeoff("none", checkpoints=True), tradeoff("monotonic", 0.05, checkpoints=True)], out
    ),
    "success_vs_budget": lambda out: figures.success_vs_budget(
        [budget_curves("none"), budget_curves("monotonic")], out
    ),
    "transfer_heatmap": lambda out: figures.transfer_heatmap(TRANSFER, SOURCES, TARGETS, out),
    "training_curves": lambda out: figures.training_curves(
        [arm_curves("none"), arm_curves("monotonic")], out
    ),
    "forest_plot": lambda out: figures.forest_plot(
        [Interval(0.02, -0.01, 0.05), Interval(0.04, 0.01, 0.07), Interval(-0.01)],
        Interval(0.018, -0.004, 0.041),
        out,
        metric="ROUGE-L F1",
        arm_a="monotonic",
        arm_b="none",
    ),
    "cka_heatmap": lambda out: figures.cka_heatmap(CKA, LAYERS, LAYERS, out),
    "layer_similarity": lambda out: figures.layer_similarity(
        LAYERS, [layer_curve("none vs monotonic", 0.7)], out, [layer_curve("none seeds", 0.8)]
    ),
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_each_figure_writes_png_and_pdf_byte_identical_for_the_same_input(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two saves at different (reproducible-build) times: a time stamp in a file would differ.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    first = FIGURES[name](tmp_path / "first" / name)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    second = FIGURES[name](tmp_path / "second" / name)

    assert [path.name for path in first] == [f"{name}.png", f"{name}.pdf"]
    png, pdf = (path.read_bytes() for path in first)
    assert png.startswith(PNG_SIGNATURE) and len(png) > 1000
    assert pdf.startswith(b"%PDF") and len(pdf) > 1000
    assert b"Software" not in png and b"CreationDate" not in pdf
    assert [path.read_bytes() for path in second] == [png, pdf]


def test_agg_backend_is_chosen_on_import() -> None:
    assert matplotlib.get_backend().lower() == "agg"
    # Also where the environment asks for another backend (a fresh interpreter: a test process
    # may have chosen one already).
    code = "import matplotlib, monolm.figures; print(matplotlib.get_backend())"
    environment = {**os.environ, "MPLBACKEND": "pdf"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().lower() == "agg"


def test_stem_with_a_suffix_is_refused_and_the_figure_still_closed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"ends in \.png"):
        figures.forest_plot([Interval(0.1)], Interval(0.1), tmp_path / "forest.png")
    assert not list(tmp_path.iterdir())


def test_a_failed_save_closes_the_figure(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file where the folder would go")
    with pytest.raises(OSError):
        figures.forest_plot([Interval(0.1)], Interval(0.1), tmp_path / "taken" / "forest")


# ---------------------------------------------------------------------------------------------
# Colours


def test_arms_get_okabe_ito_colours_in_the_order_given() -> None:
    assert arm_colours(["none", "monotonic"]) == {"none": OKABE_ITO[0], "monotonic": OKABE_ITO[1]}
    assert arm_colours(["monotonic", "none"]) == {"monotonic": OKABE_ITO[0], "none": OKABE_ITO[1]}


@pytest.mark.parametrize("order", [["none", "monotonic"], ["monotonic", "none"]])
def test_figures_colour_each_arm_by_its_position(order: list[str]) -> None:
    fig = build_quality_vs_robustness([tradeoff(arm) for arm in order])
    try:
        means = {
            line.get_label(): line for line in fig.axes[0].get_lines() if line.get_marker() == "o"
        }
        for position, arm in enumerate(order):
            assert to_hex(means[arm].get_color()).upper() == OKABE_ITO[position]
    finally:
        plt.close(fig)
    fig = build_success_vs_budget([budget_curves(arm) for arm in order])
    try:
        lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
        for position, arm in enumerate(order):
            for series in ("gradient attack", "random control"):
                colour = lines[f"{arm}: {series}"].get_color()
                assert to_hex(colour).upper() == OKABE_ITO[position]
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------------------------
# What each figure draws


def test_attack_is_solid_and_its_random_control_dashed_in_the_same_colour() -> None:
    fig = build_success_vs_budget([budget_curves("none"), budget_curves("monotonic", False)])
    try:
        lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
        assert set(lines) == {
            "none: gradient attack",
            "none: random control",
            "monotonic: gradient attack",
        }
        assert lines["none: gradient attack"].get_linestyle() == "-"
        assert lines["none: random control"].get_linestyle() == "--"
        assert (
            lines["none: random control"].get_color() == lines["none: gradient attack"].get_color()
        )
        legend = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
        assert "none: random control" in legend
    finally:
        plt.close(fig)


def heatmap_colour_of_first_cell(matrix: list[list[float]]) -> tuple[float, ...]:
    fig = build_transfer_heatmap(matrix, ["a", "b"], ["a", "b"])
    try:
        image = fig.axes[0].images[0]
        assert (image.norm.vmin, image.norm.vmax) == (0.0, 1.0)
        return tuple(image.to_rgba(image.get_array())[0, 0])
    finally:
        plt.close(fig)


def test_heatmap_colour_scale_is_fixed_to_zero_one() -> None:
    alone = heatmap_colour_of_first_cell([[0.3, 0.3], [0.3, 0.3]])
    with_high = heatmap_colour_of_first_cell([[0.3, 0.9], [0.3, 0.3]])
    with_low = heatmap_colour_of_first_cell([[0.3, 0.1], [0.1, 0.1]])
    expected = matplotlib.colormaps[figures.HEATMAP_COLORMAP](0.3)
    assert alone == with_high == with_low == pytest.approx(expected)


def test_heatmap_annotates_values_marks_missing_cells_and_outlines_white_box_cells() -> None:
    fig = build_transfer_heatmap(TRANSFER, SOURCES, TARGETS)
    try:
        ax = fig.axes[0]
        texts = {(text.get_position(), text.get_text()) for text in ax.texts}
        # (x, y) = (column, row)
        assert ((1, 0), "0.40") in texts and ((2, 0), "n/a") in texts
        assert ((1, 1), "0.85") in texts
        assert bool(ax.images[0].get_array().mask[0, 2])  # NaN: drawn in the "bad" grey
        # Source = target by name: (none, none) and (monotonic, monotonic), not pythia-70m.
        corners = sorted(patch.get_xy() for patch in ax.patches)
        assert corners == [(-0.5, -0.5), (0.5, 0.5)]
        assert fig.axes[1].get_ylabel() == "attack success rate (fraction)"
    finally:
        plt.close(fig)


def test_training_curves_mean_and_band_are_over_the_steps_every_seed_logged() -> None:
    fig = build_training_curves([arm_curves("none")])
    try:
        ax = fig.axes[0]
        mean = next(line for line in ax.get_lines() if line.get_label() == "none (2 seeds)")
        assert list(mean.get_xdata()) == [0, 10, 20]
        assert list(mean.get_ydata()) == pytest.approx([4.1, 3.1, 2.6])
        band = ax.collections[0].get_paths()[0].vertices
        assert band[:, 1].min() == pytest.approx(2.5) and band[:, 1].max() == pytest.approx(4.2)
        assert band[:, 0].max() == 20  # not extended to seed 0's last step
        # Each seed's own curve is still drawn in full.
        assert any(list(line.get_xdata()) == [0, 10, 20, 30] for line in ax.get_lines())
    finally:
        plt.close(fig)


def test_forest_plot_has_a_row_per_seed_a_pooled_diamond_and_a_zero_line() -> None:
    seeds = [Interval(0.02, -0.01, 0.05), Interval(0.04, 0.01, 0.07)]
    fig = build_forest_plot(
        seeds, Interval(0.03, 0.0, 0.06), metric="ROUGE-L", arm_a="mono", arm_b="none"
    )
    try:
        ax = fig.axes[0]
        assert ax.get_xlabel() == "ROUGE-L difference (mono - none)"
        labels = [tick.get_text() for tick in ax.get_yticklabels()]
        assert labels == ["seed 0", "seed 1", "pooled (multi-bootstrap)"]
        diamonds = [line for line in ax.get_lines() if line.get_marker() == "D"]
        assert len(diamonds) == 1 and list(diamonds[0].get_xdata()) == [0.03]
        squares = [line for line in ax.get_lines() if line.get_marker() == "s"]
        assert [list(line.get_xdata()) for line in squares] == [[0.02], [0.04]]
        assert any(list(line.get_xdata()) == [0, 0] for line in ax.get_lines())
    finally:
        plt.close(fig)


def test_interval_from_a_statistics_result() -> None:
    comparison = {"mean_difference": 0.02, "low": -0.01, "high": 0.05, "a": {"mean": 0.3}}
    assert Interval.from_result(comparison) == Interval(0.02, -0.01, 0.05)
    one_seed = {"mean": 0.3, "low": None, "high": None, "note": "one seed"}
    assert Interval.from_result(one_seed) == Interval(0.3)
    # A percentile interval need not contain the observed value: allowed.
    assert Interval(0.5, 0.51, 0.6).low == 0.51


# ---------------------------------------------------------------------------------------------
# Bad input


def one_point(arm: str, quality: list[float], robustness: list[float], paths=()) -> ArmTradeoff:
    return ArmTradeoff(arm, quality, robustness, Interval(0.3), Interval(0.5), paths)


def two_seeds_without_a_shared_step() -> ArmCurves:
    return ArmCurves("none", [SeedCurve([0], [1.0]), SeedCurve([5], [1.0])])


BAD_INPUT = {
    "low above high": (lambda: Interval(0.5, 0.6, 0.4), r"low \(0\.6\) is above its high \(0\.4\)"),
    "NaN mean": (lambda: Interval(math.nan), "Interval mean must be a finite number"),
    "low without high": (lambda: Interval(0.5, 0.4), "both low and high or neither"),
    "infinite high": (
        lambda: Interval(0.5, 0.4, math.inf),
        "Interval high must be a finite number",
    ),
    "NaN seed value": (
        lambda: one_point("none", [0.3, math.nan], [0.5, 0.6]),
        r"arm 'none' quality\[1\]",
    ),
    "seeds mismatched": (
        lambda: one_point("none", [0.3, 0.4], [0.5]),
        "quality has 2 values and robustness has 1",
    ),
    "no seed": (lambda: one_point("none", [], []), "quality is empty"),
    "checkpoint paths mismatched": (
        lambda: one_point("none", [0.3], [0.5], [[], []]),
        "2 checkpoint paths for 1 seeds",
    ),
    "budgets not increasing": (
        lambda: BudgetCurves("none", [0, 2, 1], [Interval(0)] * 3),
        r"budgets\[2\] = 1\.0 follows 2\.0",
    ),
    "control mismatched": (
        lambda: BudgetCurves("none", [0, 1], [Interval(0)] * 2, [Interval(0)]),
        "budgets has 2 values and control has 1",
    ),
    "NaN in a curve": (
        lambda: SeedCurve([0, 10], [1.0, math.nan]),
        r"values\[1\] must be a finite number",
    ),
    "no shared step": (
        lambda: build_training_curves([two_seeds_without_a_shared_step()]),
        "share no logged step",
    ),
    "no arm": (lambda: build_training_curves([]), "arms is empty"),
    "arm twice": (
        lambda: build_success_vs_budget([budget_curves("none"), budget_curves("none")]),
        r"repeated: \['none'\]",
    ),
    "value above one": (
        lambda: build_transfer_heatmap([[0.5, 1.2], [0.1, 0.2]], ["a", "b"], ["a", "b"]),
        r"\[0, 1\].*got 1\.2",
    ),
    "matrix shape": (
        lambda: build_transfer_heatmap([[0.5, 0.2]], ["a", "b"], ["a", "b"]),
        r"shape \(1, 2\), expected \(2 sources, 2 targets\)",
    ),
    "ragged matrix": (
        lambda: build_transfer_heatmap([[0.5, 0.2], [0.1]], ["a", "b"], ["a", "b"]),
        "matrix of numbers",
    ),
    "no source": (lambda: build_transfer_heatmap([], [], []), "sources is empty"),
    "no seed row": (lambda: build_forest_plot([], Interval(0.1)), "seeds is empty"),
    "seed labels mismatched": (
        lambda: build_forest_plot([Interval(0.1)], Interval(0.1), seed_labels=["a", "b"]),
        "seeds has 1 values and seed_labels has 2",
    ),
    "too many arms": (
        lambda: arm_colours([f"arm{i}" for i in range(9)]),
        "9 arms but the palette has 8 colours",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_refused_naming_the_value(case: str) -> None:
    build, message = BAD_INPUT[case]
    with pytest.raises(ValueError, match=message):
        build()


def test_cka_heatmap_has_layer_rows_from_the_bottom_and_clips_below_zero() -> None:
    fig = figures.build_cka_heatmap(CKA, LAYERS, LAYERS, row_label="layer of none")
    try:
        ax = fig.axes[0]
        texts = {(text.get_position(), text.get_text()) for text in ax.texts}
        assert ((0, 0), "0.95") in texts and ((0, 2), "n/a") in texts
        assert ((2, 1), "0.00") in texts  # -0.01, a debiased estimate below 0, clipped
        assert ax.get_ylabel() == "layer of none" and ax.images[0].origin == "lower"
    finally:
        plt.close(fig)


def test_layer_similarity_draws_each_comparison_with_its_band_and_shades_each_floor() -> None:
    comparisons = [layer_curve("none vs monotonic", 0.7), layer_curve("none vs base", 0.6)]
    floor = layer_curve("none seeds", 0.8)
    fig = figures.build_layer_similarity(LAYERS, comparisons, [floor])
    try:
        ax = fig.axes[0]
        labels = [line.get_label() for line in ax.get_lines()]
        assert labels[1:] == ["none vs monotonic", "none vs base"]
        assert labels[0].startswith("seed floor: none seeds")
        assert ax.get_lines()[0].get_linestyle() == "--"
        shaded = ax.collections[0].get_paths()[0].vertices  # the floor: its lower bound to 1
        assert shaded[:, 1].max() == pytest.approx(1.0)
        assert shaded[:, 1].min() == pytest.approx(0.8 - 0.2 - 0.05)
        assert len(ax.collections) == 3  # the floor's region and one band per comparison
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="'none seeds' values has 2 values and layers has 3"):
        figures.build_layer_similarity(
            LAYERS, comparisons, [LayerCurve("none seeds", floor.values[:2])]
        )
