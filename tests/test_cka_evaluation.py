"""evaluate.py task=[cka] end to end: tiny runs compared layer by layer through the CLI, the
numbers recomputed here from the runs' hidden states, and bad settings refused in one line
before any model loads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from monolm.errors import UserError
from monolm.evaluation.representations import plan_cka, read_inputs, subject_labels
from monolm.evaluation.tasks import plan_tasks
from monolm.metrics.representations import linear_cka
from monolm.models.hidden_states import layer_states
from monolm.study.compose import compose_script
from monolm.subjects import load_run, resolve_model
from tests.helpers import CONF, FAST, run_script
from tests.test_bad_input import assert_one_line_error

RESAMPLES = "bootstrap.resamples=100"
CKA = ("task=[cka]", "cka.against=[tiny_pythia]")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two seeds of the tiny Pythia: 6 steps each."""
    root = tmp_path_factory.mktemp("runs")
    made = {}
    for name, overrides in {
        "none-s0": ("seed=0",),
        "none-s1": ("seed=1",),
    }.items():
        made[name] = root / name / "train"
        result = run_script(
            "train.py", "model=tiny_pythia", *overrides, *FAST, "trainer.max_steps=6",
            "trainer.val_check_interval=null", f"hydra.run.dir={made[name]}",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
    return made


@pytest.fixture(scope="module")
def compared(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cka")
    result = run_script(
        "evaluate.py", f"run_dir={runs['none-s0']}", "task=[cka]", "task.cka.max_examples=24",
        f"cka.against=[{runs['none-s1']},tiny_pythia]", "cka.all_pairs=true",
        f"cka.floor=[[{runs['none-s0']},{runs['none-s1']}]]", RESAMPLES, f"hydra.run.dir={out}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.slow
def test_every_comparison_floor_and_file_is_written(compared: Path) -> None:
    record = json.loads((compared / "cka.json").read_text())
    names = [(c["a"], c["b"], c["floor"]) for c in record["comparisons"]]
    assert names == [  # labels: the shortest distinct end of each path
        ("none-s0", "none-s1", False),
        ("none-s0", "tiny_pythia", False),
        ("none-s1", "tiny_pythia", False),  # cka.all_pairs
        ("none-s0", "none-s1", True),  # the seed floor
    ]
    assert record["inputs"]["n"] == 24 and record["pooling"] == "mean"
    for comparison in record["comparisons"]:
        layers = [d["layer"] for d in comparison["diagonal"]]
        assert layers == [f"layer.{i}" for i in range(4)]  # tiny_pythia: 4 blocks
        for d in comparison["diagonal"]:
            assert d["low"] <= d["cka"] <= d["high"] <= 1.0
        matrix = comparison["matrix"]
        assert matrix["rows"] == matrix["columns"] == layers
        assert np.diag(np.array(matrix["values"])) == pytest.approx(
            [d["cka"] for d in comparison["diagonal"]]
        )
        mean = comparison["mean"]
        assert mean["mean"] == pytest.approx(np.mean([d["cka"] for d in comparison["diagonal"]]))
        assert mean["low"] <= mean["mean"] <= mean["high"]
    evaluation = json.loads((compared / "eval.json").read_text())
    task = evaluation["tasks"]["cka"]
    assert set(task["metrics"]) == {
        "none-s0 vs none-s1",
        "none-s0 vs tiny_pythia",
        "none-s1 vs tiny_pythia",
        "floor none-s0 vs none-s1",
    }
    assert evaluation["subject"]["run_dir"].endswith("none-s0/train")
    for name in ("cka.json", "cka-layers.png", "cka-layers.pdf", "cka-none-s0--none-s1.png",
                 "cka-floor-none-s0--none-s1.png"):  # fmt: skip
        assert name in task["files"] and (compared / name).stat().st_size > 0
    lines = (compared / "cka.examples.jsonl").read_text().splitlines()
    assert len(lines) == 4 * 4  # a row per comparison and layer


@pytest.mark.slow
def test_the_values_are_debiased_linear_cka_of_the_runs_hidden_states(
    runs: dict[str, Path], compared: Path
) -> None:
    """Recomputed here: the same inputs (their hash matches), each run's hidden states, and
    the metric itself."""
    record = json.loads((compared / "cka.json").read_text())
    a, b = load_run(runs["none-s0"]), load_run(runs["none-s1"])
    task = {"kind": "cka", "dataset": None, "split": None, "data_files": None, "max_examples": 24}
    cfg = OmegaConf.create({"task": {"cka": task}, "max_examples": None})
    (task,) = plan_tasks(cfg, CONF, "causal", a.own_dataset)
    inputs = read_inputs(task, "causal", a.seed)
    assert inputs.sha256() == record["inputs"]["sha256"]
    with a.inference(None), b.inference(None):
        states_a = layer_states(a.model, a.tokenizer, inputs.texts, 16, 128)
        states_b = layer_states(b.model, b.tokenizer, inputs.texts, 16, 128)
    recorded = record["comparisons"][0]["diagonal"]
    for d in recorded:
        expected = linear_cka(states_a[d["layer"]], states_b[d["layer"]], debiased=True)
        assert d["cka"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.slow
def test_a_t5_is_compared_on_its_encoder_and_decoder_layers_the_same_way_twice(
    tmp_path: Path,
) -> None:
    found = []
    for attempt in ("first", "second"):
        result = run_script(
            "evaluate.py", "model=tiny_t5", "task=[cka]", "task.cka.dataset=tiny_summarization",
            "task.cka.max_examples=16", "cka.against=[tiny_flan_t5]", RESAMPLES,
            f"hydra.run.dir={tmp_path / attempt}",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        found.append(json.loads((tmp_path / attempt / "cka.json").read_text()))
    (comparison,) = found[0]["comparisons"]
    layers = [d["layer"] for d in comparison["diagonal"]]
    assert any(n.startswith("encoder.") for n in layers)
    assert any(n.startswith("decoder.") for n in layers)  # the targets, by teacher forcing
    assert found[0]["comparisons"] == found[1]["comparisons"]  # same seed and config: same numbers
    assert found[0]["subjects"] == found[1]["subjects"]


def test_a_missing_against_fails_in_one_line_before_any_model_loads(tmp_path: Path) -> None:
    result = run_script("evaluate.py", "model=tiny_pythia", "task=[cka]",
                        "task.cka.dataset=tiny_lm", f"hydra.run.dir={tmp_path}")  # fmt: skip
    assert_one_line_error(result, "set cka.against")
    assert not (tmp_path / "eval.json").exists()


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (("cka.against=[tiny_pythia]",), "no task has kind cka.*ignored"),
        ((*CKA, "cka.pooling=max"), "cka.pooling=max.*mean, tokens"),
        ((*CKA, "cka.max_length=0"), "cka.max_length=0"),
        ((*CKA, "cka.floor=[[tiny_pythia]]"), "a floor is two runs"),
        (("task=[cka]", "cka.against=[tiny_t5]"), "one architecture family.*causal and seq2seq"),
        (("task=[cka]", "cka.against=[no/such/run]"), "no/such/run.*does not exist"),
        ((*CKA, "baseline=majority", "model=null"), "no model"),
    ],
)  # fmt: skip
def test_bad_cka_settings_are_refused_before_any_model_loads(
    overrides: tuple[str, ...], match: str, tmp_path: Path
) -> None:
    cfg = compose_script(CONF, "evaluate", "evaluate", ("model=tiny_pythia", *overrides), tmp_path)
    subjects = [] if cfg.baseline is not None else [resolve_model(CONF, "tiny_pythia")]
    with pytest.raises(UserError, match=match):
        plan_cka(cfg, CONF, subjects)


def test_subjects_are_labelled_by_the_shortest_end_of_their_path_that_tells_them_apart() -> None:
    runs = ["/s/runs/x/none/s0/train", "/s/runs/x/mono/s0/train", "/s/runs/x/none/s1/train"]
    labels = subject_labels([*runs, "pythia_70m", "EleutherAI/pythia-70m"], set(runs))
    assert labels == {
        "/s/runs/x/none/s0/train": "none/s0",
        "/s/runs/x/mono/s0/train": "mono/s0",
        "pythia_70m": "pythia_70m",
        "/s/runs/x/none/s1/train": "none/s1",
        "EleutherAI/pythia-70m": "pythia-70m",
    }
