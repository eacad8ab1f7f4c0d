"""`attack=gcg`: a GCG-style candidate search (Zou et al. 2023) over token flips.

The same positions, candidate vocabulary and first-order score as HotFlip (`flip_scores`: the
task prefix and the suffix are never flipped; special, padded and non-round-trip rows are never
inserted; `(e_v - e_i) . g_i` from one embedding gradient). Per step and example:

1. one gradient gives every allowed (position, token) its first-order score;
2. the top-k tokens per allowed position are kept;
3. `candidates` (B) single-token flips are sampled: a position uniformly among the allowed ones,
   then a token uniformly among that position's top-k (drawn from the attack's generator);
   duplicates are scored once. When B covers the pool (B >= the positions' top-k flips, e.g.
   16 positions x top_k 16 = 256), every flip of the pool is scored instead: no sampling;
4. all of them are re-scored in one batched forward pass through the objective, and the best is
   kept only if it raises the loss.

It stops after `budget` accepted flips or `steps` steps (a step that finds nothing better does not
stop it: the next sample differs). Queries are exact: the clean loss, one per gradient, one per
candidate scored. The random control (`attack=random attack.mimic=gcg`) samples as many uniform
flips per step as a GCG step scores (B, or the pool's size when B covers it; any allowed
position, any candidate token) instead, until it has spent the queries the gradient search spent
on that example (`attack.queries_from`) or could spend at most. (Drawing B per step while GCG
could score only its pool would give the control fewer, larger steps: fewer accepted flips for
the same queries, an unfairly weak control.)
Per-example records are HotFlip's (flips, queries, `gain`, the budget `curve`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from monolm.attacks.base import AttackSettings
from monolm.attacks.examples import AttackExample
from monolm.attacks.hotflip import (
    PROPOSERS,
    Beam,
    FlipResult,
    HotFlip,
    accept,
    flip_scores,
    flipped,
    start_results,
)
from monolm.attacks.objective import Objective
from monolm.attacks.vocabulary import CandidateVocabulary
from monolm.config.typed import at_least
from monolm.run_dir import ATTACK_EXAMPLES


@dataclass
class GCGSearchSettings:
    budget: int = 5  # most flips accepted per example
    steps: int = 20  # most steps (one gradient and one batch of candidates each)
    top_k: int = 16  # tokens kept per allowed position by first-order score (the audit's choice)
    # B, flips sampled and re-scored per step (all of the pool, positions x top_k, when B covers
    # it): 512 keeps a GPU busy on t5_small / Pythia-size models.
    candidates: int = 512

    def check(self) -> None:
        at_least("attack.gcg", self, ("budget",), 0)
        at_least("attack.gcg", self, ("steps", "top_k", "candidates"), 1)


@dataclass
class GCGSettings(AttackSettings):
    """conf/attack/attack/gcg.yaml."""

    name: str = "gcg"
    gcg: GCGSearchSettings = field(default_factory=GCGSearchSettings)

    def check(self) -> None:
        super().check()
        self.gcg.check()


def max_gcg_queries(settings: GCGSearchSettings) -> int:
    """The most queries the gradient search can spend on one example (the random control's
    default budget): the clean loss, then per step one gradient and B candidates."""
    return 1 + settings.steps * (1 + settings.candidates)


def _unique(beams: list[Beam]) -> list[Beam]:
    return list({beam.ids: beam for beam in beams}.values())


def _sampled(
    result: FlipResult,
    scores: torch.Tensor,
    settings: GCGSearchSettings,
    generator: torch.Generator,
) -> list[Beam]:
    """B flips: a position uniformly among the allowed ones, a token uniformly among its top-k."""
    positions = result.positions.nonzero().squeeze(1)
    top = scores[positions.to(scores.device)].topk(min(settings.top_k, scores.shape[1]), dim=1)
    values, tokens = top.values.cpu(), top.indices.cpu()
    usable = (values != float("-inf")).sum(1)  # finite scores come first in each row
    keep = usable > 0
    positions, tokens, usable = positions[keep], tokens[keep], usable[keep]
    if len(positions) == 0:
        return []
    beam = result.best
    if settings.candidates >= int(usable.sum()):  # B covers the pool: score all of it
        return [
            flipped(beam, int(position), int(tokens[row, rank]))
            for row, position in enumerate(positions.tolist())
            for rank in range(int(usable[row]))
        ]
    which = torch.randint(len(positions), (settings.candidates,), generator=generator)
    rank = (torch.rand(settings.candidates, generator=generator) * usable[which]).long()
    return _unique(
        [
            flipped(beam, int(positions[w]), int(tokens[w, r]))
            for w, r in zip(which.tolist(), rank.tolist(), strict=True)
        ]
    )


def pool_size(result: FlipResult, vocab: CandidateVocabulary, top_k: int) -> int:
    """How many flips a GCG step chooses among: per allowed position, min(top_k, the candidate
    tokens other than the one there)."""
    ids = result.best.ids
    tokens = len(vocab.ids)
    return sum(
        min(top_k, tokens - int(bool(vocab.mask[ids[p]])))
        for p in result.positions.nonzero().squeeze(1).tolist()
    )


def _uniform(
    result: FlipResult, vocab: CandidateVocabulary, wanted: int, generator: torch.Generator
) -> list[Beam]:
    """`wanted` flips: a position uniformly among the allowed ones, a token uniformly among the
    candidate vocabulary (never the current token)."""
    positions = result.positions.nonzero().squeeze(1)
    tokens = vocab.ids
    beam = result.best
    out = []
    for _ in range(wanted):
        position = int(positions[torch.randint(len(positions), (1,), generator=generator)])
        token = beam.ids[position]
        while token == beam.ids[position]:
            token = int(tokens[torch.randint(len(tokens), (1,), generator=generator)])
        out.append(flipped(beam, position, token))
    return _unique(out)


def per_step(result: FlipResult, vocab: CandidateVocabulary, settings: GCGSearchSettings) -> int:
    """The control's draws per step: what a GCG step can score (B, or its whole pool when B
    covers it), within the queries left."""
    return min(settings.candidates, pool_size(result, vocab, settings.top_k), result.remaining)


def gcg_search(
    objective: Objective,
    examples: Sequence[AttackExample],
    vocab: CandidateVocabulary,
    settings: GCGSearchSettings,
    proposer: str = "gradient",
    budgets: Sequence[int | None] | None = None,
    generator: torch.Generator | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[FlipResult]:
    """Attack every example; returns one result per example, in order (examples in lockstep:
    one gradient call and one scoring call per step for all of them)."""
    if proposer not in PROPOSERS:
        raise ValueError(f"proposer={proposer!r}: one of {PROPOSERS}")
    if proposer == "random" and budgets is None:
        budgets = [max_gcg_queries(settings)] * len(examples)
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
            scores = flip_scores(objective, active, vocab)
            proposals = [
                _sampled(r, s[0], settings, generator) for r, s in zip(active, scores, strict=True)
            ]
        else:
            proposals = [
                _uniform(r, vocab, per_step(r, vocab, settings), generator) for r in active
            ]
        rows = [
            (c.ids, r.example.target) for r, cs in zip(active, proposals, strict=True) for c in cs
        ]
        losses = iter(objective.losses(rows))
        for result, candidates in zip(active, proposals, strict=True):
            for candidate in candidates:
                candidate.loss = next(losses)
            result.queries += len(candidates)
            accept(result, candidates, 1, False, settings.budget)
            if proposer == "gradient" and result.steps >= settings.steps:
                result.done = True


class GCG(HotFlip):
    """`attack=gcg`: HotFlip's flips, candidates sampled from the top-k per position."""

    name = "gcg"
    settings_type = GCGSettings
    settings_key = "gcg"
    queries_record = ATTACK_EXAMPLES
    search_function = staticmethod(gcg_search)

    def settings_of(self, settings: Any) -> GCGSearchSettings:
        return settings.gcg
