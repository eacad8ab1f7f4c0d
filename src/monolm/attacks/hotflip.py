"""Iterative token flips: HotFlip (gradient-guided) and its gradient-free control (random).

Both run the same search over the body positions of each example's clean input (the task prefix
and the suffix are never flipped): per step, propose (position, token) candidates for every beam,
re-score every candidate with real batched forward passes, and accept the best only if it raises
the loss. HotFlip proposes the top-k by the first-order score `(e_v - e_i) . g_i` from one
gradient per beam and stops when no candidate raises the loss; the random control proposes
uniformly drawn candidates and keeps drawing until it has spent its query budget (by default the
most HotFlip could spend with the same settings, or exactly what a HotFlip run spent on each
example). Examples are attacked in lockstep so every gradient and scoring call is one batch.

Every example records its budget curve (`curve`): `[queries spent, best loss gain so far]` after
the clean loss and at the end of every step, so it is non-decreasing and ends at `[queries,
gain]`, the example's totals (`gain`: the best loss found minus the clean loss).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from monolm.attacks.base import (
    AttackOutcome,
    AttackRun,
    AttackSettings,
    Search,
)
from monolm.attacks.examples import AttackExample, Packed, pack
from monolm.attacks.first_order import blocked, first_order_scores
from monolm.attacks.objective import Objective
from monolm.attacks.vocabulary import CandidateVocabulary
from monolm.config.typed import at_least
from monolm.errors import UserError
from monolm.run_dir import ATTACK_EXAMPLES

PROPOSERS = ("gradient", "random")


@dataclass
class FlipSettings:
    budget: int = 5  # most tokens flipped per example
    top_k: int = 20  # candidates re-scored per step and beam
    beam: int = 1

    def check(self) -> None:
        at_least("attack.flip", self, ("budget",), 0)
        at_least("attack.flip", self, ("top_k", "beam"), 1)


@dataclass
class HotFlipSettings(AttackSettings):
    """conf/attack/attack/hotflip.yaml."""

    name: str = "hotflip"
    flip: FlipSettings = field(default_factory=FlipSettings)

    def check(self) -> None:
        super().check()
        self.flip.check()


def max_flip_queries(settings: FlipSettings) -> int:
    """The most queries the gradient search can spend on one example (the random control's
    default budget): the clean loss, then per step one gradient and top_k candidates per beam."""
    return 1 + settings.budget * settings.beam * (1 + settings.top_k)


@dataclass
class Beam:
    ids: tuple[int, ...]
    loss: float
    flips: tuple[tuple[int, int, int], ...] = ()  # (position, old token, new token)


@dataclass
class FlipResult:
    example: AttackExample
    clean: Packed
    beams: list[Beam]
    trajectory: list[float]  # loss of the clean input, then after each accepted flip
    budget: int | None  # query budget (random control), None for the gradient search
    queries: int = 0
    gradient_queries: int = 0
    steps: int = 0
    done: bool = False
    positions: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    curve: list[list[float]] = field(default_factory=list)  # [queries, best gain] per step end

    @property
    def best(self) -> Beam:
        return self.beams[0]

    @property
    def gain(self) -> float:
        """The best loss found minus the clean loss (>= 0: only raising flips are kept)."""
        return self.best.loss - self.trajectory[0]

    def mark(self) -> None:
        """A budget-curve point: the queries spent so far and the best gain so far."""
        self.curve.append([self.queries, self.gain])

    @property
    def remaining(self) -> int:
        return (self.budget - self.queries) if self.budget is not None else 1 << 62


def start_results(
    objective: Objective, examples: Sequence[AttackExample], budgets: Sequence[int | None]
) -> list[FlipResult]:
    packed = [pack(example) for example in examples]
    losses = objective.losses([(p.ids, e.target) for p, e in zip(packed, examples, strict=True)])
    results = []
    for example, clean, loss, budget in zip(examples, packed, losses, budgets, strict=True):
        allowed = torch.zeros(len(clean.ids), dtype=torch.bool)
        allowed[clean.body.start : clean.body.stop] = True
        result = FlipResult(
            example, clean, [Beam(clean.ids, loss)], [loss], budget, queries=1, positions=allowed
        )
        result.done = len(clean.body) == 0 or (budget is not None and result.remaining <= 0)
        result.mark()
        results.append(result)
    return results


def flipped(beam: Beam, position: int, token: int) -> Beam:
    ids = list(beam.ids)
    old, ids[position] = ids[position], token
    return Beam(tuple(ids), float("nan"), (*beam.flips, (position, old, token)))


def flip_scores(
    objective: Objective, active: list[FlipResult], vocab: CandidateVocabulary
) -> list[list[torch.Tensor]]:
    """Per result and beam, the first-order score of every (position, row) [positions, rows],
    -inf where a flip is not allowed (a fixed position, a non-candidate row, a no-op), from one
    gradient per beam (counted as one query each)."""
    rows = [(beam.ids, r.example.target) for r in active for beam in r.beams]
    _, grads = objective.gradients(rows)
    embeddings = objective.embeddings
    out, index = [], 0
    for result in active:
        mine = []
        for beam in result.beams:
            ids = torch.tensor(beam.ids)
            mine.append(
                blocked(
                    first_order_scores(grads[index], ids.to(grads[index].device), embeddings),
                    vocab.mask,
                    ids,
                    result.positions,
                )
            )
            index += 1
        result.queries += len(result.beams)
        result.gradient_queries += len(result.beams)
        out.append(mine)
    return out


def _gradient_candidates(
    objective: Objective, active: list[FlipResult], vocab: CandidateVocabulary, top_k: int
) -> list[list[Beam]]:
    proposals = []
    for result, beam_scores in zip(active, flip_scores(objective, active, vocab), strict=True):
        mine: list[Beam] = []
        for beam, scores in zip(result.beams, beam_scores, strict=True):
            values, flat = scores.flatten().topk(min(top_k, scores.numel()))
            for value, position_token in zip(values.tolist(), flat.tolist(), strict=True):
                if value != float("-inf"):
                    position, token = divmod(position_token, scores.shape[1])
                    mine.append(flipped(beam, position, token))
        proposals.append(mine)
    return proposals


def _random_candidates(
    active: list[FlipResult],
    vocab: CandidateVocabulary,
    per_beam: int,
    generator: torch.Generator,
) -> list[list[Beam]]:
    tokens = vocab.ids
    proposals = []
    for result in active:
        positions = result.positions.nonzero().squeeze(1)
        wanted = min(per_beam * len(result.beams), result.remaining)
        mine: list[Beam] = []
        for slot in range(wanted):
            beam = result.beams[slot % len(result.beams)]
            position = int(positions[torch.randint(len(positions), (1,), generator=generator)])
            token = beam.ids[position]
            while token == beam.ids[position]:
                token = int(tokens[torch.randint(len(tokens), (1,), generator=generator)])
            mine.append(flipped(beam, position, token))
        proposals.append(mine)
    return proposals


def accept(
    result: FlipResult,
    candidates: list[Beam],
    beam_width: int,
    stop_if_stuck: bool,
    flip_budget: int,
) -> None:
    unique: dict[tuple[int, ...], Beam] = {}
    for candidate in candidates:
        if candidate.ids not in unique or candidate.loss > unique[candidate.ids].loss:
            unique[candidate.ids] = candidate
    ranked = sorted(unique.values(), key=lambda b: b.loss, reverse=True)
    result.steps += 1
    if ranked and ranked[0].loss > result.best.loss:
        result.beams = ranked[:beam_width]
        result.trajectory.append(result.best.loss)
    elif stop_if_stuck:
        result.done = True
    if len(result.trajectory) - 1 >= flip_budget or result.remaining <= 0:
        result.done = True
    result.mark()


def flip_search(
    objective: Objective,
    examples: Sequence[AttackExample],
    vocab: CandidateVocabulary,
    settings: FlipSettings,
    proposer: str = "gradient",
    budgets: Sequence[int | None] | None = None,
    generator: torch.Generator | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[FlipResult]:
    """Attack every example; returns one result per example, in order."""
    if proposer not in PROPOSERS:
        raise ValueError(f"proposer={proposer!r}: one of {PROPOSERS}")
    if proposer == "random" and budgets is None:
        budgets = [max_flip_queries(settings)] * len(examples)
    if proposer == "gradient":
        budgets = [None] * len(examples)
    generator = generator or torch.Generator().manual_seed(0)
    results = start_results(objective, examples, budgets)
    if settings.budget == 0:
        for result in results:
            result.done = True
    reported = 0
    while True:
        active = [r for r in results if not r.done]
        if progress:
            finished = len(results) - len(active)
            progress(finished - reported)
            reported = finished
        if not active:
            return results
        if proposer == "gradient":
            proposals = _gradient_candidates(objective, active, vocab, settings.top_k)
        else:
            proposals = _random_candidates(active, vocab, settings.top_k + 1, generator)
        rows = [
            (c.ids, r.example.target) for r, cs in zip(active, proposals, strict=True) for c in cs
        ]
        losses = iter(objective.losses(rows))
        for result, candidates in zip(active, proposals, strict=True):
            for candidate in candidates:
                candidate.loss = next(losses)
            result.queries += len(candidates)
            accept(result, candidates, settings.beam, proposer == "gradient", settings.budget)


class HotFlip(Search):
    """`attack=hotflip`: the flip search with gradient-ranked candidates."""

    name = "hotflip"
    settings_type = HotFlipSettings
    settings_key = "flip"
    queries_record = ATTACK_EXAMPLES

    # flip_search's signature: (objective, examples, vocab, settings, proposer, budgets,
    # generator, progress) -> one FlipResult per example
    search_function = staticmethod(flip_search)

    def settings_of(self, settings: Any) -> FlipSettings:
        return settings.flip

    def results(
        self,
        settings: Any,
        run: AttackRun,
        proposer: str,
        budgets: list[int] | None,
        progress: Callable[[int], None],
    ) -> list[FlipResult]:
        """The search itself, one result per example (a subclass swaps `search_function`)."""
        return self.search_function(
            run.objective,
            run.examples,
            run.vocab,
            settings,
            proposer,
            budgets,
            run.generator,
            progress,
        )

    def search(
        self, settings: Any, run: AttackRun, proposer: str, budgets: list[int] | None
    ) -> AttackOutcome:
        examples = run.examples
        with tqdm(
            total=len(examples),
            desc=f"{self.name} ({proposer}): attacking",
            unit="ex",
            dynamic_ncols=True,
            leave=False,
        ) as bar:
            results = self.results(settings, run, proposer, budgets, bar.update)
        decode = run.tokenizer.decode
        per_example = [
            {
                "queries": r.queries,
                "gradient_queries": r.gradient_queries,
                "query_budget": r.budget,
                "steps": r.steps,
                "loss_trajectory": r.trajectory,
                "gain": r.gain,
                "curve": r.curve,
                "flips": [
                    {
                        "position": p,
                        "old": o,
                        "new": n,
                        "old_text": decode([o]),
                        "new_text": decode([n]),
                    }
                    for p, o, n in r.best.flips
                ],
            }
            for r in results
        ]
        clean = [r.clean.ids for r in results]
        attacked = [r.best.ids for r in results]
        changed = [
            sum(a != b for a, b in zip(c, x, strict=True))
            for c, x in zip(clean, attacked, strict=True)
        ]
        info = {
            "settings": asdict(settings),
            "proposer": proposer,
            "queries_total": sum(r.queries for r in results),
            "gradient_queries_total": sum(r.gradient_queries for r in results),
        }
        return AttackOutcome(clean, attacked, changed, per_example, info)

    def recorded_budgets(self, base: Path, settings: Any, run: AttackRun) -> list[int]:
        """Per example, the queries the attack in `base` spent on it (the same examples)."""
        spent = {}
        for line in (base / ATTACK_EXAMPLES).read_text().splitlines():
            row = json.loads(line)
            spent[json.dumps(row["id"])] = int(row["queries"])
        budgets = []
        for example in run.examples:
            key = json.dumps(example.id)
            if key not in spent:
                raise UserError(
                    f"example {example.id!r} was not attacked in attack.queries_from='{base}': "
                    "the control needs the same examples"
                )
            budgets.append(spent[key])
        return budgets
