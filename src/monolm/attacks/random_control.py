"""`attack=random`: the gradient-free control of a search attack (HotFlip or UAT).

The mimicked search runs with uniformly drawn candidates instead of gradient-ranked ones, with
the same settings and the same number of forward queries: with `attack.queries_from=<an
attack.py output dir of that attack>` each example (HotFlip) or restart (UAT) gets exactly the
queries spent there (a paired comparison); without it, the most the gradient attack could spend
with these settings. A model that resists only the gradient attack shows gradient masking, not
robustness (docs/science.md, section 4).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from monolm.attacks.base import (
    Attack,
    AttackOutcome,
    AttackPlan,
    AttackRun,
    AttackSettings,
    Search,
)
from monolm.attacks.hotflip import FlipSettings
from monolm.attacks.triggers import TriggerSettings
from monolm.errors import UserError
from monolm.run_dir import ATTACK_RECORD


@dataclass
class RandomSettings(AttackSettings):
    """conf/attack/attack/random.yaml."""

    name: str = "random"
    mimic: str = "hotflip"  # the search attack this controls
    # An attack.py output dir of the mimicked attack (a sweep's: the same run's subdir is used);
    # null: the most queries the gradient attack could spend.
    queries_from: str | None = None
    flip: FlipSettings = field(default_factory=FlipSettings)
    trigger: TriggerSettings = field(default_factory=TriggerSettings)

    def check(self) -> None:
        super().check()
        self.flip.check()
        self.trigger.check()


class RandomControl(Attack):
    """Runs the mimicked search (`searches[settings.mimic]`) with the random proposer."""

    name = "random"
    settings_type = RandomSettings

    def __init__(self, searches: dict[str, Search]) -> None:
        self.searches = searches

    def mimicked(self, settings: RandomSettings) -> Search:
        if settings.mimic not in self.searches:
            raise UserError(
                f"attack.mimic={settings.mimic}: the random control mimics one of "
                f"{', '.join(sorted(self.searches))}"
            )
        return self.searches[settings.mimic]

    def check(self, settings: RandomSettings, plan: AttackPlan) -> None:
        search = self.mimicked(settings)
        search.check(settings, plan)
        self.queries_dir(settings, plan)

    def check_tokenizer(self, settings: RandomSettings, tokenizer: Any) -> None:
        self.mimicked(settings).check_tokenizer(settings, tokenizer)

    def queries_dir(self, settings: RandomSettings, plan: AttackPlan) -> Path | None:
        """The matched attack's output dir, checked: the mimicked attack, same search settings,
        its query record present. None without `queries_from`."""
        if settings.queries_from is None:
            return None
        search = self.mimicked(settings)
        base = Path(settings.queries_from)
        if plan.run_name is not None and (base / plan.run_name / ATTACK_RECORD).is_file():
            base = base / plan.run_name  # an attack of a whole sweep: the same run's subdir
        record_path = base / ATTACK_RECORD
        if not record_path.is_file():
            raise UserError(
                f"attack.queries_from='{base}' has no {ATTACK_RECORD}: not an attack.py output dir"
            )
        try:
            matched = json.loads(record_path.read_text())["config"]["attack"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UserError(f"'{record_path}' is corrupt ({type(exc).__name__}: {exc})") from exc
        if matched["name"] != settings.mimic:
            raise UserError(
                f"attack.queries_from='{base}' is a {matched['name']} attack; this control "
                f"mimics {settings.mimic}"
            )
        group = search.settings_key
        mine = OmegaConf.to_container(OmegaConf.structured(search.settings_of(settings)))
        for key, value in mine.items():
            if matched[group].get(key) != value and key != "steps":
                raise UserError(
                    f"attack.{group}.{key}={value} but the attack in queries_from used "
                    f"{matched[group].get(key)}: the control must run the same search"
                )
        if not (base / search.queries_record).is_file():
            raise UserError(f"attack.queries_from='{base}' has no {search.queries_record}")
        return base

    def run(self, settings: RandomSettings, run: AttackRun) -> AttackOutcome:
        search = self.mimicked(settings)
        own = search.settings_of(settings)
        base = self.queries_dir(settings, run.plan)
        budgets = search.recorded_budgets(base, own, run) if base is not None else None
        outcome = search.search(own, run, "random", budgets)
        outcome.info["mimic"] = settings.mimic
        outcome.info["queries_from"] = str(base) if base is not None else None
        return outcome
