"""The configs the study's stages run with: each script's own (train.py, evaluate.py, attack.py),
composed from conf/ with the stage's overrides."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig


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
