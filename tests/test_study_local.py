"""`python -m monolm.study` with the local executor on a micro study (tests/data/conf/study/
micro.yaml: tiny_pythia, both arms, one seed, 4 steps, GCG and its control, at the end and at
step 2): every stage runs in dependency order, a rerun skips finished stages, a changed stage
reruns with what depends on it and nothing else, status says what is done."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import REPO, run_script

MICRO = (f"hydra.searchpath=[file://{REPO / 'tests' / 'data' / 'conf'}]", "study=micro")


def study(command: str, study_dir: Path, *overrides: str):
    return run_script("-m", "monolm.study", command, *MICRO, f"study_dir={study_dir}", *overrides)


def records(study_dir: Path) -> dict[str, dict]:
    """Each stage's record but the report's (rewritten by every run)."""
    found = {json.loads(p.read_text())["key"]: json.loads(p.read_text())
             for p in (study_dir / "stages").rglob("stage.json")}  # fmt: skip
    return {key: record for key, record in found.items() if key != "report"}


@pytest.mark.slow
def test_a_micro_study_runs_every_stage_then_skips_them_then_reruns_what_changed(
    tmp_path: Path,
) -> None:
    done = study("run", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    plan = json.loads((tmp_path / "study.json").read_text())
    runnable = [s for s in plan["stages"] if s["kind"] not in ("transfer", "report")]
    assert len(runnable) == 2 * (1 + 2 + 2 + 2)  # arms x (train, eval x2, attack x2, control x2)
    first = records(tmp_path)
    assert set(first) == {s["key"] for s in runnable}
    for stage in runnable:
        out = tmp_path / stage["dir"]
        assert first[stage["key"]]["sha256"] == stage["sha256"]
        wanted = {"train": "run.json", "evaluate": "eval.json"}.get(stage["kind"], "attack.json")
        assert (out / wanted).is_file()
    control = json.loads(
        (tmp_path / "runs/tiny_pythia/monotonic/s0/control/gcg/attack.json").read_text()
    )
    assert control["config"]["attack"]["mimic"] == "gcg"
    early = json.loads(
        (tmp_path / "runs/tiny_pythia/none/s0/attack/gcg/step-2/attack.json").read_text()
    )
    assert early["subject"]["checkpoint_step"] == 2

    again = study("run", tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 ran" in again.stdout and f"{len(runnable)} already done" in again.stdout
    assert records(tmp_path) == first  # nothing rewritten

    budget = 'study.attacks.gcg.overrides=["attack=gcg","attack.gcg.budget=2"]'
    changed = study("run", tmp_path, budget)
    assert changed.returncode == 0, changed.stderr[-3000:]
    rerun = {k for k, r in records(tmp_path).items() if r["sha256"] != first[k]["sha256"]}
    assert rerun == {k for k in first if "/gcg" in k}  # attacks and controls, both checkpoints

    status = study("status", tmp_path, budget)  # the same study: every stage done
    assert status.returncode == 0, status.stderr
    lines = [line.split() for line in status.stdout.splitlines()[1:]]
    assert {state[0] for key, *state in lines} == {"done"}
