"""The study's report: aggregation of every stage's files (study/report.py). It reads whatever
is finished, lists what failed or is missing, and is rewritten whenever it runs."""

from __future__ import annotations

from pathlib import Path

from monolm.study.plan import Stage
from monolm.study.stages.base import StageKind, valid_json

RESULTS = "results.json"


def _run(study_dir: Path, conf_dir: Path, stage: Stage, out: Path) -> None:
    from monolm.study.report import write_report

    write_report(study_dir)


REPORT = StageKind(_run, lambda out: valid_json(out / RESULTS))
