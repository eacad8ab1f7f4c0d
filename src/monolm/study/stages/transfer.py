"""Transfer within a seed: a finished attack's attacked inputs (read from its examples.jsonl)
replayed on the other arms' models of the same seed (attacks/replay.py). Overrides:
`source=<attack dir>` and one `target.<arm>=<run dir>` per target."""

from __future__ import annotations

from pathlib import Path

from monolm.errors import UserError
from monolm.run_dir import TRANSFER_RECORD
from monolm.study.plan import Stage
from monolm.study.stages.base import StageKind, valid_json

SOURCE = "source="
TARGET = "target."


def parse_transfer(overrides: tuple[str, ...]) -> tuple[Path, dict[str, Path]]:
    source, targets = None, {}
    for override in overrides:
        if override.startswith(SOURCE):
            source = Path(override[len(SOURCE) :])
        elif override.startswith(TARGET) and "=" in override:
            name, path = override[len(TARGET) :].split("=", 1)
            targets[name] = Path(path)
        else:
            raise UserError(
                f"transfer stage override '{override}': source=<dir> or target.<arm>=<dir>"
            )
    if source is None or not targets:
        raise UserError(
            f"transfer stage {list(overrides)}: needs source=<dir> and a target.<arm>=<dir>"
        )
    return source, targets


def _run(study_dir: Path, conf_dir: Path, stage: Stage, out: Path) -> None:
    from monolm.attacks.replay import replay_attack

    source, targets = parse_transfer(stage.overrides)
    replay_attack(source, targets, out, conf_dir)


TRANSFER = StageKind(_run, lambda out: valid_json(out / TRANSFER_RECORD))
