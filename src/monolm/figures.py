"""Figures of the study report and of evaluate.py's CKA task, drawn from plain typed values: no file
is read, nothing estimated.

Each figure has two functions. `build_<figure>(...)` draws it and returns the open `Figure` (tests
and notebooks inspect its artists; whoever builds one closes it with `plt.close`).
`<figure>(..., out)` builds it, writes `<out>.png` (the report) and `<out>.pdf` (LaTeX), closes it
whatever happens, and returns both paths. Intervals come from `monolm.metrics` (see
`Interval.from_result`) and are drawn as given: a figure never re-estimates one (seaborn's default
error bars bootstrap the plotted rows, unpaired and unseeded).

Conventions: the Agg backend (chosen on import: nothing here needs a display); matplotlib's
default style plus `_RC` for every figure, so a user's matplotlibrc changes nothing; TrueType
(Type 42) fonts in the PDF, since publishers' checks reject Type 3 fonts; the Okabe-Ito
colour-blind palette, the arms coloured in the order they are given (`arm_colours`). The same
input gives byte-identical files: the PNG carries no software version, the PDF no creation date.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib import style
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

# pyplot is imported only once the backend is chosen.
matplotlib.use("Agg")

import matplotlib.pyplot as plt

# Embedding fonts in a PDF logs every table fontTools subsets at INFO: a page of noise per figure.
logging.getLogger("fontTools").setLevel(logging.WARNING)

# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision
# deficiency. An arm's colour is its position in the order the arms are given.
OKABE_ITO = (
    "#E69F00",
    "#56B4E9",
    "#009E73",
    "#F0E442",
    "#0072B2",
    "#D55E00",
    "#CC79A7",
    "#000000",
)
DPI = 150
# Sequential, perceptually uniform and readable with colour-vision deficiencies.
HEATMAP_COLORMAP = "cividis"
_MISSING_CELL = "#D9D9D9"
_DIAGONAL_EDGE = "#D55E00"
_RC: dict[str, Any] = {
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "font.size": 9,
    "axes.prop_cycle": matplotlib.cycler(color=OKABE_ITO),
}
_STYLE = ["default", _RC]


def _number(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def _numbers(values: Sequence[Any], name: str) -> tuple[float, ...]:
    numbers = tuple(_number(value, f"{name}[{i}]") for i, value in enumerate(values))
    if not numbers:
        raise ValueError(f"{name} is empty: it needs at least one value")
    return numbers


def _same_length(first: Sequence[Any], second: Sequence[Any], names: tuple[str, str]) -> None:
    if len(first) != len(second):
        raise ValueError(
            f"{names[0]} has {len(first)} values and {names[1]} has {len(second)}: "
            "they need one each"
        )


def _increasing(values: tuple[float, ...], name: str) -> None:
    for i in range(1, len(values)):
        if values[i] <= values[i - 1]:
            raise ValueError(
                f"{name} must increase strictly: {name}[{i}] = {values[i]} follows {values[i - 1]}"
            )


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _intervals(values: Sequence[Any], name: str) -> tuple[Interval, ...]:
    for i, value in enumerate(values):
        if not isinstance(value, Interval):
            raise TypeError(f"{name}[{i}] must be an Interval, got {type(value).__name__}")
    if not values:
        raise ValueError(f"{name} is empty: it needs at least one interval")
    return tuple(values)


@dataclass(frozen=True)
class Interval:
    """A point estimate and its confidence interval; `low`/`high` None where it is undefined
    (one seed). `low <= high`; the estimate may lie outside a percentile interval."""

    mean: float
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _number(self.mean, "Interval mean"))
        if (self.low is None) != (self.high is None):
            raise ValueError(
                f"Interval needs both low and high or neither, got low={self.low!r} "
                f"high={self.high!r}"
            )
        if self.low is None:
            return
        low, high = _number(self.low, "Interval low"), _number(self.high, "Interval high")
        if low > high:
            raise ValueError(f"Interval low ({low}) is above its high ({high})")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> Interval:
        """From a `monolm.metrics` result: `mean_difference` (a comparison) or `mean`, and its
        `low`/`high` (None where the statistics module left them undefined)."""
        key = "mean_difference" if "mean_difference" in result else "mean"
        if key not in result:
            raise ValueError(
                f"result has neither 'mean_difference' nor 'mean' (keys: {sorted(result)})"
            )
        return cls(result[key], result.get("low"), result.get("high"))

    @property
    def bounds(self) -> tuple[float, float]:
        """(low, high), NaN where undefined: matplotlib leaves a gap there."""
        if self.low is None or self.high is None:
            return math.nan, math.nan
        return self.low, self.high


@dataclass(frozen=True)
class ArmTradeoff:
    """One arm in the quality-robustness plane.

    `quality` and `robustness` hold one value per seed (same seed order); `mean_quality` and
    `mean_robustness` the arm's mean with its interval (e.g. `arm_summary`). `checkpoints`,
    optional: for each seed, the (quality, robustness) of its checkpoints in training-step order,
    which draws the quality-matched view.
    """

    arm: str
    quality: Sequence[float]
    robustness: Sequence[float]
    mean_quality: Interval
    mean_robustness: Interval
    checkpoints: Sequence[Sequence[tuple[float, float]]] = ()

    def __post_init__(self) -> None:
        arm = _name(self.arm, "arm")
        quality = _numbers(self.quality, f"arm '{arm}' quality")
        robustness = _numbers(self.robustness, f"arm '{arm}' robustness")
        _same_length(quality, robustness, (f"arm '{arm}' quality", "robustness"))
        _intervals([self.mean_quality, self.mean_robustness], f"arm '{arm}' means")
        if self.checkpoints and len(self.checkpoints) != len(quality):
            raise ValueError(
                f"arm '{arm}' has {len(self.checkpoints)} checkpoint paths for {len(quality)} "
                "seeds: give one per seed, or none"
            )
        paths = []
        for s, path in enumerate(self.checkpoints):
            name = f"arm '{arm}' checkpoints[{s}]"
            if not path:
                raise ValueError(f"{name} is empty: it needs at least one (quality, robustness)")
            points = []
            for i, point in enumerate(path):
                if len(point) != 2:
                    raise ValueError(f"{name}[{i}] must be (quality, robustness), got {point!r}")
                points.append(tuple(_numbers(point, f"{name}[{i}]")))
            paths.append(tuple(points))
        object.__setattr__(self, "quality", quality)
        object.__setattr__(self, "robustness", robustness)
        object.__setattr__(self, "checkpoints", tuple(paths))


@dataclass(frozen=True)
class BudgetCurves:
    """One arm's attack success by budget (flips 0..k, or queries), for the attack and
    optionally its random control, one interval per budget."""

    arm: str
    budgets: Sequence[float]
    attack: Sequence[Interval]
    control: Sequence[Interval] | None = None

    def __post_init__(self) -> None:
        arm = _name(self.arm, "arm")
        budgets = _numbers(self.budgets, f"arm '{arm}' budgets")
        _increasing(budgets, f"arm '{arm}' budgets")
        attack = _intervals(self.attack, f"arm '{arm}' attack")
        _same_length(budgets, attack, (f"arm '{arm}' budgets", "attack"))
        if self.control is not None:
            control = _intervals(self.control, f"arm '{arm}' control")
            _same_length(budgets, control, (f"arm '{arm}' budgets", "control"))
            object.__setattr__(self, "control", control)
        object.__setattr__(self, "budgets", budgets)
        object.__setattr__(self, "attack", attack)


@dataclass(frozen=True)
class SeedCurve:
    """One seed's logged values by training step (steps strictly increasing)."""

    steps: Sequence[float]
    values: Sequence[float]

    def __post_init__(self) -> None:
        steps, values = _numbers(self.steps, "steps"), _numbers(self.values, "values")
        _same_length(steps, values, ("steps", "values"))
        _increasing(steps, "steps")
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "values", values)


@dataclass(frozen=True)
class ArmCurves:
    """One arm's training curve: one `SeedCurve` per seed."""

    arm: str
    seeds: Sequence[SeedCurve]

    def __post_init__(self) -> None:
        arm = _name(self.arm, "arm")
        if not self.seeds:
            raise ValueError(f"arm '{arm}' has no seed curve: it needs at least one")
        object.__setattr__(self, "seeds", tuple(self.seeds))

    def common_steps(self) -> np.ndarray:
        """The steps every seed logged: where the mean and band over seeds are drawn."""
        shared = set(self.seeds[0].steps).intersection(*(seed.steps for seed in self.seeds[1:]))
        if not shared:
            raise ValueError(
                f"arm '{self.arm}': its {len(self.seeds)} seeds share no logged step, so no mean "
                "over seeds can be drawn (log them on a common step grid)"
            )
        return np.array(sorted(shared))

    def on_steps(self, steps: np.ndarray) -> np.ndarray:
        """`[seeds, steps]` values at `steps` (each logged by every seed)."""
        rows = []
        for seed in self.seeds:
            by_step = dict(zip(seed.steps, seed.values, strict=True))
            rows.append([by_step[step] for step in steps.tolist()])
        return np.array(rows)


def arm_colours(arms: Sequence[str]) -> dict[str, str]:
    """Each arm's Okabe-Ito colour by position: the first arm given gets the first colour. Pass
    every figure the arms in one order and an arm keeps its colour across the report."""
    names = [_name(arm, "arm name") for arm in arms]
    if not names:
        raise ValueError("arms is empty: a figure needs at least one arm")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"arm names must be unique, repeated: {repeated}")
    if len(names) > len(OKABE_ITO):
        raise ValueError(
            f"{len(names)} arms but the palette has {len(OKABE_ITO)} colours: draw at most "
            f"{len(OKABE_ITO)} arms in one figure"
        )
    return dict(zip(names, OKABE_ITO, strict=False))


@contextmanager
def _new_figure(size: tuple[float, float]) -> Iterator[tuple[Figure, Axes]]:
    """A figure under the fixed style, closed if drawing it fails."""
    with style.context(_STYLE):
        fig, ax = plt.subplots(figsize=size, layout="constrained")
        try:
            yield fig, ax
        except BaseException:
            plt.close(fig)
            raise


def save_figure(fig: Figure, out: Path) -> list[Path]:
    """Write `<out>.png` and `<out>.pdf` (byte-identical for the same figure), create `out`'s
    folder if needed, and close `fig`, also when saving fails. `out` is a stem: no suffix."""
    try:
        out = Path(out)
        if out.suffix.lower() in (".png", ".pdf"):
            raise ValueError(
                f"out '{out}' ends in {out.suffix}: give a stem, both .png and .pdf are written"
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        png, pdf = out.parent / f"{out.name}.png", out.parent / f"{out.name}.pdf"
        with style.context(_STYLE):
            fig.savefig(png, format="png", dpi=DPI, metadata={"Software": None})
            fig.savefig(pdf, format="pdf", dpi=DPI, metadata={"CreationDate": None})
    finally:
        plt.close(fig)
    return [png, pdf]


def _finish(ax: Axes, x_label: str, y_label: str, title: str | None) -> None:
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    if title:
        ax.set_title(title)


# ---------------------------------------------------------------------------------------------
# 1. Clean quality vs robustness


def build_quality_vs_robustness(
    arms: Sequence[ArmTradeoff],
    *,
    x_label: str = "clean quality (higher is better)",
    y_label: str = "attack success rate (fraction of examples)",
    title: str | None = None,
) -> Figure:
    """A point per seed (small, translucent), each arm's mean with its interval in x and y, and,
    where given, a thin line through each seed's checkpoints. The legend names the arms."""
    colours = arm_colours([arm.arm for arm in arms])
    with _new_figure((5.0, 3.8)) as (fig, ax):
        for arm in arms:
            colour = colours[arm.arm]
            for path in arm.checkpoints:
                xs, ys = zip(*path, strict=True)
                ax.plot(xs, ys, color=colour, alpha=0.35, lw=0.8, marker=".", ms=3, zorder=1)
            ax.scatter(arm.quality, arm.robustness, s=16, color=colour, alpha=0.45, lw=0, zorder=2)
            mx, my = arm.mean_quality, arm.mean_robustness
            ax.plot(mx.bounds, [my.mean, my.mean], color=colour, lw=1.6, zorder=3)
            ax.plot([mx.mean, mx.mean], my.bounds, color=colour, lw=1.6, zorder=3)
            ax.plot(
                mx.mean,
                my.mean,
                ls="none",
                marker="o",
                ms=7,
                color=colour,
                mec="black",
                mew=0.6,
                zorder=4,
                label=arm.arm,
            )
        handles, _ = ax.get_legend_handles_labels()
        guide = [
            Line2D([], [], ls="none", marker="o", ms=4, color="grey", alpha=0.45, label="one seed"),
            Line2D([], [], color="grey", lw=1.6, label="arm mean, CI in x and y"),
        ]
        if any(arm.checkpoints for arm in arms):
            guide.append(Line2D([], [], color="grey", lw=0.8, marker=".", label="checkpoints"))
        ax.legend(handles=handles + guide, loc="best", fontsize=8)
        _finish(ax, x_label, y_label, title)
    return fig


def quality_vs_robustness(
    arms: Sequence[ArmTradeoff],
    out: Path,
    *,
    x_label: str = "clean quality (higher is better)",
    y_label: str = "attack success rate (fraction of examples)",
    title: str | None = None,
) -> list[Path]:
    """`build_quality_vs_robustness`, saved as `<out>.png` and `<out>.pdf`."""
    fig = build_quality_vs_robustness(arms, x_label=x_label, y_label=y_label, title=title)
    return save_figure(fig, out)


# ---------------------------------------------------------------------------------------------
# 2. Attack success vs budget


def build_success_vs_budget(
    arms: Sequence[BudgetCurves],
    *,
    x_label: str = "budget (token flips)",
    y_label: str = "attack success rate (fraction of examples)",
    attack_label: str = "gradient attack",
    control_label: str = "random control",
    title: str | None = None,
) -> Figure:
    """Per arm, the attack's mean success by budget as a solid line and its random control's as
    a dashed line in the same colour, each with its interval as a band. Each line's legend entry
    is `<arm>: <attack_label>` or `<arm>: <control_label>`."""
    colours = arm_colours([arm.arm for arm in arms])
    with _new_figure((5.0, 3.6)) as (fig, ax):
        for arm in arms:
            colour = colours[arm.arm]
            series = [(arm.attack, "-", 0.2, attack_label)]
            if arm.control is not None:
                series.append((arm.control, "--", 0.1, control_label))
            for intervals, linestyle, alpha, label in series:
                lows, highs = zip(*(interval.bounds for interval in intervals), strict=True)
                ax.fill_between(arm.budgets, lows, highs, color=colour, alpha=alpha, lw=0)
                ax.plot(
                    arm.budgets,
                    [interval.mean for interval in intervals],
                    color=colour,
                    ls=linestyle,
                    marker="o",
                    ms=3,
                    label=f"{arm.arm}: {label}",
                )
        if all(float(budget).is_integer() for arm in arms for budget in arm.budgets):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="best", fontsize=8)
        _finish(ax, x_label, y_label, title)
    return fig


def success_vs_budget(
    arms: Sequence[BudgetCurves],
    out: Path,
    *,
    x_label: str = "budget (token flips)",
    y_label: str = "attack success rate (fraction of examples)",
    attack_label: str = "gradient attack",
    control_label: str = "random control",
    title: str | None = None,
) -> list[Path]:
    """`build_success_vs_budget`, saved as `<out>.png` and `<out>.pdf`."""
    fig = build_success_vs_budget(
        arms,
        x_label=x_label,
        y_label=y_label,
        attack_label=attack_label,
        control_label=control_label,
        title=title,
    )
    return save_figure(fig, out)


# ---------------------------------------------------------------------------------------------
# 3. Transfer heat map


def _transfer_matrix(
    values: Sequence[Sequence[float]] | np.ndarray, sources: Sequence[str], targets: Sequence[str]
) -> np.ndarray:
    for names, what in ((sources, "sources"), (targets, "targets")):
        listed = [_name(name, f"a name in {what}") for name in names]
        if not listed:
            raise ValueError(f"{what} is empty: the heat map needs at least one")
        if len(set(listed)) != len(listed):
            raise ValueError(f"{what} must be unique, got {listed}")
    try:
        matrix = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("values must be a matrix of numbers (rows of equal length)") from None
    if matrix.shape != (len(sources), len(targets)):
        raise ValueError(
            f"values has shape {matrix.shape}, expected ({len(sources)} sources, "
            f"{len(targets)} targets)"
        )
    finite = matrix[~np.isnan(matrix)]
    outside = finite[(finite < 0) | (finite > 1)]
    if np.isinf(matrix).any() or outside.size:
        bad = matrix[np.isinf(matrix)].tolist() + outside.tolist()
        raise ValueError(
            f"values must lie in [0, 1] (NaN for a pair not run), got {bad[0]}: the colour scale "
            "is fixed to 0-1"
        )
    return matrix


def build_transfer_heatmap(
    values: Sequence[Sequence[float]] | np.ndarray,
    sources: Sequence[str],
    targets: Sequence[str],
    *,
    colour_label: str = "attack success rate (fraction)",
    x_label: str = "target model",
    y_label: str = "source (attacked) model",
    title: str | None = None,
) -> Figure:
    """Rows: the model the attack was computed on; columns: the model it is applied to.

    The colour scale is fixed to 0-1 (`HEATMAP_COLORMAP`), so heat maps of different studies
    compare; each cell shows its value to 2 decimals, a NaN cell (pair not run) is grey with
    "n/a". White-box cells, where the source is the target (matched by name, so a rectangular
    matrix works too), are outlined.
    """
    matrix = _transfer_matrix(values, sources, targets)
    rows, columns = matrix.shape
    cmap = matplotlib.colormaps[HEATMAP_COLORMAP].with_extremes(bad=_MISSING_CELL)
    norm = Normalize(vmin=0.0, vmax=1.0)
    size = (max(4.0, 2.4 + 0.75 * columns), max(3.4, 1.6 + 0.55 * rows))
    with _new_figure(size) as (fig, ax):
        image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, norm=norm)
        for i, j in np.ndindex(rows, columns):
            value = matrix[i, j]
            if np.isnan(value):
                text, colour = "n/a", "black"
            else:
                red, green, blue, _ = cmap(norm(value))
                luminance = 0.2126 * red + 0.7152 * green + 0.0722 * blue
                text, colour = f"{value:.2f}", "white" if luminance < 0.5 else "black"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=8)
        white_box = [(i, j) for i, j in np.ndindex(rows, columns) if sources[i] == targets[j]]
        for i, j in white_box:
            ax.add_patch(
                Rectangle(
                    (j - 0.5, i - 0.5),
                    1,
                    1,
                    fill=False,
                    edgecolor=_DIAGONAL_EDGE,
                    lw=2.0,
                    label="white-box (source = target)" if (i, j) == white_box[0] else None,
                )
            )
        if white_box:
            fig.legend(loc="outside lower center", fontsize=8, frameon=False)
        ax.set_xticks(range(columns), list(targets), rotation=30, ha="right")
        ax.set_yticks(range(rows), list(sources))
        fig.colorbar(image, ax=ax, label=colour_label)
        _finish(ax, x_label, y_label, title)
    return fig


def transfer_heatmap(
    values: Sequence[Sequence[float]] | np.ndarray,
    sources: Sequence[str],
    targets: Sequence[str],
    out: Path,
    *,
    colour_label: str = "attack success rate (fraction)",
    x_label: str = "target model",
    y_label: str = "source (attacked) model",
    title: str | None = None,
) -> list[Path]:
    """`build_transfer_heatmap`, saved as `<out>.png` and `<out>.pdf`."""
    fig = build_transfer_heatmap(
        values,
        sources,
        targets,
        colour_label=colour_label,
        x_label=x_label,
        y_label=y_label,
        title=title,
    )
    return save_figure(fig, out)


# ---------------------------------------------------------------------------------------------
# 4. Training curves


def build_training_curves(
    arms: Sequence[ArmCurves],
    *,
    y_label: str = "validation loss (nats per token)",
    x_label: str = "training step",
    title: str | None = None,
) -> Figure:
    """Per arm: each seed's curve (thin, translucent, over all its steps), and over the steps
    every seed of the arm logged (`ArmCurves.common_steps`: no value is interpolated) the mean
    over seeds as a line with the min-max range as a band (with 2-5 seeds a standard deviation
    says little, the range shows every seed)."""
    colours = arm_colours([arm.arm for arm in arms])
    grids = {arm.arm: arm.common_steps() for arm in arms}
    with _new_figure((5.0, 3.6)) as (fig, ax):
        for arm in arms:
            colour, steps = colours[arm.arm], grids[arm.arm]
            for seed in arm.seeds:
                ax.plot(seed.steps, seed.values, color=colour, alpha=0.3, lw=0.7)
            values = arm.on_steps(steps)
            ax.fill_between(steps, values.min(0), values.max(0), color=colour, alpha=0.2, lw=0)
            ax.plot(
                steps,
                values.mean(0),
                color=colour,
                lw=1.6,
                label=f"{arm.arm} ({len(arm.seeds)} seeds)",
            )
        ax.legend(loc="best", fontsize=8, title="mean; band: min-max over seeds", title_fontsize=8)
        _finish(ax, x_label, y_label, title)
    return fig


def training_curves(
    arms: Sequence[ArmCurves],
    out: Path,
    *,
    y_label: str = "validation loss (nats per token)",
    x_label: str = "training step",
    title: str | None = None,
) -> list[Path]:
    """`build_training_curves`, saved as `<out>.png` and `<out>.pdf`."""
    fig = build_training_curves(arms, y_label=y_label, x_label=x_label, title=title)
    return save_figure(fig, out)


# ---------------------------------------------------------------------------------------------
# 5. Forest plot


def build_forest_plot(
    seeds: Sequence[Interval],
    pooled: Interval,
    *,
    metric: str = "metric",
    arm_a: str = "A",
    arm_b: str = "B",
    seed_labels: Sequence[str] | None = None,
    pooled_label: str = "pooled (multi-bootstrap)",
    title: str | None = None,
) -> Figure:
    """One row per seed (its difference A - B as a square, its interval as a line: e.g. from
    `per_seed_paired_bootstrap`), then the pooled estimate below a rule (a black diamond: e.g.
    `multi_bootstrap`), and a dotted vertical line at no difference."""
    rows = _intervals(seeds, "seeds")
    _intervals([pooled], "pooled")
    labels = [f"seed {s}" for s in range(len(rows))] if seed_labels is None else seed_labels
    _same_length(rows, labels, ("seeds", "seed_labels"))
    labels = [_name(label, "a seed label") for label in labels]
    n = len(rows)
    with _new_figure((5.0, 1.2 + 0.3 * (n + 1))) as (fig, ax):
        for s, interval in enumerate(rows):
            y = n - s
            ax.plot(interval.bounds, [y, y], color=OKABE_ITO[4], lw=1.4)
            ax.plot(interval.mean, y, ls="none", marker="s", ms=5, color=OKABE_ITO[4])
        ax.plot(pooled.bounds, [0, 0], color="black", lw=2.0)
        ax.plot(pooled.mean, 0, ls="none", marker="D", ms=9, color="black")
        ax.axhline(0.5, color="grey", lw=0.6)
        ax.axvline(0.0, color="grey", ls=":", lw=1.0)
        ax.set_yticks(range(n, -1, -1), [*labels, pooled_label])
        ax.set_ylim(-0.7, n + 0.7)
        _finish(ax, f"{metric} difference ({arm_a} - {arm_b})", "", title)
    return fig


def forest_plot(
    seeds: Sequence[Interval],
    pooled: Interval,
    out: Path,
    *,
    metric: str = "metric",
    arm_a: str = "A",
    arm_b: str = "B",
    seed_labels: Sequence[str] | None = None,
    pooled_label: str = "pooled (multi-bootstrap)",
    title: str | None = None,
) -> list[Path]:
    """`build_forest_plot`, saved as `<out>.png` and `<out>.pdf`."""
    fig = build_forest_plot(
        seeds,
        pooled,
        metric=metric,
        arm_a=arm_a,
        arm_b=arm_b,
        seed_labels=seed_labels,
        pooled_label=pooled_label,
        title=title,
    )
    return save_figure(fig, out)


# ---------------------------------------------------------------------------------------------
# 6. Representation similarity (CKA) of two subjects, layer by layer

# Above this many layers a heat map's cells carry no printed value (they would not be legible).
_MAX_ANNOTATED_LAYERS = 12
_FLOOR_COLOUR = "#6E6E6E"
_FLOOR_STYLES = ("--", ":", "-.", (0, (5, 1, 1, 1)))


@dataclass(frozen=True)
class LayerCurve:
    """CKA of one comparison at each layer of `LayerSimilarity.layers`, with intervals."""

    name: str
    values: tuple[Interval, ...]


def build_cka_heatmap(
    values: Sequence[Sequence[float]] | np.ndarray,
    rows: Sequence[str],
    columns: Sequence[str],
    *,
    row_label: str = "layer of A",
    column_label: str = "layer of B",
    title: str | None = None,
) -> Figure:
    """CKA of every layer of one subject (rows) with every layer of another (columns), on a
    fixed 0-1 scale (`HEATMAP_COLORMAP`); a NaN cell (not comparable) is grey. Values are printed
    in the cells of matrices up to 12 layers a side. The debiased estimator can fall a little
    below 0: colour and text are clipped to 0-1 (the values themselves are in cka.json)."""
    matrix = _transfer_matrix(
        np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0), rows, columns
    )
    n_rows, n_columns = matrix.shape
    cmap = matplotlib.colormaps[HEATMAP_COLORMAP].with_extremes(bad=_MISSING_CELL)
    norm = Normalize(vmin=0.0, vmax=1.0)
    size = (max(4.0, 2.4 + 0.35 * n_columns), max(3.4, 1.6 + 0.3 * n_rows))
    with _new_figure(size) as (fig, ax):
        image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, norm=norm, origin="lower")
        if max(n_rows, n_columns) <= _MAX_ANNOTATED_LAYERS:
            for i, j in np.ndindex(n_rows, n_columns):
                value = matrix[i, j]
                red, green, blue, _ = cmap(norm(value)) if np.isfinite(value) else (1, 1, 1, 1)
                luminance = 0.2126 * red + 0.7152 * green + 0.0722 * blue
                text = "n/a" if np.isnan(value) else f"{value:.2f}"
                colour = "white" if luminance < 0.5 else "black"
                ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=7)
        ax.set_xticks(range(n_columns), list(columns), rotation=45, ha="right")
        ax.set_yticks(range(n_rows), list(rows))
        fig.colorbar(image, ax=ax, label="CKA (debiased, linear)")
        _finish(ax, column_label, row_label, title)
    return fig


def cka_heatmap(
    values: Sequence[Sequence[float]] | np.ndarray,
    rows: Sequence[str],
    columns: Sequence[str],
    out: Path,
    *,
    row_label: str = "layer of A",
    column_label: str = "layer of B",
    title: str | None = None,
) -> list[Path]:
    """`build_cka_heatmap`, saved as `<out>.png` and `<out>.pdf`."""
    fig = build_cka_heatmap(
        values, rows, columns, row_label=row_label, column_label=column_label, title=title
    )
    return save_figure(fig, out)


def build_layer_similarity(
    layers: Sequence[str],
    comparisons: Sequence[LayerCurve],
    floors: Sequence[LayerCurve] = (),
    *,
    title: str | None = None,
) -> Figure:
    """CKA per layer: each comparison a line with its interval as a band; each noise floor (two
    seeds of one arm) a dashed line with the region from its lower bound up to 1 shaded: a
    comparison inside it is as similar as two seeds of one arm are."""
    names = [_name(layer, "a layer name") for layer in layers]
    if not names:
        raise ValueError("layers is empty: the plot needs at least one layer")
    curves = [*comparisons, *floors]
    if not comparisons:
        raise ValueError("comparisons is empty: the plot needs at least one")
    for curve in curves:
        _same_length(curve.values, names, (f"'{curve.name}' values", "layers"))
        _intervals(curve.values, f"'{curve.name}' values")
    x = np.arange(len(names))
    with _new_figure((max(4.5, 1.5 + 0.3 * len(names)), 3.4)) as (fig, ax):
        for k, floor in enumerate(floors):
            means = np.array([v.mean for v in floor.values])
            lows = np.array([v.low if v.low is not None else v.mean for v in floor.values])
            ax.fill_between(x, lows, np.ones_like(lows), color=_FLOOR_COLOUR, alpha=0.1, lw=0)
            ax.plot(x, means, ls=_FLOOR_STYLES[k % len(_FLOOR_STYLES)], color=_FLOOR_COLOUR,
                    label=f"seed floor: {floor.name} (shaded: its lower bound to 1)")  # fmt: skip
        for k, curve in enumerate(comparisons):
            colour = OKABE_ITO[k % len(OKABE_ITO)]
            means = np.array([v.mean for v in curve.values])
            ax.plot(x, means, marker="o", ms=3, color=colour, label=curve.name)
            if all(v.low is not None for v in curve.values):
                lows = np.array([v.low for v in curve.values])
                highs = np.array([v.high for v in curve.values])
                ax.fill_between(x, lows, highs, color=colour, alpha=0.25, lw=0)
        ax.set_xticks(x, names, rotation=45, ha="right")
        ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.02)
        ax.legend(fontsize=7, frameon=False, loc="lower left")
        _finish(ax, "layer", "CKA (debiased, linear)", title)
    return fig


def layer_similarity(
    layers: Sequence[str],
    comparisons: Sequence[LayerCurve],
    out: Path,
    floors: Sequence[LayerCurve] = (),
    *,
    title: str | None = None,
) -> list[Path]:
    """`build_layer_similarity`, saved as `<out>.png` and `<out>.pdf`."""
    return save_figure(build_layer_similarity(layers, comparisons, floors, title=title), out)
