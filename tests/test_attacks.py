"""The attack core on tiny models: examples and packing, the candidate vocabulary, the loss, the
HotFlip and trigger searches' invariants. (Trained models and the CLI: test_attack_runs.py.)"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from monolm.attacks.examples import (
    AttackExample,
    causal_lm_example,
    causal_summary_example,
    pack,
    seq2seq_example,
)
from monolm.attacks.first_order import first_order_scores
from monolm.attacks.hotflip import FlipSettings, flip_search, max_flip_queries
from monolm.attacks.objective import Objective
from monolm.attacks.triggers import TriggerSettings, max_trigger_queries, trigger_search
from monolm.attacks.vocabulary import candidate_vocabulary, special_ids
from monolm.constraints.base import NoConstraint
from monolm.data.bundled import bundled_files
from tests.helpers import build_model


def _jsonl(name: str) -> list[dict]:
    with open(bundled_files(name)["validation"]) as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="module")
def t5():
    _, tokenizer, model = build_model("model=tiny_t5")
    return tokenizer, model.eval()


@pytest.fixture(scope="module")
def pythia():
    _, tokenizer, model = build_model("model=tiny_pythia")
    return tokenizer, model.eval()


def t5_examples(tokenizer, n: int = 6, max_length: int = 256) -> list[AttackExample]:
    rows = _jsonl("tiny_summarization")[:n]
    return [
        seq2seq_example(tokenizer, i, r["article"], r["highlights"], "summarize: ", max_length, 64)
        for i, r in enumerate(rows)
    ]


def pythia_examples(tokenizer, n: int = 6) -> list[AttackExample]:
    made = [causal_lm_example(tokenizer, i, row["text"], 48, 16, 16, 128)
            for i, row in enumerate(_jsonl("tiny_lm")[:n])]  # fmt: skip
    assert all(made)
    return made


def objective(model) -> Objective:
    return Objective(model, NoConstraint(), pad_id=0, batch_size=8)


# --- examples and packing -------------------------------------------------------------------


def test_a_clean_seq2seq_input_is_exactly_what_training_tokenised(t5) -> None:
    tokenizer, _ = t5
    for row, example in zip(_jsonl("tiny_summarization")[:10], t5_examples(tokenizer, 10, 96),
                            strict=True):  # fmt: skip
        expected = tokenizer("summarize: " + row["article"], truncation=True, max_length=96)
        assert pack(example).ids == tuple(expected["input_ids"])
        target = tokenizer(text_target=row["highlights"], truncation=True, max_length=64)
        assert example.target == tuple(target["input_ids"])
        assert example.suffix == (tokenizer.eos_token_id,)
        assert tokenizer.decode(example.prefix).strip() == "summarize:"


@pytest.mark.parametrize("position", ["start", "end"])
def test_a_trigger_is_in_every_packed_input_even_past_max_length(t5, position: str) -> None:
    tokenizer, _ = t5
    trigger = (700, 701, 702)
    for example in t5_examples(tokenizer, 10, max_length=64):
        assert len(example.prefix) + len(example.body) + len(example.suffix) > 64
        packed = pack(example, trigger, position)
        assert len(packed.ids) == 64
        assert packed.ids[packed.trigger.start : packed.trigger.stop] == trigger
        assert packed.ids[: len(example.prefix)] == example.prefix
        assert packed.ids[-1] == tokenizer.eos_token_id
        expected = packed.trigger.start == len(example.prefix) if position == "start" else (
            packed.trigger.stop == 64 - len(example.suffix))  # fmt: skip
        assert expected


def test_a_causal_example_keeps_the_text_next_to_its_continuation(pythia) -> None:
    tokenizer, _ = pythia
    text = _jsonl("tiny_lm")[0]["text"]
    example = causal_lm_example(tokenizer, 0, text, 48, 16, 16, max_length=60)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert example.body == tuple(ids[:44]) and example.target == tuple(ids[44:60])
    packed = pack(example, (5, 6, 7))  # 44 + 3 > 60 - 16: the body loses its head
    assert packed.ids == (5, 6, 7, *ids[3:44])
    assert causal_lm_example(tokenizer, 0, "one two", 48, 16, 16, 128) is None


def test_a_causal_summary_reads_article_then_prompt(pythia) -> None:
    tokenizer, _ = pythia
    example = causal_summary_example(tokenizer, 0, "An article.", "A summary.", "\nTL;DR:",
                                     128, 32)  # fmt: skip
    assert tokenizer.decode(pack(example).ids) == "An article.\nTL;DR:"
    assert tokenizer.decode(example.target) == " A summary."


# --- candidate vocabulary -------------------------------------------------------------------


def test_candidates_exclude_special_padded_and_non_round_trip_rows(t5) -> None:
    tokenizer, _ = t5
    rows = len(tokenizer) + 40  # an embedding padded past the vocabulary, as in T5 and Pythia
    vocab = candidate_vocabulary(tokenizer, rows)
    assert vocab.mask.shape == (rows,)
    assert not vocab.mask[len(tokenizer) :].any()
    assert not vocab.mask[sorted(special_ids(tokenizer))].any()
    assert vocab.excluded["padded_rows"] == 40 and vocab.excluded["special"] >= 3
    for token_id in vocab.ids.tolist():
        text = tokenizer.decode([token_id])
        assert tokenizer(text, add_special_tokens=False)["input_ids"] == [token_id]
    assert vocab.excluded["no_round_trip"] > 0
    assert vocab.summary()["candidates"] == rows - sum(vocab.excluded.values())


# --- the loss -------------------------------------------------------------------------------


def test_the_causal_loss_scores_the_continuation_only(pythia) -> None:
    tokenizer, model = pythia
    examples = pythia_examples(tokenizer)
    rows = [(pack(e, (9, 10, 11, 12)).ids, e.target) for e in examples]
    rows.append((pack(examples[0]).ids, examples[0].target))  # a shorter row in the batch
    got = objective(model).losses(rows)
    with torch.no_grad():
        for (inputs, target), value in zip(rows, got, strict=True):
            logits = model(torch.tensor([inputs + target])).logits[0]
            expected = F.cross_entropy(logits[len(inputs) - 1 : -1], torch.tensor(target))
            assert value == pytest.approx(float(expected), abs=1e-5)


def test_the_seq2seq_loss_is_the_reference_summary_nll(t5) -> None:
    tokenizer, model = t5
    examples = t5_examples(tokenizer, 4)
    rows = [(pack(e).ids, e.target) for e in examples]
    got = objective(model).losses(rows)
    with torch.no_grad():
        for (inputs, target), value in zip(rows, got, strict=True):
            loss = model(input_ids=torch.tensor([inputs]), labels=torch.tensor([target])).loss
            assert value == pytest.approx(float(loss), abs=1e-5)


def test_gradients_match_the_first_order_change_of_a_small_step(t5) -> None:
    tokenizer, model = t5
    example = t5_examples(tokenizer, 1)[0]
    ids = pack(example).ids
    losses, grads = objective(model).gradients([(ids, example.target)])
    assert grads[0].shape == (len(ids), model.config.d_model)
    assert losses[0] == pytest.approx(objective(model).losses([(ids, example.target)])[0],
                                      abs=1e-5)  # fmt: skip
    embeddings = model.get_input_embeddings().weight
    scores = first_order_scores(grads[0], torch.tensor(ids), embeddings)
    assert scores[torch.arange(len(ids)), torch.tensor(ids)].abs().max() < 1e-5  # no-op = 0


# --- HotFlip invariants ---------------------------------------------------------------------


def test_hotflip_with_budget_zero_changes_nothing(t5) -> None:
    tokenizer, model = t5
    examples = t5_examples(tokenizer, 4)
    vocab = candidate_vocabulary(tokenizer, len(tokenizer))
    results = flip_search(objective(model), examples, vocab, FlipSettings(budget=0))
    clean = objective(model).losses([(pack(e).ids, e.target) for e in examples])
    for result, example, loss in zip(results, examples, clean, strict=True):
        assert result.best.ids == pack(example).ids and result.best.flips == ()
        assert result.trajectory == [pytest.approx(loss, abs=1e-6)]


@pytest.mark.parametrize("beam", [1, 2])
def test_hotflip_accepts_only_flips_that_raise_the_loss_and_never_touches_the_prefix(
    t5, beam: int
) -> None:
    tokenizer, model = t5
    examples = t5_examples(tokenizer, 5)
    vocab = candidate_vocabulary(tokenizer, len(tokenizer))
    settings = FlipSettings(budget=4, top_k=6, beam=beam)
    results = flip_search(objective(model), examples, vocab, settings)
    check = objective(model)
    for result, example in zip(results, examples, strict=True):
        ids = result.best.ids
        assert ids[: len(example.prefix)] == example.prefix
        assert ids[-len(example.suffix) :] == example.suffix
        assert len(result.best.flips) == len(result.trajectory) - 1 <= 4
        assert all(b > a for a, b in zip(result.trajectory, result.trajectory[1:], strict=False))
        # Replay the flips one by one: each one raised the loss the search recorded.
        current = list(pack(example).ids)
        for (position, old, new), loss in zip(result.best.flips, result.trajectory[1:],
                                               strict=True):  # fmt: skip
            assert len(example.prefix) <= position < len(ids) - len(example.suffix)
            assert current[position] == old and bool(vocab.mask[new])
            current[position] = new
            if beam == 1:
                assert check.losses([(tuple(current), example.target)])[0] == pytest.approx(
                    loss, abs=1e-5
                )
        assert tuple(current) == ids
        assert result.queries <= max_flip_queries(settings)
        assert result.gradient_queries == result.steps * beam or beam > 1


def test_the_random_control_spends_exactly_its_budget(pythia) -> None:
    tokenizer, model = pythia
    examples = pythia_examples(tokenizer, 4)
    vocab = candidate_vocabulary(tokenizer, len(tokenizer))
    budgets = [7, 30, 55, 1]
    results = flip_search(objective(model), examples, vocab, FlipSettings(budget=5, top_k=8),
                          "random", budgets)  # fmt: skip
    for result, budget in zip(results, budgets, strict=True):  # all spent, or all flips made
        spent_all = result.queries == budget
        assert spent_all or (len(result.best.flips) == 5 and result.queries < budget)
    assert all(r.gradient_queries == 0 for r in results)
    assert all(b > a for r in results for a, b in zip(r.trajectory, r.trajectory[1:],
                                                      strict=False))  # fmt: skip


# --- triggers -------------------------------------------------------------------------------


def test_a_trigger_search_is_reproducible_from_its_seed(pythia) -> None:
    tokenizer, model = pythia
    examples = pythia_examples(tokenizer, 6)
    vocab = candidate_vocabulary(tokenizer, len(tokenizer))
    settings = TriggerSettings(length=3, top_k=5, restarts=2, steps=2, batch_size=3)
    the = tuple(tokenizer(" the", add_special_tokens=False)["input_ids"]) * 3

    def run(seed: int, proposer: str = "gradient"):
        generator = torch.Generator().manual_seed(seed)
        return trigger_search(objective(model), examples, vocab, settings, the, proposer,
                              generator=generator)  # fmt: skip

    first, second = run(3), run(3)
    assert [(r.trigger, r.optimization_loss, r.queries) for r in first] == [
        (r.trigger, r.optimization_loss, r.queries) for r in second]  # fmt: skip
    assert first[0].initial == the and first[1].initial != the
    assert all(r.queries <= max_trigger_queries(settings, len(examples)) for r in first)
    assert all(r.batch_losses for r in first)
    control = run(3, "random")
    assert [r.queries for r in control] == [max_trigger_queries(settings, len(examples))] * 2
