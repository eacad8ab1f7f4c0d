"""What the study command costs beyond the work it runs, and how fast its report aggregates.

1. Orchestration overhead. `python -m monolm.study run study=tiny` (local executor: every stage
   in-process, in dependency order, the report last) is timed end to end. Then the same plan,
   re-planned into a second directory, is run by hand the way a researcher would without the
   study command: one `python train.py` / `evaluate.py` / `attack.py` per stage with the stage's
   own overrides (`hydra.run.dir=<the stage's dir>`), one `python -c` replaying each transfer
   (attacks/replay.py) and the report once. Ratio = study wall time / sum of the by-hand
   wall times; target <= 1.10. (Each by-hand command pays a Python start-up and imports the
   in-process study pays once, so the ratio can fall below 1.)
2. Aggregation. A synthetic finished study of --seeds x 2 arms with --examples examples per
   attack and per evaluation (rows drawn from a fixed numpy seed, a seed-level arm effect), then
   `write_report` timed (statistics, tables, figures); target: seconds, not minutes.

    python benchmarks/study_overhead.py [--study tiny] [--override KEY=VALUE ...]
        [--seeds 5] [--examples 10000] [--skip-orchestration] [--skip-aggregation]

Run it on an idle machine (two OpenMP threads on two shared cores stall when anything else runs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = {"train": "train.py", "evaluate": "evaluate.py", "attack": "attack.py",
           "control": "attack.py"}  # fmt: skip


def _timed(command: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    return seconds


def orchestration(study: str, overrides: list[str], root: Path) -> dict[str, float]:
    study_dir, hand_dir = root / "study", root / "by_hand"
    command = [sys.executable, "-m", "monolm.study"]
    study_seconds = _timed([*command, "run", f"study={study}", f"study_dir={study_dir}",
                            *overrides])  # fmt: skip
    plan = json.loads((study_dir / "study.json").read_text())
    _timed([*command, "plan", f"study={study}", f"study_dir={hand_dir}", *overrides])
    hand_plan = json.loads((hand_dir / "study.json").read_text())
    assert len(hand_plan["stages"]) == len(plan["stages"])
    per_kind: dict[str, float] = {}
    for stage in hand_plan["stages"]:
        out = hand_dir / stage["dir"]
        if stage["kind"] in SCRIPTS:
            line = [sys.executable, SCRIPTS[stage["kind"]], *stage["overrides"],
                    f"hydra.run.dir={out}"]  # fmt: skip
        elif stage["kind"] == "transfer":
            source = next(o.split("=", 1)[1] for o in stage["overrides"] if o.startswith("source="))
            targets = {o.split("=", 1)[0][len("target."):]: o.split("=", 1)[1]
                       for o in stage["overrides"] if o.startswith("target.")}  # fmt: skip
            code = (
                "from pathlib import Path; from monolm.attacks.replay import replay_attack; "
                f"targets = {{k: Path(v) for k, v in {targets!r}.items()}}; "
                f"replay_attack(Path({source!r}), targets, Path({str(out)!r}), "
                f"Path({str(REPO / 'conf')!r}))"
            )
            line = [sys.executable, "-c", code]
        else:  # the report: the same aggregation, once, over the study's own dir
            line = [*command, "report", f"study={study}", f"study_dir={study_dir}", *overrides]
        seconds = _timed(line)
        per_kind[stage["kind"]] = per_kind.get(stage["kind"], 0.0) + seconds
    by_hand = sum(per_kind.values())
    return {
        "study_seconds": study_seconds,
        "by_hand_seconds": by_hand,
        "ratio": study_seconds / by_hand,
        **{f"by_hand_{kind}": seconds for kind, seconds in per_kind.items()},
    }


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _json(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def _attack_rows(rng, n: int, shift: float) -> list[dict]:
    clean = rng.uniform(1.0, 4.0, n)
    delta = rng.normal(shift, 0.2, n)
    return [
        {
            "id": i,
            "clean_nll": clean[i],
            "attacked_nll": clean[i] + delta[i],
            "delta_nll": delta[i],
            "relative_nll": delta[i] / clean[i],
            "status": "success" if delta[i] / clean[i] > 0.1 else "failure",
            "queries": 40,
            "curve": [[1, 0.0], [20, delta[i] / 2], [40, delta[i]]],
        }
        for i in range(n)
    ]


def _eval_rows(rng, n: int, shift: float) -> list[dict]:
    tokens = rng.integers(50, 500, n)
    nll = rng.normal(3.0 + shift, 0.3, n)
    return [
        {
            "id": i,
            "loglikelihood": -float(tokens[i] * nll[i]),
            "tokens": int(tokens[i]),
            "words": int(tokens[i] * 0.75),
            "bytes": int(tokens[i] * 4),
        }
        for i in range(n)
    ]


def synthetic_study(study_dir: Path, seeds: int, examples: int) -> None:
    """A finished study (the real plan, stage records holding its hashes) of one subject, 2 arms
    x `seeds`, one evaluation and one attack with its control and transfers, `examples` rows
    each, drawn from a fixed numpy seed with a seed-level arm effect."""
    import numpy as np

    from monolm.study.bookkeeping import STAGE_RECORD, record_dir
    from monolm.study.plan import STUDY_PLAN, build_plan, plan_record, stage_hashes
    from monolm.study.settings import AttackSpec, StudySettings

    settings = StudySettings(
        name="synthetic",
        seeds=list(range(seeds)),
        arms={"none": ["constraint=none"], "monotonic": ["constraint=monotonic"]},
        subjects={"pythia": ["model=tiny_pythia"]},
        evaluate=[],
        attacks={"gcg": AttackSpec(["attack=gcg"])},
        primary=["attack/gcg/delta_nll"],
    )
    stages = build_plan(settings, study_dir)
    hashes = stage_hashes(stages, study_dir)
    _json(study_dir / STUDY_PLAN, plan_record(settings, study_dir, stages))
    rng = np.random.default_rng(0)
    effect = {seed: rng.normal(0.05, 0.03) for seed in range(seeds)}
    for stage in stages:
        if stage.kind == "report":
            continue
        out = study_dir / stage.dir
        shift = 0.1 + (effect[stage.seed] if stage.arm == "monotonic" else 0.0)
        if stage.kind == "train":
            _json(out / "run.json", {"status": "completed"})
            lines = ["epoch,step,train/loss,val/loss"]
            lines += [f"0,{s},{5 - s / 100},{4 - s / 100}" for s in range(1, 101)]
            (out / "csv").mkdir(parents=True, exist_ok=True)
            (out / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")
        elif stage.kind == "evaluate":
            _jsonl(out / "own.examples.jsonl", _eval_rows(rng, examples, shift))
            task = {"kind": "perplexity", "n": examples, "metrics": {}}
            _json(
                out / "eval.json",
                {"tasks": {"own": {**task, "examples_file": "own.examples.jsonl"}}},
            )
        elif stage.kind in ("attack", "control"):
            scale = 1.0 if stage.kind == "attack" else 0.5
            _jsonl(out / "examples.jsonl", _attack_rows(rng, examples, scale * shift))
            threshold = {"attack": {"nll_success_threshold": 0.1}}
            _json(
                out / "attack.json",
                {"config": threshold, "metrics": {}, "examples_file": "examples.jsonl"},
            )
        elif stage.kind == "transfer":
            cells = {}
            for target in stage.targets:
                _jsonl(out / f"{target}.examples.jsonl", _attack_rows(rng, examples, shift / 3))
                cells[target] = {"examples_file": f"{target}.examples.jsonl"}
            source = {"attack_dir": str(study_dir / "x")}
            _json(out / "transfer.json", {"attack": stage.name, "cells": cells, "source": source})
        record = {"key": stage.key, "sha256": hashes[stage.key]}
        _json(record_dir(study_dir, stage) / STAGE_RECORD, record)


def aggregation(seeds: int, examples: int, root: Path) -> dict[str, float]:

    from monolm.study.report import write_report

    study_dir = root / "synthetic"
    started = time.perf_counter()
    synthetic_study(study_dir, seeds=seeds, examples=examples)
    written = time.perf_counter() - started
    started = time.perf_counter()
    paths = write_report(study_dir)
    seconds = time.perf_counter() - started
    return {"seeds": seeds, "arms": 2, "examples": examples, "files_written_s": written,
            "report_seconds": seconds, "report_files": len(paths)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="tiny")
    parser.add_argument("--override", action="append", default=[], help="e.g. study.seeds=[0]")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--skip-orchestration", action="store_true")
    parser.add_argument("--skip-aggregation", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="study-overhead-") as tmp:
        root = Path(tmp)
        if not args.skip_orchestration:
            result = orchestration(args.study, args.override, root)
            print(
                f"orchestration, study={args.study} {' '.join(args.override)}: study "
                f"{result['study_seconds']:.1f} s, its stages by hand "
                f"{result['by_hand_seconds']:.1f} s, ratio {result['ratio']:.3f} (target <= 1.10)"
            )
            print(json.dumps(result, indent=1))
        if not args.skip_aggregation:
            result = aggregation(args.seeds, args.examples, root)
            print(f"aggregation, {args.seeds} seeds x 2 arms x {args.examples} examples: "
                  f"{result['report_seconds']:.1f} s (target: seconds)")  # fmt: skip
            print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
