"""Results carry their subject's identity, a run that has not completed is measured with one
warning line, a random control matches its attack, and a few bad inputs name themselves.

Two tiny_pythia runs (A: seed 0, B: seed 1, two steps each, from one `train.py -m`) and one tiny
HotFlip attack on A are shared by the module."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from monolm.run_dir import RunDir
from tests.helpers import FAST, run_script
from tests.test_bad_input import assert_one_line_error

IDENTITY = ("run_dir", "training_seed", "constraint", "adapter", "checkpoint",
            "checkpoint_sha256", "checkpoint_step", "run_status")  # fmt: skip
QUICK = ("max_examples=2", "bootstrap.resamples=50", "attack.flip.budget=1", "attack.flip.top_k=4")
QUICK_ATTACK = ("attack=hotflip", *QUICK)
HYDRA_OWN = {".hydra", "attack.log", "evaluate.log"}  # what Hydra writes before the job runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run A (seed 0) and run B (seed 1) of tiny_pythia, two steps each."""
    sweep = tmp_path_factory.mktemp("identity") / "sweep"
    result = run_script(
        "train.py", "-m", "model=tiny_pythia", "seed=0,1", "trainer.max_steps=2",
        "trainer.val_check_interval=null", *FAST, f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=${hydra.job.num}_s${seed}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return {"A": sweep / "0_s0", "B": sweep / "1_s1"}


@pytest.fixture(scope="module")
def hotflip_on_a(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output dir of a tiny HotFlip attack on run A."""
    out = tmp_path_factory.mktemp("hotflip") / "A"
    result = attack(out, f"run_dir={runs['A']}", *QUICK_ATTACK)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def attack(out: Path, *overrides: str):
    return run_script("attack.py", f"hydra.run.dir={out}", *overrides)


def evaluate(out: Path, *overrides: str):
    return run_script("evaluate.py", f"hydra.run.dir={out}", *overrides)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(*folders: Path) -> dict[str, str]:
    """sha256 of every file under `folders`: equal before and after = nothing changed there."""
    return {str(p): sha256(p) for f in folders for p in sorted(f.rglob("*")) if p.is_file()}


def assert_nothing_written(out: Path) -> None:
    """An output dir holds at most what Hydra wrote before the job ran: no result file."""
    assert not out.exists() or {p.name for p in out.iterdir()} <= HYDRA_OWN


def warnings_of(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("warning:")]


def with_status(run: Path, status: str, tmp_path: Path) -> Path:
    """A copy of `run` whose run.json says `status` (as a run still training, or stopped,
    would)."""
    copy = tmp_path / f"{status}-run"
    shutil.copytree(run, copy)
    record = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps({**record, "status": status}))
    return copy


# --- (A) every result file names the weights it measured --------------------------------------


def completed_run(run_dir: Path, seed: int) -> dict[str, object]:
    """The identity a result records for the last checkpoint of a completed 2-step baseline."""
    checkpoint = RunDir(run_dir).last_checkpoint
    return {
        "run_dir": str(run_dir),
        "training_seed": seed,
        "constraint": "none",
        "adapter": None,
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha256(checkpoint),
        "checkpoint_step": 2,
        "run_status": "completed",
    }


@pytest.mark.slow
def test_eval_json_records_the_run_it_measured_beside_its_own_seed(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    result = evaluate(tmp_path, f"run_dir={runs['B']}", "max_examples=2", "seed=7")
    assert result.returncode == 0, result.stderr[-3000:]
    assert warnings_of(result) == []  # a completed run: no warning
    written = json.loads((tmp_path / "eval.json").read_text())
    assert written["seed"] == 7
    assert {k: written["subject"][k] for k in IDENTITY} == completed_run(runs["B"], seed=1)


@pytest.mark.slow
def test_attack_json_records_the_run_it_attacked_and_the_data(
    runs: dict[str, Path], hotflip_on_a: Path
) -> None:
    written = json.loads((hotflip_on_a / "attack.json").read_text())
    assert written["seed"] == 0
    assert {k: written["subject"][k] for k in IDENTITY} == completed_run(runs["A"], seed=0)
    # The resolved dataset attacked, so that a control can be matched to it.
    assert written["data"]["source"]["name"] == written["data"]["dataset"] == "tiny_lm"


# --- (B) a run that has not completed is measured, with one warning line ----------------------


@pytest.mark.slow
def test_evaluating_a_run_still_training_warns_once_naming_its_status_and_step(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    running = with_status(runs["A"], "running", tmp_path)
    result = evaluate(tmp_path / "eval", f"run_dir={running}", "max_examples=2")
    assert result.returncode == 0, result.stderr[-3000:]
    (warning,) = warnings_of(result)
    assert str(running) in warning and "still training" in warning
    assert "status 'running'" in warning and "at step 2" in warning
    subject = json.loads((tmp_path / "eval" / "eval.json").read_text())["subject"]
    assert subject["run_status"] == "running" and subject["checkpoint_step"] == 2


@pytest.mark.slow
def test_attacking_a_stopped_run_warns_once_naming_its_status_and_step(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    stopped = with_status(runs["A"], "stopped", tmp_path)
    result = attack(tmp_path / "attack", f"run_dir={stopped}", *QUICK_ATTACK)
    assert result.returncode == 0, result.stderr[-3000:]
    (warning,) = warnings_of(result)
    assert str(stopped) in warning and "status 'stopped'" in warning and "at step 2" in warning
    subject = json.loads((tmp_path / "attack" / "attack.json").read_text())["subject"]
    assert subject["run_status"] == "stopped"


# --- (C) a random control matches its attack ---------------------------------------------------


def control(out: Path, run: Path, queries_from: Path, *overrides: str):
    return attack(out, f"run_dir={run}", "attack=random", "attack.mimic=hotflip",
                  f"attack.queries_from={queries_from}", *QUICK, *overrides)  # fmt: skip


@pytest.mark.slow
def test_a_control_of_another_run_than_the_attacks_is_refused_naming_both_checkpoints(
    runs: dict[str, Path], hotflip_on_a: Path, tmp_path: Path
) -> None:
    before = snapshot(hotflip_on_a, runs["A"], runs["B"])
    result = control(tmp_path, runs["B"], hotflip_on_a)
    a_sha = sha256(RunDir(runs["A"]).last_checkpoint)[:12]
    b_sha = sha256(RunDir(runs["B"]).last_checkpoint)[:12]
    assert_one_line_error(
        result, f"attack.queries_from='{hotflip_on_a}'", a_sha, str(runs["A"]), b_sha,
        str(runs["B"]), "same subject",
    )  # fmt: skip
    assert_nothing_written(tmp_path)
    assert snapshot(hotflip_on_a, runs["A"], runs["B"]) == before


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (("dataset=tiny_summarization",), ("dataset.", "same dataset")),
        (("split=train",), ("split='validation'", "split='train'", "same split")),
        (("max_examples=1",), ("max_examples=2", "max_examples=1", "same examples")),
        (("context_tokens=64",), ("context_tokens=128", "context_tokens=64", "same examples")),
    ],
)
def test_a_control_on_other_data_than_the_attacks_is_refused_naming_the_difference(
    runs: dict[str, Path],
    hotflip_on_a: Path,
    tmp_path: Path,
    overrides: tuple[str, ...],
    fragments: tuple[str, ...],
) -> None:
    before = snapshot(hotflip_on_a)
    result = control(tmp_path, runs["A"], hotflip_on_a, *overrides)
    assert_one_line_error(result, f"attack.queries_from='{hotflip_on_a}'", *fragments)
    assert_nothing_written(tmp_path)
    assert snapshot(hotflip_on_a) == before


@pytest.mark.slow
def test_a_control_of_the_same_checkpoint_and_examples_is_accepted(
    runs: dict[str, Path], hotflip_on_a: Path, tmp_path: Path
) -> None:
    result = control(tmp_path, runs["A"], hotflip_on_a)
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.loads((tmp_path / "attack.json").read_text())
    matched = json.loads((hotflip_on_a / "attack.json").read_text())
    assert written["attack"]["queries_from"] == str(hotflip_on_a)
    assert written["subject"]["checkpoint_sha256"] == matched["subject"]["checkpoint_sha256"]
    rows = [json.loads(line) for line in (tmp_path / "examples.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["gradient_queries"] == 0 for r in rows)


# --- (D) bad input names itself ----------------------------------------------------------------


@pytest.mark.slow
def test_a_data_file_that_is_not_json_is_named_with_the_parsers_reason(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    bad = tmp_path / "validation.jsonl"
    bad.write_text('{"text": "a fine first line"}\n{not json\n')
    out = tmp_path / "out"
    result = attack(out, f"run_dir={runs['A']}", f"data_files={{validation:{bad}}}", *QUICK_ATTACK)
    error = assert_one_line_error(result, str(bad), "JSON parse error")
    assert "An error occurred while generating the dataset" not in error
    assert_nothing_written(out)


@pytest.mark.parametrize("script", ["evaluate.py", "attack.py"])
def test_a_run_dir_that_is_a_file_is_named_as_a_file(script: str, tmp_path: Path) -> None:
    file = tmp_path / "run.json"
    file.write_text("{}\n")
    out = tmp_path / "out"
    result = run_script(script, f"hydra.run.dir={out}", f"run_dir={file}")
    assert_one_line_error(result, f"run_dir='{file}' is a file", "not a run dir or sweep dir")
    assert_nothing_written(out)
    assert file.read_text() == "{}\n"


@pytest.mark.slow
def test_a_missing_transfer_target_is_named_as_an_attack_transfer_to_entry(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    missing = tmp_path / "no" / "such" / "run"
    before = snapshot(runs["A"])
    result = attack(tmp_path / "out", f"run_dir={runs['A']}", f"attack.transfer_to=[{missing}]")
    error = assert_one_line_error(result, "attack.transfer_to", f"'{missing}' does not exist")
    assert "model=" not in error
    assert_nothing_written(tmp_path / "out")
    assert snapshot(runs["A"]) == before
