"""Universal adversarial triggers (Wallace et al. 2019) and their gradient-free control.

One trigger of L tokens is optimised on an optimisation split and evaluated on a separate split.
It is inserted at a fixed place after truncation (`pack`, which asserts it is present in every
packed input). Per batch of optimisation examples: the embedding gradient at the trigger positions
averaged over the batch ranks every candidate token per position by the first-order score; the
top-k per position are re-scored with forward passes on that batch, position by position left to
right, keeping a beam of the best triggers (the current trigger competes too). Random restarts
start from random candidate tokens; the restart with the highest loss over all optimisation
examples wins. The random control runs the same search with candidates drawn uniformly and the
same number of queries.

Budget curves: the clean loss of every optimisation example is scored once per search (counted
apart from the restarts, as `clean_queries`, so the restarts' budgets are unchanged); each
restart records `curve`, `[queries spent in the restart, best batch gain so far]` at the end of
every step, the batch gain being the step's batch loss with the trigger minus those examples'
clean loss (a running maximum: non-decreasing), ending at the restart's queries and `best_gain`;
`optimization_gain` is the final trigger's gain over every optimisation example, which can be
lower than the best batch estimate.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from monolm.attacks.base import (
    AttackOutcome,
    AttackPlan,
    AttackRun,
    AttackSettings,
    Search,
)
from monolm.attacks.examples import POSITIONS, AttackExample, build_examples, pack
from monolm.attacks.first_order import blocked, first_order_scores
from monolm.attacks.objective import Objective
from monolm.attacks.vocabulary import CandidateVocabulary, round_trip_failures, special_ids
from monolm.config.typed import at_least
from monolm.data.sources import split_rows
from monolm.errors import UserError
from monolm.run_dir import TRIGGERS_RECORD


@dataclass
class TriggerSettings:
    length: int = 6
    position: str = "start"  # start: right after the task prefix; end: right before the suffix
    top_k: int = 100  # candidates re-scored per trigger position
    beam: int = 1
    restarts: int = 10
    steps: int = 16  # optimisation batches per restart
    batch_size: int = 16  # optimisation examples per batch
    init: str = " the"  # restart 0 starts from this token repeated (must be one candidate token)
    optimization_split: str | None = None  # null: the dataset's train split
    optimization_examples: int = 256

    def check(self) -> None:
        at_least(
            "attack.trigger",
            self,
            ("length", "top_k", "beam", "restarts", "steps", "batch_size", "optimization_examples"),
            1,
        )
        if self.position not in POSITIONS:
            raise UserError(
                f"attack.trigger.position={self.position}: one of {', '.join(POSITIONS)}"
            )


@dataclass
class UATSettings(AttackSettings):
    """conf/attack/attack/uat.yaml."""

    name: str = "uat"
    trigger: TriggerSettings = field(default_factory=TriggerSettings)

    def check(self) -> None:
        super().check()
        self.trigger.check()


def max_trigger_queries(settings: TriggerSettings, optimization_examples: int) -> int:
    """The most queries the gradient search can spend on one restart (the random control's
    default budget): per step a gradient on the batch and, per position, top_k candidates per
    beam on the batch; then the final trigger on every optimisation example."""
    batch = min(settings.batch_size, optimization_examples)
    per_step = batch * (1 + settings.length * settings.beam * settings.top_k)
    return settings.steps * per_step + optimization_examples


@dataclass
class Restart:
    index: int
    initial: tuple[int, ...]
    trigger: tuple[int, ...] = ()
    optimization_loss: float = float("nan")  # mean loss over every optimisation example
    batch_losses: list[float] = field(default_factory=list)  # batch loss after each step
    steps: int = 0
    queries: int = 0
    gradient_queries: int = 0
    curve: list[list[float]] = field(default_factory=list)  # [queries, best batch gain] per step
    best_gain: float = float("nan")  # the best batch gain (the curve's last value)
    optimization_gain: float = float("nan")  # optimization_loss - the clean mean loss
    # The first step, for the audit (attacks/audit.py): its batch (indices into the optimisation
    # examples), the token at trigger position 0 after that step's position-0 stage (the initial
    # one if no candidate beat it) and the candidates that stage scored.
    first_batch: list[int] = field(default_factory=list)
    first_position_token: int | None = None
    first_position_scored: int = 0


def _rows(
    examples: Sequence[AttackExample], trigger: Sequence[int], position: str
) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    return [(pack(e, trigger, position).ids, e.target) for e in examples]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _scored(
    objective: Objective,
    batch: Sequence[AttackExample],
    triggers: list[tuple[int, ...]],
    position: str,
) -> list[float]:
    """Mean batch loss of each trigger (one batched scoring call for all of them)."""
    rows = [row for trigger in triggers for row in _rows(batch, trigger, position)]
    losses = objective.losses(rows)
    n = len(batch)
    return [_mean(losses[i * n : (i + 1) * n]) for i in range(len(triggers))]


def trigger_scores(
    objective: Objective,
    batch: Sequence[AttackExample],
    trigger: tuple[int, ...],
    settings: TriggerSettings,
    vocab: CandidateVocabulary,
) -> tuple[float, torch.Tensor]:
    """The batch's mean loss and the first-order score [length, rows] of every token at every
    trigger position from the embedding gradient averaged over the batch (-inf: not a candidate
    or the token already there); one gradient pass over the batch."""
    rows = _rows(batch, trigger, settings.position)
    losses, grads = objective.gradients(rows)
    spans = [pack(e, trigger, settings.position).trigger for e in batch]
    averaged = torch.stack(
        [g[span.start : span.stop] for g, span in zip(grads, spans, strict=True)]
    ).mean(0)
    ids = torch.tensor(trigger, device=averaged.device)
    return _mean(losses), blocked(
        first_order_scores(averaged, ids, objective.embeddings), vocab.mask, ids
    )


def _gradient_candidates(
    objective: Objective,
    batch: Sequence[AttackExample],
    trigger: tuple[int, ...],
    settings: TriggerSettings,
    vocab: CandidateVocabulary,
) -> tuple[float, list[list[int]]]:
    loss, scores = trigger_scores(objective, batch, trigger, settings, vocab)
    top = scores.topk(min(settings.top_k, scores.shape[1]), dim=1)
    candidates = [
        [t for t, v in zip(row_ids, row_values, strict=True) if v != float("-inf")]
        for row_ids, row_values in zip(top.indices.tolist(), top.values.tolist(), strict=True)
    ]
    return loss, candidates


def _random_candidates(
    trigger: tuple[int, ...], top_k: int, vocab: CandidateVocabulary, generator: torch.Generator
) -> list[list[int]]:
    tokens = vocab.ids
    out = []
    for current in trigger:
        picks = tokens[torch.randperm(len(tokens), generator=generator)[: top_k + 1]].tolist()
        out.append([t for t in picks if t != current][:top_k])
    return out


def _beam_over_positions(
    objective: Objective,
    batch: Sequence[AttackExample],
    trigger: tuple[int, ...],
    loss: float,
    candidates: list[list[int]],
    settings: TriggerSettings,
    restart: Restart,
    budget: int | None,
) -> tuple[tuple[int, ...], float]:
    beams = [(trigger, loss)]
    for position, tokens in enumerate(candidates):
        expansions = list(
            dict.fromkeys(
                (*t[:position], v, *t[position + 1 :])
                for t, _ in beams
                for v in tokens
                if v != t[position]
            )
        )
        if budget is not None:
            expansions = expansions[: max(0, (budget - restart.queries) // len(batch))]
        if expansions:
            losses = _scored(objective, batch, expansions, settings.position)
            restart.queries += len(expansions) * len(batch)
            pool = dict(beams)
            pool.update(zip(expansions, losses, strict=True))
            beams = sorted(pool.items(), key=lambda item: item[1], reverse=True)[: settings.beam]
        if position == 0 and restart.steps == 0:  # the first step's position-0 stage
            restart.first_position_token = beams[0][0][0]
            restart.first_position_scored = len(expansions)
    return beams[0]


def _one_restart(
    objective: Objective,
    optimization: Sequence[AttackExample],
    initial: tuple[int, ...],
    settings: TriggerSettings,
    vocab: CandidateVocabulary,
    proposer: str,
    index: int,
    budget: int | None,
    generator: torch.Generator,
    progress: Callable[[int], None] | None,
    clean: Sequence[float],
) -> Restart:
    restart = Restart(index, initial)
    best_gain = float("-inf")
    trigger = initial
    batch_size = min(settings.batch_size, len(optimization))
    final_cost = len(optimization)
    order: list[int] = []
    while True:
        if budget is None and restart.steps >= settings.steps:
            break
        if budget is not None and budget - restart.queries - final_cost < 2 * batch_size:
            break  # not enough left for a loss and one candidate on a batch
        if len(order) < batch_size:
            order += torch.randperm(len(optimization), generator=generator).tolist()
        picked = order[:batch_size]
        batch = [optimization[i] for i in picked]
        if restart.steps == 0:
            restart.first_batch = list(picked)
        order = order[batch_size:]
        if proposer == "gradient":
            loss, candidates = _gradient_candidates(objective, batch, trigger, settings, vocab)
            restart.gradient_queries += len(batch)
        else:
            loss = _scored(objective, batch, [trigger], settings.position)[0]
            candidates = _random_candidates(trigger, settings.top_k, vocab, generator)
        restart.queries += len(batch)
        limit = None if budget is None else budget - final_cost
        trigger, loss = _beam_over_positions(
            objective, batch, trigger, loss, candidates, settings, restart, limit
        )
        restart.batch_losses.append(loss)
        restart.steps += 1
        best_gain = max(best_gain, loss - _mean([clean[i] for i in picked]))
        restart.curve.append([restart.queries, best_gain])
        if progress:
            progress(1)
    restart.trigger = trigger
    restart.optimization_loss = _mean(
        objective.losses(_rows(optimization, trigger, settings.position))
    )
    restart.queries += final_cost
    restart.optimization_gain = restart.optimization_loss - _mean(clean)
    restart.best_gain = best_gain if restart.curve else restart.optimization_gain
    restart.curve.append([restart.queries, restart.best_gain])
    return restart


def trigger_search(
    objective: Objective,
    optimization: Sequence[AttackExample],
    vocab: CandidateVocabulary,
    settings: TriggerSettings,
    initial: tuple[int, ...],
    proposer: str = "gradient",
    budgets: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Restart]:
    """Every restart's result; restart 0 starts from `initial`, the others from random tokens.
    `budgets` (random control only) caps each restart's queries; by default the most the
    gradient search could spend."""
    if proposer == "random" and budgets is None:
        budgets = [max_trigger_queries(settings, len(optimization))] * settings.restarts
    generator = generator or torch.Generator().manual_seed(0)
    clean = objective.losses(_rows(optimization, (), settings.position))
    restarts = []
    for index in range(settings.restarts):
        start = (
            initial
            if index == 0
            else tuple(
                vocab.ids[
                    torch.randint(len(vocab.ids), (settings.length,), generator=generator)
                ].tolist()
            )
        )
        budget = budgets[index] if proposer == "random" and budgets is not None else None
        restarts.append(
            _one_restart(
                objective,
                optimization,
                start,
                settings,
                vocab,
                proposer,
                index,
                budget,
                generator,
                progress,
                clean,
            )
        )
    return restarts


def best_restart(restarts: Sequence[Restart]) -> Restart:
    return max(restarts, key=lambda r: r.optimization_loss)


def trigger_init_id(tokenizer: PreTrainedTokenizerBase, init: str) -> int:
    """The id of `attack.trigger.init`, which must be one candidate token."""
    ids = tokenizer(init, add_special_tokens=False)["input_ids"]
    if len(ids) != 1 or ids[0] in special_ids(tokenizer) or round_trip_failures(tokenizer, ids):
        raise UserError(
            f"attack.trigger.init={init!r} is {len(ids)} tokens {ids}: it must be one candidate "
            "token (not special, surviving a decode/encode round trip), e.g. ' the'"
        )
    return ids[0]


class UniversalTrigger(Search):
    """`attack=uat`: one trigger for all inputs, optimised on a separate split."""

    name = "uat"
    settings_type = UATSettings
    settings_key = "trigger"
    queries_record = TRIGGERS_RECORD

    def settings_of(self, settings: Any) -> TriggerSettings:
        return settings.trigger

    def check(self, settings: AttackSettings, plan: AttackPlan) -> None:
        trigger = self.settings_of(settings)
        optimization = trigger.optimization_split or plan.dataset.train_split
        if optimization == plan.split:
            raise UserError(
                f"split={plan.split} is also attack.trigger.optimization_split: a trigger must be "
                "evaluated on examples it was not optimised on"
            )

    def check_tokenizer(self, settings: AttackSettings, tokenizer: PreTrainedTokenizerBase) -> None:
        trigger_init_id(tokenizer, self.settings_of(settings).init)

    def search(
        self, settings: TriggerSettings, run: AttackRun, proposer: str, budgets: list[int] | None
    ) -> AttackOutcome:
        plan, tokenizer = run.plan, run.tokenizer
        rows = split_rows(
            plan.dataset,
            settings.optimization_split,
            run.data_seed,
            settings.optimization_examples,
            which="train",
        )
        optimization, _ = build_examples(
            rows, plan.dataset, tokenizer, plan.family, run.example_settings
        )
        return self.search_on(settings, run, optimization, proposer, budgets)

    def search_on(
        self,
        settings: TriggerSettings,
        run: AttackRun,
        optimization: list[AttackExample],
        proposer: str,
        budgets: list[int] | None,
    ) -> AttackOutcome:
        """The search on these optimisation examples (`search` builds them from the split)."""
        plan, tokenizer = run.plan, run.tokenizer
        initial = (trigger_init_id(tokenizer, settings.init),) * settings.length
        total = settings.restarts * settings.steps if proposer == "gradient" else None
        with tqdm(
            total=total,
            desc=f"{self.name} ({proposer}): optimising the trigger",
            unit="batch",
            dynamic_ncols=True,
            leave=False,
        ) as bar:
            restarts = trigger_search(
                run.objective,
                optimization,
                run.vocab,
                settings,
                initial,
                proposer,
                budgets,
                run.generator,
                bar.update,
            )
        best = best_restart(restarts)
        record = {
            "best_restart": best.index,
            "trigger_ids": list(best.trigger),
            "trigger_text": tokenizer.decode(best.trigger),
            "position": settings.position,
            "restarts": [
                {
                    **asdict(r),
                    "trigger": list(r.trigger),
                    "initial": list(r.initial),
                    "trigger_text": tokenizer.decode(r.trigger),
                    "initial_text": tokenizer.decode(r.initial),
                }
                for r in restarts
            ],
        }
        examples = run.examples
        info = {
            "settings": asdict(settings),
            "proposer": proposer,
            "optimization_examples": len(optimization),
            "optimization_split": settings.optimization_split or plan.dataset.train_split,
            "trigger_ids": list(best.trigger),
            "trigger_text": record["trigger_text"],
            "best_restart": best.index,
            "queries_total": sum(r.queries for r in restarts),
            "queries_per_restart": [r.queries for r in restarts],
            "clean_queries": len(optimization),  # the clean losses the curves' gains start from
            "curves": [r.curve for r in restarts],  # per restart (attack.py: budget_curve)
            "gradient_queries_total": sum(r.gradient_queries for r in restarts),
            "triggers_file": TRIGGERS_RECORD,
        }
        return AttackOutcome(
            clean=[pack(e).ids for e in examples],
            attacked=[pack(e, best.trigger, settings.position).ids for e in examples],
            tokens_changed=[settings.length] * len(examples),
            per_example=[{"trigger_ids": list(best.trigger)} for _ in examples],
            info=info,
            records={TRIGGERS_RECORD: record},
            memory={"optimization": optimization, "restarts": restarts},
        )

    def recorded_budgets(self, base: Path, settings: TriggerSettings, run: AttackRun) -> list[int]:
        """Per restart, the queries the attack in `base` spent on it."""
        recorded = json.loads((base / TRIGGERS_RECORD).read_text())["restarts"]
        if len(recorded) != settings.restarts:
            raise UserError(
                f"attack.queries_from='{base}' ran {len(recorded)} restarts, this control "
                f"{settings.restarts}: set attack.trigger.restarts={len(recorded)}"
            )
        return [int(r["queries"]) for r in recorded]
