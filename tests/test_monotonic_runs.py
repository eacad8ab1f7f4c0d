"""constraint=monotonic end to end: train.py runs, their records, the verify and export commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from monolm.constraints.base import materialised_state_dict
from monolm.errors import UserError
from monolm.run_dir import EXPORT_RECORD
from monolm.subjects import load_run
from monolm.tools.export import export_run
from tests.helpers import FAST, run_script

pytestmark = pytest.mark.slow

RUNS = {
    "tiny_t5": ("model=tiny_t5", "constraint=monotonic"),
    "tiny_pythia_relu": ("model=tiny_pythia", "constraint=monotonic", "constraint.activation=relu"),
    "tiny_pythia_gelu": ("model=tiny_pythia", "constraint=monotonic"),
}
QUICK = (*FAST, "trainer.max_steps=6", "trainer.val_check_interval=null", "optim.lr=3e-3",
         "constraint.verify.batches=1", "constraint.verify.search_steps=20")  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One short train.py run per case, shared by the tests of this module."""
    made = {}
    for name, overrides in RUNS.items():
        run_dir = tmp_path_factory.mktemp(name)
        result = run_script("train.py", *overrides, *QUICK, f"hydra.run.dir={run_dir}")
        assert result.returncode == 0, result.stderr[-3000:]
        made[name] = run_dir
    return made


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "monotonicity.json").read_text())


@pytest.mark.parametrize(
    ("name", "level", "violations"),
    [("tiny_t5", "proven", False), ("tiny_pythia_relu", "proven", False),
     ("tiny_pythia_gelu", "nonneg_only", True)],
)  # fmt: skip
def test_train_cli_writes_the_guarantee_record(
    runs: dict[str, Path], name: str, level: str, violations: bool
) -> None:
    written = record(runs[name])
    assert written["seed"] == 42 and written["config"]["constraint"]["name"] == "monotonic"
    assert written["code"]["git_commit"] and written["packages"]["torch"]
    for stage in ("initial", "final"):
        assert {s["level"] for s in written[stage]["sublayers"]} == {level}
        assert written[stage]["summary"]["end_to_end"] == "none"
        for sub in written[stage]["sublayers"]:
            assert all(p["min_weight"] >= 0 for p in sub["projections"].values())
    assert "verification" not in written["initial"]
    verification = written["final"]["verification"]
    assert verification["summary"]["proven_with_violations"] == 0
    assert (verification["summary"]["with_violations"] > 0) == violations


def test_verify_command_checks_a_run_dir(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "verification.json"
    result = run_script("-m", "monolm.constraints", "verify", str(runs["tiny_t5"]),
                        "--samples", "16", "--search-steps", "10", "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(out) in result.stdout
    written = json.loads(out.read_text())
    assert written["source"]["checkpoint_sha256"]
    assert written["verification"]["settings"]["samples"] == 16
    assert written["verification"]["summary"]["with_violations"] == 0
    assert {s["level"] for s in written["sublayers"]} == {"proven"}


def test_verify_command_names_a_path_that_is_not_a_run(tmp_path: Path) -> None:
    result = run_script("-m", "monolm.constraints", "verify", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: '{tmp_path}' is neither a training run dir (run.json) nor an exported model "
        "(monolm_export.json)"
    ]


def test_a_checkpoint_reloads_into_the_constrained_model(runs: dict[str, Path]) -> None:
    run_dir = runs["tiny_pythia_gelu"]
    trained = load_run(run_dir)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    for key, value in trained.model.state_dict().items():
        assert torch.equal(value, checkpoint["state_dict"][f"model.{key}"]), key
    assert any(".parametrizations.weight.original" in key for key in checkpoint["state_dict"])


def test_training_continues_from_a_constrained_checkpoint(runs: dict[str, Path]) -> None:
    run_dir = runs["tiny_pythia_relu"]
    result = run_script(
        "train.py", *RUNS["tiny_pythia_relu"], *QUICK, "trainer.max_steps=8",
        "optim.schedule_steps=6", f"hydra.run.dir={run_dir}",  # the schedule it trained with
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 8
    written = record(run_dir)
    assert written["initial"] is not None and written["final"]["summary"]["proven"] == 4


@pytest.mark.parametrize(
    ("name", "auto"),
    [("tiny_t5", AutoModelForSeq2SeqLM), ("tiny_pythia_relu", AutoModelForCausalLM)],
)
def test_export_loads_in_vanilla_transformers_with_the_same_logits(
    runs: dict[str, Path], tmp_path: Path, name: str, auto: type
) -> None:
    out = tmp_path / "export"
    result = run_script("-m", "monolm.constraints", "export", str(runs[name]), str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    model, info = auto.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not info["mismatched_keys"]
    tokenizer = AutoTokenizer.from_pretrained(out)
    trained = load_run(runs[name])
    batch = tokenizer(["Rain is expected in the north by evening.", "Prices rose."],
                      return_tensors="pt", padding=True)  # fmt: skip
    inputs = dict(batch)
    if model.config.is_encoder_decoder:
        inputs["decoder_input_ids"] = batch["input_ids"][:, :5]
    with torch.no_grad():
        torch.testing.assert_close(
            model.eval()(**inputs).logits, trained.model(**inputs).logits, rtol=0, atol=1e-5
        )
    assert not any("parametrizations" in key for key in model.state_dict())
    exported = json.loads((out / EXPORT_RECORD).read_text())
    assert exported["checkpoint_sha256"] == trained.checkpoint_sha256
    assert exported["guarantee"]["summary"]["proven"] == 4
    assert exported["max_abs_logit_difference"] <= 1e-5

    verified = run_script("-m", "monolm.constraints", "verify", str(out), "--search-steps", "5")
    assert verified.returncode == 0, verified.stderr[-3000:]
    assert json.loads((out / "verification.json").read_text())["summary"]["proven"] == 4


def test_an_export_trains_further_under_the_constraint(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    trained = load_run(runs["tiny_pythia_relu"])
    export_run(trained, tmp_path / "export")
    run_dir = tmp_path / "continued"
    result = run_script(
        "train.py", "model=pythia_70m", f"model.name_or_path={tmp_path / 'export'}",
        "constraint=monotonic", "constraint.activation=relu", *QUICK, "trainer.max_steps=2",
        f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    initial = record(run_dir)["initial"]
    assert initial["summary"]["proven"] == 4
    # init=abs keeps non-negative weights: the run starts from the exported W (+ init_eps).
    exported = materialised_state_dict(trained.model)
    for sub in initial["sublayers"]:
        for child, measured in sub["projections"].items():
            expected = float(exported[f"{sub['name']}.{child}.weight"].min()) + 1e-6
            assert measured["min_weight"] == pytest.approx(expected, rel=1e-4)


def test_export_refuses_what_it_cannot_reproduce_or_would_overwrite(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("precious")
    result = run_script("-m", "monolm.constraints", "export", str(runs["tiny_t5"]), str(occupied))
    assert result.returncode == 2
    assert "exists and is not empty" in result.stderr
    assert (occupied / "keep.txt").read_text() == "precious"

    trained = load_run(runs["tiny_pythia_gelu"])
    trained.transform.settings.activation = "monotone_gelu"
    with pytest.raises(UserError, match="monotone_gelu has no Hugging Face activation name"):
        export_run(trained, tmp_path / "gelu")
    assert not (tmp_path / "gelu").exists()
