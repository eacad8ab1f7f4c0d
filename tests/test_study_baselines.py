"""Simple baselines inside a study (study.baselines): their evaluate stages in the plan (own
becomes the subject's dataset task under the name own; zero_shot evaluates the subject's model
option), one-line refusals, SLURM arrays, the report's table from hand-written files beside the
arms, and one real majority evaluation through the stage runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from monolm.config.typed import typed_settings
from monolm.errors import UserError
from monolm.study.baseline_results import run_interval
from monolm.study.bookkeeping import STAGE_FAILURE, record_dir
from monolm.study.measures import RunValues
from monolm.study.plan import STUDY_PLAN, build_plan, plan_record, stage_hashes
from monolm.study.report import build_results, write_report
from monolm.study.sections import markdown_report
from monolm.study.settings import StudySettings
from monolm.study.slurm import ExecutorSettings, StageResources, build_groups, dependency_of
from monolm.study.stages import check_stages, is_done, run_stage
from tests.helpers import CONF

PARA = ["model=tiny_llama", "dataset=tiny_paraphrase"]
OWN_AS_MRPC = (
    "task.own.kind=classification",
    "task.own.dataset=tiny_paraphrase",
    "task.own.split=validation",
)


def settings(**changes) -> StudySettings:
    values = {
        "name": "baselines",
        "seeds": [3, 4],
        "arms": {"full": ["adapter=none"], "lora": ["adapter=lora"]},
        "subjects": {
            "para": PARA,
            "squad": ["model=tiny_llama", "dataset=tiny_squad_v2"],
        },
        "evaluate": ["task=[own]", "max_examples=20"],
        "baselines": ["majority", "uniform", "zero_shot"],
    }
    return StudySettings(**{**values, **changes})


def baseline_stages(stages) -> dict:
    return {s.key: s for s in stages if s.simple_baseline is not None}


def test_each_subject_gets_its_baselines_with_own_as_its_dataset_task(tmp_path: Path) -> None:
    stages = build_plan(settings(), tmp_path)
    found = baseline_stages(stages)
    # uniform scores classification only: not planned for the SQuAD subject
    assert sorted(found) == [
        "para/baseline/majority",
        "para/baseline/uniform",
        "para/baseline/zero_shot",
        "squad/baseline/majority",
        "squad/baseline/zero_shot",
    ]
    study = ("task=[own]", "max_examples=20")
    assert found["para/baseline/majority"].overrides == (*OWN_AS_MRPC, *study, "baseline=majority")
    assert found["para/baseline/uniform"].overrides == (
        *OWN_AS_MRPC,
        *study,
        "baseline=uniform",
        "seed=3",  # the study's first seed
    )
    assert found["squad/baseline/zero_shot"].overrides == (
        "task.own.kind=question_answering",
        "task.own.dataset=tiny_squad_v2",
        "task.own.split=validation",
        *study,
        "model=tiny_llama",
    )
    stage = found["para/baseline/zero_shot"]
    assert stage.dir == "baselines/para/zero_shot" and stage.kind == "evaluate"
    assert stage.needs == () and stage.arm is None and stage.seed is None
    report = stages[-1]
    assert all(key in report.needs for key in found)
    first_train = next(i for i, s in enumerate(stages) if s.kind == "train")
    assert stages.index(found["para/baseline/majority"]) < first_train  # they run first


def test_a_baseline_drops_the_tasks_it_cannot_score(tmp_path: Path) -> None:
    study = settings(evaluate=["task=[own,glue_sst2]", "+task.own.max_examples=5"])
    found = baseline_stages(build_plan(study, tmp_path))
    # the SQuAD subject's uniform baseline keeps the classification task only, and own's
    # settings go with own
    assert found["squad/baseline/uniform"].overrides == (
        "task=[own,glue_sst2]",
        "task=[glue_sst2]",
        "baseline=uniform",
        "seed=3",
    )
    assert "task=[glue_sst2]" not in found["squad/baseline/majority"].overrides
    check_stages(tmp_path, CONF, list(found.values()))  # they compose and plan as evaluate.py's


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"baselines": ["majorty"]},
            r"study.baselines has 'majorty': did you mean 'majority'\? valid: majority, "
            "uniform, zero_shot",
        ),
        ({"baselines": ["majority", "majority"]}, "a baseline is repeated"),
        ({"evaluate": None}, "study.baselines needs study.evaluate"),
        (
            {"subjects": {"para": ["model=tiny_llama"]}},
            r"study.subjects.para has no dataset=<option> override: .* add dataset=<option>",
        ),
        (
            {"subjects": {"para": ["model=tiny_llama", "dataset=tiny"]}},
            r"study.subjects.para trains on dataset=tiny, .* add conf/evaluate/task/tiny.yaml",
        ),
        (
            {"subjects": {"para": ["dataset=tiny_paraphrase"]}},
            "study.subjects.para has no model=<option> override: the zero_shot baseline",
        ),
        (
            {"subjects": {"para": [*PARA, "dataset.max_length=64"]}},
            "study.subjects.para overrides dataset.max_length, which its baselines",
        ),
    ],
)
def test_an_impossible_baseline_is_refused_in_one_line(
    tmp_path: Path, changes: dict, message: str
) -> None:
    with pytest.raises(UserError, match=message) as refused:
        build_plan(settings(**changes), tmp_path)
    assert "\n" not in str(refused.value)


def test_each_baseline_is_one_slurm_array_with_no_dependency(tmp_path: Path) -> None:
    groups = build_groups(build_plan(settings(), tmp_path))
    by_name = {g.name: g for g in groups}
    assert [
        len(by_name[f"baselines.{b}"].stages) for b in ("majority", "uniform", "zero_shot")
    ] == [
        2,
        1,
        2,
    ]
    ids = {g.name: str(100 + i) for i, g in enumerate(groups)}
    assert dependency_of(by_name["baselines.majority"], groups, ids) is None
    report = dependency_of(by_name["report"], groups, ids)
    assert ids["baselines.zero_shot"] in report.split(":")
    cpu = StageResources(gpus_per_node=0)
    executor = ExecutorSettings(kind="slurm", resources={"baseline": cpu})
    executor.check()
    assert executor.resources_of_group(by_name["baselines.uniform"]) is cpu
    assert executor.resources_of_group(by_name["baselines.zero_shot"]) is not cpu  # a model


def test_the_tiny_lora_study_plans_its_baselines_and_every_stage_composes(tmp_path: Path) -> None:
    node = OmegaConf.load(CONF / "study" / "tiny_lora.yaml")
    study = typed_settings(StudySettings, node, "study.")
    assert study.baselines == ["majority", "uniform", "zero_shot"]
    stages = build_plan(study, tmp_path)
    check_stages(tmp_path, CONF, stages)
    assert len(baseline_stages(stages)) == 5  # uniform: the paraphrase subject only


# --- the report -------------------------------------------------------------------------------

N = 10
ARM_CORRECT = {"full": (8, 9), "lora": (7, 6)}  # correct examples per seed (3, 4)
BASELINE_CORRECT = {"majority": 6, "zero_shot": 4}


def classification_eval(out: Path, correct: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        {"id": i, "prediction": int(i < correct), "correct": int(i < correct)} for i in range(N)
    ]
    (out / "own.examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = {"kind": "classification", "n": N, "metrics": {}, "examples_file": "own.examples.jsonl"}
    (out / "eval.json").write_text(json.dumps({"tasks": {"own": task}}))


def write_record(study_dir: Path, stage, name: str, record: dict) -> None:
    path = record_dir(study_dir, stage) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every stage done but the uniform baseline, which failed; the arms' runs and the
    baselines' evaluations written by hand."""
    study_dir = tmp_path_factory.mktemp("study") / "s"
    study = settings(subjects={"para": PARA})
    stages = build_plan(study, study_dir)
    hashes = stage_hashes(stages, study_dir)
    study_dir.mkdir(parents=True)
    (study_dir / STUDY_PLAN).write_text(json.dumps(plan_record(study, study_dir, stages)))
    for stage in stages:
        out = study_dir / stage.dir
        if stage.kind == "report":
            continue
        if stage.simple_baseline == "uniform":
            write_record(study_dir, stage, STAGE_FAILURE, {"reason": "RuntimeError: boom"})
            continue
        if stage.kind == "train":
            out.mkdir(parents=True)
            (out / "run.json").write_text(json.dumps({"status": "completed"}))
        elif stage.simple_baseline is not None:
            classification_eval(out, BASELINE_CORRECT[stage.simple_baseline])
        else:
            classification_eval(out, ARM_CORRECT[stage.arm][stage.seed - 3])
        write_record(
            study_dir, stage, "stage.json", {"key": stage.key, "sha256": hashes[stage.key]}
        )
    return study_dir


def test_the_report_shows_each_baseline_beside_the_arms_means(study_dir: Path) -> None:
    results = build_results(study_dir)
    found = results["subjects"]["para"]["simple_baselines"]
    row = found["measures"]["evaluate/own/acc"]
    assert row["arms"]["full"]["mean"] == pytest.approx((0.8 + 0.9) / 2)
    assert row["arms"]["lora"]["mean"] == pytest.approx((0.7 + 0.6) / 2)
    majority = row["baselines"]["majority"]
    assert majority["value"] == pytest.approx(0.6) and majority["n"] == N
    assert majority["low"] < 0.6 < majority["high"]
    assert row["baselines"]["zero_shot"]["value"] == pytest.approx(0.4)
    assert row["baselines"]["uniform"] is None  # failed: listed, not reported
    assert found["stages"]["uniform"]["state"] == "failed"
    failed = [e["key"] for e in results["stages"]["failed"]]
    assert failed == ["para/baseline/uniform"]
    # the arms' own summaries and comparisons do not see the baselines
    summary = results["subjects"]["para"]["summaries"]["evaluate/own/acc"]
    assert summary["arms"]["full"]["per_seed"] == pytest.approx([0.8, 0.9])
    text = markdown_report(results)
    assert "para: simple baselines beside the arms" in text
    assert "| measure | full (mean) | lora (mean) | majority | uniform | zero_shot |" in text
    assert f"| evaluate/own/acc | 0.85 | 0.65 | 0.6 [{majority['low']:.4g}, " in text
    assert "uniform: failed (RuntimeError: boom)" in text
    written = {p.name: p for p in write_report(study_dir, figures=False)}
    assert "simple baselines beside the arms" in written["tables.tex"].read_text()
    saved = json.loads(written["results.json"].read_text())
    assert saved["subjects"]["para"]["simple_baselines"]["measures"] == json.loads(
        json.dumps(found["measures"])
    )


# --- a real evaluation ------------------------------------------------------------------------


def test_a_majority_baseline_runs_through_the_stage_runner(tmp_path: Path) -> None:
    study = settings(subjects={"para": PARA}, baselines=["majority"])
    stages = build_plan(study, tmp_path)
    hashes = stage_hashes(stages, tmp_path)
    (stage,) = baseline_stages(stages).values()
    run_stage(tmp_path, CONF, stage, hashes[stage.key])
    assert is_done(tmp_path, stage, hashes[stage.key])
    record = json.loads((tmp_path / "baselines/para/majority/eval.json").read_text())
    task = record["tasks"]["own"]  # under own's name, as the arms' evaluations
    assert task["kind"] == "classification" and task["dataset"] == "tiny_paraphrase"
    assert task["n"] == 20 and record["subject"]["baseline"] == "majority"
    examples = tmp_path / "baselines/para/majority/own.examples.jsonl"
    rows = [json.loads(line) for line in examples.read_text().splitlines()]
    assert len({row["prediction"] for row in rows}) == 1
    # the report's statistic from the examples is eval.json's accuracy
    values = RunValues({row["id"]: float(row["correct"]) for row in rows})
    assert run_interval(values, "rate")["value"] == pytest.approx(task["metrics"]["acc"]["mean"])
