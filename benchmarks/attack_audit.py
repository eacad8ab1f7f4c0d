"""How strong the flip attacks are against the exhaustive single-flip optimum (issue 13, item 4).

For each tiny run (--models x --constraints; trained here through `train.py`, 300 steps, seed 0,
into <out>/runs/<model>_<constraint>, or reused when that dir already has checkpoints/last.ckpt,
e.g. from an earlier --out or --runs-dir) and each attack setting, `attack.py` runs the attack
with the exhaustive audit (`attack.audit.examples`, attacks/audit.py) and then its matched random
control (`attack=random attack.mimic=<same> attack.queries_from=<the attack's output dir>`, the
same settings), each into <out>/attacks/<run>/<label>. Settings: `hotflip` with each top_k in
--hotflip (budget 5) and `gcg` with `attack.gcg.candidates` x `attack.gcg.top_k` in --gcg
(e.g. 16x16).

Inputs are kept short so the exhaustive table (positions x candidate tokens forward passes per
example) is affordable on CPU. Causal LMs: `context_tokens=16 continuation_tokens=8`. Seq2seq:
attack.py has no source-length knob; the example's input budget is the run's own
`dataset.max_length` (attacks/examples.py), so the seq2seq runs are trained with
`dataset.max_length=--seq2seq-max-length` (64 by default; the article is cut to it, the summary
target keeps `max_target_length`), which the attack then inherits.

Per (run, attack) one row, read from attack.json: the audit's mean first-step ratio to the
optimum (min-max), random's exact expected ratio at the same queries (`random_expected_ratio`),
the control's own first-step ratio (only with --audit-controls), Spearman of first-order score
vs true gain, the optimum's mean first-order rank, the mean final gain (nats/token) of the
attack and of its control at the budget curve's last point (equal queries per example) with
bootstrap 95% CIs, whether those CIs overlap, the paired difference (attack - control final gain per
example, paired bootstrap 95% CI), the success rates, and the audit's seconds per
example. Cost: the audit of one tiny_pythia example (15 positions x ~2k candidates, ~30.6k
forward passes) takes ~26 s on 2 CPU cores, so every audited setting costs --examples x that.

    python benchmarks/attack_audit.py [--out outputs/bench/attack_audit] [--runs-dir DIR]
        [--models tiny_pythia tiny_t5] [--constraints none monotonic] [--examples 8]
        [--hotflip 20 64] [--gcg 16x16 16x64 64x16 64x64] [--steps 300] [--seq2seq-max-length 64]
        [--audit-controls] [--audit-first-only] [--no-audit] [--skip-existing] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from monolm.metrics.bootstrap import paired_bootstrap

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], log: Path) -> float:
    """Run a CLI from the repo root with this interpreter; seconds taken; exit on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as fh:
        done = subprocess.run(
            [sys.executable, *cmd], cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=os.environ
        )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}; see {log}")
    return seconds


def train(runs: Path, model: str, constraint: str, args: argparse.Namespace) -> Path:
    run_dir = runs / f"{model}_{constraint}"
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        print(f"reusing {run_dir}", flush=True)
        return run_dir
    cmd = [
        "train.py",
        f"model={model}",
        f"constraint={constraint}",
        f"trainer.max_steps={args.steps}",
        "trainer.enable_progress_bar=false",
        "seed=0",
        f"hydra.run.dir={run_dir}",
    ]
    if model.endswith("t5"):
        cmd.append(f"dataset.max_length={args.seq2seq_max_length}")
    seconds = _run(cmd, run_dir.parent / f"{run_dir.name}.log")
    print(f"trained {run_dir} in {seconds:.0f}s", flush=True)
    return run_dir


def attack(run_dir: Path, out: Path, label: str, extra: list[str], args: argparse.Namespace):
    """The attack and its matched random control; their attack.json payloads."""
    causal = not run_dir.name.startswith(("tiny_t5", "tiny_flan_t5"))
    common = [f"run_dir={run_dir}", f"max_examples={args.examples}", "device=cpu"]
    if causal:
        common += ["context_tokens=16", "continuation_tokens=8"]
    name = extra[0].split("=", 1)[1]
    base = out / "attacks" / run_dir.name
    attack_dir, control_dir = base / label, base / f"random-{label}"
    audit_this = not args.no_audit and (not args.audit_first_only or label == args.first_label)
    audited = f"attack.audit.examples={args.examples if audit_this else 0}"
    control_audit = f"attack.audit.examples={args.examples if args.audit_controls else 0}"
    payloads = []
    for directory, cmd in (
        (attack_dir, [*extra, audited, *common]),
        (
            control_dir,
            [
                "attack=random",
                f"attack.mimic={name}",
                f"attack.queries_from={attack_dir}",
                *extra[1:],
                control_audit,
                *common,
            ],
        ),
    ):
        result = directory / "attack.json"
        if not (args.skip_existing and result.is_file()):
            seconds = _run(
                ["attack.py", *cmd, f"hydra.run.dir={directory}"],
                directory.parent / f"{directory.name}.log",
            )
            print(f"  {run_dir.name} {directory.name}: {seconds:.0f}s", flush=True)
        payload = json.loads(result.read_text())
        payload["_gains"] = final_gains(directory / "examples.jsonl")
        payloads.append(payload)
    return payloads


def final_gains(examples: Path) -> dict[str, float]:
    """Each example's final gain (best loss found - clean loss, nats/token), by example id."""
    out = {}
    for line in examples.read_text().splitlines():
        record = json.loads(line)
        if record.get("gain") is not None:
            out[record["id"]] = float(record["gain"])
    return out


def paired_gain(hit: dict[str, Any], control: dict[str, Any]) -> dict[str, Any] | None:
    """Attack minus control final gain, paired by example (equal queries per example): the
    paired bootstrap's mean difference and 95% CI (monolm.metrics.bootstrap)."""
    ids = sorted(set(hit["_gains"]) & set(control["_gains"]))
    if not ids:
        return None
    result = paired_bootstrap(
        [hit["_gains"][i] for i in ids], [control["_gains"][i] for i in ids], seed=0
    )
    return {"mean": result["mean_difference"], "low": result["low"], "high": result["high"]}


def _fmt(x: Any, spec: str = ".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def row(run: str, label: str, hit: dict[str, Any], control: dict[str, Any]) -> dict[str, Any]:
    audit, caudit = hit.get("audit") or {}, control.get("audit") or {}

    def stat(block: dict[str, Any], key: str) -> dict[str, Any] | None:
        return block.get(key)

    def end(payload: dict[str, Any]) -> dict[str, Any] | None:
        curve = payload.get("budget_curve")
        if not curve:
            return None
        return {
            "queries": curve["queries"][-1],
            "mean": curve["mean_gain"][-1],
            "low": curve["low"][-1],
            "high": curve["high"][-1],
        }

    a_end, r_end = end(hit), end(control)
    overlap = None
    if a_end and r_end:
        overlap = not (a_end["low"] > r_end["high"] or r_end["low"] > a_end["high"])
    rates = [(p["metrics"].get("success_rate") or {}).get("mean") for p in (hit, control)]
    seconds = stat(audit, "seconds")
    return {
        "run": run,
        "attack": label,
        "examples": audit.get("examples"),
        "ratio": stat(audit, "first_step_ratio"),
        "random_expected_ratio": stat(audit, "random_expected_ratio"),
        "control_ratio": stat(caudit, "first_step_ratio"),
        "spearman": stat(audit, "spearman"),
        "optimum_rank": stat(audit, "optimum_rank"),
        "optimum_in_top_k": audit.get("optimum_in_top_k"),
        "optimum_gain": stat(audit, "optimum_gain"),
        "attack_end": a_end,
        "random_end": r_end,
        "ci_overlap": overlap,
        "success_rate": rates[0],
        "random_success_rate": rates[1],
        "audit_seconds_per_example": seconds["mean"] if seconds else None,
        "forward_passes_per_example": (stat(audit, "forward_passes") or {}).get("mean"),
        "grid": audit.get("grid"),
        "paired_difference": paired_gain(hit, control),
    }


def print_grids(rows: list[dict[str, Any]]) -> None:
    """Per run (one table: the grid depends only on the run and the examples), the expected
    first-step ratio to the optimum of HotFlip at each top_k and GCG at each top_k x B, each with
    its random control's at the same first-step queries in brackets (attacks/audit.py
    `search_grid`)."""
    seen = set()
    for r in rows:
        grid = r.get("grid")
        if not grid or r["run"] in seen or "gcg_random" not in grid:
            continue
        seen.add(r["run"])
        bs = grid["candidates"]
        print(
            f"\n{r['run']}: expected first-step ratio to the optimum, random control at the same "
            f"queries in brackets ({grid['examples']} examples)"
        )
        print(
            "| top_k | hotflip (1 + top_k queries) | " + " | ".join(f"gcg B={b}" for b in bs) + " |"
        )
        print("|---" * (2 + len(bs)) + "|")
        for i, k in enumerate(grid["top_k"]):
            cells = [
                f"{g:.2f} ({c:.2f})"
                for g, c in zip(grid["gcg"][i], grid["gcg_random"][i], strict=True)
            ]
            hot = f"{grid['hotflip'][i]:.2f} ({grid['hotflip_random'][i]:.2f})"
            print(f"| {k} | {hot} | " + " | ".join(cells) + " |")


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        "| run | attack | n | 1st-step ratio mean (min-max) | random E[ratio] | control ratio "
        "| spearman | opt rank | opt gain | attack gain [95% CI] | random gain [95% CI] | queries "
        "| CIs apart | attack - random, paired [95% CI] | success a/r | audit s/ex |"
    )
    print(head)
    print("|" + "---|" * head.count(" | ") + "---|")
    for r in rows:
        ratio = r["ratio"]
        ratio_s = f"{ratio['mean']:.2f} ({ratio['min']:.2f}-{ratio['max']:.2f})" if ratio else "n/a"

        def mean(key: str, spec: str = ".2f", r: dict[str, Any] = r) -> str:
            return _fmt((r[key] or {}).get("mean"), spec)

        def gain(end: dict[str, Any] | None) -> str:
            return f"{end['mean']:.3f} [{end['low']:.3f}, {end['high']:.3f}]" if end else "n/a"

        apart = {True: "no", False: "yes", None: "n/a"}[r["ci_overlap"]]
        queries = r["attack_end"]["queries"] if r["attack_end"] else None
        print(
            f"| {r['run']} | {r['attack']} | {r['examples']} | {ratio_s} "
            f"| {mean('random_expected_ratio')} | {mean('control_ratio')} | {mean('spearman')} "
            f"| {mean('optimum_rank', '.1f')} | {mean('optimum_gain', '.3f')} "
            f"| {gain(r['attack_end'])} | {gain(r['random_end'])} | {_fmt(queries, 'd')} "
            f"| {apart} | {gain(r['paired_difference'])} "
            f"| {_fmt(r['success_rate'])}/{_fmt(r['random_success_rate'])} "
            f"| {_fmt(r['audit_seconds_per_example'], '.1f')} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/attack_audit"))
    parser.add_argument("--runs-dir", type=Path, default=None, help="default: <out>/runs")
    parser.add_argument("--models", nargs="+", default=["tiny_pythia", "tiny_t5"])
    parser.add_argument("--constraints", nargs="+", default=["none", "monotonic"])
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument(
        "--gcg",
        nargs="*",
        default=["16x16", "16x64", "64x16", "64x64"],
        help="candidates x top_k settings of attack=gcg",
    )
    parser.add_argument(
        "--hotflip",
        nargs="*",
        default=["20"],
        help="top_k settings of attack=hotflip (20: its default, labelled plain `hotflip`)",
    )
    parser.add_argument(
        "--audit-controls",
        action="store_true",
        help="audit the random controls too (their own first-step ratio; doubles "
        "the audit cost; random's exact expected ratio comes from the attack's audit)",
    )
    parser.add_argument(
        "--audit-first-only",
        action="store_true",
        help="audit only the first setting per run (its `grid` gives every setting's expected "
        "first-step ratio from the same table); the others still run with their controls",
    )
    parser.add_argument(
        "--no-audit",
        action="store_true",
        help="no audit at all: budget curves and controls only (HotFlip's first step is "
        "deterministic, so an earlier audit's grid already gives its ratio at any top_k)",
    )
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seq2seq-max-length", type=int, default=64)
    parser.add_argument(
        "--skip-existing",
        action="store_true",
        help="reuse attack dirs that already have attack.json",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    out = args.out.resolve()
    runs = (args.runs_dir or out / "runs").resolve()
    settings: list[tuple[str, list[str]]] = []
    for k in args.hotflip:
        label = "hotflip" if k == "20" else f"hotflip-k{k}"
        settings.append((label, ["attack=hotflip", f"attack.flip.top_k={k}"]))
    for spec in args.gcg:
        b, k = spec.split("x")
        settings.append(
            (
                f"gcg-B{b}-k{k}",
                ["attack=gcg", f"attack.gcg.candidates={b}", f"attack.gcg.top_k={k}"],
            )
        )
    args.first_label = settings[0][0]
    rows = []
    for model in args.models:
        for constraint in args.constraints:
            run_dir = train(runs, model, constraint, args)
            for label, extra in settings:
                hit, control = attack(run_dir, out, label, extra, args)
                rows.append(row(run_dir.name, label, hit, control))
                if args.json:
                    args.json.write_text(json.dumps(rows, indent=1))
    print()
    print_table(rows)
    print_grids(rows)
    print(json.dumps({"rows": len(rows), "out": str(out)}))


if __name__ == "__main__":
    main()
