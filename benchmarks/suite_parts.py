"""The parts of benchmarks/gpu_suite.sh: each measures one figure and returns it as a dict.

Each part builds what it measures through the benchmarks that already measure it on a CPU
(constraint_overhead, train_overhead, eval_throughput, attack_efficiency, checkpoint_cost), at
the sizes of a `SuiteSettings` profile, with real architectures built offline from their
published configs (`model.pretrained=false`) and the bundled tokenizer where train.py's own path
needs one (`model.tokenizer=bundled`: its ids fit the published vocabulary; the embedding keeps
the real model's size). A part runs in a forked child (suite_runner): it raises to fail, or
`PartSkipped` to say why it cannot run here.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import lightning
import torch
import transformers
from attack_efficiency import attack_rows
from checkpoint_cost import measure_model
from constraint_overhead import Arm, compose_cfg, time_training
from eval_throughput import load_texts
from eval_throughput import measure as measure_eval
from suite_runner import PartSkipped, run_forked
from suite_settings import SuiteSettings
from train_overhead import lightning_tokens_per_s, plain_tokens_per_s

from monolm.data.datamodule import TextDataModule
from monolm.inference import Placement
from monolm.models.loading import load_model_config, load_tokenizer
from monolm.provenance import code_version
from monolm.run_dir import RunDir
from monolm.training.run import prepare, train

AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
REPO = Path(__file__).resolve().parents[1]


def log(*parts: Any) -> None:
    print(*parts, flush=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def train_overrides(
    s: SuiteSettings, option: str, seq_len: int, batch_size: int, trainer: tuple[str, ...] = ()
) -> list[str]:
    """train.py overrides for `option`'s published architecture with random weights on the
    bundled text (tokenised by the bundled tokenizer), offline."""
    return [
        f"model={option}",
        "model.pretrained=false",
        "model.tokenizer=bundled",
        *s.published(option),
        "dataset=tiny_lm",
        f"dataset.max_length={seq_len}",
        f"data.batch_size={batch_size}",
        *(trainer or s.trainer),
        "logger=csv",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
    ]


ARMS = {
    "none": ("constraint=none",),
    "softplus": ("constraint=monotonic", "constraint.parametrization=softplus"),
    "project": ("constraint=monotonic", "constraint.parametrization=project"),
}


def train_configs(s: SuiteSettings, work: Path) -> dict[str, list[str]]:
    """Every train.py config the parts compose, by name (tests compose and validate each one
    at GPU sizes too: a typo in an override fails on a CPU, not on the GPU)."""
    configs: dict[str, list[str]] = {}
    horizon = s.repeats * 2 * (s.warmup + s.steps)  # the none arm's steps
    for arm, extra in ARMS.items():
        configs[f"train_constraint/{arm}"] = [
            *train_overrides(s, s.train_model, s.seq_len, s.batch_size),
            f"trainer.max_steps={horizon}",
            *extra,
            f"paths.output_dir={work / arm}",
        ]
    configs["train_loop"] = [
        *train_overrides(s, s.train_model, s.seq_len, s.batch_size),
        f"trainer.max_steps={s.loop_warmup + s.loop_steps}",
        "trainer.limit_val_batches=0",
        "callbacks.checkpoint_every_n_steps=1000000",
        f"paths.output_dir={work / 'loop'}",
    ]
    configs["checkpoint"] = [  # after checkpoint_cost.measure_model's own (model=, 2 steps...)
        *train_overrides(s, s.train_model, s.checkpoint_seq_len, s.checkpoint_batch_size),
    ]
    fsdp_trainer = ("trainer=fsdp", "trainer.devices=1", f"trainer.precision={s.precision}")
    if s.device != "cuda":
        fsdp_trainer += ("trainer.accelerator=cpu",)
    configs["fsdp"] = [
        *train_overrides(s, s.fsdp_model, s.small_seq_len, s.small_batch_size, fsdp_trainer),
        "constraint=monotonic",
        "trainer.max_steps=2",
        "trainer.val_check_interval=null",
        "dataset.max_validation_examples=8",
        f"paths.output_dir={work / 'fsdp'}",
    ]
    resume = [
        *train_overrides(s, s.resume_model, s.small_seq_len, s.small_batch_size),
        "optim.schedule_steps=2",
        "trainer.val_check_interval=null",
        "dataset.max_validation_examples=8",
    ]
    for run, steps, folder in RESUME_RUNS:
        configs[f"resume/{run}"] = [
            *resume,
            f"trainer.max_steps={steps}",
            f"paths.output_dir={work / folder}",
        ]
    return configs


# (name, steps, run dir): two straight runs, then one run in two segments
RESUME_RUNS = (
    ("straight", 2, "straight"),
    ("again", 2, "again"),
    ("first_step", 1, "resumed"),
    ("resumed", 2, "resumed"),
)


def flops_per_token(model: torch.nn.Module, seq_len: int) -> dict[str, int]:
    """Training FLOPs per token: 6 x the parameters that multiply (all but an untied input
    embedding, a lookup) plus PaLM's attention term 12 x layers x hidden x sequence (the
    causal mask's skipped half is counted, as PaLM and most MFU figures count it)."""
    config = model.config
    params = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight
    output = model.get_output_embeddings()
    tied = output is not None and output.weight is embedding
    matmul = params - (0 if tied else embedding.numel())
    attention = 12 * config.num_hidden_layers * config.hidden_size * seq_len
    return {
        "parameters": params,
        "matmul_parameters": matmul,
        "flops_per_token": 6 * matmul + attention,
        "attention_flops_per_token": attention,
    }


# --- environment and peak ---------------------------------------------------------------------


def filesystem(path: Path) -> str:
    """The type of the filesystem holding `path` (ext4, xfs, overlay, tmpfs, nfs...)."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    resolved = str(path.resolve())
    holding = [(point, kind) for point, kind in mounts if resolved.startswith(point.rstrip("/"))]
    return max(holding, key=lambda m: len(m[0]))[1] if holding else "unknown"


def source_sha256() -> str:
    """A hash of the code and configs that ran (src/, benchmarks/, conf/, the entry points):
    a copy of the working tree without .git is still matched to a commit by recomputing it."""
    digest = hashlib.sha256()
    files = [p for d in ("src", "benchmarks", "conf") for p in (REPO / d).rglob("*")]
    files += [REPO / name for name in ("train.py", "evaluate.py", "attack.py")]
    for path in sorted(p for p in files if p.suffix in (".py", ".yaml", ".sh") and p.is_file()):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def environment(s: SuiteSettings, work: Path) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "lightning": lightning.__version__,
        "code": code_version(),
        "source_sha256": source_sha256(),
        "host_cpus": os.cpu_count(),
        "host_memory_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9,
        "work_disk_free_gb": shutil.disk_usage(work.parent).free / 1e9,
        "work_filesystem": filesystem(work),
    }
    if s.device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA device is visible (run --cpu-smoke on a machine without)")
        props = torch.cuda.get_device_properties(0)
        info |= {
            "device": props.name,
            "device_count": torch.cuda.device_count(),
            "capability": f"{props.major}.{props.minor}",
            "device_memory_gb": props.total_memory / 1e9,
            "bf16_supported": torch.cuda.is_bf16_supported(),
            "cudnn": torch.backends.cudnn.version(),
        }
        if not info["bf16_supported"]:
            raise RuntimeError(f"{props.name} has no bf16: the suite measures bf16-mixed")
    else:
        info["device"] = f"CPU ({platform.processor() or platform.machine()})"
        info["threads"] = torch.get_num_threads()
    return info


def matmul_peak(s: SuiteSettings, work: Path) -> dict[str, Any]:
    """The device's dense matmul rate at the autocast dtype (bf16), measured: square products
    at each size, repeated for `peak_seconds` after warm-up; the best size is the peak MFU is
    measured against (on a CPU, the CPU's, the same way)."""
    device, dtype = torch.device(s.device), AUTOCAST.get(s.precision, torch.float32)
    sizes = {}
    for n in s.peak_sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(3):
            a @ b
        _sync(device)
        count, start = 0, time.perf_counter()
        while True:
            for _ in range(5):
                a @ b
            count += 5
            _sync(device)
            elapsed = time.perf_counter() - start
            if elapsed >= s.peak_seconds:
                break
        sizes[n] = 2 * n**3 * count / elapsed / 1e12
        log(f"matmul {n}^3 {dtype}: {sizes[n]:.1f} TFLOP/s")
        del a, b
    return {"dtype": str(dtype), "tflops_by_size": sizes, "peak_tflops": max(sizes.values())}


# --- training ---------------------------------------------------------------------------------


def synthetic_batches(
    count: int, batch_size: int, seq_len: int, vocab: int, device: torch.device
) -> list[dict[str, torch.Tensor]]:
    """Causal LM batches of random token ids (as the collator makes them: labels = inputs)."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(count):
        ids = torch.randint(vocab, (batch_size, seq_len), generator=generator)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
        batches.append({k: v.to(device) for k, v in batch.items()})
    return batches


def train_constraint(s: SuiteSettings, work: Path) -> dict[str, Any]:
    """constraint_overhead's training step (train.py's step: cached weights, clipping, the
    module's AdamW groups, schedule, projection) for none, monotonic softplus and monotonic
    project, built by train.py's `prepare`, on the same synthetic batches; the arms take turns
    step by step (none with each monotonic arm in turn)."""
    device, configs = torch.device(s.device), train_configs(s, work)
    arms = {}
    for name in ARMS:
        cfg = compose_cfg(configs[f"train_constraint/{name}"])
        arms[name] = Arm(name, prepare(cfg), device, cfg.trainer.precision)
        log(f"built {name}: {len(arms[name].constraint.layers)} constrained layers")
    flops = flops_per_token(arms["none"].model, s.seq_len)
    vocab = arms["none"].model.config.vocab_size
    batches = synthetic_batches(s.warmup + s.steps, s.batch_size, s.seq_len, vocab, device)
    seconds: dict[str, list[float]] = {name: [] for name in ARMS}
    ratios: dict[str, list[float]] = {"softplus": [], "project": []}
    for repeat in range(s.repeats):
        for mono in ratios:
            none_s, mono_s = time_training((arms["none"], arms[mono]), batches, s.warmup)
            seconds["none"].append(none_s)
            seconds[mono].append(mono_s)
            ratios[mono].append(mono_s / none_s)
            log(f"repeat {repeat}: none {none_s:.4f} s/step, {mono} {mono_s:.4f} s/step")
    tokens = s.batch_size * s.seq_len
    step_s = {name: statistics.median(v) for name, v in seconds.items()}
    memory = torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None
    return {
        "model": s.train_model,
        "precision": s.precision,
        "batch": [s.batch_size, s.seq_len],
        "timed_steps": s.steps,
        "warmup_steps": s.warmup,
        "repeats": s.repeats,
        **flops,
        "step_s": step_s,
        "tokens_per_s": {name: tokens / sec for name, sec in step_s.items()},
        "ratio": {mono: statistics.median(r) for mono, r in ratios.items()},
        "ratios": ratios,
        "peak_memory_gb": memory,
    }


def train_loop(s: SuiteSettings, work: Path) -> dict[str, Any]:
    """train_overhead: train.py's Lightning loop (prepare + fit, its callbacks and CSV logger;
    its final checkpoint save left out) vs a plain PyTorch loop on the same batches."""
    cfg = compose_cfg(train_configs(s, work)["train_loop"])
    tokenizer = load_tokenizer(cfg.model, cfg.paths.cache_dir)
    model_config = load_model_config(cfg.model, tokenizer)
    datamodule = TextDataModule(cfg.dataset, cfg.data, tokenizer, cfg.seed, cfg.model.family)
    datamodule.build()
    device, dtype = torch.device(s.device), AUTOCAST.get(s.precision)
    plain, lightning_rates = [], []
    for repeat in range(s.loop_repeats):
        plain.append(
            plain_tokens_per_s(cfg, model_config, datamodule, s.loop_warmup, device, dtype)
        )
        _free()
        lightning_rates.append(lightning_tokens_per_s(cfg, s.loop_warmup, False, work))
        _free()
        log(f"repeat {repeat}: plain {plain[-1]:,.0f} tok/s, train.py {lightning_rates[-1]:,.0f}")
    ratios = [t / p for t, p in zip(lightning_rates, plain, strict=True)]
    return {
        "model": s.train_model,
        "batch": [s.batch_size, s.seq_len],
        "timed_steps": s.loop_steps,
        "warmup_steps": s.loop_warmup,
        "train_blocks": len(datamodule.train_set),
        "plain_tokens_per_s": statistics.median(plain),
        "train_py_tokens_per_s": statistics.median(lightning_rates),
        "ratio": statistics.median(ratios),
        "ratios": ratios,
    }


# --- evaluation and attacks -------------------------------------------------------------------


def evaluation(s: SuiteSettings, work: Path) -> dict[str, Any]:
    """eval_throughput: evaluate.py's perplexity path (Subject, TaskContext, its inference
    context with bf16 autocast) vs a direct Hugging Face loop, and the FFN's output dtype."""
    result = measure_eval(
        [f"model={s.train_model}", f"paths.output_dir={work}"],
        [
            "pretrained=false",
            "tokenizer=bundled",
            *(o.removeprefix("model.") for o in s.published(s.train_model)),
        ],
        load_texts("train", s.eval_docs),
        device=s.device,
        precision="bf16",
        batch_size=s.eval_batch_size,
        max_length=s.eval_max_length,
        repeats=s.eval_repeats,
        report=log,
    )
    result["ffn_ran_in_bf16"] = result["ffn_output_dtypes"] == [str(torch.bfloat16)]
    return result


def attacks(s: SuiteSettings, work: Path) -> dict[str, Any]:
    """attack_efficiency --gpu-sizes: HotFlip and UAT per-example time and share of wall time
    in the model, on random-token examples, for each model's published architecture."""
    args = argparse.Namespace(
        placement=Placement(s.device, "bf16"),
        batch_size=s.attack_batch_size,
        repeats=s.attack_repeats,
        examples=s.attack_examples,
        audit_examples=0,
        profile=False,
        constraint="none",
    )
    rows = []
    for option in s.attack_models:
        overrides = [*s.published(option), f"paths.output_dir={work}"]
        kinds = ["hotflip", "uat"]
        rows += attack_rows([option], args, overrides, kinds, True, s.attack_lengths)
        _free()
    keep = ("model", "attack", "examples", "per_example_s", "share", "wall_s", "model_s")
    keep += ("candidates", "candidates_per_s", "ref_seq_per_s", "ratio_to_reference")
    return {"rows": [{k: row[k] for k in keep} for row in rows]}


def checkpoint(s: SuiteSettings, work: Path) -> dict[str, Any]:
    """checkpoint_cost: the full training checkpoint (fp32 weights and AdamW moments) of a
    2-step run, saved (AtomicCheckpointIO), fsynced, loaded weights-only and serialised, on
    the work directory's disk (its filesystem recorded: a tmpfs would measure memory)."""
    overrides = [o for o in train_configs(s, work)["checkpoint"] if not o.startswith("model=")]
    row = measure_model(s.train_model, work, s.checkpoint_repeats, overrides, fit_saves=False)
    return {
        **row,
        "gb": row["mb"] / 1e3,
        "repeats": s.checkpoint_repeats,
        "dir": str(work),
        "filesystem": filesystem(work),
    }


# --- train.py's body: FSDP and resume ---------------------------------------------------------


def _weights_min(record: Any) -> float:
    """The smallest `min_weight` of a constrained projection anywhere in a guarantee record."""
    if isinstance(record, dict):
        own = [record["min_weight"]] if record.get("constrained") and "min_weight" in record else []
        return min([*own, *(_weights_min(v) for v in record.values())], default=float("inf"))
    if isinstance(record, list):
        return min((_weights_min(v) for v in record), default=float("inf"))
    return float("inf")


def _run_summary(run_dir: Path) -> dict[str, Any]:
    layout = RunDir(run_dir)
    metrics = json.loads(layout.metrics_record.read_text())
    return {
        "status": layout.status(),
        "global_step": metrics.get("global_step"),
        "train_loss": metrics.get("train/loss"),
        "val_loss": metrics.get("val/loss"),
        "checkpoint_mb": layout.last_checkpoint.stat().st_size / 1e6,
    }


def fsdp(s: SuiteSettings, work: Path) -> dict[str, Any]:
    """train.py's body (`monolm.training.run.train`), trainer=fsdp on one device with
    constraint=monotonic (softplus parametrisation), 2 steps, a full-state checkpoint."""
    cfg = compose_cfg(train_configs(s, work)["fsdp"])
    run_dir = Path(cfg.paths.output_dir)
    try:
        train(cfg)
    except ValueError as exc:
        if s.device != "cuda" and "requires a GPU accelerator" in str(exc):
            raise PartSkipped(
                "Lightning runs FSDP on CUDA only: on a CPU the run stops at the Trainer, "
                f"after config, data, model and constraint were built ({exc})"
            ) from exc
        raise
    record = json.loads(RunDir(run_dir).transform_record("monotonicity").read_text())
    final = record["final"]
    return {
        "model": s.fsdp_model,
        **_run_summary(run_dir),
        "constrained_min_weight": _weights_min(final),
        "summary": final["summary"],
    }


def _train_in_child(overrides: list[str], bound_s: float) -> None:
    """One train.py run in its own (forked) process, as a user's command would run it."""
    outcome = run_forked(partial(train, compose_cfg(overrides)), bound_s, group=False)
    if outcome.status != "ok":
        raise RuntimeError(f"training {overrides[-1]}: {outcome.status}: {outcome.reason}")


def _tensors(obj: Any, where: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        yield where, obj
    elif isinstance(obj, dict):
        for key in sorted(obj, key=str):
            yield from _tensors(obj[key], f"{where}.{key}")
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            yield from _tensors(value, f"{where}[{i}]")


def _difference(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """How two checkpoints' weights and optimizer states differ, tensor by tensor."""
    left = dict(_tensors({"state_dict": a["state_dict"], "optimizer": a["optimizer_states"]}))
    right = dict(_tensors({"state_dict": b["state_dict"], "optimizer": b["optimizer_states"]}))
    if left.keys() != right.keys():
        raise RuntimeError(f"the checkpoints hold different tensors: {left.keys() ^ right.keys()}")
    equal, worst, where = 0, 0.0, None
    for key, x in left.items():
        y = right[key]
        if torch.equal(x, y):
            equal += 1
            continue
        diff = float((x.double() - y.double()).abs().max())
        if diff > worst:
            worst, where = diff, key
    return {"tensors": len(left), "equal": equal, "max_abs_diff": worst, "worst_tensor": where}


def resume(s: SuiteSettings, work: Path) -> dict[str, Any]:
    """train.py's body, each run in a new process: 2 straight steps, the same again (how much
    two identical runs differ on this device), and 1 step then a resume to 2. bf16-mixed on a
    GPU is not bit-exact (cuBLAS/SDPA backward kernels may sum in any order): a resume is
    sound when it differs from the straight run by no more than two straight runs differ."""
    configs = train_configs(s, work)
    for run, _, _ in RESUME_RUNS:  # in order: the resumed run's second segment comes last
        _train_in_child(configs[f"resume/{run}"], s.bounds["resume"] / 3)

    def last(folder: str) -> dict[str, Any]:
        path = RunDir(work / folder).last_checkpoint
        return torch.load(path, weights_only=True, map_location="cpu")

    straight, again, resumed = last("straight"), last("again"), last("resumed")
    run_to_run, resumed_diff = _difference(straight, again), _difference(straight, resumed)
    same_position = all(
        straight[k] == resumed[k] for k in ("global_step", "epoch", "lr_schedulers")
    )
    return {
        "model": s.resume_model,
        "precision": s.precision,
        "steps": 2,
        "same_step_epoch_schedule": same_position,
        "bit_exact": resumed_diff["equal"] == resumed_diff["tensors"],
        "run_to_run_bit_exact": run_to_run["equal"] == run_to_run["tensors"],
        "within_run_to_run": same_position
        and resumed_diff["max_abs_diff"] <= run_to_run["max_abs_diff"],
        "resumed_vs_straight": resumed_diff,
        "straight_vs_straight": run_to_run,
    }


def run_part(name: str, s: SuiteSettings, work: Path) -> dict[str, Any]:
    """Part `name` as the suite runs it (in its forked child)."""
    if s.threads:
        torch.set_num_threads(s.threads)
    return PART_FUNCTIONS[name](s, work)


PART_FUNCTIONS: dict[str, Callable[[SuiteSettings, Path], dict[str, Any]]] = {
    "environment": environment,
    "peak": matmul_peak,
    "train_constraint": train_constraint,
    "train_loop": train_loop,
    "eval": evaluation,
    "attack": attacks,
    "checkpoint": checkpoint,
    "fsdp": fsdp,
    "resume": resume,
}
