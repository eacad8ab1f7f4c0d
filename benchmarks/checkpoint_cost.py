"""Seconds to save and load a training checkpoint, and the SLURM `signal_delay_s` they call for.

submitit sends SIGUSR2 `signal_delay_s` seconds before the time limit (conf/hydra/launcher/
slurm.yaml); training then finishes the optimizer step and StepCheckpoint saves, so the delay
must cover one step plus the save. In one process:

1. tiny_pythia and tiny_t5: a real 2-step run through `monolm.training.run.prepare` +
   `trainer.fit` (train.py's path). The .ckpt files its final-step save wrote are counted: a
   stop-signal save is the same call (top-k `step-*.ckpt`, then `last.ckpt`, each a full copy).
   Then, median over --repeats: `trainer.save_checkpoint` (AtomicCheckpointIO: temp file +
   rename; no fsync), the fsync after it, `load_checkpoint` (weights-only, mmap) of the evicted
   file with every tensor cloned, and `torch.save` of the loaded dict into memory (the
   serialisation `_atomic_save` does before it writes).
2. Disk bandwidth in the same directory, --repeats times: --probe-mb of random bytes written to
   a fresh file and fsync'd; evicted with posix_fadvise(DONTNEED) and read back. The slowest
   write is used below. The page cache cannot be dropped without root (and a VM's host may cache
   its disk), so the read figure is an upper bound.
3. Computed, not run: checkpoint bytes under bf16-mixed AdamW (fp32 weights 4 B + exp_avg and
   exp_avg_sq 8 B = 12 B/param; under DDP every rank holds a copy, rank 0 alone writes);
   save_s = files per save x bytes x (1 / serialise rate + 1 / write rate);
   signal_delay_s = --margin x (save_s + --step-seconds), rounded up to a multiple of 30 s.
   --step-seconds (default 2.0, a guess for one pythia_1.4b optimizer step on an A100) is an
   assumption: pass your own measured step time (gradient accumulation included). Run it with
   --dir on the filesystem that holds the cluster's run directories.

    python benchmarks/checkpoint_cost.py [--repeats 5] [--probe-mb 512] [--dir outputs]
        [--step-seconds 2.0] [--margin 3] [--models tiny_pythia tiny_t5]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir

from monolm.config.schema import register_configs
from monolm.training.callbacks import StepCheckpoint
from monolm.training.checkpoint_io import load_checkpoint
from monolm.training.run import prepare

REPO = Path(__file__).resolve().parents[1]
MB = 1e6
BYTES_PER_PARAM = 12  # fp32 master weights + AdamW exp_avg + exp_avg_sq (bf16-mixed keeps fp32)
# Total parameters as published: Pythia model cards (huggingface.co/EleutherAI/pythia-*,
# "Naming convention and parameter count" table); t5-base: 222,903,552 (HF T5ForConditional-
# Generation, tied embeddings). Each equals a count of the option's published architecture
# (conf/model/<name>.yaml `published`) built on the meta device: tests/test_published_
# architectures.py checks it. benchmarks/gpu_suite.sh measures pythia_1.4b's for real.
PUBLISHED = {
    "t5_base": 222_903_552,
    "pythia_410m": 405_334_016,
    "pythia_1.4b": 1_414_647_808,
    "pythia_2.8b": 2_775_208_960,
}


def tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from tensors(value)
    elif isinstance(obj, list | tuple):
        for value in obj:
            yield from tensors(value)


def evict(path: Path) -> None:
    """fsync, then ask the kernel to drop the file's pages (advisory: an upper bound remains)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed(fn: Any, *args: Any, **kwargs: Any) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def measure_model(
    model: str,
    root: Path,
    repeats: int,
    overrides: Sequence[str] = (),
    fit_saves: bool = True,
) -> dict[str, Any]:
    """Save, fsync, load and serialise times of the checkpoint of a 2-step run of `model` (with
    train.py `overrides`). `fit_saves=False`: the run's own final save is skipped (the files
    per save are then not counted): a large model's fit need not write it twice over."""
    run_dir = Path(tempfile.mkdtemp(dir=root, prefix=f"{model}-"))
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"model={model}",
                "trainer.max_steps=2",
                "trainer.val_check_interval=null",
                "trainer.limit_val_batches=0",
                "trainer.enable_progress_bar=false",
                "trainer.enable_model_summary=false",
                "callbacks.checkpoint_every_n_steps=1000000",
                "data.batch_size=4",
                f"paths.output_dir={run_dir}",
                *overrides,
            ],
        )
    setup = prepare(cfg)
    trainer = setup.trainer
    if not fit_saves:
        trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, StepCheckpoint)]
    trainer.fit(setup.module, datamodule=setup.datamodule)
    # All written by the final-step save (no periodic ones): the stop-signal save's file count
    files_per_save = len(list((run_dir / "checkpoints").glob("*.ckpt"))) if fit_saves else None
    path = run_dir / "bench.ckpt"
    times: dict[str, list[float]] = {"save": [], "fsync": [], "load": [], "serialise": []}
    for _ in range(repeats):
        path.unlink(missing_ok=True)  # a new file each time (and one copy on disk at most)
        # weights_only=False: what ModelCheckpoint passes (full training state)
        times["save"].append(timed(trainer.save_checkpoint, path, weights_only=False))
        times["fsync"].append(timed(evict, path))
        start = time.perf_counter()
        checkpoint = load_checkpoint(path)
        for t in tensors(checkpoint):
            t.clone()  # forces the mmap'd bytes to be read
        times["load"].append(time.perf_counter() - start)
        times["serialise"].append(timed(torch.save, checkpoint, io.BytesIO()))
    n_params = sum(t.numel() for t in setup.module.model.parameters())
    med = {k: statistics.median(v) for k, v in times.items()}
    size = path.stat().st_size
    path.unlink()
    mb = size / MB
    return {
        "model": model,
        "params": n_params,
        "mb": mb,
        "bytes_per_param": size / n_params,
        "optimizer_states": len(checkpoint.get("optimizer_states", [])),
        "files_per_save": files_per_save,
        **{f"{k}_s": v for k, v in med.items()},
        "save_mb_s": mb / med["save"],
        "save_fsync_mb_s": mb / (med["save"] + med["fsync"]),
        "load_mb_s": mb / med["load"],
        "serialise_mb_s": mb / med["serialise"],
    }


def probe_disk(root: Path, probe_mb: int, repeats: int, chunk: int = 16 * 2**20) -> list[float]:
    """(slowest and median write MB/s with fsync, median read MB/s after eviction: an upper
    bound), a fresh file in the same directory each repeat."""
    data = memoryview(os.urandom(probe_mb * 2**20))
    path = root / "probe.bin"
    writes, reads = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        with open(path, "wb", buffering=0) as handle:
            for offset in range(0, len(data), chunk):
                handle.write(data[offset : offset + chunk])
            os.fsync(handle.fileno())
        writes.append(len(data) / MB / (time.perf_counter() - start))
        evict(path)
        start = time.perf_counter()
        with open(path, "rb", buffering=0) as handle:
            while handle.read(chunk):
                pass
        reads.append(len(data) / MB / (time.perf_counter() - start))
        path.unlink()
    return [min(writes), statistics.median(writes), statistics.median(reads)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny_pythia", "tiny_t5"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--probe-mb", type=int, default=512)
    parser.add_argument("--dir", type=Path, default=REPO / "outputs")
    parser.add_argument(
        "--step-seconds", type=float, default=2.0, help="one optimizer step: use your own"
    )
    parser.add_argument("--margin", type=float, default=3.0)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)

    register_configs()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="checkpoint_cost-") as tmp:
        root = Path(tmp)
        rows = [measure_model(model, root, args.repeats) for model in args.models]
        write_mb_s, write_median, read_mb_s = probe_disk(root, args.probe_mb, args.repeats)

    print(f"\nmeasured in {args.dir} (threads={torch.get_num_threads()}, median of {args.repeats})")
    print(
        "| model | params | ckpt MB | B/param | files/save | save s | fsync s | load s | "
        "save MB/s | save+fsync MB/s | load MB/s | serialise MB/s |"
    )
    for r in rows:
        cells = [r["model"], f"{r['params']:,}", f"{r['mb']:.1f}", f"{r['bytes_per_param']:.2f}"]
        cells += [r["files_per_save"], *(f"{r[k]:.3f}" for k in ("save_s", "fsync_s", "load_s"))]
        cells += [f"{r[k]:.0f}" for k in ("save_mb_s", "save_fsync_mb_s", "load_mb_s")]
        print("| " + " | ".join(map(str, [*cells, f"{r['serialise_mb_s']:.0f}"])) + " |")
    print(
        f"disk probe ({args.probe_mb} MiB x {args.repeats}, same dir): write+fsync slowest "
        f"{write_mb_s:.0f} MB/s (used below), median {write_median:.0f} MB/s; read median "
        f"{read_mb_s:.0f} MB/s (an upper bound: the page cache cannot be dropped without root)"
    )

    serialise_mb_s = min(r["serialise_mb_s"] for r in rows)
    files = max(r["files_per_save"] for r in rows)
    print(
        f"\ncomputed: {BYTES_PER_PARAM} B/param, {files} file(s) per stop save, serialise "
        f"{serialise_mb_s:.0f} MB/s + write {write_mb_s:.0f} MB/s, step {args.step_seconds} s "
        "(assumed: pass your own --step-seconds)"
    )
    print("| model | params | ckpt GB | save s/file | save s (stop) | load s | signal_delay_s |")
    computed = []
    for name, n_params in PUBLISHED.items():
        mb = n_params * BYTES_PER_PARAM / MB
        one = mb / serialise_mb_s + mb / write_mb_s
        save_s, load_s = files * one, mb / read_mb_s
        delay = 30 * math.ceil(args.margin * (save_s + args.step_seconds) / 30)
        computed.append(
            {
                "model": name,
                "params": n_params,
                "gb": mb / 1e3,
                "save_s": save_s,
                "load_s": load_s,
                "signal_delay_s": delay,
            }
        )
        print(
            f"| {name} | {n_params:,} | {mb / 1e3:.1f} | {one:.1f} | {save_s:.1f} | {load_s:.1f} "
            f"| {delay} |"
        )
    summary = {"measured": rows, "write_mb_s": write_mb_s, "write_median_mb_s": write_median}
    summary["read_mb_s"] = read_mb_s
    summary |= {"step_seconds": args.step_seconds, "margin": args.margin, "computed": computed}
    print(json.dumps(summary))
    target = next(c for c in computed if c["model"] == "pythia_1.4b")
    print(
        f"signal_delay_s for pythia_1.4b with a {args.margin:g}x margin: "
        f"{target['signal_delay_s']} (conf/hydra/launcher/slurm.yaml has 300)"
    )


if __name__ == "__main__":
    sys.exit(main())
