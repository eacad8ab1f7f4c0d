"""Plain resume is exact: k steps, stop, resume in a new process to N equals N straight steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.helpers import FAST, run_script


def assert_same_tensors(a: Any, b: Any, where: str = "") -> None:
    """torch.equal on every tensor of two nested checkpoint structures."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"tensors differ at {where}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"keys differ at {where}"
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"lengths differ at {where}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tensors(x, y, f"{where}[{i}]")


def train(run_dir: Path, *overrides: str) -> None:
    result = run_script("train.py", f"hydra.run.dir={run_dir}", *FAST, *overrides)
    assert result.returncode == 0, result.stderr[-3000:]


def last(run_dir: Path) -> dict[str, Any]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "stop", "total"),
    [
        # T5 has dropout 0.1: the random masks after the resume must be the same ones.
        (("experiment=tiny_t5_summarization",), 2, 4),
        # Accumulation, and an epoch of 2 optimizer steps: stop mid-epoch, resume across epochs.
        (("trainer.accumulate_grad_batches=2", "dataset.max_train_examples=12"), 3, 7),
        # Parametrised weights: V, its optimizer state and the constrained group resume exactly.
        (("constraint=monotonic", "constraint.lr=3e-3", "constraint.verify.search_steps=5"), 2, 4),
        # LoRA: a checkpoint of the adapters alone, over a base rebuilt from the seed; its
        # dropout masks after the resume must be the same ones.
        (
            (
                "constraint=monotonic",
                "adapter=lora",
                "adapter.dropout=0.1",
                "adapter.target_modules=[dense_h_to_4h,query_key_value]",
            ),
            2,
            4,
        ),
    ],
    ids=[
        "tiny_t5-dropout",
        "tiny_pythia-accumulation-across-epochs",
        "tiny_pythia-monotonic",
        "tiny_pythia-monotonic-lora",
    ],
)
def test_resume_in_a_new_process_is_bit_exact(
    tmp_path: Path, overrides: tuple[str, ...], stop: int, total: int
) -> None:
    common = (*overrides, f"optim.schedule_steps={total}", "trainer.val_check_interval=null")
    train(tmp_path / "straight", *common, f"trainer.max_steps={total}")
    train(tmp_path / "resumed", *common, f"trainer.max_steps={stop}")
    assert last(tmp_path / "resumed")["global_step"] == stop
    train(tmp_path / "resumed", *common, f"trainer.max_steps={total}")
    straight, resumed = last(tmp_path / "straight"), last(tmp_path / "resumed")
    assert straight["global_step"] == resumed["global_step"] == total
    assert straight["epoch"] == resumed["epoch"]
    assert_same_tensors(straight["state_dict"], resumed["state_dict"], "state_dict")
    assert_same_tensors(straight["optimizer_states"], resumed["optimizer_states"], "optimizer")
    assert straight["lr_schedulers"] == resumed["lr_schedulers"]
    assert straight["tokens_seen"] == resumed["tokens_seen"]


@pytest.mark.slow
def test_a_truncated_checkpoint_falls_back_to_the_newest_one_that_loads(tmp_path: Path) -> None:
    common = ("optim.schedule_steps=4", "trainer.val_check_interval=null",
              "callbacks.checkpoint_every_n_steps=2", "callbacks.keep_checkpoints=5")  # fmt: skip
    train(tmp_path / "straight", *common, "trainer.max_steps=4")
    train(tmp_path / "resumed", *common, "trainer.max_steps=3")
    folder = tmp_path / "resumed" / "checkpoints"
    assert {p.name for p in folder.glob("*.ckpt")} == {
        "last.ckpt", "step-0000002.ckpt", "step-0000003.ckpt"}  # fmt: skip
    for name in ("last.ckpt", "step-0000003.ckpt"):  # as a kill in the middle of a write would
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])
    truncated = (folder / "last.ckpt").read_bytes()

    result = run_script("train.py", f"hydra.run.dir={tmp_path / 'resumed'}", *FAST, *common,
                        "trainer.max_steps=4")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    said = result.stdout + (tmp_path / "resumed" / "train.log").read_text()
    assert f"checkpoint {folder / 'last.ckpt'} is unreadable (kept as last.ckpt.unreadable)" in said
    assert f"resuming from {folder / 'step-0000002.ckpt'}, the newest checkpoint that loads" in said
    assert (folder / "last.ckpt.unreadable").read_bytes() == truncated  # kept, not overwritten
    straight, resumed = last(tmp_path / "straight"), last(tmp_path / "resumed")
    assert straight["global_step"] == resumed["global_step"] == 4
    assert_same_tensors(straight["state_dict"], resumed["state_dict"], "state_dict")
    assert_same_tensors(straight["optimizer_states"], resumed["optimizer_states"], "optimizer")


@pytest.mark.slow
def test_a_resume_with_another_checkpoint_cadence_still_writes_last_ckpt(tmp_path: Path) -> None:
    # Lightning restores ModelCheckpoint's state only for the same settings; with its version
    # counter on, this resume would write last-v1.ckpt beside a stale last.ckpt.
    common = ("optim.schedule_steps=4", "trainer.val_check_interval=null")
    train(tmp_path, *common, "trainer.max_steps=2", "callbacks.checkpoint_every_n_steps=1")
    train(tmp_path, *common, "trainer.max_steps=4", "callbacks.checkpoint_every_n_steps=3")
    assert last(tmp_path)["global_step"] == 4
    assert not list((tmp_path / "checkpoints").glob("last-v*.ckpt"))
