"""Cost of `adapter=lora` (LoRA through peft, base frozen) over `adapter=none` (full fine-tuning).

Both arms are built by train.py's own path (`monolm.training.run.prepare`) from the same config and
seed (same base weights, same batches); the lora arm takes conf/adapter/lora.yaml's defaults
(r=8, alpha=16, all-linear) unless `adapter.*` overrides say otherwise. For each model:

1. Training step time, lora / full. A step as train.py takes it (`constraint_overhead.Arm`:
   forward under the trainer's autocast, backward, gradient clipping, the module's own AdamW
   groups, lr scheduler, zero_grad), timed after warm-up steps, the arms taking turns step by step
   (who goes first alternates) so a load that comes and goes hits both alike; each repeat's ratio
   is of the summed times, and the median over repeats is printed with the load average.
2. Memory of a training step, lora / full. On CUDA: `torch.cuda.max_memory_allocated` over the
   timed steps (reset after the warm-up steps) of each arm in its own window, the other arm's
   weights and optimizer state moved to the CPU meanwhile. On the CPU there is no allocator peak
   to read (the CPU allocator keeps no statistics, and the process's RSS mixes both arms, the
   data and the libraries), so the figure is computed, and labelled so: the bytes of the
   training state, every parameter plus a gradient and AdamW's two moments per trainable one
   (activations not included).
3. Checkpoint size, lora / full: the bytes `torch.save` writes for what
   `module.on_save_checkpoint` keeps (`transform.checkpoint_state` of the module's state dict:
   under LoRA only the trainable tensors) plus the optimizer's state after the timed steps; a
   last.ckpt adds the loops' and callbacks' small state and the config to this.
4. Tokens per second per arm: the non-pad input tokens of a timed batch (the attention mask's
   sum, averaged over the timed batches) over the median step time.

Targets: on the widened model (tiny_llama_wide) LoRA's step no slower than full (ratio <= 1.0);
checkpoint ratio << 1; memory ratio < 1. Other processes on a small CPU machine swamp step times:
run it on an idle machine. On a GPU (`trainer=gpu`) the steps run on CUDA under the trainer's
autocast precision (bf16-mixed), synchronising before each clock read; `--tinyllama` measures
TinyLlama-1.1B's architecture (random init, vocabulary 32000; the bundled tokenizer's ids fit).
If the bundled data holds fewer batches than warm-up + timed steps, its batches are reused.

    python benchmarks/adapter_overhead.py [--steps 12] [--warmup 3] [--repeats 5]
        [--models tiny_llama tiny_llama_wide] [--threads N] [--json FILE] [overrides...]
    python benchmarks/adapter_overhead.py --tinyllama trainer=gpu data.batch_size=8 \\
        dataset.max_length=512 [--json FILE]

Overrides are train.py config overrides applied to both arms, except `adapter.*` ones, which go
to the lora arm only. A --models name that is not one of MODELS below is a conf/model name.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

# benchmarks/ is sys.path[0] when this file runs as a script
from constraint_overhead import Arm, compose_cfg, take, time_training, to_device

from monolm.config.schema import register_configs
from monolm.provenance import provenance, write_json
from monolm.training.run import prepare

MB = 1e6
ARCH = "++model.architecture"
MODELS = {
    "tiny_llama": ["model=tiny_llama"],
    "tiny_llama_wide": [
        "model=tiny_llama",
        f"{ARCH}.hidden_size=512",
        f"{ARCH}.intermediate_size=1376",
        f"{ARCH}.num_attention_heads=8",
        f"{ARCH}.num_key_value_heads=8",
    ],
    # TinyLlama-1.1B's config (TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T), random init
    "tinyllama_1.1b_random": [
        "model=tiny_llama",
        f"{ARCH}.hidden_size=2048",
        f"{ARCH}.intermediate_size=5632",
        f"{ARCH}.num_hidden_layers=22",
        f"{ARCH}.num_attention_heads=32",
        f"{ARCH}.num_key_value_heads=4",
        f"{ARCH}.max_position_embeddings=2048",
        f"{ARCH}.rms_norm_eps=1e-5",
        f"{ARCH}.rope_theta=10000.0",
        f"{ARCH}.tie_word_embeddings=false",
        f"{ARCH}.vocab_size=32000",
    ],
}


class ByteCount:
    """A write-only file that counts what is written to it (torch.save's size, no copy kept)."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: Any) -> int:
        self.bytes += memoryview(data).nbytes
        return memoryview(data).nbytes

    def flush(self) -> None:
        pass


def checkpoint_bytes(arm: Arm) -> int:
    kept = arm.module.constraint.checkpoint_state(arm.module.state_dict())
    sink = ByteCount()
    torch.save({"state_dict": kept, "optimizer_states": [arm.optimizer.state_dict()]}, sink)
    return sink.bytes


def training_state_bytes(model: torch.nn.Module) -> int:
    """Parameters, plus a gradient and AdamW's exp_avg and exp_avg_sq per trainable one (all in
    the parameter's dtype: fp32 master weights under bf16-mixed)."""
    return sum(p.nbytes * (4 if p.requires_grad else 1) for p in model.parameters())


def place(arm: Arm, device: torch.device) -> None:
    """Move the arm's weights and optimizer state (AdamW's step counts stay on the CPU)."""
    arm.model.to(device)
    for state in arm.optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value) and key != "step":
                state[key] = value.to(device)


def cuda_peak_bytes(arm: Arm, other: Arm, batches: list[dict[str, Any]], warmup: int) -> int:
    """max_memory_allocated over the training steps on batches[warmup:], with `arm` alone on the
    GPU, after untimed steps on batches[:warmup]."""
    place(other, torch.device("cpu"))
    place(arm, arm.device)
    arm.model.train()
    for index, batch in enumerate(batches):
        if index == warmup:
            torch.cuda.synchronize(arm.device)
            torch.cuda.reset_peak_memory_stats(arm.device)
        arm.train_step(batch)
    torch.cuda.synchronize(arm.device)
    return torch.cuda.max_memory_allocated(arm.device)


def build_arms(
    label: str, args: argparse.Namespace, overrides: list[str], run_dir: str
) -> list[Arm]:
    shared = [o for o in overrides if not o.lstrip("+~").startswith("adapter.")]
    adapter = [o for o in overrides if o.lstrip("+~").startswith("adapter.")]
    steps = (args.repeats + 1) * (args.warmup + args.steps)  # each arm's, memory window included
    base = [*MODELS.get(label, [f"model={label}"]), f"trainer.max_steps={steps}", "logger=csv"]
    arms = []
    for name, extra in (("full", ["adapter=none"]), ("lora", ["adapter=lora", *adapter])):
        cfg = compose_cfg([*base, *shared, *extra])
        cfg.paths.output_dir = str(Path(run_dir) / f"{label}-{name}")
        setup = prepare(cfg)
        trainer = setup.trainer  # Lightning's resolved device and precision, as train.py runs
        arms.append(Arm(name, setup, trainer.strategy.root_device, str(trainer.precision)))
    return arms


def run_model(label: str, args: argparse.Namespace, overrides: list[str], run_dir: str) -> dict:
    load = os.getloadavg()[0]
    full, lora = build_arms(label, args, overrides, run_dir)
    device, config = full.device, full.setup.config
    params = sum(p.numel() for p in full.model.parameters())
    trainable = sum(p.numel() for p in lora.model.parameters() if p.requires_grad)
    batch_shape = f"{config['data']['batch_size']} x {config['dataset']['max_length']}"
    rank = lora.setup.config["adapter"]["r"]
    print(
        f"\n== {label} ({params / 1e6:.1f} M parameters; LoRA r={rank} trains "
        f"{trainable / 1e6:.3f} M) on {config['dataset']['name']}, batch {batch_shape}, "
        f"device={device.type}, precision={lora.setup.trainer.precision}, "
        f"threads={torch.get_num_threads()}",
        flush=True,
    )
    count = args.warmup + args.steps
    loaded = take(iter(full.setup.datamodule.train_dataloader()), count)
    batches = [to_device(loaded[i % len(loaded)], device) for i in range(count)]
    tokens = statistics.mean(int(b["attention_mask"].sum()) for b in batches[args.warmup :])

    seconds: dict[str, list[float]] = {"full": [], "lora": []}
    ratios = []
    for repeat in range(args.repeats):
        full_s, lora_s = time_training((full, lora), batches, args.warmup)
        seconds["full"].append(full_s)
        seconds["lora"].append(lora_s)
        ratios.append(lora_s / full_s)
        print(
            f"  repeat {repeat}: full {full_s * 1e3:.1f} ms/step  lora {lora_s * 1e3:.1f} "
            f"ms/step  ratio {lora_s / full_s:.3f}",
            flush=True,
        )
    step = {name: statistics.median(values) for name, values in seconds.items()}

    state = {arm.name: training_state_bytes(arm.model) for arm in (full, lora)}
    if device.type == "cuda":
        memory_kind = "CUDA peak allocated"
        memory = {
            "full": cuda_peak_bytes(full, lora, batches, args.warmup),
            "lora": cuda_peak_bytes(lora, full, batches, args.warmup),
        }
    else:
        memory_kind, memory = "training state, computed", state
    ckpt = {arm.name: checkpoint_bytes(arm) for arm in (full, lora)}
    ratio = statistics.median(ratios)
    memory_ratio = memory["lora"] / memory["full"]
    print(
        f"{label}  step lora/full {ratio:.2f} (full {step['full'] * 1e3:.1f} ms, "
        f"lora {step['lora'] * 1e3:.1f} ms)  memory lora/full {memory_ratio:.2f} "
        f"({memory_kind}: full {memory['full'] / MB:.1f} MB, lora {memory['lora'] / MB:.1f} MB)  "
        f"checkpoint lora/full {ckpt['lora'] / ckpt['full']:.3f} "
        f"(lora {ckpt['lora'] / MB:.2f} MB vs full {ckpt['full'] / MB:.2f} MB)  "
        f"tokens/s full {tokens / step['full']:.0f} / lora {tokens / step['lora']:.0f}"
    )
    print(f"  load average (1 min) before / after: {load:.2f} / {os.getloadavg()[0]:.2f}")
    sys.stdout.flush()
    return {
        "model": label,
        "parameters": params,
        "lora_trainable_parameters": trainable,
        "device": device.type,
        "precision": str(lora.setup.trainer.precision),
        "batch": batch_shape,
        "tokens_per_step": tokens,
        "step_ratio_lora_over_full": ratio,
        "step_ratios": ratios,
        "step_seconds": seconds,
        "tokens_per_second": {name: tokens / s for name, s in step.items()},
        "memory_kind": memory_kind,
        "memory_bytes": memory,
        "training_state_bytes": state,
        "checkpoint_bytes": ckpt,
        "load_average_before_after": [load, os.getloadavg()[0]],
        "provenance": provenance(
            {"full": full.setup.config, "lora": lora.setup.config}, config["seed"]
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny_llama", "tiny_llama_wide"])
    parser.add_argument(
        "--tinyllama", action="store_true", help="TinyLlama-1.1B, random init (for a GPU)"
    )
    parser.add_argument("--steps", type=int, default=12, help="timed training steps per repeat")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch CPU threads"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("overrides", nargs="*", help="train.py config overrides")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    register_configs()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    models = ["tinyllama_1.1b_random"] if args.tinyllama else args.models
    with tempfile.TemporaryDirectory() as run_dir:
        results = [run_model(model, args, args.overrides, run_dir) for model in models]
    if args.json:
        write_json(
            args.json, {"benchmark": "adapter_overhead", "args": vars(args), "results": results}
        )


if __name__ == "__main__":
    sys.exit(main())
