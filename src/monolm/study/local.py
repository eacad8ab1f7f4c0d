"""The local executor: the plan's stages in order on this machine, each in this process, with a
progress bar. Finished stages (hash and outputs) are skipped; a failed stage is recorded and
the stages that need it are skipped as blocked, the others still run."""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from monolm.provenance import write_json
from monolm.study.plan import Stage
from monolm.study.stages import KINDS, is_done, run_stage

log = logging.getLogger(__name__)
STAGE_FAILURE = "stage-failed.json"


@dataclass
class LocalOutcome:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already done
    failed: dict[str, str] = field(default_factory=dict)  # key -> one-line reason
    blocked: list[str] = field(default_factory=list)  # a stage they need failed
    not_runnable: list[str] = field(default_factory=list)  # kinds with no in-process runner


def run_local(
    study_dir: Path, conf_dir: Path, stages: list[Stage], hashes: dict[str, str]
) -> LocalOutcome:
    outcome = LocalOutcome()
    unavailable: set[str] = set()
    with tqdm(total=len(stages), desc="study", unit="stage", dynamic_ncols=True) as bar:
        for stage in stages:
            bar.set_postfix_str(stage.key, refresh=True)
            if stage.kind not in KINDS:
                outcome.not_runnable.append(stage.key)
                unavailable.add(stage.key)
            elif any(need in unavailable for need in stage.needs):
                outcome.blocked.append(stage.key)
                unavailable.add(stage.key)
            elif is_done(study_dir, stage, hashes[stage.key]):
                outcome.skipped.append(stage.key)
            else:
                failure = study_dir / stage.dir / STAGE_FAILURE
                failure.unlink(missing_ok=True)
                try:
                    run_stage(study_dir, conf_dir, stage, hashes[stage.key])
                    outcome.ran.append(stage.key)
                except Exception as exc:  # recorded; the stages that do not need it go on
                    reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
                    log.error("stage %s failed: %s", stage.key, reason)
                    write_json(
                        failure,
                        {
                            "key": stage.key,
                            "reason": reason,
                            "traceback": traceback.format_exc(),
                        },
                    )
                    outcome.failed[stage.key] = reason
                    unavailable.add(stage.key)
            bar.update(1)
    return outcome
