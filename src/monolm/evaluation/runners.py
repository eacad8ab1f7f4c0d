"""Which function runs each kind of evaluation task (`task.<name>.kind`).

A module of its own so the task modules (tasks.py's, classification.py, question_answering.py)
import the shared pieces from tasks.py and nothing imports back up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from monolm.evaluation.classification import run_classification
from monolm.evaluation.question_answering import run_question_answering
from monolm.evaluation.representations import run_cka
from monolm.evaluation.tasks import (
    PlannedTask,
    TaskContext,
    TaskResult,
    run_hellaswag,
    run_lambada,
    run_monotonicity,
    run_perplexity,
    run_summarization,
)

RUNNERS: dict[str, Callable[[PlannedTask, TaskContext, Any], TaskResult]] = {
    "summarization": run_summarization,
    "perplexity": run_perplexity,
    "lambada": run_lambada,
    "hellaswag": run_hellaswag,
    "classification": run_classification,
    "question_answering": run_question_answering,
    "monotonicity": run_monotonicity,
    "cka": run_cka,
}
