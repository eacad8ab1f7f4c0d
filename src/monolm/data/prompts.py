"""Prompted tasks (`dataset.task: classification | question_answering`) as text: what the model
reads and what it must answer, shared by training (the answer is the only trained span) and
evaluation (the answers compared by log-likelihood, or generated).

A causal model reads `prompt` and continues with `target_delimiter + answer` (lm-eval's
convention: context and continuation, the delimiter a leading space); a seq2seq model reads the
prompt as its source and writes the answer as its target.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from monolm.errors import UserError

PROMPTED_TASKS = ("classification", "question_answering")


def prompt_text(ds_cfg: Any, row: Mapping[str, Any]) -> str:
    """`dataset.prompt` filled with the row's fields (a missing field: UserError naming it)."""
    try:
        return str(ds_cfg.prompt).format(**row)
    except KeyError as exc:
        raise UserError(
            f"dataset '{ds_cfg.name}': prompt names field {exc.args[0]!r}, which the data does "
            f"not have (its fields: {sorted(row)})"
        ) from None
    except (IndexError, ValueError) as exc:
        raise UserError(
            f"dataset '{ds_cfg.name}': prompt is not a format template ({exc})"
        ) from None


def prompt_fields(ds_cfg: Any) -> list[str]:
    """The row fields `dataset.prompt` names, in order of first use (`{a.b}` or `{a[0]}` name
    `a`); a template that cannot be parsed, or a positional `{}`, is a UserError."""
    try:
        parsed = list(string.Formatter().parse(str(ds_cfg.prompt)))
    except ValueError as exc:
        raise UserError(
            f"dataset '{ds_cfg.name}': prompt is not a format template ({exc})"
        ) from None
    fields: list[str] = []
    for _, name, _, _ in parsed:
        if name is None:
            continue
        field = name.split(".")[0].split("[")[0]
        if not field or field.isdigit():
            raise UserError(
                f"dataset '{ds_cfg.name}': prompt has a positional field {{{name}}}: name the "
                "row's fields, e.g. {sentence1}"
            )
        if field not in fields:
            fields.append(field)
    return fields


def required_fields(ds_cfg: Any) -> list[str]:
    """The fields every row of a prompted dataset needs: the prompt's and the answer's."""
    answer = ds_cfg.label_field if ds_cfg.task == "classification" else ds_cfg.answers_field
    fields = prompt_fields(ds_cfg)
    return fields if answer in fields else [*fields, answer]


def choices(ds_cfg: Any) -> list[str]:
    """The verbalised labels of a classification dataset, index = label id."""
    names = [str(c) for c in ds_cfg.choices]
    if len(names) < 2:
        raise UserError(
            f"dataset '{ds_cfg.name}' is a classification task: dataset.choices needs the "
            f"verbalised labels (at least two), got {names}"
        )
    return names


def gold_label(ds_cfg: Any, row: Mapping[str, Any]) -> int:
    """The row's label id, checked against the choices (GLUE's hidden test labels are -1)."""
    label = row.get(ds_cfg.label_field)
    count = len(ds_cfg.choices)
    if not isinstance(label, int) or not 0 <= label < count:
        raise UserError(
            f"dataset '{ds_cfg.name}': {ds_cfg.label_field}={label!r} is not a label in "
            f"[0, {count}) (test splits of GLUE hide their labels: use validation)"
        )
    return label


def gold_answers(ds_cfg: Any, row: Mapping[str, Any]) -> list[str]:
    """The row's gold answer texts as given (an empty list: unanswerable)."""
    answers = row.get(ds_cfg.answers_field)
    if not isinstance(answers, Mapping) or not isinstance(answers.get("text"), list):
        raise UserError(
            f"dataset '{ds_cfg.name}': {ds_cfg.answers_field}={answers!r} is not SQuAD's "
            '{"text": [...], "answer_start": [...]}'
        )
    return [str(text) for text in answers["text"]]


def training_target(ds_cfg: Any, row: Mapping[str, Any]) -> str:
    """The answer the model is trained to give: the label's word, the first gold answer, or
    `no_answer` for an unanswerable question."""
    if ds_cfg.task == "classification":
        return choices(ds_cfg)[gold_label(ds_cfg, row)]
    if ds_cfg.task == "question_answering":
        answers = gold_answers(ds_cfg, row)
        return answers[0] if answers else str(ds_cfg.no_answer)
    raise UserError(f"dataset '{ds_cfg.name}': task '{ds_cfg.task}' is not a prompted task")


def continuation(ds_cfg: Any, answer: str, family: str) -> str:
    """The text scored or trained after the prompt: with the delimiter for a causal model."""
    return f"{ds_cfg.target_delimiter}{answer}" if family == "causal" else answer
