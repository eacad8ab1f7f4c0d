"""Likelihood evaluators: lm-eval conventions, checked against direct computations from logits."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from monolm.metrics import likelihood
from monolm.metrics.likelihood import (
    DocumentScore,
    continuation_loglikelihoods,
    document_loglikelihoods,
    hellaswag_metrics,
    hellaswag_query,
    hellaswag_scores,
    lambada_metrics,
    lambada_request,
    lambada_scores,
    perplexities,
    rolling_windows,
    strided_windows,
)
from tests.helpers import build_model

SHORT = "Sound is made when something vibrates."
LONG = (
    "Sound moves faster through water and even faster through solids like steel. Sound cannot "
    "travel through empty space, because there is nothing there to carry the vibrations. Here "
    "is a simple experiment: stretch a rubber band between your fingers and pluck it."
)
MEDIUM = "Remember to ask an adult for help before you start, and have fun listening."
MAX_LENGTH = 16


@pytest.fixture(scope="module")
def pythia():
    _, tokenizer, model = build_model("model=tiny_pythia")
    return tokenizer, model.eval()


@pytest.fixture(scope="module")
def t5():
    _, tokenizer, model = build_model("model=tiny_t5")
    return tokenizer, model


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text)["input_ids"]


def logprobs(model, inputs: list[int], targets: list[int]) -> float:
    """Summed log-prob of `targets` at the last len(targets) positions of one plain forward."""
    with torch.no_grad():
        logits = model(torch.tensor([inputs])).logits[0].double()
    scored = logits[len(inputs) - len(targets) :].log_softmax(-1)
    return scored.gather(1, torch.tensor(targets)[:, None]).sum().item()


# ---------------------------------------------------------------------------------------------
# Windows


def test_rolling_windows_predict_each_token_once_hand_checked():
    tokens = [10, 11, 12, 13, 14, 15, 16]
    assert rolling_windows(tokens, prefix_token=0, max_length=3) == [
        ([0, 10, 11], [10, 11, 12]),  # first window: the prefix predicts the first token
        ([12, 13, 14], [13, 14, 15]),  # 3 new predictions, disjoint from the first
        ([13, 14, 15], [16]),  # last: full context, only the remaining token scored
    ]
    assert rolling_windows(tokens, 0, max_length=8) == [([0, *tokens[:-1]], tokens)]
    assert rolling_windows([], 0, max_length=3) == []


def test_strided_windows_hand_checked_and_equal_to_rolling_at_full_stride():
    tokens = [10, 11, 12, 13, 14, 15, 16]
    assert strided_windows(tokens, 0, max_length=3, stride=2) == [
        ([0, 10, 11], [10, 11, 12]),
        ([11, 12, 13], [13, 14]),  # 2 new predictions, 1 token of extra context
        ([13, 14, 15], [15, 16]),
    ]
    for n in range(12):
        for max_length in range(1, 6):
            tokens = list(range(100, 100 + n))
            assert strided_windows(tokens, 0, max_length, max_length) == rolling_windows(
                tokens, 0, max_length
            )
    with pytest.raises(ValueError, match="stride"):
        strided_windows(tokens, 0, max_length=3, stride=4)


# ---------------------------------------------------------------------------------------------
# Perplexity


def direct_rolling(model, tokens: list[int], prefix: int, max_length: int) -> float:
    """lm-eval's rolling windows built by hand: chunks of max_length targets, each predicted
    from the max_length tokens before the chunk's end; the first chunk from the prefix."""
    first = min(max_length, len(tokens))
    total = logprobs(model, [prefix, *tokens[: first - 1]], tokens[:first])
    for start in range(max_length, len(tokens), max_length):
        end = min(start + max_length, len(tokens))
        total += logprobs(model, tokens[end - max_length - 1 : end - 1], tokens[start:end])
    return total


@pytest.mark.parametrize("batch_size", [1, 3])
def test_rolling_perplexity_equals_direct_computation(pythia, batch_size):
    tokenizer, model = pythia
    texts = [SHORT, LONG, MEDIUM]
    token_lists = [ids(tokenizer, text) for text in texts]
    assert len(token_lists[0]) < MAX_LENGTH < 2 * MAX_LENGTH < len(token_lists[1])
    prefix = tokenizer.bos_token_id

    scores = document_loglikelihoods(model, tokenizer, texts, MAX_LENGTH, batch_size)

    # A document shorter than max_length: one forward of [prefix] + tokens.
    assert scores[0].loglikelihood == pytest.approx(
        logprobs(model, [prefix, *token_lists[0][:-1]], token_lists[0]), rel=1e-5
    )
    for score, text, tokens in zip(scores, texts, token_lists, strict=True):
        assert score.loglikelihood == pytest.approx(
            direct_rolling(model, tokens, prefix, MAX_LENGTH), rel=1e-5
        )
        assert (score.tokens, score.words, score.bytes) == (
            len(tokens),
            len(text.split()),
            len(text.encode()),
        )

    total = sum(s.loglikelihood for s in scores)
    got = perplexities(scores)
    assert got["token_perplexity"] == pytest.approx(
        math.exp(-total / sum(map(len, token_lists))), rel=1e-9
    )
    assert got["word_perplexity"] == pytest.approx(
        math.exp(-total / sum(len(t.split()) for t in texts)), rel=1e-9
    )
    n_bytes = sum(len(t.encode()) for t in texts)
    assert got["byte_perplexity"] == pytest.approx(math.exp(-total / n_bytes), rel=1e-9)
    assert got["bits_per_byte"] == pytest.approx(math.log2(got["byte_perplexity"]), rel=1e-9)
    assert got["loglikelihood"] == pytest.approx(total) and got["tokens"] == sum(
        map(len, token_lists)
    )


def test_perplexities_are_corpus_weighted_not_mean_of_documents():
    scores = [DocumentScore(-10.0, 10, 5, 20), DocumentScore(-90.0, 30, 15, 60)]
    got = perplexities(scores)
    assert got["token_perplexity"] == pytest.approx(math.exp(100 / 40))
    assert got["word_perplexity"] == pytest.approx(math.exp(100 / 20))
    assert got["bits_per_byte"] == pytest.approx(100 / 80 / math.log(2))


def test_strided_perplexity_scores_each_token_once_with_more_context(pythia):
    """Token j of [prefix] + tokens is scored in the first window whose end e_k >= j, where
    e_k = min(max_length + k * stride, n), reading the max_length tokens before e_k."""
    tokenizer, model = pythia
    tokens = ids(tokenizer, LONG)
    n, stride = len(tokens), 5
    sequence = [tokenizer.bos_token_id, *tokens]
    expected = 0.0
    for j in range(1, n + 1):
        end = next(e for k in range(n) if (e := min(MAX_LENGTH + k * stride, n)) >= j)
        expected += logprobs(model, sequence[max(0, end - MAX_LENGTH) : j], [sequence[j]])

    (strided,) = document_loglikelihoods(model, tokenizer, [LONG], MAX_LENGTH, 4, stride=stride)
    (full,) = document_loglikelihoods(model, tokenizer, [LONG], MAX_LENGTH, 4, stride=MAX_LENGTH)
    (rolling,) = document_loglikelihoods(model, tokenizer, [LONG], MAX_LENGTH, 4)
    assert strided.loglikelihood == pytest.approx(expected, rel=1e-5)
    assert strided.tokens == full.tokens == rolling.tokens == n
    assert full.loglikelihood == pytest.approx(rolling.loglikelihood, rel=1e-6)


def test_document_perplexity_rejects_encoder_decoder(t5):
    tokenizer, model = t5
    with pytest.raises(ValueError, match="causal models only"):
        document_loglikelihoods(model, tokenizer, [SHORT], MAX_LENGTH, 1)


# ---------------------------------------------------------------------------------------------
# Continuations: a model whose next-token distribution is one known vector everywhere


@pytest.fixture(scope="module")
def constant(pythia):
    """GPT-NeoX with final layer norm weight 0 and bias e_0: every position's logits are
    column 0 of the LM head, set to `scores`, so log-probs are log_softmax(scores)."""
    tokenizer, model = pythia
    model = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(model.config.vocab_size, generator=generator)
    (the,) = ids(tokenizer, " the")
    scores[the] = 6.0  # the argmax
    with torch.no_grad():
        norm = model.gpt_neox.final_layer_norm
        norm.weight.zero_()
        norm.bias.zero_()
        norm.bias[0] = 1.0
        model.get_output_embeddings().weight[:, 0] = scores
    return tokenizer, model, scores.double().log_softmax(-1), the


def continuation_ids(tokenizer, context: str, continuation: str) -> list[int]:
    """lm-eval's causal split: tokens(context + continuation)[len(tokens(context)):]."""
    return ids(tokenizer, context + continuation)[len(ids(tokenizer, context)) :]


def test_constant_model_really_is_constant(constant):
    tokenizer, model, logp, _ = constant
    with torch.no_grad():
        logits = model(torch.tensor([ids(tokenizer, LONG)])).logits[0]
    torch.testing.assert_close(logits.double().log_softmax(-1), logp.expand_as(logits))


def test_lambada_greedy_and_summed_loglikelihoods(constant):
    tokenizer, model, logp, the = constant
    texts = ["I saw the", "He played the xylophone", "Then she took the"]
    assert lambada_request(texts[1]) == ("He played the", " xylophone")
    xylophone = continuation_ids(tokenizer, "He played the", " xylophone")
    assert len(xylophone) > 1 and the not in xylophone

    rows = lambada_scores(model, tokenizer, texts, batch_size=2)

    assert [row["is_greedy"] for row in rows] == [True, False, True]
    assert [row["correct"] for row in rows] == [1, 0, 1]
    assert [row["target"] for row in rows] == [" the", " xylophone", " the"]
    assert rows[0]["loglikelihood"] == pytest.approx(logp[the].item())
    assert rows[1]["loglikelihood"] == pytest.approx(logp[xylophone].sum().item())
    metrics = lambada_metrics(rows)
    assert metrics["acc"] == pytest.approx(2 / 3)
    mean_ll = (2 * logp[the] + logp[xylophone].sum()).item() / 3
    assert metrics["perplexity"] == pytest.approx(math.exp(-mean_ll))


def test_greedy_needs_every_continuation_token(constant):
    tokenizer, model, logp, the = constant
    requests = [("We met", " the the"), ("We met", " the cat"), ("", " the")]
    cat = continuation_ids(tokenizer, "We met the", " cat")
    assert continuation_ids(tokenizer, *requests[0]) == [the, the]
    got = continuation_loglikelihoods(model, tokenizer, requests, batch_size=3)
    assert got[0] == (pytest.approx(2 * logp[the].item()), True)
    assert got[1] == (pytest.approx((logp[the] + logp[cat].sum()).item()), False)
    assert got[2] == (pytest.approx(logp[the].item()), True)  # empty context: prefix token


def test_results_come_back_in_request_order(constant, monkeypatch):
    tokenizer, model, logp, _ = constant
    requests = [
        ("a", " dog"),
        ("a much longer context than the others, which sorts first", " cat"),
        ("medium context here", " xylophone"),
        ("b c", " steel"),
        ("the longest context of all of them, by a clear margin, to be sure of it", " water"),
    ]
    expected = [logp[continuation_ids(tokenizer, c, x)].sum().item() for c, x in requests]
    assert len(set(expected)) == len(expected)
    for batch_size in (1, 2, 5):
        got = [ll for ll, _ in continuation_loglikelihoods(model, tokenizer, requests, batch_size)]
        assert got == pytest.approx(expected)
    # Models without `logits_to_keep` get the full logits and the same answers.
    monkeypatch.setattr(likelihood, "_accepts_logits_to_keep", lambda model: False)
    got = [ll for ll, _ in continuation_loglikelihoods(model, tokenizer, requests, 2)]
    assert got == pytest.approx(expected)


def test_hellaswag_acc_and_acc_norm(constant):
    tokenizer, model, logp, the = constant
    example = {
        "activity_label": "Music",
        "ctx_a": "A man sits at the piano.",
        "ctx_b": "he plays",
        "endings": ["the", "the the the the the the the", "xylophone", "xylophone xylophone"],
        "label": "1",
    }
    query, endings, label = hellaswag_query(example)
    assert (query, label) == ("Music: A man sits at the piano. He plays", 1)
    assert continuation_ids(tokenizer, query, " " + endings[1]) == [the] * 7
    expected = [logp[continuation_ids(tokenizer, query, " " + e)].sum().item() for e in endings]
    # Premise: "the" has the best total, the 7x "the" ending the best total per character.
    assert expected[0] == max(expected) and expected[1] / 27 == max(
        ll / len(e) for ll, e in zip(expected, endings, strict=True)
    )
    flipped = dict(example, label="0")

    rows = hellaswag_scores(model, tokenizer, [example, flipped], batch_size=3)

    assert rows[0]["loglikelihoods"] == pytest.approx(expected)
    assert rows[0]["lengths"] == [3, 27, 9, 19]
    assert {k: rows[0][k] for k in ("pred", "pred_norm", "acc", "acc_norm", "label")} == {
        "pred": 0,
        "pred_norm": 1,
        "acc": 0,
        "acc_norm": 1,
        "label": 1,
    }
    assert (rows[1]["acc"], rows[1]["acc_norm"], rows[1]["label"]) == (1, 0, 0)
    assert hellaswag_metrics(rows) == {"acc": 0.5, "acc_norm": 0.5}


def test_hellaswag_query_cleans_wikihow_artefacts():
    example = {
        "activity_label": "Home and Garden",
        "ctx_a": "[header] How to clean a  sink [title] Get supplies.",
        "ctx_b": "you should [step] scrub it",
        "endings": ["  Use soap [substeps] and water.", "Scrub [title] hard"],
        "label": "0",
    }
    assert hellaswag_query(example) == (
        "Home and Garden: How to clean a sink. Get supplies. You should scrub it",
        ["Use soap and water.", "Scrub. hard"],
        0,
    )


# ---------------------------------------------------------------------------------------------
# Tokenisation, truncation, seq2seq


def test_trailing_context_spaces_move_to_the_continuation(pythia):
    tokenizer, model = pythia
    moved = continuation_loglikelihoods(model, tokenizer, [("The cat sat on the ", "mat")], 1)
    plain = continuation_loglikelihoods(model, tokenizer, [("The cat sat on the", " mat")], 1)
    assert moved == plain


def test_empty_context_conditions_on_the_prefix_token(pythia):
    tokenizer, model = pythia
    prefix = tokenizer.bos_token_id
    plain = tokenizer("Sound travels", add_special_tokens=False)["input_ids"]
    # lm-eval: a continuation that already starts with the prefix token keeps it as context.
    text = tokenizer.bos_token + "hello"
    led = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert led[0] == prefix and len(led) > 2
    got = continuation_loglikelihoods(model, tokenizer, [("", "Sound travels"), ("", text)], 2)
    assert got[0][0] == pytest.approx(logprobs(model, [prefix, *plain[:-1]], plain), rel=1e-5)
    assert got[1][0] == pytest.approx(logprobs(model, led[:-1], led[1:]), rel=1e-5)


def test_causal_inputs_are_left_truncated_to_max_length(pythia):
    tokenizer, model = pythia
    context, continuation = LONG, " and the end"
    cont = continuation_ids(tokenizer, context, continuation)
    whole = ids(tokenizer, context) + cont
    ((got, _),) = continuation_loglikelihoods(
        model, tokenizer, [(context, continuation)], 1, max_length=8
    )
    assert got == pytest.approx(logprobs(model, whole[-9:-1], cont), rel=1e-5)


def test_seq2seq_continuation_equals_the_models_own_loss(t5):
    tokenizer, model = t5
    requests = [
        ("summarize: the cat sat on the mat", " a cat"),
        ("translate: hello there", " bonjour a tous"),
        ("a", " b"),
    ]
    assert model.training  # built from config: dropout on, which scoring must switch off
    expected = []
    model.eval()
    for context, continuation in requests:
        encoder = ids(tokenizer, context)
        assert encoder[-1] == tokenizer.eos_token_id  # the context gets T5's </s>
        labels = tokenizer(continuation, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out = model(input_ids=torch.tensor([encoder]), labels=torch.tensor([labels]))
        greedy = bool((out.logits[0].argmax(-1) == torch.tensor(labels)).all())
        expected.append((-out.loss.item() * len(labels), greedy))
    model.train()

    for batch_size in (1, 3):
        got = continuation_loglikelihoods(model, tokenizer, requests, batch_size)
        assert [g for _, g in got] == [g for _, g in expected]
        assert [ll for ll, _ in got] == pytest.approx([ll for ll, _ in expected], rel=1e-5)
    assert model.training  # the caller's mode is restored
