"""The parts of benchmarks/gpu_suite.sh: each measures one figure and returns it as a dict.

Each part builds what it measures through the benchmarks that already measure it on a CPU
(constraint_overhead, train_overhead, eval_throughput, attack_efficiency, checkpoint_cost), at
the sizes of a `SuiteSettings` profile, on the configs of suite_configs. The device and peak
parts live in suite_device, the runs of train.py's body (FSDP, resume) in suite_runs. A part
runs in a forked child (suite_runner): it raises to fail, or `PartSkipped` to say why it cannot
run here.
"""

from __future__ import annotations

import argparse
import gc
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from attack_efficiency import attack_rows
from checkpoint_cost import measure_model
from constraint_overhead import Arm, compose_cfg, time_training
from eval_throughput import load_texts
from eval_throughput import measure as measure_eval
from suite_configs import ARMS, train_configs
from suite_device import AUTOCAST, environment, filesystem, log, matmul_peak
from suite_runs import fsdp, resume
from suite_settings import SuiteSettings
from train_overhead import lightning_tokens_per_s, plain_tokens_per_s

from monolm.data.datamodule import TextDataModule
from monolm.inference import Placement
from monolm.models.loading import load_model_config, load_tokenizer
from monolm.training.run import prepare


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


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
