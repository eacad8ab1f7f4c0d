"""The exhaustive single-flip audit (`attack.audit`): its optimum is the brute-force optimum, the
random control's exact expectation is what the control's real drawing gives, and the ranking
numbers mean what they say. Tiny randomly initialised models, no training."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from monolm.attacks.audit import (
    audit_attack,
    audit_row,
    draw_weights,
    expected_max_with_replacement,
    expected_max_without_replacement,
    flip_table,
    optimum_rank,
    spearman,
)
from monolm.attacks.examples import AttackExample, pack
from monolm.attacks.hotflip import Beam, FlipResult, FlipSettings, _random_candidates
from monolm.attacks.objective import Objective
from monolm.attacks.vocabulary import CandidateVocabulary
from monolm.constraints.base import NoConstraint
from tests.helpers import build_model

Z99 = 2.5758  # two-sided 99% normal quantile


@pytest.fixture(scope="module")
def pythia():
    _, tokenizer, model = build_model("model=tiny_pythia")
    return tokenizer, model.eval()


def _tiny_example() -> AttackExample:
    # prefix 1 token (never flipped), body 4 tokens, target 3 tokens
    return AttackExample(
        id="tiny",
        prefix=(11,),
        body=(300, 301, 302, 303),
        suffix=(),
        target=(400, 401, 402),
        reference="",
        max_input_tokens=64,
        keep="tail",
    )


def _vocab(rows: int, tokens: list[int]) -> CandidateVocabulary:
    mask = torch.zeros(rows, dtype=torch.bool)
    mask[tokens] = True
    return CandidateVocabulary(mask, {})


def test_the_audit_optimum_is_the_brute_force_optimum_over_every_single_flip(pythia) -> None:
    _, model = pythia
    rows = model.get_input_embeddings().weight.shape[0]
    example = _tiny_example()
    candidates = [5, 17, 301, 500, 999, 1234]  # 301 is already at body position 1: a no-op there
    vocab = _vocab(rows, candidates)
    table = flip_table(Objective(model, NoConstraint(), 0, batch_size=4), example, vocab)

    # Brute force: one flip at a time, one forward each, an independent objective.
    check = Objective(model, NoConstraint(), 0, batch_size=1)
    packed = pack(example)
    (clean,) = check.losses([(packed.ids, example.target)])
    brute = {}
    for position in packed.body:
        for token in candidates:
            if token == packed.ids[position]:
                continue
            ids = list(packed.ids)
            ids[position] = token
            (loss,) = check.losses([(tuple(ids), example.target)])
            brute[(position, token)] = loss - clean
    found = {
        (int(p), int(t)): float(g)
        for p, t, g in zip(table.positions, table.tokens, table.gains, strict=True)
    }
    assert set(found) == set(brute)  # the body only, every candidate but the no-op
    assert len(found) == 4 * 6 - 1
    for key, gain in brute.items():
        assert found[key] == pytest.approx(gain, abs=1e-5)
    row = audit_row(table, first_gain=0.0, settings=FlipSettings(budget=1, top_k=3))
    assert row["optimum_gain"] == pytest.approx(max(brute.values()), abs=1e-5)
    best = max(brute, key=brute.get)
    assert (row["optimum"]["position"], row["optimum"]["new"]) == best
    assert row["forward_passes"] == 1 + 1 + 23  # clean, gradient, every flip
    assert row["gradient_passes"] == 1


def _result_for(ids: tuple[int, ...], body: range) -> FlipResult:
    allowed = torch.zeros(len(ids), dtype=torch.bool)
    allowed[body.start : body.stop] = True
    return FlipResult(None, None, [Beam(ids, 0.0)], [0.0], 1 << 30, positions=allowed)  # type: ignore[arg-type]


def test_the_random_controls_exact_expectation_matches_its_real_drawing() -> None:
    """Monte Carlo of hotflip's own random proposer (seeded): its first step draws q flips; the
    best positive gain among them averages to the exact expectation, within the 99% CI, and the
    laws it does not follow (uniform over the table, with or without replacement) fall outside."""
    rows = 40
    tokens = [3, 7, 8]
    vocab = _vocab(rows, tokens)
    ids = (1, 7, 8, 5, 3, 2)  # body positions 1, 2, 4 hold a candidate: 2 flips there, 3 at 3
    body = range(1, 5)
    gen = np.random.default_rng(2)
    gains = {(p, t): float(gen.normal()) for p in body for t in tokens if t != ids[p]}
    keys = list(gains)
    positions = np.array([p for p, _ in keys])
    positive = np.maximum(np.array([gains[k] for k in keys]), 0.0)  # a step keeps raising flips
    q = 3
    exact = expected_max_with_replacement(positive, draw_weights(positions, len(body)), q)
    generator = torch.Generator().manual_seed(1)
    result = _result_for(ids, body)
    draws = []
    for _ in range(10000):
        (proposals,) = _random_candidates([result], vocab, q, generator)
        assert len(proposals) == q
        draws.append(max(0.0, *(gains[c.flips[0][0], c.flips[0][2]] for c in proposals)))
    mean = float(np.mean(draws))
    half = Z99 * float(np.std(draws, ddof=1)) / math.sqrt(len(draws))
    assert abs(mean - exact) <= half
    uniform_with = expected_max_with_replacement(positive, np.ones(len(positive)), q)
    uniform_without = expected_max_without_replacement(positive, q)
    assert abs(mean - uniform_with) > half and abs(mean - uniform_without) > half


def test_the_without_replacement_expectation_matches_seeded_draws_of_distinct_flips() -> None:
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(50, generator=gen, dtype=torch.float64).numpy()
    q = 5
    exact = expected_max_without_replacement(values, q)
    picks = torch.rand(40000, len(values), generator=gen).argsort(dim=1)[:, :q].numpy()
    maxima = values[picks].max(axis=1)
    half = Z99 * maxima.std(ddof=1) / math.sqrt(len(maxima))
    assert abs(maxima.mean() - exact) <= half
    # Edge cases: one draw is the mean; all of them is the maximum.
    assert expected_max_without_replacement(values, 1) == pytest.approx(values.mean())
    assert expected_max_without_replacement(values, len(values)) == pytest.approx(values.max())
    weights = np.full(len(values), 1 / len(values))
    assert expected_max_with_replacement(values, weights, 1) == pytest.approx(values.mean())


def test_rank_and_correlation_on_constructed_tables() -> None:
    scores = np.array([0.3, -1.0, 2.5, 0.9, 0.0, 1.7])
    # Gains equal to the first-order scores: perfect correlation, the optimum ranked first.
    assert spearman(scores, scores) == pytest.approx(1.0)
    assert optimum_rank(scores, scores) == 1
    # Gains in reverse order: correlation -1, the optimum ranked last.
    assert spearman(scores, -scores) == pytest.approx(-1.0)
    assert optimum_rank(scores, -scores) == len(scores)
    # The optimum's rank is 1 + the number of flips the first-order score puts above it.
    gains = np.array([0.0, 0.0, 0.1, 0.0, 5.0, 0.2])
    assert optimum_rank(scores, gains) == 5  # 2.5, 1.7, 0.9, 0.3 rank above its 0.0
    gains = np.array([0.0, 0.0, 0.1, 5.0, 0.0, 0.2])
    assert optimum_rank(scores, gains) == 3  # 2.5, 1.7 rank above its 0.9
    # Two flips share the optimum gain: the better ranked one counts.
    gains = np.array([0.0, 5.0, 0.1, 5.0, 0.0, 0.2])
    assert optimum_rank(scores, gains) == 3
    # Ties take their average rank (Spearman is the Pearson correlation of those).
    x = np.array([1.0, 2.0, 2.0, 3.0])
    y = np.array([1.0, 3.0, 2.0, 4.0])
    rx, ry = np.array([1, 2.5, 2.5, 4]), np.array([1, 3, 2, 4.0])
    assert spearman(x, y) == pytest.approx(float(np.corrcoef(rx, ry)[0, 1]))
    assert spearman(x, np.ones(4)) is None


@pytest.mark.parametrize("top_k", [3, 30])
def test_the_audit_of_a_hotflip_run_bounds_its_first_step_and_writes_json(pythia, top_k) -> None:
    """HotFlip's first flip never beats the optimum; when the optimum is in its top-k it finds
    it (ratio 1); the whole record is JSON."""
    from monolm.attacks.base import AttackRun
    from monolm.attacks.config import AuditSettings
    from monolm.attacks.hotflip import HotFlipSettings
    from monolm.attacks.registry import attack_named

    tokenizer, model = pythia
    rows = model.get_input_embeddings().weight.shape[0]
    vocab = _vocab(rows, [5, 17, 301, 500, 999, 1234])
    objective = Objective(model, NoConstraint(), 0, batch_size=4)
    examples = [_tiny_example()]
    run = AttackRun(objective, tokenizer, examples, vocab, torch.Generator(), None, None, 0, {})  # type: ignore[arg-type]
    settings = HotFlipSettings(audit=AuditSettings(examples=1))
    settings.flip.top_k = top_k
    kind = attack_named("hotflip")
    outcome = kind.run(settings, run)
    summary, audit_rows = audit_attack(kind, settings, run, outcome)
    json.dumps(summary), json.dumps(audit_rows)
    (row,) = audit_rows
    assert row["first_step_gain"] <= row["optimum_gain"] + 1e-5
    assert 0 <= row["random_expected_gain"] <= row["optimum_gain"] + 1e-9
    assert row["random_queries"] == 1 + min(top_k, row["flips"])
    if row["optimum_in_top_k"]:
        assert row["first_step_ratio"] == pytest.approx(1.0, abs=1e-4)
    if top_k >= row["flips"]:
        assert row["optimum_in_top_k"]
    assert summary["examples"] == 1 and summary["optimum_gain"]["n"] == 1
