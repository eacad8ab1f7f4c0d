"""Real tiny training runs, one per family: the loss goes down and every parameter moves."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch

from monolm.models.loading import load_model, load_model_config, load_tokenizer
from monolm.training.run import train
from tests.helpers import FAST, compose_train


def initial_weights(cfg) -> dict[str, torch.Tensor]:
    """The weights train() starts from: same seed, same construction."""
    tokenizer = load_tokenizer(cfg.model, cfg.paths.cache_dir)
    L.seed_everything(cfg.seed, verbose=False)
    return load_model(cfg.model, load_model_config(cfg.model, tokenizer)).state_dict()


def logged_train_losses(run_dir: Path) -> list[float]:
    with open(run_dir / "csv" / "metrics.csv") as handle:
        return [float(row["train/loss"]) for row in csv.DictReader(handle) if row["train/loss"]]


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [("model=tiny_pythia", "dataset=tiny_lm"), ("experiment=tiny_t5_summarization",)],
    ids=["tiny_pythia-tiny_lm", "tiny_t5-tiny_summarization"],
)
def test_tiny_run_lowers_the_loss_and_moves_every_parameter(
    tmp_path: Path, overrides: tuple[str, ...]
) -> None:
    cfg = compose_train(
        *overrides, *FAST, "trainer.max_steps=40", "optim.lr=3e-3", "optim.warmup_ratio=0",
        "trainer.val_check_interval=null", f"paths.output_dir={tmp_path}",
    )  # fmt: skip
    before = initial_weights(cfg)
    metrics = train(cfg)

    losses = logged_train_losses(tmp_path)
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5
    assert metrics["val/loss"] < losses[0]

    after = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    trained = {k.removeprefix("model."): v for k, v in after.items() if k.startswith("model.")}
    assert trained.keys() == before.keys()
    unchanged = [k for k in before if torch.equal(before[k], trained[k])]
    assert unchanged == []
    assert all(v.dtype == torch.float32 for v in trained.values())
