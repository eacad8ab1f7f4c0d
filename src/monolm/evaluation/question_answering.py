"""Generative question answering (SQuAD v2), scored by the official evaluate-v2.0.py definitions.

Per question the model greedily generates its answer after the prompt (stopping at EOS or after
`dataset.max_target_length` tokens); the answer is the generated text up to its first line break
(lm-eval's squadv2 stops at "\\n"), stripped, and an answer equal to `dataset.no_answer` after
normalisation is an abstention (the prediction ""). The no-answer probability is
exp(log-likelihood of continuation(no_answer) after the prompt), lm-eval's squadv2 convention;
the official scoring uses it for the threshold (1.0: it never overrides an answer) and for the
best-threshold search. Exact and F1 (and their HasAns/NoAns parts) come with bootstrap CIs over
the questions; the rows are `squad_v2_rows`' plus the prompt, the gold answers and the generated
text.

A `max_examples` cap keeps a stratified subset (`stratified_subset`): the split's
answerable/unanswerable ratio, the questions chosen by a hash of their ids, so every subject is
evaluated on the same questions whatever the order of the file.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from monolm.data.prompts import continuation, gold_answers, prompt_text
from monolm.data.sources import split_rows
from monolm.evaluation.tasks import (
    PlannedTask,
    TaskContext,
    TaskResult,
    bootstrap_interval,
    example_ids,
    scored_in_chunks,
)
from monolm.metrics.squad_v2 import (
    NO_ANSWER_THRESHOLD,
    normalize_answer,
    squad_v2_rows,
    squad_v2_scores,
)

SCALE = 100.0  # exact and F1 are reported as percentages, as the official script does


def id_hash(ident: Any) -> str:
    """A stable order of examples that does not depend on the file's order."""
    return hashlib.sha256(str(ident).encode("utf-8")).hexdigest()


def stratified_subset(ids: Sequence[Any], has_answer: Sequence[bool], limit: int) -> list[int]:
    """Positions (in the split's order) of `limit` questions with the split's answerable share.

    round(limit x answerable / total) answerable questions (at least one of each kind when the
    split has both and limit >= 2), the rest unanswerable; within each kind, those whose id has
    the smallest sha256. The same ids give the same subset in any order.
    """
    total = len(ids)
    if limit >= total:
        return list(range(total))
    answerable = [i for i in range(total) if has_answer[i]]
    unanswerable = [i for i in range(total) if not has_answer[i]]
    wanted = math.floor(limit * len(answerable) / total + 0.5)
    if answerable and unanswerable and limit >= 2:
        wanted = min(max(wanted, 1), limit - 1)
    wanted = min(max(wanted, limit - len(unanswerable)), len(answerable))
    kept = [
        *sorted(answerable, key=lambda i: id_hash(ids[i]))[:wanted],
        *sorted(unanswerable, key=lambda i: id_hash(ids[i]))[: limit - wanted],
    ]
    return sorted(kept)


@dataclass(frozen=True)
class QuestionExamples:
    """The evaluated questions as the model reads them, and how they were chosen."""

    ids: list[Any]
    prompts: list[str]
    answers: list[list[str]]  # the gold answers as given; [] for an unanswerable question
    selection: str


def qa_examples(task: PlannedTask, seed: int) -> QuestionExamples:
    ds = task.dataset
    data = split_rows(ds, task.split, seed, None)
    examples = [dict(row) for row in data]
    ids = example_ids(data)
    answers = [gold_answers(ds, row) for row in examples]
    selection = "the whole split"
    if task.max_examples is not None and task.max_examples < len(examples):
        kept = stratified_subset(ids, [bool(a) for a in answers], task.max_examples)
        examples = [examples[i] for i in kept]
        ids, answers = [ids[i] for i in kept], [answers[i] for i in kept]
        selection = (
            f"{len(kept)} of the split's {len(data)} questions, stratified: the split's "
            "answerable/unanswerable ratio, within each kind the smallest sha256 of the id "
            "(the same questions for every subject, whatever the file's order)"
        )
    prompts = [prompt_text(ds, row) for row in examples]
    return QuestionExamples(ids, prompts, answers, selection)


def prediction_of(generated: str, no_answer: str) -> str:
    """The answer a generation gives: its first line, stripped; "" (abstain) when that is the
    dataset's no-answer text after SQuAD normalisation."""
    lines = generated.strip().splitlines()
    answer = lines[0].strip() if lines else ""
    return "" if normalize_answer(answer) == normalize_answer(no_answer) else answer


def _with_ci(
    rows: Sequence[dict[str, Any]], key: str, official: float, settings: Any
) -> dict[str, float]:
    """The official percentage with a bootstrap CI over the rows' per-question scores."""
    return {**bootstrap_interval([SCALE * row[key] for row in rows], settings), "mean": official}


def qa_result(
    task: PlannedTask,
    examples: QuestionExamples,
    generated: Sequence[str | None],
    predictions: Sequence[str],
    no_answer_probs: Sequence[float] | None,
    settings: Any,
    how: dict[str, Any],
) -> TaskResult:
    """Rows and metrics by the official scoring; `generated` is None for a baseline."""
    scores = squad_v2_scores(examples.answers, predictions, no_answer_probs, NO_ANSWER_THRESHOLD)
    scored = squad_v2_rows(
        examples.ids, examples.answers, predictions, no_answer_probs, NO_ANSWER_THRESHOLD
    )
    rows = []
    for prompt, answers, text, row in zip(
        examples.prompts, examples.answers, generated, scored, strict=True
    ):
        extra = {"input": prompt, "reference": answers}
        if text is not None:
            extra["generated"] = text
        rows.append({"id": row["id"], **extra, **{k: v for k, v in row.items() if k != "id"}})
    metrics = {key: _with_ci(rows, key, scores[key], settings) for key in ("exact", "f1")}
    for part, wanted in (("HasAns", True), ("NoAns", False)):
        picked = [row for row in rows if row["has_answer"] == wanted]
        for key in ("exact", "f1"):
            if picked:
                metrics[f"{part}_{key}"] = _with_ci(picked, key, scores[f"{part}_{key}"], settings)
    for key in ("best_exact", "best_f1"):
        if key in scores:
            metrics[key] = {
                "mean": scores[key],
                "threshold": scores[f"{key}_thresh"],
                "n": len(rows),
            }
    conventions = {
        **how,
        "scoring": "the official SQuAD v2 evaluate-v2.0.py (metrics/squad_v2.py): answers "
        "normalised (lowercase, no punctuation or articles, whitespace collapsed), best over "
        "the gold answers, an unanswerable question's gold answer is '', percentages",
        "no_answer_threshold": NO_ANSWER_THRESHOLD,
        "intervals": "percentile bootstrap over the questions (HasAns/NoAns: over theirs)",
        "examples": examples.selection,
        "split": task.split,
    }
    counts = {
        "total": scores["total"],
        "HasAns_total": scores.get("HasAns_total", 0),
        "NoAns_total": scores.get("NoAns_total", 0),
    }
    return TaskResult(metrics, rows, {"conventions": conventions, "questions": counts})


def generate_answers(
    task: PlannedTask, ctx: TaskContext, prompts: list[str], progress: Any
) -> list[str]:
    """The subject's greedy generation for each prompt (raw text, stripped)."""
    from monolm.metrics.likelihood import default_max_length
    from monolm.models.generation import generate_greedy_answers

    progress.reset(total=len(prompts))
    progress.set_description(f"{task.name}: generating")
    model, tokenizer = ctx.subject.model, ctx.subject.tokenizer
    return generate_greedy_answers(
        model,
        tokenizer,
        prompts,
        int(task.dataset.max_target_length),
        ctx.generation.batch_size,
        default_max_length(model),
        progress.update,
    )


def no_answer_probabilities(
    task: PlannedTask, ctx: TaskContext, prompts: list[str], progress: Any
) -> list[float]:
    """exp(log-likelihood of continuation(no_answer) after each prompt)."""
    from monolm.metrics.likelihood import continuation_loglikelihoods

    ds = task.dataset
    text = continuation(ds, str(ds.no_answer), ctx.subject.family)
    scored = scored_in_chunks(
        lambda part: continuation_loglikelihoods(
            ctx.subject.model, ctx.subject.tokenizer, part, ctx.batch_size
        ),
        [(prompt, text) for prompt in prompts],
        512,
        progress,
        f"{task.name}: scoring the no-answer text",
    )
    return [float(np.exp(loglikelihood)) for loglikelihood, _ in scored]


def run_question_answering(task: PlannedTask, ctx: TaskContext, progress: Any) -> TaskResult:
    ds = task.dataset
    examples = qa_examples(task, ctx.subject.seed)
    with ctx.inference():
        generated = generate_answers(task, ctx, examples.prompts, progress)
        probabilities = no_answer_probabilities(task, ctx, examples.prompts, progress)
    predictions = [prediction_of(text, str(ds.no_answer)) for text in generated]
    how = {
        "generation": f"greedy, at most {ds.max_target_length} new tokens (dataset."
        "max_target_length), stopping at EOS; causal: the continuation of the prompt, "
        "seq2seq: the decoder's output; the prompt left-truncated to the model's length",
        "prediction": "the generated text's first line, stripped; an answer equal to "
        f"'{ds.no_answer}' after normalisation abstains (prediction '')",
        "no_answer_prob": "exp(log-likelihood of "
        f"{continuation(ds, str(ds.no_answer), ctx.subject.family)!r} after the prompt) "
        "(lm-eval's squadv2), used by the threshold and the best-threshold search",
    }
    return qa_result(task, examples, generated, predictions, probabilities, ctx.bootstrap, how)
