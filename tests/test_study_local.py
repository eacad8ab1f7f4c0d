"""`python -m monolm.study run study=tiny` through the CLI with the local executor, budgets cut
so it runs in minutes on 2 CPU cores (both tiny families, both arms, two seeds, GCG and UAT with
their controls and transfers, a checkpoint along training): every output exists, the report's
headline numbers equal what this test recomputes from the per-example files, a rerun skips every
finished stage, and a changed stage reruns (hashes chained through needs: test_study_plan)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from tests.helpers import run_script

pytestmark = pytest.mark.slow

ARMS, SEEDS = ("none", "monotonic"), (0, 1)
QUIET = ("trainer.max_steps=16", "trainer.val_check_interval=8",
         "callbacks.checkpoint_every_n_steps=8", "trainer.enable_progress_bar=false",
         "trainer.enable_model_summary=false", "dataset.max_validation_examples=8")  # fmt: skip


def _subject(model: str, dataset: str) -> str:
    return ",".join(f'"{o}"' for o in (f"model={model}", f"dataset={dataset}", *QUIET))


SMALL = (
    f"study.subjects.tiny_t5=[{_subject('tiny_t5', 'tiny_summarization')}]",
    f"study.subjects.tiny_pythia=[{_subject('tiny_pythia', 'tiny_lm')}]",
    "study.checkpoints=[8]",
    'study.evaluate=["max_examples=8"]',
    'study.attack_overrides=["max_examples=5","bootstrap.resamples=50"]',
    'study.attacks.gcg.overrides=["attack=gcg","attack.gcg.budget=2","attack.gcg.steps=2",'
    '"attack.gcg.top_k=4","attack.gcg.candidates=16"]',
    'study.attacks.uat.overrides=["attack=uat","attack.trigger.length=2",'
    '"attack.trigger.restarts=1","attack.trigger.steps=1","attack.trigger.top_k=4",'
    '"attack.trigger.optimization_examples=5"]',
)


def study(command: str, study_dir: Path, *overrides: str):
    return run_script("-m", "monolm.study", command, "study=tiny", f"study_dir={study_dir}",
                      *SMALL, *overrides)  # fmt: skip


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def records(study_dir: Path) -> dict[str, dict]:
    """Each stage's record but the report's (rewritten by every run)."""
    found = {json.loads(p.read_text())["key"]: json.loads(p.read_text())
             for p in (study_dir / "stages").rglob("stage.json")}  # fmt: skip
    return {key: record for key, record in found.items() if key != "report"}


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    study_dir = tmp_path_factory.mktemp("study") / "tiny"
    done = study("run", study_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "0 failed, 0 blocked" in done.stdout
    return study_dir


def test_every_stage_and_every_output_of_the_study_exists(tiny_study: Path) -> None:
    plan = json.loads((tiny_study / "study.json").read_text())
    stages = plan["stages"]
    assert {s["key"] for s in stages} - {"report"} == set(records(tiny_study))
    wanted = {
        "train": "run.json",
        "evaluate": "eval.json",
        "attack": "attack.json",
        "control": "attack.json",
        "transfer": "transfer.json",
        "report": "results.json",
    }
    for stage in stages:
        assert (tiny_study / stage["dir"] / wanted[stage["kind"]]).is_file(), stage["key"]
    report = tiny_study / "report"
    assert {p.name for p in report.iterdir()} >= {"results.json", "report.md", "tables.tex"}
    figures = {p.name.split("-")[0] for p in (report / "figures").glob("*.png")}
    assert figures >= {"quality_vs_robustness", "success_vs_budget", "transfer",
                       "training", "forest"}  # fmt: skip
    assert len(list((report / "figures").glob("*.pdf"))) == len(
        list((report / "figures").glob("*.png"))
    )
    results = json.loads((report / "results.json").read_text())
    assert (
        results["stages"]["counts"]["failed"] == 0 and results["stages"]["counts"]["missing"] == 0
    )
    assert results["code"] and results["packages"] and results["config"]["name"] == "tiny"
    tex = (report / "tables.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex


def _run_mean(study_dir: Path, arm: str, seed: int, attack: str, metric: str) -> float:
    found = rows(study_dir / f"runs/tiny_pythia/{arm}/s{seed}/attack/{attack}/examples.jsonl")
    if metric == "success_rate":
        decided = [r["status"] == "success" for r in found if r["status"] != "skipped"]
        return sum(decided) / len(decided)
    return float(np.mean([r[metric] for r in found]))


def test_the_headline_numbers_are_what_the_per_example_files_give(tiny_study: Path) -> None:
    results = json.loads((tiny_study / "report" / "results.json").read_text())
    subject = results["subjects"]["tiny_pythia"]
    # per arm: the mean over seeds of each run's statistic
    for measure in ("attack/gcg/delta_nll", "attack/gcg/success_rate"):
        metric = measure.split("/")[-1]
        for arm in ARMS:
            mine = [_run_mean(tiny_study, arm, seed, "gcg", metric) for seed in SEEDS]
            theirs = subject["summaries"][measure]["arms"][arm]
            assert theirs["per_seed"] == pytest.approx(mine)
            assert theirs["mean"] == pytest.approx(np.mean(mine))
    # perplexity: exp(sum NLL / sum tokens) per run, never a mean of per-example perplexities
    for arm in ARMS:
        mine = []
        for seed in SEEDS:
            found = rows(tiny_study / f"runs/tiny_pythia/{arm}/s{seed}/eval/own.examples.jsonl")
            nll = -sum(r["loglikelihood"] for r in found) / sum(r["tokens"] for r in found)
            mine.append(math.exp(nll))
        theirs = subject["summaries"]["evaluate/own/token_perplexity"]["arms"][arm]
        assert theirs["per_seed"] == pytest.approx(mine)
    # arm vs baseline, paired: the multi-bootstrap's point estimate is the mean over seeds of
    # each seed's paired difference on the examples both arms have
    (paired,) = [c for c in subject["comparisons"] if c["measure"] == "attack/gcg/delta_nll"]
    differences = []
    for seed in SEEDS:
        a, b = ({r["id"]: r["delta_nll"] for r in rows(
            tiny_study / f"runs/tiny_pythia/{arm}/s{seed}/attack/gcg/examples.jsonl")}
            for arm in ("monotonic", "none"))  # fmt: skip
        common = sorted(set(a) & set(b))
        differences.append(np.mean([a[i] - b[i] for i in common]))
    assert paired["multi_bootstrap"]["mean_difference"] == pytest.approx(np.mean(differences))
    assert paired["t_interval"]["mean"] == pytest.approx(np.mean(differences))
    low, high = paired["multi_bootstrap"]["low"], paired["multi_bootstrap"]["high"]
    assert low <= paired["multi_bootstrap"]["mean_difference"] <= high
    assert paired["sign_flip"]["min_possible_p"] == pytest.approx(0.5)  # 2 seeds: 2 / 2^2
    # within a seed: exact McNemar on the discordant success pairs
    (success,) = [c for c in subject["comparisons"] if c["measure"] == "attack/gcg/success_rate"]
    for seed, test in zip(SEEDS, success["within_seed"], strict=True):
        a, b = ({r["id"]: r["status"] for r in rows(
            tiny_study / f"runs/tiny_pythia/{arm}/s{seed}/attack/gcg/examples.jsonl")}
            for arm in ("monotonic", "none"))  # fmt: skip
        pairs = [(a[i], b[i]) for i in a if "skipped" not in (a[i], b[i])]
        only_a = sum(x == "success" and y == "failure" for x, y in pairs)
        only_b = sum(x == "failure" and y == "success" for x, y in pairs)
        assert test["seed"] == seed and test["test"] == "mcnemar"
        if only_a + only_b:
            assert test["p_value_two_sided"] == pytest.approx(
                binomtest(only_a, only_a + only_b).pvalue
            )
    # transfer: each cell is the mean over seeds of the replayed inputs' scores on the target
    cell = subject["transfer"]["gcg"]["cells"]["monotonic"]["none"]
    assert not cell["white_box"]
    mine = []
    for seed in SEEDS:
        found = rows(tiny_study / f"transfer/tiny_pythia/s{seed}/gcg/monotonic/none.examples.jsonl")
        mine.append(float(np.mean([r["delta_nll"] for r in found])))
    assert [s["delta_nll"] for s in cell["per_seed"]] == pytest.approx(mine)
    assert cell["delta_nll"]["mean"] == pytest.approx(np.mean(mine))
    diagonal = subject["transfer"]["gcg"]["cells"]["none"]["none"]
    white_box = [_run_mean(tiny_study, "none", seed, "gcg", "delta_nll") for seed in SEEDS]
    assert diagonal["white_box"] and diagonal["delta_nll"]["mean"] == pytest.approx(
        np.mean(white_box)
    )


def test_a_rerun_skips_every_finished_stage_and_a_changed_one_reruns_alone(
    tiny_study: Path,
) -> None:  # last in this module: it changes the study
    first = records(tiny_study)
    again = study("run", tiny_study)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 ran" in again.stdout and f"{len(first)} already done" in again.stdout
    assert records(tiny_study) == first  # nothing rewritten

    fewer = 'study.evaluate=["max_examples=6"]'
    changed = study("run", tiny_study, fewer)
    assert changed.returncode == 0, changed.stderr[-3000:]
    rerun = {k for k, r in records(tiny_study).items() if r["sha256"] != first[k]["sha256"]}
    assert rerun == {k for k in first if "/evaluate" in k}  # at both points of training
    status = study("status", tiny_study, fewer)
    assert status.returncode == 0, status.stderr
    assert {line.split()[1] for line in status.stdout.splitlines()[1:]} == {"done"}
