"""The GCG-style search, budget curves, the transfer tokenizer check and success-rate counts, on
tiny random models built in-process (no training; trained runs and the CLI: test_attack_runs.py).
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from transformers import AutoTokenizer

from monolm.attacks.base import AttackRun
from monolm.attacks.examples import pack
from monolm.attacks.first_order import blocked, first_order_scores
from monolm.attacks.gcg import GCG, GCGSearchSettings, gcg_search, max_gcg_queries
from monolm.attacks.hotflip import FlipSettings, HotFlip
from monolm.attacks.outcome import aggregate, budget_curve, gain_at, rate_text
from monolm.attacks.plan import check_same_tokenizer, tokenizer_identity
from monolm.attacks.random_control import RandomControl, RandomSettings
from monolm.attacks.registry import SEARCHES
from monolm.attacks.triggers import TriggerSettings, trigger_search
from monolm.attacks.vocabulary import candidate_vocabulary
from monolm.config.eval_schema import BootstrapConfig
from monolm.errors import UserError
from tests.helpers import CONF, build_model
from tests.test_attacks import objective, pythia_examples, t5_examples


@pytest.fixture(scope="module")
def t5():
    _, tokenizer, model = build_model("model=tiny_t5")
    return tokenizer, model.eval()


@pytest.fixture(scope="module")
def pythia():
    _, tokenizer, model = build_model("model=tiny_pythia")
    return tokenizer, model.eval()


SMALL = GCGSearchSettings(budget=3, steps=4, top_k=8, candidates=12)


class Counted:
    """Wraps an objective's batched loss and gradient calls and counts, per example (its target),
    the sequences they were given: an independent count of the queries."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.scored: Counter = Counter()  # rows given to `losses`, per target
        self.gradient_rows: Counter = Counter()  # rows given to `gradients`, per target
        self.calls: list[int] = []  # rows per batched loss call

    def losses(self, rows):
        self.scored.update(target for _, target in rows)
        self.calls.append(len(rows))
        return self.inner.losses(rows)

    def gradients(self, rows):
        self.gradient_rows.update(target for _, target in rows)
        return self.inner.gradients(rows)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _counted(model) -> Counted:
    return Counted(objective(model))


def _family(request, name: str):
    tokenizer, model = request.getfixturevalue(name)
    make = t5_examples if name == "t5" else pythia_examples
    examples = make(tokenizer, 4)
    assert len({e.target for e in examples}) == len(examples)  # a target names its example
    return tokenizer, model, examples


def _run(tokenizer, model, examples, seed: int = 0, obj=None) -> AttackRun:
    vocab = candidate_vocabulary(tokenizer, model.get_input_embeddings().weight.shape[0])
    return AttackRun(obj or objective(model), tokenizer, examples, vocab,
                     torch.Generator().manual_seed(seed), None, None, 0, {})  # fmt: skip


# --- GCG ------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["t5", "pythia"])
def test_gcg_records_exactly_the_queries_it_made(request, family: str) -> None:
    tokenizer, model, examples = _family(request, family)
    counted = _counted(model)
    vocab = candidate_vocabulary(tokenizer, len(tokenizer))
    results = gcg_search(
        counted, examples, vocab, SMALL, generator=torch.Generator().manual_seed(1)
    )
    for result, example in zip(results, examples, strict=True):
        scored = counted.scored[example.target]
        gradients = counted.gradient_rows[example.target]
        assert result.queries == scored + gradients  # clean loss + candidates + gradients
        assert result.gradient_queries == gradients == result.steps <= SMALL.steps
        assert result.queries <= max_gcg_queries(SMALL)
        assert len(result.best.flips) <= SMALL.budget
        # Stopped by its flip budget or its steps, not before.
        assert len(result.best.flips) == SMALL.budget or result.steps == SMALL.steps
    assert sum(r.queries for r in results) == counted.inner.queries
    # Every step scores at most B candidates per example, all in one batched call.
    assert max(counted.calls[1:]) <= SMALL.candidates * len(examples)


def test_gcg_flips_a_top_k_token_at_an_allowed_position_and_only_if_the_loss_rises(t5) -> None:
    tokenizer, model = t5
    examples = t5_examples(tokenizer, 3)
    vocab = candidate_vocabulary(tokenizer, len(tokenizer))
    settings = GCGSearchSettings(budget=3, steps=5, top_k=1, candidates=8)
    results = gcg_search(objective(model), examples, vocab, settings)
    check = objective(model)
    for result, example in zip(results, examples, strict=True):
        assert all(b > a for a, b in zip(result.trajectory, result.trajectory[1:], strict=False))
        current = list(pack(example).ids)
        for (position, old, new), loss in zip(result.best.flips, result.trajectory[1:],
                                               strict=True):  # fmt: skip
            assert len(example.prefix) <= position < len(current) - len(example.suffix)
            assert current[position] == old and bool(vocab.mask[new])
            # top_k=1: the token is the position's best first-order replacement (HotFlip's score)
            _, (grad,) = check.gradients([(tuple(current), example.target)])
            ids = torch.tensor(current)
            allowed = torch.zeros(len(current), dtype=torch.bool)
            allowed[len(example.prefix) : len(current) - len(example.suffix)] = True
            scores = blocked(first_order_scores(grad, ids, check.embeddings), vocab.mask, ids,
                             allowed)  # fmt: skip
            assert int(scores[position].argmax()) == new
            current[position] = new
            assert check.losses([(tuple(current), example.target)])[0] == pytest.approx(
                loss, abs=1e-5
            )
        assert tuple(current) == result.best.ids


def test_when_b_covers_the_pool_gcg_scores_every_top_k_flip_and_its_control_as_many(
    pythia,
) -> None:
    """B >= positions x top_k: a GCG step scores each allowed position's top_k tokens, every one
    once (no sampling, whatever the generator), and the random control draws per step what such
    a step scores (the pool), not B: equal steps for equal queries."""
    from monolm.attacks.gcg import pool_size

    tokenizer, model = pythia
    (example,) = pythia_examples(tokenizer, 1)
    vocab = candidate_vocabulary(tokenizer, len(tokenizer))
    settings = GCGSearchSettings(budget=1, steps=1, top_k=3, candidates=10_000)
    body = len(pack(example).body)
    steps = []
    for seed in (0, 1):
        counted = _counted(model)
        (result,) = gcg_search(counted, [example], vocab, settings,
                               generator=torch.Generator().manual_seed(seed))  # fmt: skip
        steps.append((result.queries, result.best.ids))
        assert counted.calls[1] == pool_size(result, vocab, 3) == body * 3
        assert result.queries == 1 + 1 + body * 3  # clean, gradient, the pool
    assert steps[0] == steps[1]
    counted = _counted(model)
    control = gcg_search(counted, [example], vocab, GCGSearchSettings(budget=5, steps=1, top_k=3,
                         candidates=10_000), "random", [1 + 3 * body * 3])  # fmt: skip
    assert counted.calls[1:] and max(counted.calls[1:]) <= body * 3  # never B per step
    assert control[0].queries <= 1 + 3 * body * 3


def test_gcg_is_reproducible_from_the_attacks_generator(pythia) -> None:
    tokenizer, model = pythia
    examples = pythia_examples(tokenizer, 3)
    vocab = candidate_vocabulary(tokenizer, len(tokenizer))

    def run(seed: int):
        results = gcg_search(objective(model), examples, vocab, SMALL,
                             generator=torch.Generator().manual_seed(seed))  # fmt: skip
        return [(r.best.ids, r.queries, r.trajectory) for r in results]

    assert run(5) == run(5)


def test_the_random_control_mimics_gcg_with_exactly_the_queries_gcg_spent(pythia) -> None:
    tokenizer, model = pythia
    examples = pythia_examples(tokenizer, 4)
    gradient = GCG().search(SMALL, _run(tokenizer, model, examples), "gradient", None)
    spent = [row["queries"] for row in gradient.per_example]
    counted = _counted(model)
    control = GCG().search(SMALL, _run(tokenizer, model, examples, obj=counted), "random", spent)
    for row, budget, example in zip(control.per_example, spent, examples, strict=True):
        assert row["gradient_queries"] == 0 and row["query_budget"] == budget
        assert row["queries"] == counted.scored[example.target]
        # All spent, or every flip made first.
        assert row["queries"] == budget or (len(row["flips"]) == SMALL.budget
                                            and row["queries"] < budget)  # fmt: skip
    # Through the control itself: attack=random attack.mimic=gcg, default budget.
    settings = RandomSettings(mimic="gcg", gcg=SMALL)
    outcome = RandomControl(SEARCHES).run(settings, _run(tokenizer, model, examples))
    assert outcome.info["mimic"] == "gcg" and outcome.info["proposer"] == "random"
    assert all(r["queries"] <= max_gcg_queries(SMALL) for r in outcome.per_example)


# --- budget curves --------------------------------------------------------------------------


def _hotflip(proposer):
    return HotFlip(), FlipSettings(budget=3, top_k=6), proposer


def _gcg(proposer):
    return GCG(), SMALL, proposer


@pytest.mark.parametrize("family", ["t5", "pythia"])
@pytest.mark.parametrize(
    "make",
    [
        lambda: _hotflip("gradient"),
        lambda: _hotflip("random"),
        lambda: _gcg("gradient"),
        lambda: _gcg("random"),
    ],
    ids=["hotflip", "random-hotflip", "gcg", "random-gcg"],
)
def test_every_examples_budget_curve_rises_and_ends_at_its_reported_gain(
    request, family: str, make
) -> None:
    search, settings, proposer = make()
    tokenizer, model, examples = _family(request, family)
    run = _run(tokenizer, model, examples)
    outcome = search.search(settings, run, proposer, None)
    clean = objective(model).losses([(pack(e).ids, e.target) for e in examples])
    attacked = objective(model).losses(
        [(ids, e.target) for ids, e in zip(outcome.attacked, examples, strict=True)]
    )
    for row, before, after in zip(outcome.per_example, clean, attacked, strict=True):
        curve = row["curve"]
        assert curve[0] == [1, 0.0]  # after the clean loss, nothing gained yet
        queries = [q for q, _ in curve]
        gains = [g for _, g in curve]
        assert queries == sorted(queries) and gains == sorted(gains)  # non-decreasing
        assert curve[-1] == [row["queries"], row["gain"]]  # ends at the reported totals
        assert row["gain"] == pytest.approx(after - before, abs=1e-5)
        assert len(curve) == row["steps"] + 1  # one point per step, compact


def test_every_trigger_restarts_budget_curve_rises_and_ends_at_its_queries(pythia) -> None:
    tokenizer, model = pythia
    examples = pythia_examples(tokenizer, 6)
    vocab = candidate_vocabulary(tokenizer, len(tokenizer))
    settings = TriggerSettings(length=2, top_k=4, restarts=2, steps=3, batch_size=3)
    the = tuple(tokenizer(" the", add_special_tokens=False)["input_ids"]) * 2
    for proposer in ("gradient", "random"):
        for restart in trigger_search(objective(model), examples, vocab, settings, the, proposer):
            gains = [g for _, g in restart.curve]
            queries = [q for q, _ in restart.curve]
            assert gains == sorted(gains) and queries == sorted(queries)
            assert restart.curve[-1] == [restart.queries, restart.best_gain]
            assert len(restart.curve) == restart.steps + 1


def test_the_mean_budget_curve_carries_each_units_best_gain_forward() -> None:
    curves = [[[1, 0.0], [11, 0.5], [21, 0.5]], [[1, 0.0], [11, 1.0], [21, 2.0], [31, 3.0]]]
    assert gain_at(curves[0], 0) == 0.0 and gain_at(curves[0], 15) == 0.5
    assert gain_at(curves[0], 1000) == 0.5  # it stopped: its best stays
    summary = budget_curve(curves, BootstrapConfig(resamples=200), points=4)
    assert summary["queries"] == [1, 11, 21, 31] and summary["n"] == 2
    assert summary["mean_gain"] == pytest.approx([0.0, 0.75, 1.25, 1.75])
    assert all(lo <= m <= hi for lo, m, hi in zip(summary["low"], summary["mean_gain"],
                                                   summary["high"], strict=True))  # fmt: skip
    assert budget_curve([], BootstrapConfig()) is None


# --- success rates come with their counts ---------------------------------------------------


def test_a_success_rate_is_reported_with_its_n_and_the_examples_skipped() -> None:
    statuses = ["success", "failure", "failure", "failure", "skipped", "skipped"]
    rows = [{"status": s, "clean_nll": 1.0, "attacked_nll": 1.0, "delta_nll": 0.0,
             "relative_nll": 0.0, "tokens_changed": 1} for s in statuses]  # fmt: skip
    aggregates = aggregate(rows, BootstrapConfig(resamples=100))
    assert aggregates["success_rate"]["n"] == aggregates["decided"] == 4
    assert aggregates["success_rate"]["skipped"] == 2
    text = rate_text(aggregates, RandomSettings(), "seq2seq")
    assert text.startswith("success rate 0.25 [")
    assert text.endswith("(n=4, 2 skipped: clean ROUGE-L < rouge_floor 5)")
    causal = rate_text(aggregates, RandomSettings(), "causal")
    assert causal.endswith("(n=4, 2 skipped: clean NLL < nll_floor 0.05)")
    nothing = aggregate([{**rows[0], "status": "skipped"}], BootstrapConfig(resamples=100))
    assert rate_text(nothing, RandomSettings(), "causal").startswith("success rate n/a (n=0, 1")


# --- the transfer tokenizer check -----------------------------------------------------------


def test_tokenizers_differing_only_in_saved_truncation_are_the_same_for_transfer(
    pythia, tmp_path
) -> None:
    tokenizer, _ = pythia
    tokenizer.save_pretrained(tmp_path / "a")
    truncating = AutoTokenizer.from_pretrained(tmp_path / "a")
    truncating("some text to tokenise", truncation=True, max_length=3)  # sets the state
    truncating.save_pretrained(tmp_path / "b")
    a = AutoTokenizer.from_pretrained(tmp_path / "a")
    b = AutoTokenizer.from_pretrained(tmp_path / "b")
    assert a.backend_tokenizer.to_str() != b.backend_tokenizer.to_str()  # truncation differs
    check_same_tokenizer("run_a", tokenizer_identity(a), "run_b", tokenizer_identity(b))
    check_same_tokenizer("run_a", tokenizer_identity(a), "run_a", tokenizer_identity(truncating))


def test_a_transfer_target_with_another_vocabulary_is_refused_naming_both_sides(t5, pythia) -> None:
    (t5_tokenizer, _), (pythia_tokenizer, _) = t5, pythia
    with pytest.raises(UserError) as error:
        check_same_tokenizer("outputs/train/src", tokenizer_identity(pythia_tokenizer),
                             "outputs/train/tgt", tokenizer_identity(t5_tokenizer))  # fmt: skip
    message = str(error.value)
    assert "'outputs/train/tgt'" in message and "'outputs/train/src'" in message
    assert "first difference" in message


def test_an_added_token_is_a_different_tokenizer(pythia, tmp_path) -> None:
    tokenizer, _ = pythia
    tokenizer.save_pretrained(tmp_path / "a")
    grown = AutoTokenizer.from_pretrained(tmp_path / "a")
    grown.add_tokens(["qqzzxq"])
    with pytest.raises(UserError, match=r"first difference, added_tokens.*'tgt'|'tgt'.*added_"):
        check_same_tokenizer("src", tokenizer_identity(tokenizer), "tgt",
                             tokenizer_identity(grown))  # fmt: skip


# --- configuration --------------------------------------------------------------------------


def _compose_attack(tmp_path, *overrides: str):
    from hydra import compose, initialize_config_dir

    from monolm.attacks.config import register_attack_configs
    from monolm.config.eval_schema import register_evaluate_configs
    from monolm.config.schema import register_configs

    register_configs()
    register_evaluate_configs()
    register_attack_configs()
    with initialize_config_dir(config_dir=str(CONF / "attack"), version_base="1.3"):
        return compose("attack", overrides=[f"paths.output_dir={tmp_path}", *overrides])


def test_attack_gcg_and_its_random_control_compose_with_typed_settings(tmp_path) -> None:
    from monolm.attacks.registry import attack_settings

    kind, settings = attack_settings(_compose_attack(tmp_path, "attack=gcg").attack)
    assert kind.name == "gcg" and settings.gcg == GCGSearchSettings()
    cfg = _compose_attack(tmp_path, "attack=random", "attack.mimic=gcg", "attack.gcg.candidates=8")
    kind, settings = attack_settings(cfg.attack)
    assert kind.name == "random" and settings.gcg.candidates == 8
    with pytest.raises(UserError, match=r"attack\.gcg\.candidates"):
        attack_settings(_compose_attack(tmp_path, "attack=gcg", "attack.gcg.candidates=0").attack)
