"""Tokens/s of train.py's Lightning training loop versus a plain PyTorch loop, same process.

Both loops train the same model (same seeded init) on the same batches with the same AdamW
groups, schedule and gradient clipping. Steady-state throughput is timed after warm-up steps;
the two are run alternately and the median ratio is printed. train.py's side runs with its
default callbacks and CSV logger, as a user's run does. Target on CPU: >= 0.90. Under
`trainer=gpu` both loops run on the GPU with the trainer's autocast (bf16-mixed); target there
>= 0.95 (benchmarks/gpu_suite.sh measures it for pythia_1.4b).

    python benchmarks/train_overhead.py [--steps 40] [--warmup 5] [--repeats 3] [overrides...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from lightning.pytorch.callbacks import Callback
from torch.optim import AdamW
from torch.optim.lr_scheduler import LambdaLR

from monolm.config.schema import register_configs
from monolm.data.datamodule import TextDataModule
from monolm.models.loading import load_model, load_model_config, load_tokenizer
from monolm.training.callbacks import StepCheckpoint
from monolm.training.optim import WarmupDecay, build_param_groups
from monolm.training.run import prepare

REPO = Path(__file__).resolve().parents[1]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class SteadyStateTimer(Callback):
    """Wall time from the start of batch `warmup` to the end of the last batch (on a GPU, to
    the end of its queued work: synchronised there and at the start only, as the plain loop)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and not self.start:
            sync(pl_module.device)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= trainer.max_steps:
            sync(pl_module.device)
        self.end = time.perf_counter()


def lightning_tokens_per_s(cfg, warmup: int, final_save: bool = True, root=None) -> float:
    """train.py's own build path (training.run.prepare), timed inside trainer.fit. The final
    step's checkpoint save comes after the timed window (Lightning runs checkpoint callbacks
    last); `final_save=False` skips it (a large model's save is measured elsewhere, and costs
    time and disk)."""
    with tempfile.TemporaryDirectory(dir=root) as run_dir:
        cfg.paths.output_dir = run_dir
        setup = prepare(cfg)
        if not final_save:
            callbacks = setup.trainer.callbacks
            callbacks[:] = [c for c in callbacks if not isinstance(c, StepCheckpoint)]
        timer = SteadyStateTimer(warmup)
        setup.trainer.callbacks.append(timer)
        setup.trainer.fit(setup.module, datamodule=setup.datamodule)
    steps = cfg.trainer.max_steps - warmup
    return steps * cfg.data.batch_size * cfg.dataset.max_length / (timer.end - timer.start)


def endless(datamodule) -> Iterator[dict[str, torch.Tensor]]:
    """Training batches epoch after epoch, as the Trainer takes them past the end of one."""
    while True:
        yield from datamodule.train_dataloader()


def plain_tokens_per_s(
    cfg,
    model_config,
    datamodule,
    warmup: int,
    device: torch.device | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> float:
    """The same training in a plain loop: forward (under autocast when `autocast_dtype` is set,
    as bf16-mixed runs it), backward, clipping, AdamW, schedule, on `device` (default CPU)."""
    device = device or torch.device("cpu")
    L.seed_everything(cfg.seed, verbose=False)
    model = load_model(cfg.model, model_config).to(device)
    model.train()
    groups = build_param_groups(model, cfg.optim.weight_decay, [])
    optimizer = AdamW(groups, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), eps=cfg.optim.eps)
    schedule = WarmupDecay(
        cfg.trainer.max_steps,
        round(cfg.optim.warmup_ratio * cfg.trainer.max_steps),
        cfg.optim.schedule,
        cfg.optim.min_lr_ratio,
    )
    scheduler = LambdaLR(optimizer, schedule)
    batches = endless(datamodule)
    autocast = torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)
    start = 0.0
    for step in range(cfg.trainer.max_steps):
        if step == warmup:
            sync(device)
            start = time.perf_counter()
        batch = {key: value.to(device) for key, value in next(batches).items()}
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.trainer.gradient_clip_val)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    sync(device)
    elapsed = time.perf_counter() - start
    return (cfg.trainer.max_steps - warmup) * cfg.data.batch_size * cfg.dataset.max_length / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="train.py config overrides")
    args = parser.parse_args()

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"trainer.max_steps={args.steps}",
                "trainer.limit_val_batches=0",
                "trainer.enable_progress_bar=false",
                "trainer.enable_model_summary=false",
                "callbacks.checkpoint_every_n_steps=1000000",
                "logger=csv",
                f"paths.output_dir={tempfile.mkdtemp()}",
                *args.overrides,
            ],
        )
    tokenizer = load_tokenizer(cfg.model, cfg.paths.cache_dir)
    model_config = load_model_config(cfg.model, tokenizer)
    datamodule = TextDataModule(cfg.dataset, cfg.data, tokenizer, cfg.seed)
    datamodule.build()

    # the plain loop where the Trainer runs: a GPU under trainer=gpu, with its autocast
    on_gpu = cfg.trainer.accelerator in ("gpu", "cuda") and torch.cuda.is_available()
    device = torch.device("cuda" if on_gpu else "cpu")
    autocast_dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(
        str(cfg.trainer.precision)
    )
    ratios = []
    for repeat in range(args.repeats):
        plain = plain_tokens_per_s(
            cfg, model_config, datamodule, args.warmup, device, autocast_dtype
        )
        lightning = lightning_tokens_per_s(cfg, args.warmup)
        ratios.append(lightning / plain)
        print(
            f"repeat {repeat}: plain {plain:,.0f} tok/s  train.py {lightning:,.0f} tok/s  "
            f"ratio {lightning / plain:.3f}",
            flush=True,
        )
    print(
        f"model={cfg.model.name} batch={cfg.data.batch_size}x{cfg.dataset.max_length} "
        f"threads={torch.get_num_threads()} steps={args.steps} (timed {args.steps - args.warmup})"
    )
    print(
        f"train.py / plain PyTorch tokens/s ratio (median of {args.repeats}): "
        f"{statistics.median(ratios):.3f}  (target >= 0.90)"
    )


if __name__ == "__main__":
    sys.exit(main())
