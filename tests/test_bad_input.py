"""Mistakes a user can make end in one line naming the value, exit code 2, before heavy work,
and nothing already saved is changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from monolm.errors import UserError
from monolm.training.checkpoint_io import resume_checkpoint
from tests.helpers import FAST, run_script


def assert_one_line_error(result, *fragments: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in errors[0]
    return errors[0]


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("model=pythia_1b", ("pythia_1b", "pythia_1.4b")),
        ("optim.lrr=1e-3", ("optim.lrr", "did you mean 'lr'")),
        ("optim.lr=-1e-3", ("optim.lr=-0.001", "> 0")),
        ("trainer.max_steps=many", ("many", "trainer.max_steps")),
        ("dataset.max_length=1024", ("dataset.max_length=1024", "512 positions")),
        ("constraint=monotone", ("monotone", "monotonic")),
        ("constraint.parametrization=softplusx", ("softplusx", "did you mean 'softplus'")),
        ("+constraint.scoep=mlp_in", ("constraint.scoep", "did you mean 'scope'")),
    ],
)
def test_bad_values_fail_in_one_line(tmp_path: Path, override: str, fragments: tuple) -> None:
    constraint = ["constraint=monotonic"] if override.lstrip("+").startswith("constraint.") else []
    result = run_script(
        "train.py", f"hydra.run.dir={tmp_path / 'run'}", *FAST, *constraint, override
    )
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_empty_dataset_is_named(tmp_path: Path) -> None:
    short = tmp_path / "short.jsonl"
    short.write_text('{"text": "too short"}\n')
    result = run_script(
        "train.py", f"hydra.run.dir={tmp_path / 'run'}", *FAST, "dataset.bundled=null",
        f"dataset.data_files={{train:{short},validation:{short}}}",
    )  # fmt: skip
    assert_one_line_error(result, "tiny_lm", "dataset.max_length=128")


def test_missing_data_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "train.jsonl"
    result = run_script(
        "train.py", f"hydra.run.dir={tmp_path / 'run'}", *FAST, "dataset.bundled=null",
        f"dataset.data_files={{train:{missing},validation:{missing}}}",
    )  # fmt: skip
    assert_one_line_error(result, str(missing))


def test_missing_model_directory_is_named(tmp_path: Path) -> None:
    result = run_script(
        "train.py", f"hydra.run.dir={tmp_path / 'run'}", *FAST, "model=pythia_70m",
        f"model.name_or_path={tmp_path / 'no-model'}",
    )  # fmt: skip
    assert_one_line_error(result, str(tmp_path / "no-model"))


def test_a_run_whose_checkpoints_all_fail_to_load_is_named_and_left_alone(tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoints" / "last.ckpt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UserError, match=r"no checkpoint of .* loads") as refused:
        resume_checkpoint(tmp_path)
    assert str(checkpoint) in str(refused.value)
    assert checkpoint.read_bytes() == b"PK\x03\x04 truncated"


def test_checkpoints_without_a_run_record_are_refused_and_left_alone(tmp_path: Path) -> None:
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"PK\x03\x04 truncated")
    result = run_script("train.py", f"hydra.run.dir={tmp_path / 'run'}", *FAST)
    assert_one_line_error(result, f"hydra.run.dir='{tmp_path / 'run'}' has checkpoints/")
    assert checkpoint.read_bytes() == b"PK\x03\x04 truncated"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoints"]
