"""GLUE and SQuAD v2 metrics against the official definitions, on hand-worked cases: SQuAD v2's
answer normalisation, token F1 with multiplicity and empty answers, the no-answer threshold and
the best-threshold search of evaluate-v2.0.py; accuracy and F1 of MRPC's positive class."""

from __future__ import annotations

import pytest

from monolm.metrics.classification import accuracy, majority_label, positive_f1
from monolm.metrics.squad_v2 import (
    exact_match,
    gold_answers,
    normalize_answer,
    squad_v2_rows,
    squad_v2_scores,
    token_f1,
)


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("The  Cat, sat!", "cat sat"),
        ("An apple a day", "apple day"),
        ("theater", "theater"),  # articles only as whole words
        ("the-end", "theend"),  # punctuation goes first, so no article is left to drop
        ("  ", ""),
        ("A", ""),
    ],
)
def test_answers_are_normalised_as_the_official_script_does(text: str, normalised: str) -> None:
    assert normalize_answer(text) == normalised


def test_token_f1_counts_tokens_with_multiplicity_and_empty_answers_match_only_empty() -> None:
    assert token_f1("the cat sat", "cat sat on mat") == pytest.approx(2 / 3)
    assert token_f1("a b b", "b b b") == pytest.approx(0.8)  # gold [b, b]: P 2/3, R 1
    assert token_f1("", "") == 1.0 and token_f1("", "x") == 0.0 and token_f1("x", "") == 0.0
    assert token_f1("a", "") == 1.0  # "a" normalises to nothing
    assert token_f1("blue whale", "red fox") == 0.0
    assert exact_match("The Paris.", "paris") == 1 and exact_match("Paris", "Paris France") == 0


def test_gold_answers_are_those_not_empty_after_normalising_else_the_empty_one() -> None:
    assert gold_answers(["the", "Paris"]) == ["Paris"]
    assert gold_answers(["", "a"]) == [""]
    assert gold_answers([]) == [""]


ANSWERS = [["Paris", "paris France"], ["blue whale"], [], []]
PREDICTIONS = ["paris", "whale", "", "something"]


def test_squad_v2_aggregate_with_answerable_and_unanswerable_breakdown() -> None:
    scores = squad_v2_scores(ANSWERS, PREDICTIONS)
    assert scores["exact"] == pytest.approx(50.0)  # 1, 0, 1, 0
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 0) / 4)
    assert scores["total"] == 4
    assert scores["HasAns_exact"] == pytest.approx(50.0) and scores["HasAns_total"] == 2
    assert scores["HasAns_f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert scores["NoAns_exact"] == scores["NoAns_f1"] == pytest.approx(50.0)
    assert "best_f1" not in scores  # only with no-answer probabilities


def test_a_no_answer_probability_over_the_threshold_abstains_and_the_best_is_found() -> None:
    probs = [0.1, 0.9, 0.2, 0.8]
    scores = squad_v2_scores(ANSWERS, PREDICTIONS, probs, threshold=0.5)
    # q2 abstains (answerable: 0), q4 abstains (unanswerable: 1)
    assert scores["exact"] == pytest.approx(75.0) and scores["f1"] == pytest.approx(75.0)
    # from "abstain everywhere" (2 right), answering by increasing probability: q1 +1 (best, at
    # 0.1), q3 0 (its prediction is empty), q4 -1, q2 +0 / +2/3
    assert scores["best_exact"] == pytest.approx(75.0) and scores["best_exact_thresh"] == 0.1
    assert scores["best_f1"] == pytest.approx(75.0) and scores["best_f1_thresh"] == 0.1
    default = squad_v2_scores(ANSWERS, PREDICTIONS, probs)  # threshold 1.0: never abstains
    assert default["exact"] == pytest.approx(50.0)


def test_per_question_rows_average_to_the_aggregate() -> None:
    rows = squad_v2_rows(["q1", "q2", "q3", "q4"], ANSWERS, PREDICTIONS)
    assert [r["has_answer"] for r in rows] == [True, True, False, False]
    scores = squad_v2_scores(ANSWERS, PREDICTIONS)
    assert 100 * sum(r["exact"] for r in rows) / 4 == pytest.approx(scores["exact"])
    assert 100 * sum(r["f1"] for r in rows) / 4 == pytest.approx(scores["f1"])


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="4 questions but 3 predictions"):
        squad_v2_scores(ANSWERS, PREDICTIONS[:3])
    with pytest.raises(ValueError, match="3 predictions but 2 labels"):
        accuracy([1, 0, 1], [1, 0])


def test_mrpc_accuracy_and_f1_of_the_positive_class() -> None:
    predictions, labels = [1, 1, 0, 0, 1], [1, 0, 0, 1, 1]  # TP 2, FP 1, FN 1, TN 1
    assert accuracy(predictions, labels) == pytest.approx(3 / 5)
    assert positive_f1(predictions, labels) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert positive_f1([0, 0], [0, 0]) == 0.0  # no positive anywhere: 0, as GLUE's scorer
    assert positive_f1([0, 1], [1, 0], positive=0) == 0.0


def test_the_majority_label_is_the_most_frequent_and_the_smallest_on_a_tie() -> None:
    assert majority_label([1, 0, 1]) == 1
    assert majority_label([0, 1]) == 0
