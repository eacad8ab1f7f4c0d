"""Baselines as evaluate subjects: `evaluate.py baseline=majority|uniform task=[...]`.

No model is loaded. `majority` answers every example of a classification task with the most
frequent label of the task dataset's train split (`metrics.classification.majority_label`: the
smallest label on a tie) and abstains on every question of a question-answering task (SQuAD v2:
"no answer" for all, which scores the unanswerable share). `uniform` draws one label per example
uniformly at random from `numpy.random.default_rng(seed)` (evaluate's `seed`); it applies to
classification only. The predictions are scored by the same rows and metrics as a model's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from omegaconf import DictConfig

from monolm.config.eval_schema import BASELINES
from monolm.data.prompts import gold_label
from monolm.data.sources import split_rows
from monolm.errors import UserError, did_you_mean
from monolm.evaluation.classification import (
    classification_examples,
    classification_result,
    classification_rows,
)
from monolm.evaluation.question_answering import qa_examples, qa_result
from monolm.evaluation.tasks import PlannedTask, TaskContext, TaskResult
from monolm.metrics.classification import majority_label
from monolm.subjects import SubjectIdentity

BASELINE_KINDS = {
    "majority": ("classification", "question_answering"),
    "uniform": ("classification",),
}
# A baseline reads no text; the prompted datasets it runs on are the same for either family.
BASELINE_FAMILY = "causal"


@dataclass(frozen=True)
class BaselineSubject:
    """A subject that predicts without a model; it stands where a `SubjectRef` and a loaded
    `Subject` stand in evaluate (`family`, `run`, `own_dataset`, `seed`, `record()`)."""

    name: str  # majority | uniform
    seed: int  # evaluate's seed: the uniform baseline's draws
    family: str = BASELINE_FAMILY
    run: None = None
    own_dataset: None = None

    @property
    def label(self) -> str:
        return f"baseline-{self.name}"

    def record(self) -> dict[str, Any]:
        """The keys every subject record has (`SubjectIdentity`, model_name, family), null where
        they do not apply, and the baseline."""
        return {
            **asdict(SubjectIdentity()),
            "baseline": self.name,
            "model_name": None,
            "family": None,
        }


def resolve_baseline(cfg: DictConfig) -> BaselineSubject:
    """`baseline=` checked against the other subject keys and the tasks; nothing is loaded."""
    name = str(cfg.baseline)
    if name not in BASELINES:
        raise UserError(f"baseline='{name}': {did_you_mean(name, BASELINES)}")
    for key in ("run_dir", "model"):
        if cfg.get(key) is not None:
            raise UserError(
                f"baseline={name} and {key}={cfg.get(key)} name two subjects: give one of "
                "run_dir=, model= or baseline="
            )
    allowed = BASELINE_KINDS[name]
    for task_name, task in (cfg.task or {}).items():
        if task.kind not in allowed:
            raise UserError(
                f"baseline={name} applies to {' and '.join(allowed)} tasks; task '{task_name}' "
                f"is {task.kind}"
                + (
                    " (a baseline has no training data of its own: name the task)"
                    if task.kind == "own"
                    else ""
                )
            )
    return BaselineSubject(name, int(cfg.seed))


def train_majority_label(task: PlannedTask, seed: int) -> int:
    """The most frequent label of the task dataset's train split (all of it)."""
    ds = task.dataset
    rows = split_rows(ds, ds.train_split, seed, None)
    return majority_label([gold_label(ds, dict(row)) for row in rows])


def _classification(task: PlannedTask, ctx: TaskContext, progress: Any) -> TaskResult:
    subject: BaselineSubject = ctx.subject
    found = classification_examples(task, ctx.seed)
    progress.reset(total=len(found.labels))
    if subject.name == "majority":
        label = train_majority_label(task, ctx.seed)
        predictions = [label] * len(found.labels)
        how = (
            f"majority baseline: label {label} ('{found.names[label]}'), the most frequent label "
            f"of the whole '{task.dataset.train_split}' split (the smallest on a tie), for every "
            "example"
        )
    else:
        rng = np.random.default_rng(ctx.seed)
        predictions = [int(p) for p in rng.integers(0, len(found.names), size=len(found.labels))]
        how = (
            f"uniform baseline: each example's label drawn uniformly from the {len(found.names)} "
            f"labels, numpy.random.default_rng(seed={ctx.seed}).integers in example order"
        )
    progress.update(len(found.labels))
    rows = classification_rows(found.ids, found.prompts, found.labels, predictions, found.names)
    return classification_result(task, rows, ctx.bootstrap, how)


def _question_answering(task: PlannedTask, ctx: TaskContext, progress: Any) -> TaskResult:
    examples = qa_examples(task, ctx.seed)
    progress.reset(total=len(examples.ids))
    progress.update(len(examples.ids))
    how = {
        "prediction": "majority baseline: abstains on every question (prediction ''); no "
        "no-answer probabilities, so no best threshold",
    }
    return qa_result(
        task,
        examples,
        [None] * len(examples.ids),
        [""] * len(examples.ids),
        None,
        ctx.bootstrap,
        how,
    )


def run_baseline(task: PlannedTask, ctx: TaskContext, progress: Any) -> TaskResult:
    if task.kind == "classification":
        return _classification(task, ctx, progress)
    return _question_answering(task, ctx, progress)
