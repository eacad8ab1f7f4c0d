"""evaluate.py end to end: a trained run dir, a model with no training, sweeps, and bad input."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import FAST, REPO, run_script
from tests.test_bad_input import assert_one_line_error

pytestmark = pytest.mark.slow

DATA = REPO / "tests" / "data"
LAMBADA = f"task.lambada.data_files={{test:{DATA / 'lambada_sample.jsonl'}}}"
HELLASWAG = f"task.hellaswag.data_files={{validation:{DATA / 'hellaswag_sample.jsonl'}}}"
QUICK_GEN = ("max_examples=6", "generation.num_beams=2", "generation.max_new_tokens=12",
             "generation.min_new_tokens=2", "bootstrap.resamples=200")  # fmt: skip
METRIC_KEYS = {"mean", "low", "high", "n"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    made = {}
    for name, overrides in {
        "t5": ("model=tiny_t5", "constraint=monotonic", "constraint.verify.search_steps=5"),
        "pythia": ("model=tiny_pythia",),
    }.items():
        run_dir = tmp_path_factory.mktemp("sweep") / f"0_{name}"
        result = run_script(
            "train.py", *overrides, *FAST, "trainer.max_steps=4",
            "trainer.val_check_interval=null", f"hydra.run.dir={run_dir}",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        made[name] = run_dir
    return made


def evaluate(out: Path, *overrides: str):
    return run_script("evaluate.py", f"hydra.run.dir={out}", *overrides)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_seq2seq_run_is_evaluated_on_its_own_data(runs: dict[str, Path], tmp_path: Path) -> None:
    result = evaluate(tmp_path, f"run_dir={runs['t5']}", *QUICK_GEN)
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(tmp_path / "eval.json") in result.stdout
    written = json.loads((tmp_path / "eval.json").read_text())
    checkpoint = runs["t5"] / "checkpoints" / "last.ckpt"
    assert (
        written["subject"]["checkpoint_sha256"]
        == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    )
    assert written["subject"]["constraint"] == "monotonic"
    assert written["config"]["run_dir"] == str(runs["t5"]) and written["code"]["git_commit"]
    assert written["packages"]["transformers"] and written["seed"] == 0
    own = written["tasks"]["own"]
    assert own["kind"] == "summarization" and own["n"] == 6
    assert own["dataset"] == "tiny_summarization" and own["split"] == "validation"
    for name in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        metric = own["metrics"][name]
        assert metric.keys() >= METRIC_KEYS and metric["low"] <= metric["mean"] <= metric["high"]
    rows = read_jsonl(tmp_path / own["examples_file"])
    assert len(rows) == 6
    assert {"id", "input", "reference", "generated", "rouge1", "rougeLsum"} <= rows[0].keys()
    assert rows[0]["input"].startswith("summarize: ")
    mean = sum(r["rouge1"] for r in rows) / len(rows)
    assert own["metrics"]["rouge1"]["mean"] == pytest.approx(mean)


def test_a_causal_run_gets_perplexity_lambada_and_hellaswag(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    result = evaluate(tmp_path, f"run_dir={runs['pythia']}", "task=[own,lambada,hellaswag]",
                      LAMBADA, HELLASWAG, "max_examples=8")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    tasks = json.loads((tmp_path / "eval.json").read_text())["tasks"]
    own = tasks["own"]
    assert (
        own["kind"] == "perplexity" and "loglikelihood_rolling" in own["conventions"]["perplexity"]
    )
    for name in ("token_perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert own["metrics"][name].keys() >= METRIC_KEYS
    rows = read_jsonl(tmp_path / "own.examples.jsonl")
    nll = -sum(r["loglikelihood"] for r in rows)
    assert own["metrics"]["bits_per_byte"]["mean"] == pytest.approx(
        nll / sum(r["bytes"] for r in rows) / 0.6931471805599453
    )
    assert tasks["lambada"]["n"] == 6 and 0 <= tasks["lambada"]["metrics"]["acc"]["mean"] <= 1
    assert tasks["lambada"]["metrics"]["perplexity"]["mean"] > 1
    assert tasks["hellaswag"]["n"] == 4
    assert {"acc", "acc_norm"} <= tasks["hellaswag"]["metrics"].keys()
    hellaswag_rows = read_jsonl(tmp_path / "hellaswag.examples.jsonl")
    assert all(len(r["endings"]) == 4 and r["reference"] in r["endings"] for r in hellaswag_rows)


def test_the_verifier_is_an_evaluate_task(runs: dict[str, Path], tmp_path: Path) -> None:
    result = evaluate(tmp_path, f"run_dir={runs['t5']}", "task=[monotonicity]")
    assert result.returncode == 0, result.stderr[-3000:]
    task = json.loads((tmp_path / "eval.json").read_text())["tasks"]["monotonicity"]
    assert task["metrics"]["proven_sublayers"]["mean"] == 4
    assert task["metrics"]["sublayers_with_violations"]["mean"] == 0


def test_a_model_with_no_training_and_a_sweep_dir(runs: dict[str, Path], tmp_path: Path) -> None:
    plain = evaluate(tmp_path / "plain", "model=tiny_pythia", "max_examples=4")
    assert plain.returncode == 0, plain.stderr[-3000:]
    subject = json.loads((tmp_path / "plain" / "eval.json").read_text())["subject"]
    assert subject == {**subject, "model": "tiny_pythia", "family": "causal"}

    sweep = runs["t5"].parent
    shutil.copytree(runs["pythia"], sweep / "1_pythia")
    swept = evaluate(tmp_path / "sweep", f"run_dir={sweep}", *QUICK_GEN)
    assert swept.returncode == 0, swept.stderr[-3000:]
    for name in ("0_t5", "1_pythia"):
        assert (tmp_path / "sweep" / name / "eval.json").is_file()


def test_a_missing_checkpoint_is_an_error_not_a_fallback(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(runs["pythia"] / "run.json", broken / "run.json")
    result = evaluate(tmp_path / "out", f"run_dir={broken}")
    line = assert_one_line_error(result, str(broken / "checkpoints" / "last.ckpt"))
    assert "no fallback to pretrained weights" in line
    assert not (tmp_path / "out" / "eval.json").exists()


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        ((), ("run_dir=", "model=")),
        (("model=tiny_t5", "task=[tiny_lm]"), ("perplexity", "causal")),
        (("model=tiny_pythia", "task=[lambadda]"), ("lambadda", "lambada")),
        (("model=pythia_1b",), ("pythia_1b",)),
        (("model=tiny_pythia", "bootstrap.confidence=95"), ("bootstrap.confidence=95",)),
    ],
)
def test_bad_input_fails_in_one_line(tmp_path: Path, overrides: tuple, fragments: tuple) -> None:
    assert_one_line_error(evaluate(tmp_path, *overrides), *fragments)
