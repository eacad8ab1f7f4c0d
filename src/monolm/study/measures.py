"""What the report compares: each metric as per-example values of one run, and the statistic that
reduces them (`monolm.metrics.run_statistics`: mean, rate, exp_mean with weights).

A `Measure` is `<stage>/<name>/<metric>` (the form of the study's `primary` list):

- `evaluate/<task>/<metric>`: from `<task>.examples.jsonl`; perplexity as exp(sum NLL / sum
  tokens|words|bytes) (exp_mean, weighted), bits per byte as sum(NLL / ln 2) / sum(bytes) (mean,
  weighted), ROUGE as the mean of the per-example F1 x 100, accuracy as a rate (classification:
  `correct`), SQuAD v2 exact and F1 as the mean of the per-question scores x 100 (the official
  percentages); F1 of a classification's positive class is not compared (see EVAL_METRICS);
- `attack/<name>/<metric>` and `control/<name>/<metric>`: success rate (1 success, 0 failure,
  skipped rows invalid: successes / (successes + failures)), mean delta NLL, mean relative NLL;
- `attack_vs_control/<name>/<metric>`: per example, the attack's value minus its matched random
  control's (the same examples of the same model), averaged: for success, the difference of the
  two rates over the examples decided in both.

Within one seed, the per-example values are also tested directly (`test`): Wilcoxon on the
per-example score (perplexity metrics: the example's NLL per unit), exact McNemar on success.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from monolm.errors import UserError
from monolm.study.records import AttackRecord, Rows, TaskRecord

ROUGE = ("rouge1", "rouge2", "rougeL", "rougeLsum")
# the clean-quality metric of each task kind (the quality-matched view's x axis)
HEADLINE = {
    "perplexity": "token_perplexity",
    "summarization": "rougeL",
    "lambada": "acc",
    "hellaswag": "acc_norm",
    "classification": "acc",
    "question_answering": "f1",
}
ATTACK_METRICS = ("success_rate", "delta_nll", "relative_nll")


@dataclass(frozen=True)
class Measure:
    stage: str  # evaluate | attack | control | attack_vs_control
    name: str  # the evaluation task or the attack
    metric: str
    statistic: str  # run_statistics: mean | rate | exp_mean
    test: str | None  # within a seed: wilcoxon | mcnemar | None
    lower_is_better: bool

    @property
    def key(self) -> str:
        return f"{self.stage}/{self.name}/{self.metric}"


@dataclass(frozen=True)
class RunValues:
    """One run's values of one measure: id -> value (NaN: invalid in this run), and the weights
    (the denominators of a weighted statistic), or None."""

    values: dict[Any, float]
    weights: dict[Any, float] | None = None
    _valid: frozenset[Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:  # computed once: the report asks per example, many times
        valid = frozenset(
            ident
            for ident, value in self.values.items()
            if math.isfinite(value) and (self.weights is None or self.weights[ident] > 0)
        )
        object.__setattr__(self, "_valid", valid)

    def valid(self, ident: Any) -> bool:
        return ident in self._valid

    def valid_ids(self) -> set[Any]:
        return set(self._valid)

    def test_value(self, ident: Any) -> float:
        """The per-example score a within-seed test compares (value per unit when weighted)."""
        if not self.valid(ident):
            return math.nan
        value = self.values[ident]
        return value / self.weights[ident] if self.weights is not None else value


# --- evaluation tasks -------------------------------------------------------------------------

Reader = Callable[[Rows, int, dict[str, Any]], float]


def _negative(key: str, scale: float = 1.0) -> Reader:
    return lambda rows, line, row: -rows.number(line, row, key) * scale


def _plain(key: str, scale: float = 1.0) -> Reader:
    return lambda rows, line, row: rows.number(line, row, key) * scale


def _binary(key: str) -> Reader:
    def read(rows: Rows, line: int, row: dict[str, Any]) -> float:
        value = rows.number(line, row, key)
        if value not in (0.0, 1.0):
            raise UserError(f"'{rows.path}': row {line} has '{key}' = {value!r}, not 0 or 1")
        return value

    return read


@dataclass(frozen=True)
class EvalMetric:
    metric: str
    read: Reader
    weight: str | None  # the row field weighting the statistic
    statistic: str
    test: str
    lower_is_better: bool


_LN2 = math.log(2.0)
_PERCENT = 100.0
# Classification's positive-class F1 (MRPC) is left out: it is 2 TP / (2 TP + FP + FN), a ratio of
# totals whose per-example denominator is 0 on a true negative, and examples of weight 0 are
# invalid here (`RunValues`), so paired runs would drop each other's true negatives; eval.json
# has it with its own bootstrap interval.
EVAL_METRICS: dict[str, tuple[EvalMetric, ...]] = {
    "perplexity": (
        EvalMetric(
            "token_perplexity", _negative("loglikelihood"), "tokens", "exp_mean", "wilcoxon", True
        ),
        EvalMetric(
            "word_perplexity", _negative("loglikelihood"), "words", "exp_mean", "wilcoxon", True
        ),
        EvalMetric(
            "byte_perplexity", _negative("loglikelihood"), "bytes", "exp_mean", "wilcoxon", True
        ),
        EvalMetric(
            "bits_per_byte",
            _negative("loglikelihood", 1.0 / _LN2),
            "bytes",
            "mean",
            "wilcoxon",
            True,
        ),
    ),
    "summarization": tuple(
        EvalMetric(name, _plain(name), None, "mean", "wilcoxon", False) for name in ROUGE
    ),
    "lambada": (
        EvalMetric("acc", _binary("correct"), None, "rate", "mcnemar", False),
        EvalMetric("perplexity", _negative("loglikelihood"), None, "exp_mean", "wilcoxon", True),
    ),
    "hellaswag": (
        EvalMetric("acc", _binary("acc"), None, "rate", "mcnemar", False),
        EvalMetric("acc_norm", _binary("acc_norm"), None, "rate", "mcnemar", False),
    ),
    "classification": (EvalMetric("acc", _binary("correct"), None, "rate", "mcnemar", False),),
    "question_answering": tuple(
        EvalMetric(name, _plain(name, _PERCENT), None, "mean", "wilcoxon", False)
        for name in ("exact", "f1")
    ),
}


def eval_measures(task: str, kind: str) -> tuple[Measure, ...]:
    """The measures of one evaluation task (none for a kind with no per-example score to compare,
    e.g. monotonicity, whose rows are sublayers)."""
    return tuple(
        Measure("evaluate", task, m.metric, m.statistic, m.test, m.lower_is_better)
        for m in EVAL_METRICS.get(kind, ())
    )


def eval_values(measure: Measure, task: TaskRecord) -> RunValues:
    spec = {m.metric: m for m in EVAL_METRICS.get(task.kind, ())}.get(measure.metric)
    if spec is None:
        raise UserError(
            f"'{task.rows.path}': task '{task.name}' is of kind '{task.kind}' here, which has no "
            f"metric '{measure.metric}' (another run's task of that name has)"
        )
    values, weights = {}, {} if spec.weight else None
    for line, row in task.rows:
        values[row["id"]] = spec.read(task.rows, line, row)
        if weights is not None:
            weight = task.rows.number(line, row, spec.weight)
            if weight < 0:
                raise UserError(f"'{task.rows.path}': row {line} has '{spec.weight}' < 0")
            weights[row["id"]] = weight
    return RunValues(values, weights)


# --- attacks, controls and transfer ---------------------------------------------------------


def attack_measures(stage: str, name: str) -> tuple[Measure, ...]:
    tests = {"success_rate": "mcnemar", "delta_nll": "wilcoxon", "relative_nll": "wilcoxon"}
    if stage == "attack_vs_control":
        tests["success_rate"] = None  # per example -1, 0, 1: no within-seed test of its own
    statistics = {"success_rate": "rate" if stage != "attack_vs_control" else "mean"}
    return tuple(
        Measure(stage, name, metric, statistics.get(metric, "mean"), tests[metric], False)
        for metric in ATTACK_METRICS
    )


def row_values(rows: Rows, metric: str) -> RunValues:
    """success_rate: 1/0, NaN when skipped; delta_nll; relative_nll (NaN when null)."""
    values = {}
    for line, row in rows:
        if metric == "success_rate":
            status = row["status"]
            values[row["id"]] = math.nan if status == "skipped" else float(status == "success")
        else:
            values[row["id"]] = rows.number(line, row, metric, nullable=True)
    return RunValues(values)


def attack_values(measure: Measure, record: AttackRecord) -> RunValues:
    return row_values(record.rows, measure.metric)


def difference(attack: RunValues, control: RunValues) -> RunValues:
    """Per example attack - control, on the examples both have (NaN where either is invalid)."""
    return RunValues(
        {
            ident: value - control.values[ident]
            for ident, value in attack.values.items()
            if ident in control.values
        }
    )
