"""evaluate.py's GLUE classification and SQuAD v2 tasks, and the baselines, as specifications.

Classification predicts the choice with the highest lm-eval log-likelihood; acc and the positive
class's F1 follow from the rows, F1's interval recomputes F1 per resample. Question answering
scores greedy answers exactly as the official SQuAD v2 script, an "unanswerable" answer abstains,
a capped subset keeps the answerable share whatever the file's order. Baselines predict without
a model. The study reads the new rows.
"""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from omegaconf import OmegaConf

from monolm.config.eval_schema import EvaluateConfig
from monolm.data.bundled import BUNDLED_ROOT
from monolm.data.prompts import continuation, prompt_text
from monolm.errors import UserError
from monolm.evaluation import question_answering
from monolm.evaluation.baselines import resolve_baseline, run_baseline
from monolm.evaluation.classification import resampled_positive_f1
from monolm.evaluation.question_answering import stratified_subset
from monolm.evaluation.runners import RUNNERS
from monolm.evaluation.tasks import TaskContext, plan_tasks
from monolm.metrics.classification import accuracy, majority_label, positive_f1
from monolm.metrics.likelihood import continuation_loglikelihoods
from monolm.metrics.squad_v2 import squad_v2_scores
from monolm.subjects import SubjectIdentity, dataset_option, load_subject, resolve_model
from tests.helpers import CONF, run_script
from tests.test_bad_input import assert_one_line_error

TRAIN_LABELS = [1, 1, 1, 0, 0, 1, 0, 1]  # majority: 1
VALIDATION_LABELS = [0, 1, 1, 0, 0, 1, 0, 0, 1, 0]
SCRIPTED = {  # question id -> what the stubbed model "generates"
    "q0": "Unanswerable.",
    "q1": "on the mat",
    "q2": "in Paris\nand more text",
    "q3": "UNANSWERABLE",
    "q4": "",
    "q5": "the mat",
}


class Quiet:
    """A progress bar that shows nothing."""

    def reset(self, total: int = 0) -> None: ...

    def set_description(self, text: str) -> None: ...

    def update(self, count: int = 1) -> None: ...


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def pair(index: int, label: int) -> dict[str, Any]:
    return {
        "idx": 100 + index,
        "sentence1": f"The cat number {index} sat on the mat.",
        "sentence2": f"A cat ({index}) was {'on' if label else 'under'} the mat.",
        "label": label,
    }


def question(ident: str, answers: list[str]) -> dict[str, Any]:
    return {
        "id": ident,
        "title": "Cats",
        "context": "The cat sat on the mat in Paris.",
        "question": f"Where did cat {ident} sit?",
        "answers": {"text": answers, "answer_start": [0] * len(answers)},
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("glue_squad")
    questions = [
        question(ident, [] if ident in ("q0", "q3", "q4") else ["on the mat", "the mat"])
        for ident in SCRIPTED
    ]
    return {
        "pairs_train": write_jsonl(
            folder / "pairs_train.jsonl", [pair(i, y) for i, y in enumerate(TRAIN_LABELS)]
        ),
        "pairs_validation": write_jsonl(
            folder / "pairs_validation.jsonl",
            [pair(i, y) for i, y in enumerate(VALIDATION_LABELS)],
        ),
        "questions": write_jsonl(folder / "questions.jsonl", questions),
        "folder": str(folder),
    }


def paraphrase_task(data: dict[str, str], **extra: Any) -> dict[str, Any]:
    files = {"train": data["pairs_train"], "validation": data["pairs_validation"]}
    return {
        "kind": "classification",
        "dataset": "tiny_paraphrase",
        "split": "validation",
        "data_files": files,
        **extra,
    }


def squad_task(data: dict[str, str], file: str | None = None, **extra: Any) -> dict[str, Any]:
    files = {"validation": file or data["questions"]}
    return {
        "kind": "question_answering",
        "dataset": "tiny_squad_v2",
        "split": "validation",
        "data_files": files,
        **extra,
    }


def evaluate_config(tasks: dict[str, Any], **settings: Any) -> Any:
    return OmegaConf.merge(
        OmegaConf.structured(EvaluateConfig),
        {"task": tasks, "bootstrap": {"resamples": 200}, **settings},
    )


def plan_one(tasks: dict[str, Any], family: str = "causal", own: Any = None, **settings: Any):
    (task,) = plan_tasks(evaluate_config(tasks, **settings), CONF, family, own)
    return task


@pytest.fixture(scope="module")
def subjects() -> dict[str, Any]:
    cache = os.environ["MONOLM_CACHE"]
    return {
        family: load_subject(resolve_model(CONF, name), cache)
        for family, name in (("causal", "tiny_pythia"), ("seq2seq", "tiny_t5"))
    }


def context(subject: Any, **settings: Any) -> TaskContext:
    return TaskContext.of(subject, evaluate_config({}, **settings), None)


# --- classification ---------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["causal", "seq2seq"])
def test_the_prediction_is_the_argmax_of_the_choices_loglikelihoods(
    family: str, subjects: dict[str, Any], data: dict[str, str]
) -> None:
    subject = subjects[family]
    task = plan_one({"para": paraphrase_task(data)}, family)
    result = RUNNERS["classification"](task, context(subject, batch_size=3), Quiet())
    assert len(result.rows) == len(VALIDATION_LABELS)
    for row, (index, label) in zip(result.rows, enumerate(VALIDATION_LABELS), strict=True):
        prompt = prompt_text(task.dataset, pair(index, label))
        requests = [(prompt, continuation(task.dataset, c, family)) for c in ("no", "yes")]
        expected = [
            ll
            for ll, _ in continuation_loglikelihoods(
                subject.model, subject.tokenizer, requests, batch_size=1
            )
        ]
        assert row["loglikelihoods"] == pytest.approx(expected, abs=1e-4)
        assert row["prediction"] == int(np.argmax(expected))
        assert (row["id"], row["label"], row["input"]) == (100 + index, label, prompt)
        assert row["reference"] == ["no", "yes"][label]
        assert row["correct"] == int(row["prediction"] == label)


def test_acc_and_f1_follow_from_the_rows(subjects: dict[str, Any], data: dict[str, str]) -> None:
    task = plan_one({"para": paraphrase_task(data)})
    result = RUNNERS["classification"](task, context(subjects["causal"]), Quiet())
    predictions = [row["prediction"] for row in result.rows]
    labels = [row["label"] for row in result.rows]
    acc, f1 = result.metrics["acc"], result.metrics["f1"]
    assert acc["mean"] == pytest.approx(accuracy(predictions, labels))
    assert f1["mean"] == positive_f1(predictions, labels, positive=1)
    assert acc["low"] <= acc["mean"] <= acc["high"] and f1["low"] <= f1["mean"] <= f1["high"]
    assert f1["n"] == len(labels) and f1["resamples"] == 200
    assert "F1 of label 1" in result.info["conventions"]["f1"]


def test_the_f1_interval_recomputes_f1_on_each_resample() -> None:
    predictions, labels = [1, 0, 1, 1, 0, 0, 1], [1, 0, 0, 1, 1, 0, 0]
    resampled = resampled_positive_f1(predictions, labels, positive=1, resamples=50, seed=7)
    draws = np.random.default_rng(7).integers(0, len(labels), size=(50, len(labels)))
    expected = [
        positive_f1([predictions[i] for i in d], [labels[i] for i in d], positive=1) for d in draws
    ]
    assert resampled.tolist() == pytest.approx(expected)
    # F1 is not a mean of per-example values: the resampled values are not all resampled means
    # of any fixed per-example score (a mean of 0/1 values would be a multiple of 1/7).
    assert any(abs(v * 7 - round(v * 7)) > 1e-9 for v in resampled)


def test_a_dataset_without_a_positive_label_reports_accuracy_only(
    subjects: dict[str, Any], data: dict[str, str], tmp_path: Path
) -> None:
    rows = [
        {"idx": i, "sentence": f"a {'good' if y else 'bad'} film {i}", "label": y}
        for i, y in enumerate(VALIDATION_LABELS)
    ]
    files = {"validation": write_jsonl(tmp_path / "sst2.jsonl", rows)}
    task = plan_one(
        {
            "sst2": {
                "kind": "classification",
                "dataset": "glue_sst2",
                "split": "validation",
                "data_files": files,
            }
        }
    )
    result = RUNNERS["classification"](task, context(subjects["causal"]), Quiet())
    assert set(result.metrics) == {"acc"}
    assert {row["reference"] for row in result.rows} == {"negative", "positive"}


# --- question answering -----------------------------------------------------------------------


def test_qa_rows_are_scored_exactly_as_the_official_script(
    subjects: dict[str, Any], data: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    subject = subjects["causal"]
    task = plan_one({"qa": squad_task(data)})
    monkeypatch.setattr(
        question_answering,
        "generate_answers",
        lambda task, ctx, prompts, progress: [SCRIPTED[f"q{i}"] for i in range(len(prompts))],
    )
    result = RUNNERS["question_answering"](task, context(subject), Quiet())
    rows = result.rows
    assert [row["id"] for row in rows] == list(SCRIPTED)
    assert [row["generated"] for row in rows] == list(SCRIPTED.values())
    # "unanswerable" in any case or punctuation abstains; only the first line is the answer
    assert [row["prediction"] for row in rows] == ["", "on the mat", "in Paris", "", "", "the mat"]
    prompts = [row["input"] for row in rows]
    no_answer = [
        ll
        for ll, _ in continuation_loglikelihoods(
            subject.model, subject.tokenizer, [(p, " unanswerable") for p in prompts], 1
        )
    ]
    probabilities = [row["no_answer_prob"] for row in rows]
    assert probabilities == pytest.approx([math.exp(ll) for ll in no_answer], rel=1e-4)
    official = squad_v2_scores(
        [row["reference"] for row in rows], [row["prediction"] for row in rows], probabilities
    )
    for key in ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1"):
        assert result.metrics[key]["mean"] == official[key], key
    for key in ("exact", "f1"):
        assert official[key] == pytest.approx(100 * np.mean([row[key] for row in rows]))
        assert result.metrics[key]["low"] <= official[key] <= result.metrics[key]["high"]
    for key in ("best_exact", "best_f1"):
        assert result.metrics[key]["mean"] == official[key]
        assert result.metrics[key]["threshold"] == official[f"{key}_thresh"]
    assert result.info["questions"] == {"total": 6, "HasAns_total": 3, "NoAns_total": 3}


@pytest.mark.parametrize("family", ["causal", "seq2seq"])
def test_greedy_answers_are_generated_in_batches_as_one_by_one(
    family: str, subjects: dict[str, Any], data: dict[str, str]
) -> None:
    subject = subjects[family]
    task = plan_one({"qa": squad_task(data, max_examples=4)}, family)
    result = RUNNERS["question_answering"](
        task, context(subject, generation={"batch_size": 3}), Quiet()
    )
    causal = family == "causal"
    for row in result.rows:
        text = row["input"].rstrip() if causal else row["input"]
        ids = subject.tokenizer(text, return_tensors="pt")["input_ids"]
        out = subject.model.generate(
            input_ids=ids,
            max_new_tokens=24,
            do_sample=False,
            num_beams=1,
            pad_token_id=subject.tokenizer.pad_token_id,
        )
        alone = subject.tokenizer.decode(
            out[0, ids.shape[1] :] if causal else out[0], skip_special_tokens=True
        )
        assert row["generated"] == alone.strip()


def test_a_capped_subset_keeps_the_answerable_share_whatever_the_order() -> None:
    ids = [f"id{i}" for i in range(100)]
    has_answer = [i % 5 >= 2 for i in range(100)]  # 60 answerable, 40 not
    kept = stratified_subset(ids, has_answer, 10)
    assert len(kept) == 10 and sum(has_answer[i] for i in kept) == 6 and kept == sorted(kept)
    order = list(range(100))
    random.Random(0).shuffle(order)
    shuffled = stratified_subset([ids[i] for i in order], [has_answer[i] for i in order], 10)
    assert {ids[order[i]] for i in shuffled} == {ids[i] for i in kept}
    assert stratified_subset(ids, has_answer, 500) == list(range(100))
    assert sum(not has_answer[i] for i in stratified_subset(ids, has_answer, 2)) == 1


def test_qa_max_examples_selects_the_same_questions_from_a_shuffled_file(
    data: dict[str, str], tmp_path: Path
) -> None:
    rows = [json.loads(line) for line in Path(data["questions"]).read_text().splitlines()]
    shuffled = write_jsonl(tmp_path / "shuffled.jsonl", rows[::-1])
    found = []
    for file in (data["questions"], shuffled):
        task = plan_one({"qa": squad_task(data, file, max_examples=4)})
        result = run_baseline(task, context(resolve_baseline(baseline_config("majority"))), Quiet())
        found.append({row["id"] for row in result.rows})
        assert sum(row["has_answer"] for row in result.rows) == 2  # 3 of 6 answerable -> 2 of 4
        assert "stratified" in result.info["conventions"]["examples"]
    assert found[0] == found[1]


# --- own tasks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "kind"),
    [("tiny_paraphrase", "classification"), ("tiny_squad_v2", "question_answering")],
)
def test_own_on_a_prompted_dataset_is_that_task_on_its_validation_split(
    dataset: str, kind: str
) -> None:
    own = dataset_option(CONF, dataset, "causal")
    task = plan_one({"own": {"kind": "own"}}, "causal", own)
    assert (task.kind, task.split, task.dataset.name) == (kind, "validation", dataset)


def test_a_classification_task_needs_a_classification_dataset() -> None:
    with pytest.raises(UserError, match=r"tiny_lm.*language_modeling"):
        plan_one({"x": {"kind": "classification", "dataset": "tiny_lm", "split": "validation"}})


# --- baselines --------------------------------------------------------------------------------


def baseline_config(name: str, tasks: dict[str, Any] | None = None, **settings: Any) -> Any:
    return evaluate_config(tasks or {}, baseline=name, **settings)


def run_baseline_task(name: str, task_cfg: dict[str, Any], seed: int = 0):
    cfg = baseline_config(name, {"t": task_cfg}, seed=seed)
    subject = resolve_baseline(cfg)
    (task,) = plan_tasks(cfg, CONF, subject.family, None)
    return run_baseline(task, TaskContext.of(subject, cfg, None), Quiet())


def test_the_majority_baseline_answers_the_train_splits_majority_label(
    data: dict[str, str],
) -> None:
    result = run_baseline_task("majority", paraphrase_task(data))
    assert majority_label(TRAIN_LABELS) == 1
    assert {row["prediction"] for row in result.rows} == {1}
    assert result.metrics["acc"]["mean"] == pytest.approx(np.mean(VALIDATION_LABELS))
    assert result.metrics["f1"]["mean"] == positive_f1([1] * 10, VALIDATION_LABELS)


def test_the_uniform_baseline_is_reproducible_with_its_seed(data: dict[str, str]) -> None:
    task = paraphrase_task(data)
    first, again = (run_baseline_task("uniform", task, seed=3) for _ in range(2))
    other = run_baseline_task("uniform", task, seed=4)

    def predicted(result: Any) -> list[int]:
        return [row["prediction"] for row in result.rows]

    assert predicted(first) == predicted(again)
    assert predicted(first) != predicted(other)
    draws = np.random.default_rng(3).integers(0, 2, size=len(VALIDATION_LABELS)).tolist()
    assert predicted(first) == draws
    assert first.metrics["acc"]["mean"] == pytest.approx(accuracy(draws, VALIDATION_LABELS))


def test_the_majority_baseline_abstains_on_every_question(data: dict[str, str]) -> None:
    result = run_baseline_task("majority", squad_task(data))
    assert {row["prediction"] for row in result.rows} == {""}
    assert result.metrics["exact"]["mean"] == 50.0  # the unanswerable share
    assert result.metrics["NoAns_f1"]["mean"] == 100.0 and result.metrics["HasAns_f1"]["mean"] == 0


@pytest.mark.parametrize(
    ("settings", "fragments"),
    [
        (
            {"baseline": "uniform", "task": {"qa": {"kind": "question_answering"}}},
            ("baseline=uniform", "classification", "question_answering"),
        ),
        ({"baseline": "majorty"}, ("majorty", "did you mean 'majority'")),
        ({"baseline": "majority", "model": "tiny_pythia"}, ("baseline=majority", "model=")),
        ({"baseline": "majority", "run_dir": "/runs/a"}, ("baseline=majority", "run_dir=/runs/a")),
        ({"baseline": "majority", "task": {"own": {"kind": "own"}}}, ("own", "name the task")),
    ],
)
def test_bad_baselines_are_user_errors(settings: dict[str, Any], fragments: tuple) -> None:
    cfg = OmegaConf.merge(OmegaConf.structured(EvaluateConfig), settings)
    with pytest.raises(UserError) as caught:
        resolve_baseline(cfg)
    assert all(fragment in str(caught.value) for fragment in fragments)
    assert "\n" not in str(caught.value)


# --- through evaluate.py ----------------------------------------------------------------------


def evaluate(out: Path, *overrides: str):
    return run_script("evaluate.py", f"hydra.run.dir={out}", *overrides)


def task_overrides(data: dict[str, str]) -> list[str]:
    return [
        "task=[tiny_paraphrase,tiny_squad_v2]",
        f"task.tiny_paraphrase.data_files={{train:{data['pairs_train']},"
        f"validation:{data['pairs_validation']}}}",
        f"task.tiny_squad_v2.data_files={{validation:{data['questions']}}}",
        "bootstrap.resamples=100",
    ]


@pytest.mark.slow
def test_a_zero_shot_model_and_the_study_read_the_new_tasks(
    data: dict[str, str], tmp_path: Path
) -> None:
    from monolm.study.aggregate import run_statistic
    from monolm.study.measures import HEADLINE, eval_measures, eval_values
    from monolm.study.records import load_eval

    result = evaluate(tmp_path, "model=tiny_pythia", *task_overrides(data))
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.loads((tmp_path / "eval.json").read_text())
    assert written["subject"]["model"] == "tiny_pythia"
    tasks = load_eval(tmp_path)
    assert {name: t.kind for name, t in tasks.items()} == {
        "tiny_paraphrase": "classification",
        "tiny_squad_v2": "question_answering",
    }
    seen = {}
    for name, record in tasks.items():
        for measure in eval_measures(name, record.kind):
            value = run_statistic(eval_values(measure, record), measure.statistic)
            assert value == pytest.approx(written["tasks"][name]["metrics"][measure.metric]["mean"])
            seen[measure.key] = (measure.statistic, measure.test)
    assert seen == {
        "evaluate/tiny_paraphrase/acc": ("rate", "mcnemar"),
        "evaluate/tiny_squad_v2/exact": ("mean", "wilcoxon"),
        "evaluate/tiny_squad_v2/f1": ("mean", "wilcoxon"),
    }
    assert (HEADLINE["classification"], HEADLINE["question_answering"]) == ("acc", "f1")


@pytest.mark.slow
def test_a_baseline_is_an_evaluate_subject(data: dict[str, str], tmp_path: Path) -> None:
    result = evaluate(tmp_path, "baseline=majority", *task_overrides(data))
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.loads((tmp_path / "eval.json").read_text())
    subject = written["subject"]
    assert subject["baseline"] == "majority"
    assert subject.keys() == {*asdict(SubjectIdentity()), "baseline", "model_name", "family"}
    assert written["tasks"]["tiny_paraphrase"]["metrics"]["acc"]["mean"] == pytest.approx(0.4)
    assert written["tasks"]["tiny_squad_v2"]["metrics"]["exact"]["mean"] == 50.0


@pytest.mark.slow
def test_a_baseline_with_a_run_dir_fails_in_one_line(tmp_path: Path) -> None:
    result = evaluate(tmp_path, "baseline=majority", "run_dir=/nonexistent", "task=[glue_mrpc]")
    assert_one_line_error(result, "baseline=majority", "run_dir=/nonexistent")


# --- the bundled sets -------------------------------------------------------------------------


@pytest.mark.skipif(
    not (BUNDLED_ROOT / "tiny_paraphrase").is_dir()
    or not (BUNDLED_ROOT / "tiny_squad_v2").is_dir(),
    reason="the bundled tiny_paraphrase / tiny_squad_v2 sets are not generated yet",
)
def test_the_bundled_sets_evaluate(subjects: dict[str, Any]) -> None:
    ctx = context(subjects["causal"])
    for name in ("tiny_paraphrase", "tiny_squad_v2"):
        spec = OmegaConf.to_container(OmegaConf.load(CONF / "evaluate" / "task" / f"{name}.yaml"))
        task = plan_one({name: spec}, max_examples=6)
        result = RUNNERS[task.kind](task, ctx, Quiet())
        assert len(result.rows) == 6
    spec = {"kind": "classification", "dataset": "tiny_paraphrase", "split": "validation"}
    majority = run_baseline_task("majority", spec)
    assert len({row["prediction"] for row in majority.rows}) == 1


def test_one_tasks_data_files_do_not_reach_another_task_or_the_run(tmp_path: Path) -> None:
    own = dataset_option(CONF, "tiny_paraphrase", "causal")
    local = tmp_path / "rows.jsonl"
    local.write_text("")
    tasks = {"own": {"kind": "own", "data_files": {"validation": str(local)}},
             "monotonicity": {"kind": "monotonicity"}}  # fmt: skip
    planned = {t.name: t for t in plan_tasks(evaluate_config(tasks), CONF, "causal", own)}
    assert planned["own"].dataset.data_files == {"validation": str(local)}
    assert planned["monotonicity"].dataset.data_files is None
    assert planned["monotonicity"].dataset.bundled == "tiny_paraphrase"
    assert own.data_files is None  # the run's own config is left as it was
