"""Cost of `constraint=monotonic` (parametrised FFN weights) over `constraint=none`, same process.

Both arms are built by train.py's own path (`monolm.training.run.prepare`) from the same config and
seed, so they start from the same weights (made non-negative in the monotonic arm) and read the
same batches. For each model (tiny_pythia and tiny_t5 by default, each on its bundled dataset):

1. Training step time. A training step as train.py takes it (forward inside
   `constraint.cached_weights()`, `loss.backward()`, gradient
   clipping, the module's own AdamW groups from `configure_optimizers()`, lr scheduler step,
   `zero_grad`, `constraint.after_optimizer_step`) on the same training batches for both arms,
   timed after warm-up steps. Printed: monotonic / none step time. Target on CPU: <= 1.10.
2. Inference time. Eval-mode forward passes (with the loss, as validation computes it) under
   `torch.inference_mode()` over the same validation rows, at batch size 1 and at
   `data.eval_batch_size`. Printed: monotonic / none with the monotonic model inside
   `constraint.cached_weights()` (`parametrize.cached()`: each W = softplus(V) computed once)
   around the whole loop (target <= 1.02), and without it (W recomputed at every forward, which
   costs most at batch size 1), to show what the cache saves.

The arms take turns step by step (training) and batch by batch (inference), the one going first
alternating, so a load that comes and goes hits both alike; each repeat's ratio is of the summed
times and the median over repeats is printed, with the load average (other processes on a small
CPU machine swamp the difference being measured: run it on an idle machine). The models keep
training across repeats; only the timing is of interest. On a GPU (`trainer=gpu`) the loops run
on CUDA under the trainer's autocast precision (bf16-mixed), synchronising before each clock read.
GPU target for training (pythia_1.4b, bf16-mixed): <= 1.03.

    python benchmarks/constraint_overhead.py [--steps 12] [--warmup 3] [--repeats 5]
        [--infer-batch 1 32] [--infer-rows 128] [--infer-repeats 7]
        [--parametrization softplus] [--models tiny_pythia tiny_t5] [overrides...]

Overrides are train.py config overrides applied to both arms, except `constraint.*` ones, which
go to the monotonic arm only; `model=NAME` replaces `--models`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader

from monolm.config.schema import register_configs
from monolm.training.run import Prepared, prepare

REPO = Path(__file__).resolve().parents[1]
AUTOCAST = {"bf16-mixed": torch.bfloat16, "bf16": torch.bfloat16, "16-mixed": torch.float16}


class Arm:
    """One side of the comparison: the prepared module, its optimizer and where it runs."""

    def __init__(self, name: str, setup: Prepared, device: torch.device, precision: str) -> None:
        self.name, self.setup, self.device = name, setup, device
        self.module, self.model = setup.module, setup.module.model
        self.constraint = setup.module.constraint
        self.model.to(device)
        optimizers = self.module.configure_optimizers()
        self.optimizer = optimizers["optimizer"]
        self.scheduler = optimizers["lr_scheduler"]["scheduler"]
        self.clip = setup.config["trainer"]["gradient_clip_val"]
        dtype = AUTOCAST.get(str(precision))
        self.autocast: Callable[[], Any] = (
            (lambda: torch.autocast(device.type, dtype=dtype))
            if dtype is not None
            else contextlib.nullcontext
        )

    def train_step(self, batch: dict[str, torch.Tensor]) -> None:
        with self.autocast(), self.constraint.cached_weights():  # as LanguageModelModule does
            loss = self.model(**batch).loss
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.constraint.after_optimizer_step(self.model)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work: Callable[[], Any]) -> float:
    sync(device)
    start = time.perf_counter()
    work()
    sync(device)
    return time.perf_counter() - start


def time_training(
    arms: tuple[Arm, Arm], batches: list[dict[str, torch.Tensor]], warmup: int
) -> tuple[float, float]:
    """Each arm's seconds per step over batches[warmup:], after untimed steps on batches[:warmup].
    The arms take turns step by step (who goes first alternates), so both see the same load."""
    totals = [0.0, 0.0]
    for arm in arms:
        arm.model.train()
    for index, batch in enumerate(batches):
        for side in (0, 1) if index % 2 == 0 else (1, 0):
            seconds = timed(arms[side].device, partial(arms[side].train_step, batch))
            if index >= warmup:
                totals[side] += seconds
    steps = len(batches) - warmup
    return totals[0] / steps, totals[1] / steps


def time_inference(
    none: Arm, mono: Arm, batches: list[dict[str, torch.Tensor]], cached: bool
) -> tuple[float, float]:
    """Seconds for a pass of eval-mode forwards over `batches`: (none, monotonic), the two
    models taking turns batch by batch. With `cached`, the monotonic model runs inside one
    `constraint.cached_weights()` context around the whole timed loop, so its weights are computed
    once per pass (included in the time). One untimed pass (its own context) warms up first."""
    for arm in (none, mono):
        arm.model.eval()

    def forward(arm: Arm, batch: dict[str, torch.Tensor]) -> None:
        with arm.autocast():
            arm.model(**batch)

    totals = [0.0, 0.0]
    for warm_up in (True, False):
        context = mono.constraint.cached_weights() if cached else contextlib.nullcontext()
        with torch.inference_mode(), context:
            for index, batch in enumerate(batches):
                for side in (0, 1) if index % 2 == 0 else (1, 0):
                    arm = (none, mono)[side]
                    seconds = timed(arm.device, partial(forward, arm, batch))
                    if not warm_up:
                        totals[side] += seconds
    return totals[0], totals[1]


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device) for key, value in batch.items()}


def take(loader: Iterator[dict[str, torch.Tensor]], count: int) -> list[dict[str, torch.Tensor]]:
    batches = []
    for batch in loader:
        if len(batches) == count:
            break
        batches.append(batch)
    return batches


def validation_batches(setup: Prepared, batch_size: int, rows: int) -> list[dict[str, Any]]:
    """The first `rows` validation examples (fewer if the split is smaller), batched as
    `val_dataloader` batches them (padding to each batch's longest for seq2seq)."""
    datamodule = setup.datamodule
    rows = min(rows, len(datamodule.val_set))
    loader = DataLoader(
        datamodule.val_set.select(range(rows)),
        batch_size=batch_size,
        shuffle=False,
        collate_fn=datamodule.collator,
    )
    return list(loader)


def ratio_line(label: str, ratios: list[float], target: str = "") -> str:
    each = " / ".join(f"{r:.3f}" for r in ratios)
    return f"  {label:<34} {statistics.median(ratios):.3f}  ({each}){target}"


def compose_cfg(overrides: list[str]) -> Any:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides)


def run_model(model: str, args: argparse.Namespace, overrides: list[str], run_dir: str) -> None:
    shared = [o for o in overrides if not o.lstrip("+~").startswith("constraint.")]
    constrained = [o for o in overrides if o.lstrip("+~").startswith("constraint.")]
    total_steps = args.repeats * (args.warmup + args.steps)  # the lr schedule's horizon
    base = [
        f"model={model}",
        f"trainer.max_steps={total_steps}",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        *shared,
    ]
    arms: dict[str, Arm] = {}
    for name, extra in (
        ("none", ["constraint=none"]),
        (
            "monotonic",
            [
                "constraint=monotonic",
                f"constraint.parametrization={args.parametrization}",
                *constrained,
            ],
        ),
    ):
        cfg = compose_cfg([*base, *extra])
        cfg.paths.output_dir = str(Path(run_dir) / f"{model}-{name}")
        accelerator = str(cfg.trainer.accelerator)
        use_cuda = accelerator in ("gpu", "cuda") or (
            accelerator == "auto" and torch.cuda.is_available()
        )
        device = torch.device("cuda" if use_cuda else "cpu")
        arms[name] = Arm(name, prepare(cfg), device, cfg.trainer.precision)
    none, mono = arms["none"], arms["monotonic"]
    device = none.device
    setup = none.setup
    cfg_data = setup.config["data"]
    max_length = setup.config["dataset"]["max_length"]
    params = sum(p.numel() for p in none.model.parameters())
    print(
        f"\n== {model} ({params / 1e6:.1f} M parameters, {len(mono.constraint.layers)} "
        f"constrained layers, parametrization={args.parametrization}) on "
        f"{setup.config['dataset']['name']}, device={device.type}, "
        f"precision={setup.config['trainer']['precision']}, threads={torch.get_num_threads()}",
        flush=True,
    )

    # 1. Training: both arms step through the same batches, in alternating order.
    loader = iter(setup.datamodule.train_dataloader())
    batches = [to_device(b, device) for b in take(loader, args.warmup + args.steps)]
    if len(batches) <= args.warmup:
        raise SystemExit(f"only {len(batches)} training batches: lower --warmup")
    timed_steps = len(batches) - args.warmup
    train_ratios = []
    for repeat in range(args.repeats):
        none_s, mono_s = time_training((none, mono), batches, args.warmup)
        train_ratios.append(mono_s / none_s)
        print(
            f"  train repeat {repeat}: none {none_s * 1e3:.1f} ms/step  "
            f"monotonic {mono_s * 1e3:.1f} ms/step  ratio {mono_s / none_s:.3f}",
            flush=True,
        )

    # 2. Inference: monotonic cached vs none, then monotonic uncached vs none, interleaved.
    infer_ratios: dict[int, dict[str, list[float]]] = {}
    sizes = args.infer_batch or [1, int(cfg_data["eval_batch_size"])]
    for size in dict.fromkeys(sizes):
        val = [to_device(b, device) for b in validation_batches(setup, size, args.infer_rows)]
        rows = sum(b["input_ids"].size(0) for b in val)
        ratios: dict[str, list[float]] = {"cached": [], "uncached": []}
        seconds: dict[str, list[float]] = {"none": [], "cached": [], "uncached": []}
        for _ in range(args.infer_repeats):
            for mode in ("cached", "uncached"):
                none_s, mono_s = time_inference(none, mono, val, cached=mode == "cached")
                ratios[mode].append(mono_s / none_s)
                seconds["none"].append(none_s)
                seconds[mode].append(mono_s)
        per_pass = {k: statistics.median(v) * 1e3 for k, v in seconds.items()}
        print(
            f"  inference batch {size} ({len(val)} batches, {rows} rows; median ms per pass): "
            f"none {per_pass['none']:.1f}  monotonic cached {per_pass['cached']:.1f}  "
            f"uncached {per_pass['uncached']:.1f}",
            flush=True,
        )
        infer_ratios[size] = ratios

    print(
        f"{model}: monotonic ({args.parametrization}) / none, median of repeats "
        f"(train batch {cfg_data['batch_size']} x {max_length}, {timed_steps} timed steps after "
        f"{args.warmup} warm-up, {args.repeats} repeats; inference {args.infer_repeats} repeats)"
    )
    target = "  (target <= 1.10 CPU, <= 1.03 GPU)"
    print(ratio_line("training step time", train_ratios, target))
    for size, ratios in infer_ratios.items():
        print(ratio_line(f"inference batch {size}, cached", ratios["cached"], "  (target <= 1.02)"))
        print(ratio_line(f"inference batch {size}, uncached", ratios["uncached"]))
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="timed training steps per repeat")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--infer-batch",
        type=int,
        nargs="+",
        default=None,
        help="inference batch sizes (default: 1 and data.eval_batch_size)",
    )
    parser.add_argument("--infer-rows", type=int, default=128, help="validation rows per pass")
    parser.add_argument("--infer-repeats", type=int, default=7)
    parser.add_argument(
        "--parametrization", default="softplus", choices=("softplus", "exp", "square", "project")
    )
    parser.add_argument("--models", nargs="+", default=["tiny_pythia", "tiny_t5"])
    parser.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch CPU threads"
    )
    parser.add_argument("overrides", nargs="*", help="train.py config overrides")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    models = [o.split("=", 1)[1] for o in args.overrides if o.startswith("model=")]
    overrides = [o for o in args.overrides if not o.startswith("model=")]
    register_configs()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    with tempfile.TemporaryDirectory() as run_dir:
        for model in models or args.models:
            load = os.getloadavg()[0]
            run_model(model, args, overrides, run_dir)
            print(f"  load average (1 min) before / after: {load:.2f} / {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
