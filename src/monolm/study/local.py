"""The local executor: the plan's stages in order on this machine, each in this process, with a
progress bar. Finished stages (hash and outputs) are skipped; a failed stage is recorded and
the stages that need it are skipped as blocked, the others still run. The report runs last
whatever happened (SLURM's `afterany`), so a failure is reported, not hidden; a select stage runs
while any of its trials completed (it lists the failed ones)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from monolm.study.plan import Stage
from monolm.study.stages import blocking_needs, is_done, run_stage

log = logging.getLogger(__name__)


@dataclass
class LocalOutcome:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already done
    failed: dict[str, str] = field(default_factory=dict)  # key -> one-line reason
    blocked: list[str] = field(default_factory=list)  # a stage they need failed

    def summary(self) -> str:
        return (
            f"{len(self.ran)} ran, {len(self.skipped)} already done, {len(self.failed)} failed, "
            f"{len(self.blocked)} blocked"
        )


def run_local(
    study_dir: Path, conf_dir: Path, stages: list[Stage], hashes: dict[str, str]
) -> LocalOutcome:
    outcome = LocalOutcome()
    unavailable: set[str] = set()
    with tqdm(total=len(stages), desc="study", unit="stage", dynamic_ncols=True) as bar:
        for stage in stages:
            bar.set_postfix_str(stage.key, refresh=True)
            if blocking_needs(stage, unavailable):
                outcome.blocked.append(stage.key)
                unavailable.add(stage.key)
            elif stage.kind != "report" and is_done(study_dir, stage, hashes[stage.key]):
                outcome.skipped.append(stage.key)
            else:
                try:
                    run_stage(study_dir, conf_dir, stage, hashes[stage.key])
                    outcome.ran.append(stage.key)
                except Exception as exc:  # recorded by run_stage; what does not need it goes on
                    reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
                    log.error("stage %s failed: %s", stage.key, reason)
                    outcome.failed[stage.key] = reason
                    unavailable.add(stage.key)
            bar.update(1)
    return outcome
