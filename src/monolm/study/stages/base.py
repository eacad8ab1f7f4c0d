"""What a kind of stage is: how it runs into its dir and when its outputs validate."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from monolm.study.plan import Stage

# (study dir, conf dir, the stage, its output dir) -> None
StageRunner = Callable[[Path, Path, Stage, Path], None]


@dataclass(frozen=True)
class StageKind:
    run: StageRunner
    outputs_valid: Callable[[Path], bool]
    # the script config a stage composes, (config dir, config name) under conf/; None: none
    script: tuple[str, str] | None = None

    def check(self, conf_dir: Path, stage: Stage, out: Path) -> None:
        """Compose the stage's config as it will run (an unknown option or key, a bad value
        type: one line, before any stage runs)."""
        if self.script is not None:
            compose_script(conf_dir, *self.script, stage.overrides, out)


def valid_json(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text()), dict)
    except (OSError, json.JSONDecodeError):
        return False


def register_configs() -> None:
    from monolm.attacks.config import register_attack_configs
    from monolm.config.eval_schema import register_evaluate_configs
    from monolm.config.schema import register_configs as register_train_configs
    from monolm.constraints import register_constraint_configs

    register_train_configs()
    register_constraint_configs()
    register_evaluate_configs()
    register_attack_configs()


def compose_script(
    conf_dir: Path, config_dir: str, config_name: str, overrides: tuple[str, ...], out: Path
) -> DictConfig:
    """A script's own config (train.py, evaluate.py, attack.py) with the stage's overrides,
    writing into the stage's dir: what the script would have run."""
    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir / config_dir), version_base="1.3"):
        return compose(config_name, overrides=[*overrides, f"paths.output_dir={out}"])
