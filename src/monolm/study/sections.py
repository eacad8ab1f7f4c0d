"""report.md and tables.tex from results.json's numbers: tables only, and what each test says
stated mechanically (its p, the adjusted p and the method); no sentence says which arm is
better."""

from __future__ import annotations

from typing import Any

from monolm.study.tables import (
    MISSING,
    Table,
    estimate,
    latex,
    markdown,
    number,
    p_value,
    table,
)


def _what(kind: str) -> str:
    return "arms" if kind == "comparisons" else "attack vs control"


def _step(step: int | None) -> str:
    return "final" if step is None else str(step)


def _seeds(comparison: dict[str, Any]) -> str:
    text = str(len(comparison["seeds"]))
    if comparison["dropped_seeds"]:
        dropped = ", ".join(
            f"{d['seed']} (missing in {' and '.join(d['missing_in'])})"
            for d in comparison["dropped_seeds"]
        )
        text += f"; dropped seed {dropped}"
    return text


def _adjusted(comparison: dict[str, Any]) -> str:
    if comparison["p_adjusted"] is None:
        return MISSING
    return f"{p_value(comparison['p_adjusted'])} ({comparison['adjustment']})"


def summary_table(subject: str, results: dict[str, Any]) -> Table:
    baseline = results["study"]["baseline"]
    rows = []
    excluded = []
    for key, summary in results["subjects"][subject]["summaries"].items():
        for arm, entry in summary["arms"].items():
            change = entry.get("percent_change_from_baseline")
            rows.append(
                (
                    key,
                    arm,
                    ", ".join(map(str, entry["seeds"])),
                    number(entry["mean"]),
                    number(entry["std"]),
                    estimate(None, entry["low"], entry["high"])
                    if entry["low"] is not None
                    else MISSING,
                    MISSING if arm == baseline or change is None else f"{change:+.2f}%",
                )
            )
        excluded += [
            f"{key}: {e['arm']} seed {e['seed']} left out ({e['reason']})"
            for e in summary["excluded_runs"]
        ]
    return table(
        f"{subject}: each arm across seeds (final model)",
        ("measure", "arm", "seeds", "mean", "std", "95% t CI", f"change vs {baseline}"),
        rows,
        [
            "statistic per run on its valid examples; mean, std (ddof 1) and t interval over seeds",
            *excluded,
        ],
        align="llrrrrr",
        label=f"tab:{subject}:arms",
    )


def baselines_table(subject: str, results: dict[str, Any]) -> Table | None:
    """Per evaluate measure, each arm's mean across seeds beside each simple baseline's value
    and its bootstrap interval over examples."""
    found = results["subjects"][subject].get("simple_baselines")
    if found is None:
        return None
    arms, names = results["study"]["arms"], found["baselines"]
    rows = []
    for key, row in found["measures"].items():
        means = [number((row["arms"].get(arm) or {}).get("mean")) for arm in arms]
        values = [
            MISSING if v is None else estimate(v["value"], v["low"], v["high"])
            for v in (row["baselines"].get(name) for name in names)
        ]
        rows.append((key, *means, *values))
    notes = [
        "arms: mean over seeds of each run's statistic (their summary table has the intervals); "
        "baselines: the same statistic on the baseline's examples, with a 95% percentile "
        f"bootstrap interval over them ({found['bootstrap']['resamples']} resamples); no test",
        "majority: the train split's most frequent label (QA: abstains); uniform: random labels "
        "(the study's first seed); zero_shot: the subject's base model, untrained",
    ]
    notes += [
        f"{name}: {state['state']}" + (f" ({state['reason']})" if state["reason"] else "")
        for name, state in found["stages"].items()
        if state["state"] != "done"
    ]
    notes += [f"{name}: {why}" for name, why in found["not_planned"].items()]
    return table(
        f"{subject}: simple baselines beside the arms (final model)",
        ("measure", *(f"{arm} (mean)" for arm in arms), *names),
        rows,
        notes,
        align="l" + "r" * (len(arms) + len(names)),
        label=f"tab:{subject}:baselines",
    )


def comparison_table(subject: str, results: dict[str, Any], kind: str = "comparisons") -> Table:
    rows, notes = [], []
    for c in results["subjects"][subject][kind]:
        label = f"{c['a']} - {c['b']}"
        measure = c["measure"] if kind == "comparisons" else f"{c['attack']}/{c['metric']}"
        if not c["computed"]:
            rows.append(
                (measure, label, _seeds(c), MISSING, MISSING, MISSING, MISSING, MISSING, MISSING)
            )
            notes.append(f"{measure} {label}: not computed ({c['reason']})")
            continue
        boot, t, flip = c["multi_bootstrap"], c["t_interval"], c["sign_flip"]
        notes += [note for note in c["notes"] if note not in notes]
        rows.append(
            (
                measure,
                label,
                _seeds(c),
                f"{c['n_examples']} ({c['n_dropped_examples']})",
                estimate(boot["mean_difference"], boot["low"], boot["high"]),
                p_value(c["p_value"]),
                _adjusted(c),
                estimate(t["mean"], t["low"], t["high"]),
                p_value(flip["p_value_two_sided"]) if flip else MISSING,
            )
        )
    title = (
        f"{subject}: each arm vs the baseline, paired by seed and example"
        if kind == "comparisons"
        else f"{subject}: gradient attack vs its matched random control (same arm and seed)"
    )
    return table(
        title,
        (
            "measure",
            "difference",
            "seeds",
            "examples (dropped)",
            "multi-bootstrap [95% CI]",
            "p",
            "adjusted p",
            "t over seeds [95% CI]",
            "sign-flip p",
        ),
        rows,
        [
            "multi-bootstrap: seeds and examples resampled, only examples valid in every paired "
            "run (dropped: the others); p two-sided under the null",
            *notes,
        ],
        align="lllrrrrrr",
        label=f"tab:{subject}:{kind}",
    )


def per_seed_table(subject: str, results: dict[str, Any], kind: str) -> Table:
    rows = []
    for c in results["subjects"][subject][kind]:
        if not c["computed"]:
            continue
        measure = c["measure"] if kind == "comparisons" else f"{c['attack']}/{c['metric']}"
        for s in c["per_seed"]["seeds"]:
            rows.append(
                (
                    measure,
                    f"{c['a']} - {c['b']}",
                    str(s["seed"]),
                    number(s["a"]),
                    number(s["b"]),
                    estimate(s["mean_difference"], s["low"], s["high"]),
                    p_value(s["p_value_two_sided"]),
                    f"{s['n_paired']} ({s['n_dropped']})",
                )
            )
    return table(
        f"{subject}: per-seed paired bootstrap ({_what(kind)})",
        ("measure", "difference", "seed", "a", "b", "difference [95% CI]", "p", "pairs (dropped)"),
        rows,
        align="lllrrrrr",
    )


def within_seed_table(subject: str, results: dict[str, Any], kind: str) -> Table:
    rows = []
    for c in results["subjects"][subject][kind]:
        measure = c["measure"] if kind == "comparisons" else f"{c['attack']}/{c['metric']}"
        for w in c.get("within_seed", []):
            if not w["computed"]:
                rows.append(
                    (
                        measure,
                        f"{c['a']} - {c['b']}",
                        str(w["seed"]),
                        w["test"],
                        f"not computed: {w['reason']}",
                        MISSING,
                        MISSING,
                        MISSING,
                    )
                )
                continue
            if w["test"] == "mcnemar":
                what = (
                    f"only a {w['only_a']}, only b {w['only_b']}, both {w['both']}, "
                    f"neither {w['neither']}"
                )
            else:
                what = (
                    f"W = {number(w['statistic'])}, median difference "
                    f"{number(w['median_difference'])}"
                )
            rows.append(
                (
                    measure,
                    f"{c['a']} - {c['b']}",
                    str(w["seed"]),
                    w["test"],
                    what,
                    p_value(w["p_value_two_sided"]),
                    str(w["n_paired"]),
                    str(w["n_dropped"]),
                )
            )
    return table(
        f"{subject}: within-seed tests ({_what(kind)})",
        ("measure", "difference", "seed", "test", "result", "p", "pairs", "dropped"),
        rows,
        [
            "Wilcoxon signed-rank (zero_method pratt) or exact McNemar, on the examples of that "
            "seed valid in both (skipped attack examples excluded in both)",
            "Wilcoxon on perplexity and bits per byte compares each example's NLL per token, "
            "word or byte",
        ],
        align="lllllrrr",
    )


def transfer_tables(subject: str, results: dict[str, Any]) -> list[Table]:
    out = []
    for attack, matrix in results["subjects"][subject]["transfer"].items():
        rows = []
        for source in matrix["sources"]:
            cells = []
            for target in matrix["targets"]:
                cell = matrix["cells"][source][target]
                rate, delta = cell["success_rate"], cell["delta_nll"]
                text = (
                    f"{number(rate['mean'] if rate else None)} / "
                    f"{number(delta['mean'] if delta else None)} "
                    f"({len(cell['per_seed'])} seeds)"
                )
                cells.append(text + (" white-box" if cell["white_box"] else ""))
            rows.append((source, *cells))
        out.append(
            table(
                f"{subject}: {attack} transfer, success rate / delta NLL, mean over seeds",
                ("source \\ target", *matrix["targets"]),
                rows,
                [
                    "rows: the arm attacked; columns: the arm the attacked inputs are replayed on; "
                    "the diagonal is the source's own (white-box) attack"
                ],
            )
        )
    return out


def quality_table(subject: str, results: dict[str, Any]) -> Table | None:
    view = results["subjects"][subject]["quality_view"]
    if view is None:
        return None
    attacks = results["study"]["attacks"]
    columns = ["arm", "seed", "step", view["quality"]]
    for attack in attacks:
        columns += [f"{attack} success rate", f"{attack} delta NLL"]
    rows = []
    for p in view["points"]:
        row = [p["arm"], str(p["seed"]), _step(p["step"]), number(p["quality"])]
        for attack in attacks:
            found = p["robustness"].get(attack, {})
            row += [number(found.get("success_rate")), number(found.get("delta_nll"))]
        rows.append(row)
    return table(
        f"{subject}: quality-matched view (every checkpoint and the final model)",
        columns,
        rows,
        align="llr" + "r" * (len(columns) - 3),
    )


def audit_table(subject: str, results: dict[str, Any]) -> Table | None:
    rows = []
    for attack, found in results["subjects"][subject]["audit"].items():
        if found is None:
            continue
        for arm, entry in found["arms"].items():
            flag = entry["gradient_masking_flag"]
            rows.append(
                (
                    attack,
                    arm,
                    str(len(entry["per_seed"])),
                    number(entry["spearman"]),
                    number(entry["first_step_ratio"]),
                    number(entry["random_expected_ratio"]),
                    MISSING if flag is None else str(flag).lower(),
                )
            )
    if not rows:
        return None
    return table(
        f"{subject}: attack audit (means over seeds)",
        (
            "attack",
            "arm",
            "seeds",
            "Spearman",
            "first-step ratio",
            "random expected ratio",
            "gradient_masking_flag",
        ),
        rows,
        [
            "flag: Spearman below the baseline arm's and first-step ratio below random's "
            "expected ratio at equal queries"
        ],
    )


def stage_tables(results: dict[str, Any]) -> list[Table]:
    stages = results["stages"]
    counts = ", ".join(f"{n} {state}" for state, n in stages["counts"].items())
    rows = [
        (e["key"], state, e.get("reason") or "", e.get("log", ""))
        for state in ("failed", "incomplete", "missing")
        for e in stages[state]
    ]
    return [
        table(
            f"Stages: {counts}",
            ("stage", "state", "reason", "log"),
            rows,
            [
                "not done: listed here, left out of every number"
                if rows
                else "every stage of the plan is done"
            ],
            align="llll",
        )
    ]


def budget_tables(results: dict[str, Any]) -> list[Table]:
    budgets = results["budgets"]
    arms = table(
        "Arms and their overrides",
        ("arm", "overrides"),
        [(arm, " ".join(o)) for arm, o in budgets["arms"].items()],
        align="ll",
    )
    keys = budgets["differing_keys"]
    names = list(budgets["arms"])
    differing = table(
        "Override keys set differently between arms (budget differences)",
        ("key", *names),
        [(k, *(v[a] if v[a] is not None else "(unset)" for a in names)) for k, v in keys.items()],
        align="l" * (1 + len(names)),
    )
    return [arms, differing]


def tuning_table(subject: str, results: dict[str, Any]) -> Table | None:
    """Each arm's trials with their value on the held-out split, the chosen one marked, and the
    budget per arm (trials x steps trained)."""
    tuning = results.get("tuning")
    if tuning is None or subject not in tuning["subjects"]:
        return None
    arms = tuning["subjects"][subject]
    rows = []
    for arm, entry in arms.items():
        if not entry["trials"]:
            rows.append((arm, MISSING, MISSING, MISSING, f"selection {entry['state']}"))
        chosen = (entry["chosen"] or {}).get("name")
        for trial in entry["trials"]:
            status = "chosen" if trial["name"] == chosen else trial["status"]
            if trial["status"] != "valid":
                status += f" ({trial['reason']})"
            rows.append(
                (arm, trial["name"], " ".join(trial["overrides"]), number(trial["value"]), status)
            )
    budget = ", ".join(
        f"{arm} {e['budget']['trials']} trials x "
        f"{'/'.join(map(str, e['budget']['steps'])) or MISSING} steps"
        for arm, e in arms.items()
    )
    grids = "; ".join(
        f"{arm}: " + " x ".join(f"{k} {v}" for k, v in (e["grid"] or {}).items())
        for arm, e in arms.items()
    )
    shared = " ".join(tuning["overrides"]) or "none"
    return table(
        f"{subject}: tuning ({tuning['mode']} {tuning['select']} on the held-out split)",
        ("arm", "trial", "overrides", tuning["select"], "status"),
        rows,
        [
            f"grids: {grids}",
            f"budget per arm: {budget}; every trial trains with seed {tuning['seed']} and the "
            f"same overrides ({shared}); the seeds then train with the arm's chosen trial",
            "ties go to the first trial in grid order; a trial that did not complete or has no "
            "finite value is skipped",
        ],
        align="lllrl",
        label=f"tab:{subject}:tuning",
    )


def representations_table(subject: str, results: dict[str, Any]) -> Table | None:
    """CKA of each comparison (mean over layers, interval) beside the seed floors."""
    found = results["subjects"][subject].get("representations")
    if found is None:
        return None
    rows = [
        (
            f"{c['a']} vs {c['b']}",
            "seed floor" if c["floor"] else "comparison",
            str(len(c["layers"])),
            estimate(c["mean"]["mean"], c["mean"]["low"], c["mean"]["high"]),
        )
        for c in found["comparisons"]
    ]
    interval = found["interval"]
    notes = [
        f"{found['estimator']}, {found['pooling']}-pooled, on {found['inputs']['n']} inputs of "
        f"{found['inputs']['dataset']} ({found['inputs']['split'] or 'validation'}); mean over the "
        f"layers of the same name; {interval['confidence']:.0%} intervals by half-sampling the "
        f"inputs ({interval['resamples']} resamples)",
        "seed floor: two runs of one arm that differ only by their seed; a comparison at or "
        "above it is as similar as a change of seed makes two runs",
    ]
    if not any(c["floor"] for c in found["comparisons"]):
        notes.append("no seed floor: the study has one seed")
    return table(
        f"{subject}: representation similarity (CKA, final models)",
        ("comparison", "kind", "layers", "mean CKA"),
        tuple(rows),
        notes,
        align="llrr",
        label=f"tab:{subject}:cka",
    )


def markdown_report(results: dict[str, Any]) -> str:
    study = results["study"]
    parts = [f"# Study report: {study['name']}\n"]
    if study["note"]:
        parts.append(f"> {study['note']}\n")
    boot = results["bootstrap"]
    parts.append(
        f"Arms: {', '.join(study['arms'])} (baseline {study['baseline']}); seeds: "
        f"{', '.join(map(str, study['seeds']))}; subjects: {', '.join(study['subjects'])}. "
        f"Bootstrap: {boot['resamples']} resamples, {boot['confidence']:.0%} intervals, seed "
        f"{boot['seed']}. Primary family (Holm): "
        f"{', '.join(study['primary']) or 'none declared'}; every other headline p: "
        "Benjamini-Hochberg q.\n"
    )
    parts += [f"**Note:** {note}\n" for note in results["notes"]]
    unmatched = results["multiple_comparisons"]["unmatched_primary"]
    if unmatched:
        parts.append(f"Primary measures with no computed comparison: {', '.join(unmatched)}\n")
    parts += [markdown(t, 2) for t in (*stage_tables(results), *budget_tables(results))]
    for subject in study["subjects"]:
        parts.append(f"## Subject {subject}\n")
        attacked = bool(study.get("attacks"))  # a study with no attacks has no such tables
        tables: list[Table | None] = [
            tuning_table(subject, results),
            summary_table(subject, results),
            baselines_table(subject, results),
            comparison_table(subject, results),
            per_seed_table(subject, results, "comparisons"),
            within_seed_table(subject, results, "comparisons"),
            *(
                (
                    comparison_table(subject, results, "attack_vs_control"),
                    per_seed_table(subject, results, "attack_vs_control"),
                    within_seed_table(subject, results, "attack_vs_control"),
                )
                if attacked
                else ()
            ),
            *transfer_tables(subject, results),
            quality_table(subject, results),
            audit_table(subject, results),
            representations_table(subject, results),
        ]
        parts += [markdown(t, 3) for t in tables if t is not None]
        figures = [f for f in results.get("figures", []) if f["subject"] == subject]
        if figures:
            lines = [f"### {subject}: figures\n"]
            for f in figures:
                lines.append(
                    f"- {f['title']}: skipped ({f['skipped']})"
                    if "skipped" in f
                    else f"- [{f['title']}]({f['png']}) ([pdf]({f['pdf']}))"
                )
            parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def latex_tables(results: dict[str, Any]) -> str:
    """Per subject the per-arm summary, the simple baselines and the paired comparisons,
    booktabs."""
    header = (
        f"% study {results['study']['name']}: tables of the report (needs "
        "\\usepackage{booktabs})\n"
    )
    tables = []
    for subject in results["study"]["subjects"]:
        found = [
            summary_table(subject, results),
            baselines_table(subject, results),
            comparison_table(subject, results),
            representations_table(subject, results),
        ]
        tables += [t for t in found if t is not None]
    return header + "\n".join(latex(t) for t in tables)
