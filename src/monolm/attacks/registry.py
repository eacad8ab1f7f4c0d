"""The options of conf/attack/attack/: each name's `Attack` and its settings schema.

Each settings dataclass is stored in Hydra's ConfigStore as `schema/attack/<name>`; the option's
YAML composes it first (`defaults: [/schema/attack/<name>@_here_, _self_]`), so a mistyped key, a
value of the wrong type, or a setting the chosen attack would ignore fails when the config is
composed.
"""

from __future__ import annotations

from typing import Any

from hydra.core.config_store import ConfigStore

from monolm.attacks.base import Attack, AttackSettings, Search
from monolm.attacks.gcg import GCG
from monolm.attacks.hotflip import HotFlip
from monolm.attacks.random_control import RandomControl
from monolm.attacks.triggers import UniversalTrigger
from monolm.config.typed import typed_settings
from monolm.errors import UserError, did_you_mean

SCHEMA_GROUP = "schema/attack"

ATTACKS: dict[str, Attack] = {}
SEARCHES: dict[str, Search] = {}  # the attacks a random control can mimic


def register_attack(attack: Attack) -> None:
    """Make `attack=<attack.name>` run `attack`; a `Search` can also be mimicked by the random
    control."""
    ATTACKS[attack.name] = attack
    if isinstance(attack, Search):
        SEARCHES[attack.name] = attack
    ConfigStore.instance().store(group=SCHEMA_GROUP, name=attack.name, node=attack.settings_type)


register_attack(HotFlip())
register_attack(UniversalTrigger())
register_attack(GCG())
register_attack(RandomControl(SEARCHES))


def register_attack_schemas() -> None:
    """Store every registered attack's schema in Hydra's ConfigStore (attack.py calls this)."""
    for attack in ATTACKS.values():
        ConfigStore.instance().store(
            group=SCHEMA_GROUP, name=attack.name, node=attack.settings_type
        )


def attack_named(name: str) -> Attack:
    if name not in ATTACKS:
        raise UserError(f"attack.name='{name}': {did_you_mean(name, ATTACKS)}")
    return ATTACKS[name]


def attack_settings(cfg: Any) -> tuple[Attack, AttackSettings]:
    """The attack `cfg.name` names and its typed, checked settings."""
    attack = attack_named(str(cfg.name))
    settings = typed_settings(attack.settings_type, cfg, "attack.")
    settings.check()
    return attack, settings
