"""`attack=random`: the gradient-free control of a search attack (HotFlip, GCG or UAT).

The mimicked search runs with uniformly drawn candidates instead of gradient-ranked ones, with
the same settings and the same number of forward queries: with `attack.queries_from=<an
attack.py output dir of that attack>` each example (HotFlip, GCG) or restart (UAT) gets exactly
the queries spent there (a paired comparison); without it, the most the gradient attack could spend
with these settings. A matched control attacks what that attack attacked: the same weights (a
run's checkpoint by its sha256), dataset, split and examples; that is checked before any weights
load (the subject's checkpoint is hashed then), again on the weights loaded, and on the example
ids. A model that resists only the gradient attack shows gradient masking, not
robustness (docs/science.md, section 4).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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
from monolm.attacks.examples import AttackExample, example_selection
from monolm.attacks.gcg import GCGSearchSettings
from monolm.attacks.hotflip import FlipSettings
from monolm.attacks.triggers import TriggerSettings
from monolm.errors import UserError
from monolm.run_dir import ATTACK_EXAMPLES, ATTACK_RECORD
from monolm.subjects import describe_weights, same_weights, weights_identity


@dataclass
class RandomSettings(AttackSettings):
    """conf/attack/attack/random.yaml."""

    name: str = "random"
    mimic: str = "gcg"  # the search attack this controls (the default attack)
    # An attack.py output dir of the mimicked attack (a sweep's: the same run's subdir is used);
    # null: the most queries the gradient attack could spend.
    queries_from: str | None = None
    flip: FlipSettings = field(default_factory=FlipSettings)
    gcg: GCGSearchSettings = field(default_factory=GCGSearchSettings)
    trigger: TriggerSettings = field(default_factory=TriggerSettings)

    def check(self) -> None:
        super().check()
        self.flip.check()
        self.gcg.check()
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

    def queries_dir(
        self, settings: RandomSettings, plan: AttackPlan, subject: Mapping[str, Any] | None = None
    ) -> Path | None:
        """The matched attack's output dir, checked: the mimicked attack with the same search
        settings, on the same dataset, split, examples and weights (`subject`: the loaded
        subject's record; by default the plan's subject, its checkpoint hashed), its query record
        present. None without `queries_from`."""
        if settings.queries_from is None:
            return None
        search = self.mimicked(settings)
        base = Path(settings.queries_from)
        if plan.run_name is not None and (base / plan.run_name / ATTACK_RECORD).is_file():
            base = base / plan.run_name  # an attack of a whole sweep: the same run's subdir
        record = _attack_record(base)
        _check_search(base, record["config"]["attack"], settings, search)
        _check_data(base, record, plan)
        if not (base / search.queries_record).is_file():
            raise UserError(f"attack.queries_from='{base}' has no {search.queries_record}")
        mine = subject if subject is not None else weights_identity(plan.subject)
        theirs = record.get("subject") or {}
        if not same_weights(theirs, mine):
            raise UserError(
                f"attack.queries_from='{base}' attacked {describe_weights(theirs)}; this control "
                f"attacks {describe_weights(mine)}: a matched control needs the same subject"
            )
        return base

    def run(self, settings: RandomSettings, run: AttackRun) -> AttackOutcome:
        search = self.mimicked(settings)
        own = search.settings_of(settings)
        base = self.queries_dir(settings, run.plan, run.subject)  # the weights loaded
        if base is not None:
            _check_example_ids(base, run.examples)
        budgets = search.recorded_budgets(base, own, run) if base is not None else None
        outcome = search.search(own, run, "random", budgets)
        outcome.info["mimic"] = settings.mimic
        outcome.info["queries_from"] = str(base) if base is not None else None
        return outcome


def _attack_record(base: Path) -> dict[str, Any]:
    path = base / ATTACK_RECORD
    if not path.is_file():
        raise UserError(
            f"attack.queries_from='{base}' has no {ATTACK_RECORD}: not an attack.py output dir"
        )
    try:
        record = json.loads(path.read_text())
        name = record["config"]["attack"]["name"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"'{path}' is corrupt ({type(exc).__name__}: {exc})") from exc
    if not isinstance(name, str):
        raise UserError(f"'{path}' is corrupt (config.attack.name is {name!r})")
    return record


def _check_search(
    base: Path, matched: dict[str, Any], settings: RandomSettings, search: Search
) -> None:
    """The matched attack is the mimicked one, with the same search settings (but `steps`)."""
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


def _first_difference(theirs: Any, mine: Any, key: str) -> tuple[str, Any, Any] | None:
    """The first (dotted key, their value, my value) where two JSON-like values differ."""
    if isinstance(theirs, dict) and isinstance(mine, dict):
        for name in sorted(theirs.keys() | mine.keys()):
            found = _first_difference(theirs.get(name), mine.get(name), f"{key}.{name}")
            if found is not None:
                return found
        return None
    return None if theirs == mine else (key, theirs, mine)


def _check_data(base: Path, record: dict[str, Any], plan: AttackPlan) -> None:
    """The same dataset (its resolved config, as attack.json records it), split and examples."""
    data = record.get("data") or {}
    if "source" not in data:
        raise UserError(
            f"attack.queries_from='{base}': its {ATTACK_RECORD} records no data.source (the "
            "dataset attacked; written by an older attack.py): re-run that attack to match a "
            "control to it"
        )
    recorded_selection = example_selection(OmegaConf.create(record["config"]))
    for what, theirs, mine in (
        ("dataset", data["source"], OmegaConf.to_container(plan.dataset, resolve=True)),
        ("split", data.get("split"), plan.split),
        ("examples", recorded_selection, plan.selection),
    ):
        found = _first_difference(theirs, mine, what)
        if found is not None:
            key, their_value, my_value = found
            key = key.removeprefix("examples.")
            raise UserError(
                f"attack.queries_from='{base}' attacked {key}={their_value!r}; this control "
                f"{key}={my_value!r}: a matched control needs the same {what}"
            )


def _check_example_ids(base: Path, examples: list[AttackExample]) -> None:
    """The strongest check, once the examples are built: the same example ids, in order."""
    if not (base / ATTACK_EXAMPLES).is_file():
        raise UserError(f"attack.queries_from='{base}' has no {ATTACK_EXAMPLES}")
    rows = (base / ATTACK_EXAMPLES).read_text().splitlines()
    theirs = [json.loads(line)["id"] for line in rows if line.strip()]
    mine = [json.loads(json.dumps(e.id)) for e in examples]
    if theirs != mine:
        raise UserError(
            f"attack.queries_from='{base}' attacked other examples ({len(theirs)}, ids "
            f"{theirs[:3]}...; this control {len(mine)}, ids {mine[:3]}...): a matched control "
            "needs the same examples"
        )
