"""The study report from files only: synthetic study dirs with chosen per-example numbers (the
real plan, stage records holding the plan's hashes), so every expected number is computed here
with numpy: per-arm means across seeds, the paired multi-bootstrap point estimate, McNemar
counts, the transfer matrix, Holm over the primary family; failed and missing stages listed and
left out; malformed files refused by name; byte-identical outputs."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from monolm.errors import UserError
from monolm.metrics.paired_tests import holm
from monolm.study.bookkeeping import STAGE_FAILURE, record_dir
from monolm.study.plan import STUDY_PLAN, build_plan, plan_record, stage_hashes
from monolm.study.report import build_results, write_report
from monolm.study.settings import AttackSpec, StudySettings
from monolm.study.tables import escape_latex, latex, table

SEEDS = (0, 1, 2)
N = 6  # examples per run
ARM_SHIFT = {"none": 0.02, "mono": 0.17}  # attack delta NLL
NLL_SHIFT = {"none": 0.0, "mono": 0.2}  # evaluation NLL per token
THRESHOLD = 0.15
CLEAN = 2.0  # clean NLL of every attacked example (success: delta / CLEAN > THRESHOLD)
SKIPPED = ("mono", 0, 5)  # arm, seed, example id skipped by the attack (clean NLL under floor)
AUDIT = {  # arm -> (spearman, first-step ratio, random's expected ratio)
    "none": (0.8, 0.6, 0.2),
    "mono": (0.3, 0.1, 0.2),
}


def attack_delta(arm: str, seed: int, i: int, step: int | None = None) -> float:
    return ARM_SHIFT[arm] + 0.05 * seed + 0.1 * i + (0.07 if step is not None else 0.0)


def control_delta(arm: str, seed: int, i: int, step: int | None = None) -> float:
    return attack_delta(arm, seed, i, step) / 2


def transfer_delta(source: str, target: str, seed: int, i: int) -> float:
    return 0.5 * ARM_SHIFT[target] + 0.1 * ARM_SHIFT[source] + 0.01 * i + 0.02 * seed


def status(delta: float, clean: float) -> str:
    if clean < 0.05:
        return "skipped"
    return "success" if delta / clean > THRESHOLD else "failure"


def token_nll(arm: str, seed: int, i: int, step: int | None = None) -> float:
    return 3.0 + NLL_SHIFT[arm] + 0.1 * seed + 0.01 * i + (0.5 if step is not None else 0.0)


def tokens(i: int) -> int:
    return 10 + i


def attack_rows(delta, arm: str, seed: int, skip: bool = True) -> list[dict]:
    rows = []
    for i in range(N):
        clean = 0.01 if skip and (arm, seed, i) == SKIPPED else CLEAN
        d = delta(i)
        rows.append(
            {
                "id": i,
                "clean_nll": clean,
                "attacked_nll": clean + d,
                "delta_nll": d,
                "relative_nll": d / clean,
                "status": status(d, clean),
                "queries": 8,
                "curve": [[1, 0.0], [4, d / 2], [8, d]],
            }
        )
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def write_json(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def settings(**changes) -> StudySettings:
    values = {
        "name": "synthetic",
        "seeds": list(SEEDS),
        "arms": {"none": ["constraint=none"], "mono": ["constraint=monotonic", "lr=0.1"]},
        "baseline": "none",
        "subjects": {"tiny": ["model=tiny_pythia"]},
        "evaluate": [],
        "attack_overrides": ["max_examples=6"],
        "attacks": {"gcg": AttackSpec(["attack=gcg"])},
        "checkpoints": [2],
        "primary": ["attack/gcg/delta_nll", "evaluate/own/token_perplexity"],
        "note": "synthetic numbers: a test of the report",
    }
    return StudySettings(**{**values, **changes})


def write_outputs(study_dir: Path, stage) -> None:
    out = study_dir / stage.dir
    arm, seed, step = stage.arm, stage.seed, stage.step
    if stage.kind == "train":
        write_json(out / "run.json", {"status": "completed"})
        lines = ["epoch,step,train/loss,val/loss"]
        for s in range(1, 5):
            val = f"{5.0 - s / 2 - NLL_SHIFT[arm] + 0.1 * seed}" if s % 2 == 0 else ""
            lines.append(f"0,{s},{6.0 - s / 4 + 0.1 * seed},{val}")
        (out / "csv").mkdir(parents=True, exist_ok=True)
        (out / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")
    elif stage.kind == "evaluate":
        rows = [
            {
                "id": i,
                "loglikelihood": -tokens(i) * token_nll(arm, seed, i, step),
                "tokens": tokens(i),
                "words": 5 + i,
                "bytes": 40 + i,
            }
            for i in range(N)
        ]
        write_jsonl(out / "own.examples.jsonl", rows)
        task = {"kind": "perplexity", "n": N, "metrics": {}, "examples_file": "own.examples.jsonl"}
        write_json(out / "eval.json", {"tasks": {"own": task}})
    elif stage.kind in ("attack", "control"):
        delta = attack_delta if stage.kind == "attack" else control_delta
        write_jsonl(
            out / "examples.jsonl", attack_rows(lambda i: delta(arm, seed, i, step), arm, seed)
        )
        record = {
            "config": {"attack": {"nll_success_threshold": THRESHOLD}},
            "metrics": {},
            "examples_file": "examples.jsonl",
        }
        if stage.kind == "attack":
            spearman, first, random = AUDIT[arm]
            record["audit"] = {
                "spearman": {"mean": spearman},
                "first_step_ratio": {"mean": first},
                "random_expected_ratio": {"mean": random},
            }
        write_json(out / "attack.json", record)
    elif stage.kind == "transfer":
        cells = {}
        for target in stage.targets:
            rows = attack_rows(
                lambda i, t=target: transfer_delta(arm, t, seed, i), target, seed, False
            )
            write_jsonl(out / f"{target}.examples.jsonl", rows)
            cells[target] = {"examples_file": f"{target}.examples.jsonl"}
        write_json(
            out / "transfer.json",
            {"attack": stage.name, "source": {"arm": arm, "attack_dir": "x"}, "cells": cells},
        )


def make_study(study_dir: Path, skip=lambda stage: False, **changes) -> Path:
    """A study dir with every stage done (stage.json with the plan's hash) but the skipped."""
    study = settings(**changes)
    stages = build_plan(study, study_dir)
    hashes = stage_hashes(stages, study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    (study_dir / STUDY_PLAN).write_text(json.dumps(plan_record(study, study_dir, stages)))
    for stage in stages:
        if stage.kind == "report" or skip(stage):
            continue
        write_outputs(study_dir, stage)
        record = {"key": stage.key, "sha256": hashes[stage.key]}
        write_json(record_dir(study_dir, stage) / "stage.json", record)
    return study_dir


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study(tmp_path_factory.mktemp("study") / "s")


@pytest.fixture(scope="module")
def results(study: Path) -> dict:
    return build_results(study)


def comparison(results: dict, measure: str, kind: str = "comparisons", arm: str = "mono") -> dict:
    found = [
        c for c in results["subjects"]["tiny"][kind] if c["measure"] == measure and c["arm"] == arm
    ]
    assert len(found) == 1, [c["id"] for c in results["subjects"]["tiny"][kind]]
    return found[0]


def per_seed_means(function, arm: str, seeds=SEEDS) -> np.ndarray:
    return np.array([np.mean([function(arm, s, i) for i in range(N)]) for s in seeds])


def success_rate(delta, arm: str, seed: int) -> float:
    rows = attack_rows(lambda i: delta(arm, seed, i), arm, seed)
    decided = [r for r in rows if r["status"] != "skipped"]
    return sum(r["status"] == "success" for r in decided) / len(decided)


# --- the numbers ------------------------------------------------------------------------------


def test_each_arm_is_summarised_across_its_seeds_with_its_change_from_the_baseline(
    results: dict,
) -> None:
    summary = results["subjects"]["tiny"]["summaries"]["attack/gcg/delta_nll"]
    for arm in ("none", "mono"):
        per_seed = per_seed_means(attack_delta, arm)
        entry = summary["arms"][arm]
        assert entry["per_seed"] == pytest.approx(per_seed.tolist())
        assert entry["mean"] == pytest.approx(per_seed.mean())
        assert entry["std"] == pytest.approx(per_seed.std(ddof=1))
        assert entry["seeds"] == list(SEEDS)
        assert entry["low"] < entry["mean"] < entry["high"]
    change = summary["arms"]["mono"]["mean"] / summary["arms"]["none"]["mean"] - 1
    assert summary["arms"]["mono"]["percent_change_from_baseline"] == pytest.approx(100 * change)
    # perplexity is recomputed from the rows: exp(sum NLL / sum tokens) per run
    perplexity = results["subjects"]["tiny"]["summaries"]["evaluate/own/token_perplexity"]
    for seed in SEEDS:
        nll = sum(tokens(i) * token_nll("mono", seed, i) for i in range(N))
        expected = math.exp(nll / sum(tokens(i) for i in range(N)))
        assert perplexity["arms"]["mono"]["per_seed"][seed] == pytest.approx(expected)
    # the success rate leaves the skipped example out
    rates = results["subjects"]["tiny"]["summaries"]["attack/gcg/success_rate"]["arms"]["mono"]
    assert rates["per_seed"] == pytest.approx(
        [success_rate(attack_delta, "mono", s) for s in SEEDS]
    )


def test_the_paired_multi_bootstrap_estimate_is_the_difference_of_the_arm_means(
    results: dict,
) -> None:
    found = comparison(results, "attack/gcg/delta_nll")
    expected = (
        per_seed_means(attack_delta, "mono").mean() - per_seed_means(attack_delta, "none").mean()
    )
    assert found["computed"] and found["a"] == "mono" and found["b"] == "none"
    boot = found["multi_bootstrap"]
    assert boot["mean_difference"] == pytest.approx(expected)
    assert boot["low"] <= boot["mean_difference"] <= boot["high"]
    assert found["n_examples"] == N and found["n_dropped_examples"] == 0
    assert found["seeds"] == list(SEEDS) and found["dropped_seeds"] == []
    differences = [s["mean_difference"] for s in found["per_seed"]["seeds"]]
    assert differences == pytest.approx([ARM_SHIFT["mono"] - ARM_SHIFT["none"]] * 3)
    assert found["t_interval"]["mean"] == pytest.approx(expected)
    assert found["sign_flip"]["min_possible_p"] == pytest.approx(0.25)
    assert any("fewer than 6" in note for note in results["notes"])
    # the success rate: only examples decided in every run of both arms are paired
    rate = comparison(results, "attack/gcg/success_rate")
    assert rate["n_examples"] == N - 1 and rate["n_dropped_examples"] == 1


def test_within_seed_mcnemar_counts_the_discordant_pairs_without_the_skipped_example(
    results: dict,
) -> None:
    found = comparison(results, "attack/gcg/success_rate")
    tests = {w["seed"]: w for w in found["within_seed"]}
    for seed in SEEDS:
        mono = attack_rows(lambda i, s=seed: attack_delta("mono", s, i), "mono", seed)
        none = attack_rows(lambda i, s=seed: attack_delta("none", s, i), "none", seed)
        pairs = [
            (a["status"] == "success", b["status"] == "success")
            for a, b in zip(mono, none, strict=True)
            if "skipped" not in (a["status"], b["status"])
        ]
        w = tests[seed]
        assert w["test"] == "mcnemar" and w["computed"]
        assert w["only_a"] == sum(a and not b for a, b in pairs)
        assert w["only_b"] == sum(b and not a for a, b in pairs)
        assert w["both"] == sum(a and b for a, b in pairs)
        assert w["n_paired"] == len(pairs) and w["n_dropped"] == N - len(pairs)
    assert tests[0]["n_dropped"] == 1 and tests[0]["only_a"] == 1  # example 2 flips only for mono
    delta = comparison(results, "attack/gcg/delta_nll")
    assert {w["test"] for w in delta["within_seed"]} == {"wilcoxon"}
    assert all(w["n_paired"] == N for w in delta["within_seed"])


def test_the_attack_is_compared_with_its_matched_control_within_each_arm(results: dict) -> None:
    found = comparison(results, "attack/gcg/delta_nll", "attack_vs_control")
    expected = per_seed_means(attack_delta, "mono") - per_seed_means(control_delta, "mono")
    assert found["multi_bootstrap"]["mean_difference"] == pytest.approx(expected.mean())
    assert [s["mean_difference"] for s in found["per_seed"]["seeds"]] == pytest.approx(expected)
    assert found["adjustment"] == "benjamini-hochberg"


def test_the_transfer_matrix_averages_each_cell_over_seeds_with_the_white_box_diagonal(
    results: dict,
) -> None:
    matrix = results["subjects"]["tiny"]["transfer"]["gcg"]
    assert matrix["sources"] == matrix["targets"] == ["none", "mono"]
    off = matrix["cells"]["none"]["mono"]
    expected = [np.mean([transfer_delta("none", "mono", s, i) for i in range(N)]) for s in SEEDS]
    assert off["delta_nll"]["mean"] == pytest.approx(np.mean(expected))
    assert [c["delta_nll"] for c in off["per_seed"]] == pytest.approx(expected)
    assert not off["white_box"]
    diagonal = matrix["cells"]["mono"]["mono"]
    assert diagonal["white_box"]
    assert diagonal["delta_nll"]["mean"] == pytest.approx(
        per_seed_means(attack_delta, "mono").mean()
    )
    rates = [success_rate(attack_delta, "mono", s) for s in SEEDS]
    assert diagonal["success_rate"]["mean"] == pytest.approx(np.mean(rates))


def test_holm_adjusts_the_primary_family_and_bh_the_rest(results: dict) -> None:
    primary = [
        comparison(results, "attack/gcg/delta_nll"),
        comparison(results, "evaluate/own/token_perplexity"),
    ]
    expected = holm([c["p_value"] for c in primary])["adjusted_p_values"]
    assert [c["p_adjusted"] for c in primary] == pytest.approx(expected)
    assert {c["adjustment"] for c in primary} == {"holm"}
    assert comparison(results, "attack/gcg/success_rate")["adjustment"] == "benjamini-hochberg"
    family = results["multiple_comparisons"]["primary_family"]
    assert family["method"] == "holm" and len(family["members"]) == 2
    assert results["multiple_comparisons"]["unmatched_primary"] == []


def test_the_quality_matched_view_has_every_checkpoint_and_the_final_model(results: dict) -> None:
    view = results["subjects"]["tiny"]["quality_view"]
    assert view["quality"] == "evaluate/own/token_perplexity" and view["quality_lower_is_better"]
    points = {(p["arm"], p["seed"], p["step"]): p for p in view["points"]}
    assert set(points) == {
        (a, s, step) for a in ("none", "mono") for s in SEEDS for step in (2, None)
    }
    early = points["mono", 1, 2]
    assert early["robustness"]["gcg"]["delta_nll"] == pytest.approx(
        np.mean([attack_delta("mono", 1, i, 2) for i in range(N)])
    )
    assert early["quality"] > points["mono", 1, None]["quality"]  # step 2 has a higher NLL
    arm = view["arms"]["gcg"]["mono"]
    assert arm["seeds"] == list(SEEDS) and [len(path) for path in arm["paths"]] == [2, 2, 2]


def test_the_audit_flags_a_lower_spearman_with_a_first_step_below_random(results: dict) -> None:
    audit = results["subjects"]["tiny"]["audit"]["gcg"]["arms"]
    assert audit["mono"]["spearman"] == pytest.approx(AUDIT["mono"][0])
    assert audit["mono"]["gradient_masking_flag"] is True
    assert audit["none"]["gradient_masking_flag"] is None  # the baseline itself


def test_success_by_budget_ends_at_the_attack_success_rate(results: dict) -> None:
    curves = results["subjects"]["tiny"]["budget_curves"]["gcg"]
    assert curves["mode"] == "success" and curves["queries"][-1] == 8
    last = curves["arms"]["mono"]["attack"]["points"][-1]["mean"]
    assert last == pytest.approx(np.mean([success_rate(attack_delta, "mono", s) for s in SEEDS]))
    assert "control" in curves["arms"]["none"]


def test_every_override_differing_between_arms_is_recorded(results: dict) -> None:
    differing = results["budgets"]["differing_keys"]
    assert differing == {
        "constraint": {"none": "none", "mono": "monotonic"},
        "lr": {"none": None, "mono": "0.1"},
    }


# --- what is not done -------------------------------------------------------------------------


def test_a_failed_stage_is_listed_and_left_out_and_its_seed_dropped_from_pairs(
    tmp_path: Path,
) -> None:
    failed_key = "tiny/mono/s1/attack/gcg"

    def skip(stage) -> bool:  # the failed stage and what needs it (its control, its transfer)
        return stage.key == failed_key or failed_key in stage.needs

    study_dir = make_study(tmp_path / "s", skip)
    stage = next(s for s in build_plan(settings(), study_dir) if s.key == failed_key)
    write_json(
        record_dir(study_dir, stage) / STAGE_FAILURE,
        {"key": failed_key, "reason": "RuntimeError: out of memory", "traceback": "..."},
    )
    results = build_results(study_dir)
    failed = results["stages"]["failed"]
    assert [f["key"] for f in failed] == [failed_key]
    assert failed[0]["reason"] == "RuntimeError: out of memory"
    assert failed[0]["log"].endswith("stage.log")
    blocked = {m["key"]: m["reason"] for m in results["stages"]["missing"]}
    assert set(blocked) == {"tiny/mono/s1/control/gcg", "tiny/s1/transfer/gcg/mono"}
    assert set(blocked.values()) == {f"not run: it needs {failed_key} (failed)"}
    summary = results["subjects"]["tiny"]["summaries"]["attack/gcg/delta_nll"]["arms"]["mono"]
    assert summary["seeds"] == [0, 2]
    assert summary["mean"] == pytest.approx(per_seed_means(attack_delta, "mono", (0, 2)).mean())
    found = comparison(results, "attack/gcg/delta_nll")
    assert found["seeds"] == [0, 2]
    assert found["dropped_seeds"] == [{"seed": 1, "missing_in": ["mono"]}]
    expected = per_seed_means(attack_delta, "mono", (0, 2)) - per_seed_means(
        attack_delta, "none", (0, 2)
    )
    assert found["multi_bootstrap"]["mean_difference"] == pytest.approx(expected.mean())
    versus = comparison(results, "attack/gcg/delta_nll", "attack_vs_control")
    assert versus["seeds"] == [0, 2]
    paths = write_report(study_dir, figures=False)
    report = (study_dir / "report" / "report.md").read_text()
    assert failed_key in report and "RuntimeError: out of memory" in report
    assert "dropped seed 1 (missing in mono)" in report
    assert {p.name for p in paths} == {"results.json", "report.md", "tables.tex"}


def test_a_missing_run_is_listed_as_missing_and_its_seed_dropped(tmp_path: Path) -> None:
    missing = "tiny/none/s2/evaluate"
    study_dir = make_study(tmp_path / "s", lambda stage: stage.key == missing)
    results = build_results(study_dir)
    assert [m["key"] for m in results["stages"]["missing"]] == [missing]
    found = comparison(results, "evaluate/own/token_perplexity")
    assert found["seeds"] == [0, 1] and found["dropped_seeds"][0]["missing_in"] == ["none"]


def test_a_stage_recorded_with_another_hash_is_not_read(tmp_path: Path) -> None:
    study_dir = make_study(tmp_path / "s")
    stage = next(s for s in build_plan(settings(), study_dir) if s.key == "tiny/none/s0/attack/gcg")
    write_json(record_dir(study_dir, stage) / "stage.json", {"sha256": "0" * 64})
    results = build_results(study_dir)
    assert [m["key"] for m in results["stages"]["incomplete"]] == [stage.key]
    assert comparison(results, "attack/gcg/delta_nll")["seeds"] == [1, 2]


# --- malformed files --------------------------------------------------------------------------


def _break_study_json(study_dir: Path) -> Path:
    path = study_dir / STUDY_PLAN
    path.write_text("{not json")
    return path


def _drop_delta(study_dir: Path) -> Path:
    path = study_dir / "runs/tiny/mono/s1/attack/gcg/examples.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    del rows[2]["delta_nll"]
    write_jsonl(path, rows)
    return path


def _remove_eval(study_dir: Path) -> Path:
    path = study_dir / "runs/tiny/none/s0/eval/eval.json"
    path.unlink()
    return path


def _break_examples(study_dir: Path) -> Path:
    path = study_dir / "runs/tiny/none/s0/eval/own.examples.jsonl"
    path.write_text(path.read_text() + "[1, 2]\n")
    return path


def _break_transfer(study_dir: Path) -> Path:
    path = study_dir / "transfer/tiny/s0/gcg/none/transfer.json"
    write_json(path, {"attack": "gcg", "source": {"arm": "none"}, "cells": []})
    return path


def _break_csv(study_dir: Path) -> Path:
    path = study_dir / "runs/tiny/mono/s0/train/csv/metrics.csv"
    path.write_text("epoch,step,val/loss\n0,two,1.0\n")
    return path


def _break_status(study_dir: Path) -> Path:
    path = study_dir / "runs/tiny/mono/s2/control/gcg/examples.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["status"] = "won"
    write_jsonl(path, rows)
    return path


def _break_failure(study_dir: Path) -> Path:
    stage = next(s for s in build_plan(settings(), study_dir) if s.key == "tiny/mono/s0/train")
    (record_dir(study_dir, stage) / "stage.json").unlink()
    path = record_dir(study_dir, stage) / STAGE_FAILURE
    write_json(path, {"key": stage.key})
    return path


@pytest.mark.parametrize(
    ("breaking", "what"),
    [
        (_break_study_json, "not valid JSON"),
        (_drop_delta, "row 3 has no 'delta_nll'"),
        (_remove_eval, "is missing"),
        (_break_examples, "row 7 is not a JSON object"),
        (_break_transfer, "'cells' is list"),
        (_break_csv, "line 2 has step 'two'"),
        (_break_status, "row 1 has status 'won'"),
        (_break_failure, "has no 'reason'"),
    ],
)
def test_a_missing_or_malformed_file_is_a_user_error_naming_it(
    study: Path, tmp_path: Path, breaking, what: str
) -> None:
    study_dir = tmp_path / "s"
    shutil.copytree(study, study_dir)
    path = breaking(study_dir)
    with pytest.raises(UserError, match=re.escape(f"'{path}'")) as error:
        build_results(study_dir)
    assert what in str(error.value) and "\n" not in str(error.value)


# --- the files written ------------------------------------------------------------------------


def test_the_report_files_are_byte_identical_across_two_runs(study: Path, tmp_path: Path) -> None:
    study_dir = tmp_path / "s"
    shutil.copytree(study, study_dir)
    first = write_report(study_dir)
    contents = {p: p.read_bytes() for p in first}
    second = write_report(study_dir)
    assert second == first
    assert {p: p.read_bytes() for p in second} == contents
    names = {p.name for p in first}
    assert {"results.json", "report.md", "tables.tex"} <= names
    for stem in (
        "quality_vs_robustness-tiny-gcg",
        "success_vs_budget-tiny-gcg",
        "transfer-tiny-gcg",
        "training-tiny-val_loss",
        "training-tiny-train_loss",
        "forest-tiny-mono-attack_gcg_delta_nll",
    ):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names, sorted(names)
    results = json.loads((study_dir / "report" / "results.json").read_text())
    assert results["bootstrap"]["seed"] == 0 and results["config"]["name"] == "synthetic"
    assert {"code", "packages", "stages", "subjects", "figures"} <= set(results)
    report = (study_dir / "report" / "report.md").read_text()
    assert report.startswith("# Study report: synthetic\n\n> synthetic numbers")
    assert "(figures/transfer-tiny-gcg.png)" in report and "holm" in report
    tex = (study_dir / "report" / "tables.tex").read_text()
    assert tex.count(r"\begin{tabular}") == 2 and r"\toprule" in tex
    assert r"attack/gcg/delta\_nll" in tex


def test_latex_escapes_every_special_character() -> None:
    assert escape_latex(r"a_b & 5% $x$ #1 {y} ~z^2 \n") == (
        r"a\_b \& 5\% \$x\$ \#1 \{y\} \textasciitilde{}z\textasciicircum{}2 \textbackslash{}n"
    )
    rendered = latex(table("arm_a", ("metric", "value"), [("delta_nll", "0.5")]))
    assert rendered.splitlines()[:4] == [
        r"\begin{table}[ht]",
        r"\centering",
        r"\small",
        r"\caption{arm\_a}",
    ]
    assert r"delta\_nll & 0.5 \\" in rendered and rendered.rstrip().endswith(r"\end{table}")
