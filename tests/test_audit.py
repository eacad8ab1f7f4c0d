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
    from monolm.attacks.base import AttackRun, AuditSettings
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


# --- GCG and its random control ---------------------------------------------------------------


def test_the_gcg_random_controls_exact_expectation_matches_its_real_drawing() -> None:
    """Monte Carlo of gcg's own uniform proposer (`_uniform`, seeded): the first q DISTINCT
    flips it draws (its duplicates are scored once, so q queries buy q distinct flips; calls are
    chained until q distinct came) have a best positive gain that averages to
    `expected_max_distinct` within the 99% CI; the laws it does not follow (q draws with
    replacement; q distinct flips uniform over the table) fall outside."""
    from monolm.attacks.audit import expected_max_distinct
    from monolm.attacks.gcg import _uniform

    vocab = _vocab(40, [3, 7, 8])
    ids = (1, 7, 8, 5, 3, 2)  # position 3 holds no candidate: 3 flips there, 2 elsewhere
    body = range(1, 5)
    gains = {
        (1, 3): 0.9,
        (1, 8): -0.5,
        (2, 3): 0.4,
        (2, 7): 1.0,
        (3, 3): 2.0,  # the best flips sit at the position whose flips are drawn least often
        (3, 7): 1.6,
        (3, 8): 1.2,
        (4, 7): -0.2,
        (4, 8): 0.6,
    }
    keys = list(gains)
    positions = np.array([p for p, _ in keys])
    positive = np.maximum(np.array([gains[k] for k in keys]), 0.0)
    weights = draw_weights(positions, len(body))
    q = 3
    exact = expected_max_distinct(positive, weights, q)
    generator = torch.Generator().manual_seed(1)
    result = _result_for(ids, body)
    draws = []
    for _ in range(10000):
        distinct: dict[tuple[int, int], None] = {}
        while len(distinct) < q:
            for beam in _uniform(result, vocab, q, generator):
                ((position, old, new),) = beam.flips
                assert old == ids[position] != new
                distinct.setdefault((position, new), None)
        first = list(distinct)[:q]
        draws.append(max(0.0, *(gains[k] for k in first)))
    mean = float(np.mean(draws))
    half = Z99 * float(np.std(draws, ddof=1)) / math.sqrt(len(draws))
    assert abs(mean - exact) <= half
    with_replacement = expected_max_with_replacement(positive, weights, q)
    uniform_without = expected_max_without_replacement(positive, q)
    assert abs(mean - with_replacement) > half and abs(mean - uniform_without) > half


def test_the_distinct_expectation_is_the_brute_force_sum_over_ordered_draws() -> None:
    """Three weight classes, every ordered sequence of q distinct entries enumerated with its
    successive-sampling probability; one class reduces to uniform without replacement."""
    import itertools

    from monolm.attacks.audit import expected_max_distinct

    values = np.array([0.3, 1.2, 0.0, 0.7, 2.0, 0.1, 0.7])
    weights = np.array([2.0, 2.0, 1.0, 1.0, 3.0, 2.0, 1.0])
    weights = weights / weights.sum()
    for q in range(1, len(values) + 1):
        total = 0.0
        for order in itertools.permutations(range(len(values)), q):
            p, left = 1.0, 1.0
            for i in order:
                p, left = p * weights[i] / left, left - weights[i]
            total += p * values[list(order)].max()
        assert expected_max_distinct(values, weights, q) == pytest.approx(total, rel=1e-12)
    for q in (1, 3, 7):
        assert expected_max_distinct(values, np.ones(7), q) == pytest.approx(
            expected_max_without_replacement(values, q), rel=1e-12
        )


@pytest.mark.parametrize(("attack", "top_k"), [("gcg", 2), ("gcg", 30), ("random", 30)])
def test_the_audit_of_a_gcg_run_bounds_its_first_step_by_the_optimum(pythia, attack, top_k) -> None:
    """GCG's first step (one gradient, B sampled flips) never beats the exhaustive optimum; its
    gain is the table's gain of the flip it accepted; the random control's expectation is taken
    at that step's queries (a control run: 1 + B); the record is JSON."""
    from monolm.attacks.base import AttackRun, AuditSettings
    from monolm.attacks.gcg import GCGSettings
    from monolm.attacks.random_control import RandomSettings
    from monolm.attacks.registry import attack_named

    tokenizer, model = pythia
    rows = model.get_input_embeddings().weight.shape[0]
    vocab = _vocab(rows, [5, 17, 301, 500, 999, 1234])
    objective = Objective(model, NoConstraint(), 0, batch_size=4)
    examples = [_tiny_example()]
    run = AttackRun(
        objective, tokenizer, examples, vocab, torch.Generator().manual_seed(0), None, None, 0, {}
    )  # type: ignore[arg-type]
    settings = (GCGSettings if attack == "gcg" else RandomSettings)(audit=AuditSettings(examples=1))
    if attack == "random":
        settings.mimic = "gcg"
    settings.gcg.top_k, settings.gcg.candidates, settings.gcg.steps = top_k, 8, 2
    kind = attack_named(attack)
    outcome = kind.run(settings, run)
    summary, audit_rows = audit_attack(kind, settings, run, outcome)
    json.dumps(summary), json.dumps(audit_rows)
    (row,) = audit_rows
    assert row["kind"] == "flip" and summary["kind"] == "flip" and summary["search"] == "gcg"
    assert row["first_step_gain"] <= max(row["optimum_gain"], 0.0) + 1e-5  # 0: no flip kept
    assert row["first_step_ratio"] is None or row["first_step_ratio"] <= 1 + 1e-4
    extra = outcome.per_example[0]
    spent = extra["curve"][1][0] - extra["curve"][0][0]
    assert row["first_step_queries"] == spent
    if attack == "gcg":
        assert 2 <= spent <= 1 + 8  # one gradient and the distinct flips of B = 8 draws
        assert row["random_queries"] == spent
    else:
        assert 1 <= spent <= 8 and row["random_queries"] == 1 + 8
    assert 0 <= row["random_expected_gain"] <= max(row["optimum_gain"], 0.0) + 1e-9
    if row["first_step_gain"] > 0:  # the flip it accepted, looked up in the table
        table = flip_table(Objective(model, NoConstraint(), 0, batch_size=4), examples[0], vocab)
        position, new = extra["flips"][0]["position"], extra["flips"][0]["new"]
        (at,) = np.nonzero((table.positions == position) & (table.tokens == new))
        assert row["first_step_gain"] == pytest.approx(float(table.gains[at[0]]), abs=1e-5)
    if attack == "gcg" and top_k >= 6:  # every candidate is in every position's top-k
        assert row["optimum_in_top_k"] and row["optimum_position_rank"] <= 6
        assert row["optimum_sample_probability"] == pytest.approx(1 - (1 - 1 / (4 * 6)) ** 8)
    if attack == "gcg" and not row["optimum_in_top_k"]:
        assert row["optimum_sample_probability"] == 0.0


# --- the trigger search (UAT) -----------------------------------------------------------------


def _optimisation_examples() -> list[AttackExample]:
    return [
        AttackExample(
            id=f"opt{i}",
            prefix=(11,),
            body=tuple(300 + 7 * i + j for j in range(3 + i % 2)),
            suffix=(),
            target=(400 + i, 401, 402),
            reference="",
            max_input_tokens=64,
            keep="tail",
        )
        for i in range(5)
    ]


@pytest.mark.parametrize("top_k", [2, 30])
def test_the_uat_first_position_optimum_is_the_brute_force_optimum(pythia, top_k) -> None:
    """Per restart: every candidate at trigger position 0 (the rest initial) on the restart's
    first batch, scored as the search scores a trigger (mean loss over the batch), equals a
    one-row-at-a-time loop with an independent objective; the search's first step at position 0
    never beats it, and finds it when it scores every candidate there."""
    from monolm.attacks.audit import audit_restarts
    from monolm.attacks.triggers import TriggerSettings, trigger_search

    _, model = pythia
    rows = model.get_input_embeddings().weight.shape[0]
    candidates = [5, 17, 301, 500, 999, 1234]
    vocab = _vocab(rows, candidates)
    settings = TriggerSettings(length=3, top_k=top_k, restarts=2, steps=1, batch_size=3)
    optimization = _optimisation_examples()
    objective = Objective(model, NoConstraint(), 0, batch_size=4)
    restarts = trigger_search(
        objective, optimization, vocab, settings, (17, 17, 17), "gradient", None,
        torch.Generator().manual_seed(3),
    )  # fmt: skip
    audit_rows = audit_restarts(objective, optimization, restarts, settings, vocab, 5)
    json.dumps(audit_rows)
    check = Objective(model, NoConstraint(), 0, batch_size=1)

    def batch_loss(batch: list[AttackExample], trigger: tuple[int, ...]) -> float:
        losses = [check.losses([(pack(e, trigger).ids, e.target)])[0] for e in batch]
        return sum(losses) / len(losses)

    for restart, row in zip(restarts, audit_rows, strict=True):
        assert row["kind"] == "trigger" and row["restart"] == restart.index
        assert len(restart.first_batch) == 3 and row["batch"] == restart.first_batch
        batch = [optimization[i] for i in restart.first_batch]
        initial = restart.initial
        base = batch_loss(batch, initial)
        brute = {
            v: batch_loss(batch, (v, *initial[1:])) - base for v in candidates if v != initial[0]
        }
        assert row["candidates"] == len(brute) == 5
        assert row["initial_loss"] == pytest.approx(base, abs=1e-5)
        assert row["optimum_gain"] == pytest.approx(max(brute.values()), abs=1e-5)
        assert row["optimum"]["new"] == max(brute, key=brute.get)
        token = restart.first_position_token
        expected_first = brute[token] if token != initial[0] else 0.0
        assert row["first_step_gain"] == pytest.approx(expected_first, abs=1e-5)
        # keeping the initial token (gain 0) competes: the bound is the optimum or 0
        assert row["first_step_gain"] <= max(row["optimum_gain"], 0.0) + 1e-5
        assert row["random_queries"] == min(top_k, 5) == restart.first_position_scored
        clipped = np.maximum(np.array(list(brute.values())), 0.0)
        assert row["random_expected_gain"] == pytest.approx(
            expected_max_without_replacement(clipped, min(top_k, 5)), abs=1e-5
        )
        if top_k >= 5:  # it scored every candidate there: its first step finds the optimum
            assert row["first_step_gain"] == pytest.approx(max(row["optimum_gain"], 0.0), abs=1e-5)


def test_the_uat_random_controls_position_candidates_are_a_uniform_subset() -> None:
    """The trigger control's candidates at a position (triggers.py `_random_candidates`) are
    min(top_k, V - 1) distinct tokens other than the current one, each equally likely: the law
    `expected_max_without_replacement` assumes."""
    from monolm.attacks.triggers import _random_candidates

    tokens = [3, 7, 8, 9, 12]
    vocab = _vocab(40, tokens)
    generator = torch.Generator().manual_seed(0)
    counts = dict.fromkeys((3, 8, 9, 12), 0)
    for _ in range(4000):
        first, *_ = _random_candidates((7, 3), 2, vocab, generator)
        assert len(first) == len(set(first)) == 2 and 7 not in first
        for token in first:
            counts[token] += 1
    # each of the 4 others is in the pair with probability 1/2: 2000 of 4000, sd about 32
    assert all(abs(c - 2000) < 4 * 32 for c in counts.values())


def test_the_audit_covers_hotflip_gcg_uat_and_their_random_controls() -> None:
    from monolm.attacks.audit import audited_search, check_audit
    from monolm.attacks.base import AuditSettings
    from monolm.attacks.registry import attack_named

    for name, mimic in [
        ("hotflip", None),
        ("gcg", None),
        ("uat", None),
        ("random", "hotflip"),
        ("random", "gcg"),
        ("random", "uat"),
    ]:
        kind = attack_named(name)
        settings = kind.settings_type(audit=AuditSettings(examples=2))
        if mimic:
            settings.mimic = mimic
        check_audit(kind, settings)
        assert audited_search(kind, settings)[0] == (mimic or name)


def test_the_settings_grid_is_what_hotflip_and_gcgs_own_samplers_get_from_the_table() -> None:
    """`search_grid`: HotFlip's entry is the best positive gain among the top_k flips by
    first-order score (brute force); GCG's entry is what its own sampler (`gcg._sampled`, seeded)
    gets on average from B draws among each position's top_k, within the CI."""
    from monolm.attacks.audit import FlipTable, search_grid
    from monolm.attacks.gcg import GCGSearchSettings, _sampled

    ids = (1, 7, 8, 5, 3, 2)
    body = range(1, 5)
    flips = {  # (position, token): (first-order score, true gain)
        (1, 3): (0.1, 0.9),
        (1, 8): (0.5, -0.5),
        (2, 3): (0.3, 0.4),
        (2, 7): (0.2, 1.0),
        (3, 3): (-1.0, 2.0),  # the optimum ranks last at its position
        (3, 7): (0.9, 1.6),
        (3, 8): (0.0, 1.2),
        (4, 7): (2.0, -0.2),  # the first-order best lowers the loss
        (4, 8): (0.4, 0.6),
    }
    keys = list(flips)
    table = FlipTable(
        ids,
        0.0,
        np.array([p for p, _ in keys]),
        np.array([t for _, t in keys]),
        np.array([flips[k][0] for k in keys], dtype=np.float64),
        np.array([flips[k][1] for k in keys], dtype=np.float64),
        len(body),
    )
    top_ks, candidates = (1, 2, 3), (1, 2, 4)
    grid = search_grid(table, top_ks, candidates)
    by_score = sorted(keys, key=lambda k: -flips[k][0])
    for i, k in enumerate(top_ks):
        best = max(0.0, *(flips[key][1] for key in by_score[:k]))
        assert grid["hotflip"][i] == pytest.approx(best / 2.0)
    scores = torch.full((len(ids), 40), float("-inf"))
    for (position, token), (score, _) in flips.items():
        scores[position, token] = score
    generator = torch.Generator().manual_seed(3)
    result = _result_for(ids, body)
    for i, k in enumerate(top_ks):
        for j, b in enumerate(candidates):
            settings = GCGSearchSettings(top_k=k, candidates=b)
            draws = []
            for _ in range(4000):
                beams = _sampled(result, scores, settings, generator)
                gains = (flips[beam.flips[0][0], beam.flips[0][2]][1] for beam in beams)
                draws.append(max(0.0, *gains))
            mean = float(np.mean(draws)) / 2.0
            # nine cells: each at 99.9% (Bonferroni), so the test as a whole at 99%
            half = 3.29 * float(np.std(draws, ddof=1)) / 2.0 / math.sqrt(len(draws)) + 1e-12
            assert abs(mean - grid["gcg"][i][j]) <= half, (k, b)
    assert grid["gcg"][0][0] < grid["gcg"][2][2]  # more tokens and more draws find more
