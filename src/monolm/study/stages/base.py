"""What a kind of stage is: how it runs into its dir and when its outputs validate."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from monolm.study.compose import compose_script
from monolm.study.plan import Stage

# (study dir, conf dir, the stage, its output dir) -> None
StageRunner = Callable[[Path, Path, Stage, Path], None]


@dataclass(frozen=True)
class StageKind:
    run: StageRunner
    outputs_valid: Callable[[Path], bool]
    # the script config a stage composes, (config dir, config name) under conf/; None: none
    script: tuple[str, str] | None = None
    # more checks of the composed config before any stage runs (conf dir, stage, config)
    check_config: Callable[[Path, Stage, DictConfig], None] | None = None

    def check(self, conf_dir: Path, stage: Stage, out: Path) -> None:
        """Compose the stage's config as it will run (an unknown option or key, a bad value
        type: one line, before any stage runs), then `check_config` it."""
        if self.script is not None:
            cfg = compose_script(conf_dir, *self.script, stage.overrides, out)
            if self.check_config is not None:
                self.check_config(conf_dir, stage, cfg)


def valid_json(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text()), dict)
    except (OSError, json.JSONDecodeError):
        return False
