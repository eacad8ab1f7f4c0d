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


def aggregation(seeds: int, examples: int, root: Path) -> dict[str, float]:
    from monolm.study.synthetic import synthetic_study

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
