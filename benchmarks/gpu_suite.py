"""Every GPU figure in one prepared, offline run (run it through benchmarks/gpu_suite.sh).

Parts, in order (suite_settings.PARTS; what each measures: suite_device, suite_parts,
suite_runs; their configs: suite_configs; sizes and time estimates: suite_settings):
environment, matmul peak, pythia_1.4b bf16-mixed training with constraint none / monotonic
softplus / monotonic project (tokens/s, MFU, step-time ratio),
train.py's loop vs a plain loop, evaluate's perplexity path vs a direct HF loop (and the FFN's
dtype), HotFlip and UAT on t5_small and pythia_1.4b sizes, pythia_1.4b checkpoint save/load,
a 2-step FSDP smoke with the parametrisation, a 2-step bf16-mixed resume check.

Each part runs in a forked child with its own bound (min of its bound and what is left of the
suite's budget; a part that would start with under MIN_START_S left is not started), so a part
that fails, hangs or runs out of memory is recorded with its reason and the others still run.
Writes one JSON (`<out>/<suite>-<date>.json`: environment, settings, every part's status, wall
seconds, bound and result or reason, the headline figures and targets) and appends a markdown
table to RESULTS.md (`--cpu-smoke`: to `<out>/RESULTS.md`, never to benchmarks/RESULTS.md).
Exit status 0 when every part ran (on a CPU, the FSDP part is skipped: Lightning runs FSDP on
CUDA only), 1 otherwise.

    benchmarks/gpu_suite.sh [--cpu-smoke] [--out DIR] [--results-md FILE] [--work DIR]
        [--parts NAME ...] [--budget-s SECONDS]
"""

from __future__ import annotations

import os
import time

STARTED = time.monotonic()  # the budget counts from here, imports included
# torch.cuda.is_available() through NVML, wherever it is called before the parts are forked: the
# CUDA runtime's own query would spoil CUDA for every forked child ("poison fork").
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from dataclasses import asdict  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESERVE_S = 15  # kept for writing the results after the last part
MIN_START_S = 20  # a part is not started with less than this left


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from suite_settings import PARTS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cpu-smoke", action="store_true", help="the same code at tiny sizes on the CPU"
    )
    parser.add_argument("--out", type=Path, default=None, help="default benchmarks/results")
    parser.add_argument("--results-md", type=Path, default=None)
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="scratch for checkpoints and runs, on the disk measured (default: outputs/; "
        "--cpu-smoke: --out)",
    )
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--budget-s", type=float, default=None)
    args = parser.parse_args(argv)
    if args.out is None:
        if args.cpu_smoke:
            parser.error("--cpu-smoke writes to a scratch directory: pass --out DIR")
        args.out = REPO / "benchmarks" / "results"
    if args.work is None:
        args.work = args.out if args.cpu_smoke else REPO / "outputs"
    if args.results_md is None:
        smoke = args.cpu_smoke
        args.results_md = args.out / "RESULTS.md" if smoke else REPO / "benchmarks" / "RESULTS.md"
    return args


def _stamped(out: Path, suite: str) -> Path:
    """`<out>/<suite>-<date>.json`, numbered when one exists already."""
    date = datetime.date.today().isoformat()
    path, n = out / f"{suite}-{date}.json", 2
    while path.exists():
        path, n = out / f"{suite}-{date}-{n}.json", n + 1
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The heavy imports, once: every part is a fork of this process.
    import suite_parts
    import suite_report
    import torch
    from suite_runner import run_forked
    from suite_settings import CPU_SMOKE, GPU

    from monolm.config.eval_schema import register_evaluate_configs
    from monolm.config.schema import register_configs
    from monolm.constraints import register_constraint_configs

    settings = CPU_SMOKE if args.cpu_smoke else GPU
    budget = args.budget_s or settings.budget_s
    register_configs()
    register_constraint_configs()
    register_evaluate_configs()
    if torch.cuda.is_initialized():
        raise SystemExit("CUDA was initialised before the parts were forked: a bug of the suite")

    args.out.mkdir(parents=True, exist_ok=True)
    json_path = _stamped(args.out, settings.name)
    logs = json_path.with_suffix("").with_name(json_path.stem + "-logs")
    logs.mkdir()
    args.work.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-suite-", dir=args.work))
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    deadline = STARTED + budget - RESERVE_S
    print(f"{settings.name}: parts {' '.join(args.parts)}; budget {budget:.0f} s; logs {logs}")

    parts: dict[str, dict[str, Any]] = {}
    broken = None  # no device: nothing after `environment` can run
    for name in args.parts:
        left = deadline - time.monotonic()
        if broken or left < MIN_START_S:
            why = broken or f"not started: {left:.0f} s of the suite's budget left"
            parts[name] = {"status": "not_run", "reason": why, "wall_s": None, "bound_s": None}
            print(f"  {name:<17} not run ({why})", flush=True)
            continue
        bound = min(settings.bounds[name], left)
        (work / name).mkdir()
        fn = partial(suite_parts.run_part, name, settings, work / name)
        outcome = run_forked(fn, bound, logs / f"{name}.log")
        parts[name] = {**asdict(outcome), "bound_s": bound}
        shutil.rmtree(work / name, ignore_errors=True)  # a 17 GB checkpoint goes at once
        reason = f" ({outcome.reason})" if outcome.reason else ""
        print(f"  {name:<17} {outcome.status} in {outcome.wall_s:.1f} s{reason}", flush=True)
        if name == "environment" and outcome.status != "ok":
            broken = f"the environment part {outcome.status}: {outcome.reason}"

    figures = suite_report.headline(parts)
    record = {
        "suite": settings.name,
        "started": started,
        "wall_s": time.monotonic() - STARTED,
        "budget_s": budget,
        "settings": {**asdict(settings), "budget_s": budget},
        "figures": figures,
        "targets": {k: f"{op} {bound}" for k, (op, bound) in suite_report.TARGETS.items()},
        "targets_met": suite_report.verdicts(figures),
        "parts": parts,
    }
    json_path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    table = suite_report.markdown(record, json_path.name)
    with open(args.results_md, "a", encoding="utf-8") as handle:
        handle.write(table)
    shutil.rmtree(work, ignore_errors=True)
    print(table)
    print(f"wrote {json_path} and appended to {args.results_md} ({record['wall_s']:.0f} s)")
    expected_skip = {"fsdp"} if settings.device == "cpu" else set()
    ran = all(
        p["status"] == "ok" or (p["status"] == "skipped" and n in expected_skip)
        for n, p in parts.items()
    )
    return 0 if ran else 1


if __name__ == "__main__":
    sys.exit(main())
