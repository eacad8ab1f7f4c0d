"""What a study is (conf/study/<option>.yaml), as typed settings: arms x seeds x subjects, and
the stages run on each (hyper-parameter tuning, evaluation, attacks with their controls,
transfer, simple baselines, representation similarity)."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from monolm.errors import UserError, did_you_mean

ATTACK_OPTION = "attack="  # the override that picks an attack.py option
SELECT_MODES = ("min", "max")
# What a trial's training budget is: tuning.overrides sets it, the same for every arm and trial.
BUDGET_KEYS = ("trainer.max_steps", "trainer.max_epochs")
MAX_TRIAL_NAME = 200  # a trial's dir name (file systems allow 255 bytes)
# What a subject's arms are measured beside (study.baselines): the majority label of the train
# split (QA: always abstain), uniformly random labels, and the subject's base model untrained.
SIMPLE_BASELINES = ("majority", "uniform", "zero_shot")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


@dataclass
class AttackSpec:
    """One attack of the study: attack.py overrides (an `attack=<option>` among them); its
    matched random control (`attack=random attack.mimic=<option>`, the same settings and the
    queries it spent) and its transfer across the arms of a seed are on unless switched off."""

    overrides: list[str] = field(default_factory=list)
    control: bool = True
    transfer: bool = True

    def option(self, name: str) -> str:
        """The attack.py option these overrides pick (the study's key when none does)."""
        picked = [o[len(ATTACK_OPTION) :] for o in self.overrides if o.startswith(ATTACK_OPTION)]
        return picked[-1] if picked else name

    def settings_overrides(self) -> list[str]:
        """The overrides without the option: what the control shares with the attack."""
        return [o for o in self.overrides if not o.startswith(ATTACK_OPTION)]


def hydra_value(value: Any) -> str:
    """A grid value as an override's right-hand side (`true`, `null`, `0.0001`, `lora`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


@dataclass(frozen=True)
class Trial:
    """One point of an arm's grid: its dir name (readable, filesystem-safe) and the overrides it
    adds, e.g. `optim.lr_0.0001__adapter.r_8` for `optim.lr=0.0001 adapter.r=8`."""

    name: str
    overrides: tuple[str, ...]


@dataclass
class TuningSettings:
    """Hyper-parameter tuning before the seeds: per arm a grid of train overrides (the product of
    each key's values). Every trial trains with `seed` and `overrides` (the trials' budget, the
    same for every arm); the trial with the best `select` (a key of its metrics.json "metrics",
    computed on the split held out from train) by `mode` is what the arm's seeds train with."""

    seed: int = 0
    select: str = "val/loss"
    mode: str = "min"
    overrides: list[str] = field(default_factory=list)
    grids: dict[str, dict[str, list[Any]]] = field(default_factory=dict)

    def trials(self, arm: str) -> list[Trial]:
        """The arm's grid points in grid order (the last key varies fastest)."""
        grid = self.grids[arm]
        out = []
        for values in itertools.product(*grid.values()):
            pairs = [(key, hydra_value(value)) for key, value in zip(grid, values, strict=True)]
            name = "__".join(f"{key.lstrip('+')}_{value}" for key, value in pairs)
            out.append(Trial(_UNSAFE.sub("-", name), tuple(f"{k}={v}" for k, v in pairs)))
        return out

    def check(self, arms: list[str]) -> None:
        where = "study.tuning"
        if self.mode not in SELECT_MODES:
            raise UserError(f"{where}.mode={self.mode}: one of {', '.join(SELECT_MODES)}")
        if not self.select:
            raise UserError(
                f"{where}.select is empty: name a key of the trials' metrics.json 'metrics' "
                "(e.g. val/loss)"
            )
        if not self.grids:
            raise UserError(f"{where}.grids is empty: give every arm a grid, or study.tuning=null")
        for arm in self.grids:
            if arm not in arms:
                raise UserError(f"{where}.grids.{arm}: no such arm; {did_you_mean(arm, arms)}")
        untuned = [arm for arm in arms if arm not in self.grids]
        if untuned:
            raise UserError(
                f"{where}.grids has no grid for arm {', '.join(untuned)}: when one arm is tuned "
                "every arm is (an equal tuning budget)"
            )
        for arm, grid in self.grids.items():
            _check_grid(f"{where}.grids.{arm}", grid)
            names = [trial.name for trial in self.trials(arm)]
            for name in names:
                if len(name) > MAX_TRIAL_NAME:
                    raise UserError(
                        f"{where}.grids.{arm}: trial dir name '{name[:40]}...' has {len(name)} "
                        f"characters (at most {MAX_TRIAL_NAME}): fewer or shorter keys"
                    )
            if len(set(names)) < len(names):
                raise UserError(
                    f"{where}.grids.{arm}: two trials have the same dir name (a repeated value, "
                    f"or values that differ only in characters a dir name cannot hold): {names}"
                )
        counts = [(arm, len(self.trials(arm))) for arm in arms]
        if len({n for _, n in counts}) > 1:
            (first, n), *rest = counts
            others = "".join(f", {arm} {n}" for arm, n in rest)
            raise UserError(
                f"equal tuning budget: {first} has {n} trials{others} (every arm's grid needs as "
                "many)"
            )


def _check_grid(where: str, grid: dict[str, list[Any]]) -> None:
    if not grid:
        raise UserError(f"{where} is empty: give at least one key with its values")
    for key, values in grid.items():
        if not key or "=" in key:
            raise UserError(f"{where}: key '{key}' is not an override key (e.g. optim.lr)")
        if key.lstrip("+~") in BUDGET_KEYS:
            raise UserError(
                f"{where}.{key}: the trials' budget is not tuned; set it in "
                "study.tuning.overrides (the same for every arm)"
            )
        if not values:
            raise UserError(f"{where}.{key}=[]: give at least one value")
        for value in values:
            if isinstance(value, list | dict):
                raise UserError(
                    f"{where}.{key} has {value}: a grid value is one number, string or boolean"
                )


@dataclass
class RepresentationSettings:
    """A CKA stage per subject (evaluate.py task=[cka], docs/study.md): the first seed's run of
    every arm compared with each other and, with `base`, with the subject's model untrained (its
    model=<option>: the pretrained weights, or an architecture's seeded init); each arm's first
    two seeds are its noise floor. `overrides`: evaluate.py overrides for the stage (e.g.
    task.cka.max_examples=512, cka.pooling=tokens)."""

    base: bool = True
    overrides: list[str] = field(default_factory=list)


@dataclass
class StudySettings:
    """conf/study/<option>.yaml."""

    name: str = "study"
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    # arm name -> train.py overrides; every arm gets every other setting identical
    arms: dict[str, list[str]] = field(default_factory=dict)
    baseline: str | None = None  # the arm the others are compared with; null: the first
    # subject name (a model/dataset pair) -> train.py overrides shared by every arm
    subjects: dict[str, list[str]] = field(default_factory=dict)
    # evaluate.py overrides (e.g. "task=[own,lambada]"); null: no evaluation stage
    evaluate: list[str] | None = field(default_factory=list)
    attack_overrides: list[str] = field(default_factory=list)  # shared by every attack
    attacks: dict[str, AttackSpec] = field(default_factory=dict)
    # training steps at which each run is also evaluated and attacked (quality-matched view;
    # periodic checkpoints must exist there)
    checkpoints: list[int] = field(default_factory=list)
    # the declared primary family of comparisons ("<stage>/<metric>", e.g. "attack/gcg/delta_nll")
    primary: list[str] = field(default_factory=list)
    # hyper-parameter tuning of every arm before its seeds (a grid per arm, an equal budget,
    # selection on the held-out split); null: the seeds train as configured
    tuning: TuningSettings | None = None
    # simple baselines evaluated on each subject's tasks beside the arms (SIMPLE_BASELINES)
    baselines: list[str] = field(default_factory=list)
    # CKA between the arms' representations (and the base model's), with seed floors; null: none
    representations: RepresentationSettings | None = None
    note: str | None = None  # said at the top of the report (e.g. why budgets are small)

    def check(self) -> None:
        if not self.arms:
            raise UserError("study.arms is empty: name at least two arms (name: [overrides])")
        if len(self.arms) < 2:
            raise UserError(
                f"study.arms has one arm ({', '.join(self.arms)}): a study compares at least two"
            )
        if self.baseline is not None and self.baseline not in self.arms:
            raise UserError(
                f"study.baseline={self.baseline}: {did_you_mean(self.baseline, list(self.arms))}"
            )
        if not self.seeds:
            raise UserError("study.seeds is empty: give at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"study.seeds={self.seeds}: a seed is repeated")
        if not self.subjects:
            raise UserError("study.subjects is empty: name at least one (name: [train overrides])")
        for step in self.checkpoints:
            if step < 1:
                raise UserError(f"study.checkpoints has {step}: steps are >= 1")
        for name in (*self.arms, *self.subjects, *self.attacks):
            if not name or "/" in name or name.startswith("."):
                raise UserError(f"study name '{name}': names become directories, no '/'")
        if self.tuning is not None:
            self.tuning.check(list(self.arms))
        for name in self.baselines:
            if name not in SIMPLE_BASELINES:
                raise UserError(
                    f"study.baselines has '{name}': {did_you_mean(name, SIMPLE_BASELINES)}"
                )
        if len(set(self.baselines)) < len(self.baselines):
            raise UserError(f"study.baselines={self.baselines}: a baseline is repeated")
        if self.baselines and self.evaluate is None:
            raise UserError(
                "study.baselines needs study.evaluate (the baselines are evaluated on its tasks): "
                "set study.evaluate or study.baselines=[]"
            )

    @property
    def baseline_arm(self) -> str:
        return self.baseline if self.baseline is not None else next(iter(self.arms))

    @property
    def tuned(self) -> bool:
        return self.tuning is not None
