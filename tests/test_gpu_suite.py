"""benchmarks/gpu_suite.sh: the whole GPU story runs end to end on a CPU at tiny sizes first, so
the H200's minutes are never spent on a typo; a part that fails or hangs never takes the others
with it; the figures and targets are computed from the parts' results."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import suite_report
from suite_runner import PartSkipped, run_forked
from suite_settings import CPU_SMOKE, GPU, PARTS

OUT = "paths.output_dir=/tmp/unused"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_the_cpu_smoke_runs_every_part_end_to_end(tmp_path: Path) -> None:
    results = REPO / "benchmarks" / "RESULTS.md"
    before = _sha256(results)
    started = time.monotonic()
    run = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_suite.sh"), "--cpu-smoke", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHON": sys.executable},
    )
    wall = time.monotonic() - started
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (json_path,) = tmp_path.glob("cpu-smoke-*.json")
    record = json.loads(json_path.read_text())
    parts = record["parts"]
    assert list(parts) == list(PARTS)
    for name, part in parts.items():
        expected = "skipped" if name == "fsdp" else "ok"  # Lightning's FSDP needs CUDA
        assert part["status"] == expected, (name, part.get("reason"))
        assert 0 < part["wall_s"] <= part["bound_s"]
    assert "FSDP on CUDA only" in parts["fsdp"]["reason"]
    assert record["wall_s"] <= wall

    figures = record["figures"]
    for arm in ("none", "softplus", "project"):
        assert figures[f"tokens_per_s_{arm}"] > 0 and figures[f"mfu_{arm}"] > 0
    for key in ("ratio_softplus", "ratio_project", "loop_ratio", "eval_ratio", "peak_tflops"):
        assert 0 < figures[key] < math.inf, key
    assert figures["eval_ffn_bf16"] is True  # bf16 autocast reached the FFN matmuls
    for attack in ("hotflip", "uat"):
        for model in ("t5_small", "pythia_1.4b"):
            assert figures[f"{attack}_{model}_s_per_example"] > 0
            assert 0 < figures[f"{attack}_{model}_share_in_model"] <= 1
    assert figures["checkpoint_save_s"] > 0 and figures["checkpoint_load_s"] > 0
    resume = parts["resume"]["result"]
    assert resume["bit_exact"] and resume["same_step_epoch_schedule"]  # on a CPU: exact
    assert set(record["targets_met"]) == set(suite_report.TARGETS)

    # the published architectures, shrunk: train_constraint counted the shrunk model
    train = parts["train_constraint"]["result"]
    assert train["batch"] == [CPU_SMOKE.batch_size, CPU_SMOKE.seq_len]
    assert train["parameters"] < 1_000_000
    table = (tmp_path / "RESULTS.md").read_text()
    assert "| MFU, constraint=none |" in table and json_path.name in table
    assert "check the code path" in table
    assert _sha256(results) == before  # the smoke never writes into benchmarks/RESULTS.md
    assert (tmp_path / f"{json_path.stem}-logs" / "attack.log").is_file()
    assert not list(tmp_path.glob("gpu-suite-*"))  # the scratch (runs, checkpoints) is gone


@pytest.mark.slow
def test_without_a_gpu_the_gpu_suite_stops_after_its_first_part_and_says_why(
    tmp_path: Path,
) -> None:
    md = tmp_path / "RESULTS.md"
    run = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_suite.sh"), "--out", str(tmp_path),
         "--results-md", str(md), "--work", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHON": sys.executable},
    )  # fmt: skip
    assert run.returncode == 1
    (json_path,) = tmp_path.glob("gpu-*.json")
    parts = json.loads(json_path.read_text())["parts"]
    assert parts["environment"]["status"] == "failed"
    assert "no CUDA device is visible" in parts["environment"]["reason"]
    assert all(parts[name]["status"] == "not_run" for name in PARTS[1:])
    assert "| train_constraint | not_run |" in md.read_text()


def _returns() -> dict:
    return {"value": 1}


def _raises() -> None:
    raise ValueError("a typo\nsecond line")


def _hangs() -> None:
    time.sleep(60)


def _cannot() -> None:
    raise PartSkipped("needs CUDA")


def test_each_part_is_bounded_and_its_failure_recorded_with_the_reason(tmp_path: Path) -> None:
    ok = run_forked(_returns, 30, tmp_path / "ok.log")
    assert (ok.status, ok.result, ok.reason) == ("ok", {"value": 1}, None)
    failed = run_forked(_raises, 30, tmp_path / "failed.log")
    assert (failed.status, failed.reason) == ("failed", "ValueError: a typo")
    assert "Traceback" in (tmp_path / "failed.log").read_text()
    started = time.monotonic()
    hung = run_forked(_hangs, 1.5, tmp_path / "hung.log")
    assert hung.status == "timed_out" and "1.5" not in hung.reason and "bound" in hung.reason
    assert time.monotonic() - started < 10
    skipped = run_forked(_cannot, 30)
    assert (skipped.status, skipped.reason) == ("skipped", "needs CUDA")


def _parts(**results: dict | None) -> dict:
    return {
        name: {"status": "ok", "result": r} if r is not None else {"status": "failed"}
        for name, r in results.items()
    }


def test_mfu_counts_flops_per_token_against_the_peak_measured_in_the_same_run() -> None:
    train = {
        "tokens_per_s": {"none": 40_000.0, "softplus": 39_000.0},
        "flops_per_token": 9.0e9,
        "ratio": {"softplus": 1.02},
    }
    figures = suite_report.headline(
        _parts(peak={"peak_tflops": 800.0}, train_constraint=train, train_loop=None)
    )
    assert figures["mfu_none"] == pytest.approx(40_000 * 9e9 / 800e12)  # 0.45
    assert figures["ratio_softplus"] == 1.02
    met = suite_report.verdicts(figures)
    assert met["mfu_none"] is True and met["ratio_softplus"] is True
    assert met["loop_ratio"] is None  # its part failed: no figure, no verdict
    no_peak = suite_report.headline(_parts(peak=None, train_constraint=train))
    assert no_peak["mfu_none"] is None and no_peak["tokens_per_s_none"] == 40_000


def test_the_table_names_each_part_that_did_not_run_and_why() -> None:
    parts = {
        "environment": {"status": "ok", "result": {"device": "NVIDIA H200"}, "wall_s": 1.0},
        "peak": {"status": "timed_out", "reason": "ran past its 60 s bound: killed"},
        "fsdp": {"status": "not_run", "reason": "not started: 12 s of the suite's budget left"},
    }
    figures = suite_report.headline(parts)
    record = {
        "suite": "gpu",
        "started": "2026-12-01T10:00:00",
        "wall_s": 470.0,
        "settings": {**{k: str(v) for k, v in vars(GPU).items()}, "budget_s": 480},
        "figures": figures,
        "targets_met": suite_report.verdicts(figures),
        "parts": parts,
    }
    table = suite_report.markdown(record, "gpu-2026-12-01.json")
    assert "NVIDIA H200" in table and "gpu-2026-12-01.json" in table
    assert "| peak | timed_out |  |  | ran past its 60 s bound: killed |" in table
    assert "| fsdp | not_run |" in table and "12 s of the suite's budget left" in table
    assert "| MFU, constraint=none | — | >= 45.0% | — |" in table


def test_the_gpu_profile_measures_the_real_sizes_within_eight_minutes() -> None:
    assert GPU.device == "cuda" and GPU.budget_s <= 480 and not GPU.shrink
    assert (GPU.train_model, GPU.seq_len, GPU.precision) == ("pythia_1.4b", 2048, "bf16-mixed")
    assert set(GPU.bounds) == set(PARTS) == set(CPU_SMOKE.bounds)
    assert CPU_SMOKE.device == "cpu" and CPU_SMOKE.trainer == (
        "trainer=cpu",
        "trainer.precision=bf16-mixed",
    )


@pytest.mark.parametrize("profile", [GPU, CPU_SMOKE], ids=["gpu", "cpu-smoke"])
def test_every_config_the_suite_trains_composes_and_validates_at_its_sizes(profile) -> None:
    """At GPU sizes too: a typo or an impossible value in any part's overrides fails here, on a
    CPU, before the GPU's minutes are spent (no model is built)."""
    from suite_configs import train_configs

    from monolm.models.loading import load_model_config, max_positions
    from monolm.training.validate import validate_max_length, validate_train_config
    from tests.helpers import compose_train

    configs = train_configs(profile, Path("/tmp/unused"))
    assert {name.split("/")[0] for name in configs} == {
        "train_constraint", "train_loop", "checkpoint", "fsdp", "resume",
    }  # fmt: skip
    for name, overrides in configs.items():
        named = any(o.startswith("paths.output_dir=") for o in overrides)
        cfg = compose_train(*overrides, *([] if named else [OUT]))
        validate_train_config(cfg)
        assert not cfg.model.pretrained and cfg.model.tokenizer == "bundled", name
        config = load_model_config(cfg.model, None)  # the published architecture, offline
        validate_max_length(cfg, max_positions(config))
        if profile is GPU:
            assert cfg.trainer.precision == "bf16-mixed", name
            assert config.hidden_size in (2048, 768, 512), name  # real sizes, never shrunk
