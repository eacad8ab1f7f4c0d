"""The suite's headline figures, its targets, and the markdown table appended to RESULTS.md.

MFU = tokens/s x training FLOPs per token / the matmul peak measured in the same run (part
`peak`); the FLOPs per token are part `train_constraint`'s (6 x multiplying parameters +
PaLM's attention term). Every figure is computed from the parts' own results; a figure whose
part failed is None, and the table says which part and why.
"""

from __future__ import annotations

from typing import Any

# Figure -> (comparison, bound): the targets for one H200 (figures, not tests).
TARGETS: dict[str, tuple[str, float]] = {
    "mfu_none": (">=", 0.45),
    "ratio_softplus": ("<=", 1.03),
    "ratio_project": ("<=", 1.03),
    "loop_ratio": (">=", 0.95),
    "eval_ratio": (">=", 1.0),
}


def _result(parts: dict[str, dict[str, Any]], name: str) -> dict[str, Any] | None:
    part = parts.get(name) or {}
    return part.get("result") if part.get("status") == "ok" else None


def _mfu(tokens_per_s: float, train: dict[str, Any] | None, peak_tflops: float | None):
    """Model FLOPs utilisation, or None without the FLOPs per token or the peak."""
    if not train or not peak_tflops:
        return None
    return tokens_per_s * train["flops_per_token"] / (peak_tflops * 1e12)


def headline(parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The figures the issue asks for, flat, from the parts' results (None where a part did
    not give them)."""
    figures: dict[str, Any] = {}
    peak = _result(parts, "peak")
    figures["peak_tflops"] = peak["peak_tflops"] if peak else None
    train = _result(parts, "train_constraint")
    if train:
        for arm, rate in train["tokens_per_s"].items():
            figures[f"tokens_per_s_{arm}"] = rate
            figures[f"mfu_{arm}"] = _mfu(rate, train, figures["peak_tflops"])
        for arm, ratio in train["ratio"].items():
            figures[f"ratio_{arm}"] = ratio
    loop = _result(parts, "train_loop")
    if loop:
        figures["loop_ratio"] = loop["ratio"]
        for side in ("plain", "train_py"):
            rate = loop[f"{side}_tokens_per_s"]
            figures[f"loop_{side}_tokens_per_s"] = rate
            figures[f"mfu_{side}"] = _mfu(rate, train, figures["peak_tflops"])
    evaluation = _result(parts, "eval")
    if evaluation:
        figures["eval_ratio"] = evaluation["ratio"]
        figures["eval_tokens_per_s"] = evaluation["evaluator_tokens_per_s"]
        figures["eval_direct_tokens_per_s"] = evaluation["direct_tokens_per_s"]
        figures["eval_ffn_bf16"] = evaluation["ffn_ran_in_bf16"]
    attack = _result(parts, "attack")
    for row in attack["rows"] if attack else []:
        key = f"{row['attack']}_{row['model']}"
        figures[f"{key}_s_per_example"] = row["per_example_s"]
        figures[f"{key}_share_in_model"] = row["share"]
    ckpt = _result(parts, "checkpoint")
    if ckpt:
        figures |= {
            "checkpoint_gb": ckpt["gb"],
            "checkpoint_save_s": ckpt["save_s"],
            "checkpoint_fsync_s": ckpt["fsync_s"],
            "checkpoint_load_s": ckpt["load_s"],
        }
    fsdp = parts.get("fsdp", {})
    figures["fsdp_smoke"] = fsdp.get("status")
    resume = _result(parts, "resume")
    if resume:
        figures["resume_bit_exact"] = resume["bit_exact"]
        figures["resume_within_run_to_run"] = resume["within_run_to_run"]
        figures["resume_max_abs_diff"] = resume["resumed_vs_straight"]["max_abs_diff"]
        figures["run_to_run_max_abs_diff"] = resume["straight_vs_straight"]["max_abs_diff"]
    return figures


def verdicts(figures: dict[str, Any]) -> dict[str, bool | None]:
    """Target met (True / False), or None where the figure is missing."""
    out: dict[str, bool | None] = {}
    for key, (op, bound) in TARGETS.items():
        value = figures.get(key)
        out[key] = None if value is None else (value >= bound if op == ">=" else value <= bound)
    return out


def _fmt(value: Any, kind: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if kind == "%":
        return f"{100 * value:.1f}%"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


ROWS = (  # (figure, label, kind)
    ("peak_tflops", "matmul peak at the autocast dtype, measured (TFLOP/s)", ""),
    ("tokens_per_s_none", "train tokens/s, constraint=none", ""),
    ("tokens_per_s_softplus", "train tokens/s, monotonic (softplus)", ""),
    ("tokens_per_s_project", "train tokens/s, monotonic (project)", ""),
    ("mfu_none", "MFU, constraint=none", "%"),
    ("mfu_softplus", "MFU, monotonic (softplus)", "%"),
    ("mfu_project", "MFU, monotonic (project)", "%"),
    ("ratio_softplus", "step time monotonic (softplus) / none", ""),
    ("ratio_project", "step time monotonic (project) / none", ""),
    ("loop_train_py_tokens_per_s", "train tokens/s through train.py's loop", ""),
    ("loop_plain_tokens_per_s", "train tokens/s through a plain PyTorch loop", ""),
    ("mfu_train_py", "MFU through train.py's loop", "%"),
    ("loop_ratio", "tokens/s train.py loop / plain PyTorch loop", ""),
    ("eval_ratio", "tokens/s evaluate's perplexity path / direct HF loop", ""),
    ("eval_ffn_bf16", "FFN ran in bf16 under evaluate's autocast", ""),
    ("checkpoint_gb", "checkpoint size (GB)", ""),
    ("checkpoint_save_s", "checkpoint save s", ""),
    ("checkpoint_load_s", "checkpoint load s", ""),
    ("fsdp_smoke", "FSDP 2-step smoke (1 device, monotonic)", ""),
    ("resume_bit_exact", "bf16-mixed resume bit-exact", ""),
    ("resume_within_run_to_run", "resume differs no more than two straight runs", ""),
    ("resume_max_abs_diff", "max abs diff, resumed vs straight", ""),
    ("run_to_run_max_abs_diff", "max abs diff, straight vs straight", ""),
)


def markdown(record: dict[str, Any], json_name: str) -> str:
    """The section appended to RESULTS.md: figures with targets, then every part's status."""
    env = (record["parts"].get("environment") or {}).get("result") or {}
    figures, met = record["figures"], record["targets_met"]
    s = record["settings"]
    lines = [
        f"\n## GPU suite {record['started'][:10]} — {env.get('device', record['suite'])} "
        f"(`benchmarks/gpu_suite.sh{' --cpu-smoke' if record['suite'] == 'cpu-smoke' else ''}`)",
        "",
        f"torch {env.get('torch')}, CUDA {env.get('cuda')}, transformers "
        f"{env.get('transformers')}, lightning {env.get('lightning')}; work disk "
        f"{env.get('work_filesystem')}; {s['train_model']} "
        f"{s['precision']}, batch {s['batch_size']} x {s['seq_len']}; suite wall "
        f"{record['wall_s']:.0f} s (budget {s['budget_s']:.0f} s); all figures in "
        f"`{json_name}`.",
        "",
        *(
            ["A CPU smoke run: its figures check the code path, they measure nothing.", ""]
            if record["suite"] == "cpu-smoke"
            else []
        ),
        "| figure | value | target | met |",
        "|---|---|---|---|",
    ]
    for key, label, kind in ROWS:
        op, bound = TARGETS.get(key, ("", None))
        target = "" if bound is None else f"{op} {_fmt(bound, kind)}"
        verdict = "" if key not in met else _fmt(met[key])
        lines.append(f"| {label} | {_fmt(figures.get(key), kind)} | {target} | {verdict} |")
    for key in sorted(figures):
        if key.endswith("_s_per_example"):
            share = figures.get(key.replace("_s_per_example", "_share_in_model"))
            attack, model = key.removesuffix("_s_per_example").split("_", 1)
            lines.append(
                f"| {attack} on {model}: s/example (share of time in the model) | "
                f"{_fmt(figures[key])} ({_fmt(share)}) | | |"
            )
    lines += ["", "| part | status | wall s | bound s | reason |", "|---|---|---|---|---|"]
    for name, part in record["parts"].items():
        wall = "" if part.get("wall_s") is None else f"{part['wall_s']:.1f}"
        bound = "" if part.get("bound_s") is None else f"{part['bound_s']:.0f}"
        reason = (part.get("reason") or "").replace("|", "/")
        lines.append(f"| {name} | {part['status']} | {wall} | {bound} | {reason} |")
    return "\n".join(lines) + "\n"
