"""What a study is (conf/study/<option>.yaml), as typed settings: arms x seeds x subjects, and
the stages run on each (evaluation, attacks with their controls, transfer)."""

from __future__ import annotations

from dataclasses import dataclass, field

from monolm.errors import UserError, did_you_mean

ATTACK_OPTION = "attack="  # the override that picks an attack.py option


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

    @property
    def baseline_arm(self) -> str:
        return self.baseline if self.baseline is not None else next(iter(self.arms))
