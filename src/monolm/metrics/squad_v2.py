"""SQuAD v2 scoring, exactly as the official evaluation script (`evaluate-v2.0.py`, the one the
leaderboard and Hugging Face's `squad_v2` metric run) defines it.

- Answers are normalised: lowercased, punctuation (`string.punctuation`) removed, the articles
  a/an/the removed as words, whitespace collapsed.
- A question's gold answers are those non-empty after normalisation; an unanswerable question
  (no answers in the data) has the single gold answer "".
- Exact match: the normalised strings are equal. F1: over the normalised whitespace tokens,
  counted with multiplicity; when either side has no tokens, F1 is 1 if both have none, else 0.
  Each question takes its best score over its gold answers.
- A prediction abstains when its no-answer probability is above the threshold (1.0 by default:
  never, so a generative model abstains by answering ""): an abstention scores 1 on an
  unanswerable question and 0 on an answerable one.
- Reported as percentages: `exact`, `f1`, `total`, the same for the answerable (`HasAns_*`)
  and unanswerable (`NoAns_*`) questions, and, when no-answer probabilities are given,
  `best_exact`/`best_f1` with the threshold that reaches them (`*_thresh`).

Per-example scores (`squad_v2_rows`) are what the bootstrap and the study's paired tests read.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)
NO_ANSWER_THRESHOLD = 1.0  # the official default


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation, drop articles, collapse whitespace (in that order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def exact_match(gold: str, prediction: str) -> int:
    return int(normalize_answer(gold) == normalize_answer(prediction))


def token_f1(gold: str, prediction: str) -> float:
    gold_tokens, predicted = answer_tokens(gold), answer_tokens(prediction)
    if not gold_tokens or not predicted:
        return float(gold_tokens == predicted)
    common = collections.Counter(gold_tokens) & collections.Counter(predicted)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def gold_answers(answers: Sequence[str]) -> list[str]:
    """The answers that count: non-empty after normalisation; [""] when none does."""
    kept = [a for a in answers if normalize_answer(a)]
    return kept or [""]


@dataclass(frozen=True)
class QuestionScore:
    """One question: whether it has an answer in the data, and its raw best exact and F1."""

    has_answer: bool
    exact: float
    f1: float


def score_question(answers: Sequence[str], prediction: str) -> QuestionScore:
    gold = gold_answers(answers)
    return QuestionScore(
        has_answer=bool(answers),
        exact=float(max(exact_match(g, prediction) for g in gold)),
        f1=max(token_f1(g, prediction) for g in gold),
    )


def _thresholded(score: QuestionScore, value: float, no_answer_prob: float, threshold: float):
    if no_answer_prob > threshold:
        return float(not score.has_answer)
    return value


def _percentages(exact: list[float], f1: list[float]) -> dict[str, float]:
    total = len(exact)
    return {
        "exact": 100.0 * sum(exact) / total,
        "f1": 100.0 * sum(f1) / total,
        "total": total,
    }


def _best_threshold(
    scores: list[float],
    predictions: Sequence[str],
    no_answer_probs: Sequence[float],
    has_answer: list[bool],
) -> tuple[float, float]:
    """The official `find_best_thresh`: start from abstaining everywhere (each unanswerable
    question right), then answer the questions one by one by increasing no-answer probability
    (an answerable one gains its score, an unanswerable one loses 1 unless the prediction is
    empty); the best total and the probability of the last question answered to reach it."""
    current = best = float(sum(not h for h in has_answer))
    best_threshold = 0.0
    for i in sorted(range(len(scores)), key=lambda k: no_answer_probs[k]):
        wrongly_answered = -1.0 if predictions[i] else 0.0
        current += scores[i] if has_answer[i] else wrongly_answered
        if current > best:
            best = current
            best_threshold = no_answer_probs[i]
    return 100.0 * best / len(scores), best_threshold


def squad_v2_scores(
    answers: Sequence[Sequence[str]],
    predictions: Sequence[str],
    no_answer_probs: Sequence[float] | None = None,
    threshold: float = NO_ANSWER_THRESHOLD,
) -> dict[str, float]:
    """The official aggregate: exact, f1, total, HasAns_*, NoAns_* (only when such questions
    exist) and, with `no_answer_probs`, best_exact(_thresh) and best_f1(_thresh)."""
    if len(answers) != len(predictions):
        raise ValueError(f"{len(answers)} questions but {len(predictions)} predictions")
    if not answers:
        raise ValueError("no questions to score")
    probs = list(no_answer_probs) if no_answer_probs is not None else [0.0] * len(answers)
    if len(probs) != len(answers):
        raise ValueError(f"{len(answers)} questions but {len(probs)} no-answer probabilities")
    raw = [score_question(a, p) for a, p in zip(answers, predictions, strict=True)]
    exact = [_thresholded(s, s.exact, q, threshold) for s, q in zip(raw, probs, strict=True)]
    f1 = [_thresholded(s, s.f1, q, threshold) for s, q in zip(raw, probs, strict=True)]
    out = _percentages(exact, f1)
    for name, wanted in (("HasAns", True), ("NoAns", False)):
        picked = [i for i, s in enumerate(raw) if s.has_answer == wanted]
        if picked:
            part = _percentages([exact[i] for i in picked], [f1[i] for i in picked])
            out.update({f"{name}_{key}": value for key, value in part.items()})
    if no_answer_probs is not None:
        has = [s.has_answer for s in raw]
        out["best_exact"], out["best_exact_thresh"] = _best_threshold(
            [s.exact for s in raw], predictions, probs, has
        )
        out["best_f1"], out["best_f1_thresh"] = _best_threshold(
            [s.f1 for s in raw], predictions, probs, has
        )
    return out


def squad_v2_rows(
    ids: Sequence[object],
    answers: Sequence[Sequence[str]],
    predictions: Sequence[str],
    no_answer_probs: Sequence[float] | None = None,
    threshold: float = NO_ANSWER_THRESHOLD,
) -> list[Mapping[str, object]]:
    """Per question: id, has_answer, prediction, exact and f1 (0-1, after the threshold): the
    rows a bootstrap resamples (their means x 100 are `exact` and `f1`)."""
    probs = list(no_answer_probs) if no_answer_probs is not None else [0.0] * len(answers)
    rows = []
    for ident, gold, prediction, prob in zip(ids, answers, predictions, probs, strict=True):
        score = score_question(gold, prediction)
        rows.append(
            {
                "id": ident,
                "has_answer": score.has_answer,
                "prediction": prediction,
                "no_answer_prob": prob,
                "exact": _thresholded(score, score.exact, prob, threshold),
                "f1": _thresholded(score, score.f1, prob, threshold),
            }
        )
    return rows
