"""ROUGE agrees with Google's rouge-score on the same texts; rougeLsum sees sentences."""

from __future__ import annotations

import pytest
from rouge_score import rouge_scorer

from monolm.metrics.rouge import ROUGE_TYPES, rouge_per_example, split_sentences

# (prediction, reference)
PAIRS = [
    ("The cat sat on the mat.", "The cat sat on the mat."),
    ("the cat sat on the mat", "A cat was sitting on a mat!"),
    ("Sales reached 3.5 million in 2024.", "In 2024, sales hit $3.5 million, up 12%."),
    ("A state-of-the-art model, well-known.", "The state of the art model is well known."),
    ("THE PRESIDENT SPOKE.", "the president spoke"),
    ("He was running and she runs daily.", "She ran; he runs. They are runners."),
    (
        "Officials said the bridge will reopen. Traffic is expected to resume Monday.",
        "The bridge will reopen Monday, officials said. Traffic will resume. Repairs cost $2m.",
    ),
    ("", "Something happened in Paris."),
    ("Something happened in Paris.", ""),
    ("Café owners in São Paulo protested.", "Cafe owners in Sao Paulo protested on Tuesday."),
    ("東京で会議が開かれた。", "Tokyo hosted a meeting."),
    ("Dr. Smith met Mr. Jones. They agreed.", "Mr. Jones and Dr. Smith agreed. It was brief."),
    ("Storms hit. Power failed. Schools closed.", "Schools closed. Storms hit. Power failed."),
    ('He said "Stop." Then he left.', 'Then he left. He had said "stop" twice.'),
    ("One sentence only here.", "One sentence only here, and a bit more."),
]


@pytest.fixture(scope="module")
def reference_scorer() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def expected(scorer: rouge_scorer.RougeScorer, prediction: str, reference: str) -> dict:
    """What rouge-score says: rouge1/2/L on the raw texts, rougeLsum one sentence per line."""
    raw = scorer.score(reference, prediction)
    lines = scorer.score(
        "\n".join(split_sentences(reference)), "\n".join(split_sentences(prediction))
    )
    return {
        "rouge1": raw["rouge1"].fmeasure,
        "rouge2": raw["rouge2"].fmeasure,
        "rougeL": raw["rougeL"].fmeasure,
        "rougeLsum": lines["rougeLsum"].fmeasure,
    }


def test_scores_equal_rouge_score_package(reference_scorer) -> None:
    predictions, references = zip(*PAIRS, strict=True)
    ours = rouge_per_example(predictions, references)
    assert len(ours) == len(PAIRS)
    for (prediction, reference), scores in zip(PAIRS, ours, strict=True):
        assert set(scores) == set(ROUGE_TYPES)
        want = expected(reference_scorer, prediction, reference)
        for name in ROUGE_TYPES:
            assert scores[name] == pytest.approx(want[name], abs=1e-6), (prediction, name)
            assert 0.0 <= scores[name] <= 1.0


def test_identical_texts_score_one_and_a_known_value() -> None:
    same, partial = rouge_per_example(
        ["Storms hit. Power failed.", "the cat sat"], ["Storms hit. Power failed.", "the cat ran"]
    )
    assert same == {name: pytest.approx(1.0) for name in ROUGE_TYPES}
    # Two of three unigrams and one of two bigrams match: fractions, not percentages.
    assert partial["rouge1"] == pytest.approx(2 / 3)
    assert partial["rouge2"] == pytest.approx(1 / 2)
    assert partial["rougeL"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("prediction", "reference"),
    [("", "Some reference text."), ("Some prediction.", ""), ("", ""), ("...", "!!!")],
)
def test_texts_without_tokens_score_zero(prediction: str, reference: str) -> None:
    (scores,) = rouge_per_example([prediction], [reference])
    assert scores == dict.fromkeys(ROUGE_TYPES, 0.0)


def test_stemming_is_applied_and_can_be_turned_off() -> None:
    stemmed, unstemmed = (
        rouge_per_example(["he runs"], ["he running"], use_stemmer=flag)[0]
        for flag in (True, False)
    )
    assert stemmed["rouge1"] == pytest.approx(1.0)
    assert unstemmed["rouge1"] == pytest.approx(0.5)


def test_reference_and_prediction_are_not_swapped(reference_scorer) -> None:
    # rougeLsum is asymmetric: the union LCS runs over reference sentences, so a prediction that
    # repeats a sentence cannot cover a reference that says it twice in one sentence.
    prediction = "Rain fell. Rain fell."
    reference = "Rain fell, rain fell."
    forward = reference_scorer.score(
        "\n".join(split_sentences(reference)), "\n".join(split_sentences(prediction))
    )["rougeLsum"].fmeasure
    backward = reference_scorer.score(
        "\n".join(split_sentences(prediction)), "\n".join(split_sentences(reference))
    )["rougeLsum"].fmeasure
    assert (forward, backward) == (pytest.approx(0.5), pytest.approx(1.0))
    (ours,) = rouge_per_example([prediction], [reference])
    assert ours["rougeLsum"] == pytest.approx(forward)


def test_rougelsum_needs_sentence_splitting(reference_scorer) -> None:
    prediction = "Power failed across the city. Storms hit the coast overnight."
    reference = "Storms hit the coast overnight. Power failed across the city."
    (ours,) = rouge_per_example([prediction], [reference])
    # Each reference sentence is matched in full by some prediction sentence...
    assert ours["rougeLsum"] == pytest.approx(1.0)
    # ...while one LCS over the swapped whole text only covers one sentence.
    assert ours["rougeL"] == pytest.approx(0.5)
    # Without splitting, rouge-score's rougeLsum is just rougeL: the earlier pipeline's mistake.
    unsplit = reference_scorer.score(reference, prediction)
    assert unsplit["rougeLsum"].fmeasure == pytest.approx(unsplit["rougeL"].fmeasure)


def test_rougelsum_equals_rougel_on_one_sentence() -> None:
    (scores,) = rouge_per_example(
        ["the storm hit the northern coast overnight"], ["a storm hit the coast on Monday night."]
    )
    assert 0.0 < scores["rougeL"] < 1.0
    assert scores["rougeLsum"] == pytest.approx(scores["rougeL"])


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        rouge_per_example(["a", "b"], ["a"])
    with pytest.raises(TypeError):
        rouge_per_example("a prediction", "a reference")
    assert rouge_per_example([], []) == []


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("", []),
        ("  \n\n  ", []),
        ("One. Two! Three? Four", ["One.", "Two!", "Three?", "Four"]),
        ("Dr. Jones met Mr. Smith. They talked.", ["Dr. Jones met Mr. Smith.", "They talked."]),
        (
            "The U.S. economy grew 3.5 percent. Prices rose.",
            ["The U.S. economy grew 3.5 percent.", "Prices rose."],
        ),
        ("J. R. R. Tolkien wrote it. It sold.", ["J. R. R. Tolkien wrote it.", "It sold."]),
        ("Sales fell. 2024 was worse.", ["Sales fell.", "2024 was worse."]),
        (
            "It costs 3.5 dollars. e.g. this. and that",  # lowercase next: no cut
            ["It costs 3.5 dollars. e.g. this. and that"],
        ),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ('"Why?" she asked. "Because."', ['"Why?" she asked.', '"Because."']),
        ("It ended (finally.) Next came more.", ["It ended (finally.)", "Next came more."]),
        ("Wait... What happened?", ["Wait...", "What happened?"]),
        ("first line\nsecond line\r\n\nthird", ["first line", "second line", "third"]),
        ("Élan grew. Über won.", ["Élan grew.", "Über won."]),
    ],
)
def test_split_sentences(text: str, sentences: list[str]) -> None:
    assert split_sentences(text) == sentences


def test_split_keeps_every_character_but_whitespace() -> None:
    text = 'Mr. A said "hi." Then 3.5 million left!\nB. C? D.'
    sentences = split_sentences(text)
    assert len(sentences) == 4
    assert "".join("".join(s.split()) for s in sentences) == "".join(text.split())
