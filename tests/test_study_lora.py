"""`python -m monolm.study run study=tiny_lora` through the CLI, offline on CPU, budgets cut: full
fine-tuning vs LoRA of the tiny Llama on the bundled paraphrase and SQuAD v2-like sets, each arm
tuned on an equal budget and selected on the held-out split, its seed trained with the choice,
evaluated with the official metrics, and reported; the report's numbers are recomputed here
from the per-example files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.helpers import run_script

pytestmark = pytest.mark.slow

ARMS = ("full", "lora")
QUIET = ("trainer.max_steps=6", "trainer.val_check_interval=null", "data.batch_size=8",
         "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
         "dataset.max_validation_examples=16")  # fmt: skip
SUBJECTS = {"tiny_llama_paraphrase": "tiny_paraphrase", "tiny_llama_squad": "tiny_squad_v2"}


def _subject(dataset: str) -> str:
    return ",".join(f'"{o}"' for o in ("model=tiny_llama", f"dataset={dataset}", *QUIET))


SMALL = (
    *(f"study.subjects.{name}=[{_subject(data)}]" for name, data in SUBJECTS.items()),
    "study.seeds=[0]",
    'study.evaluate=["task=[own]","max_examples=16","bootstrap.resamples=50"]',
    'study.representations.overrides=["task.cka.max_examples=16","bootstrap.resamples=50"]',
)


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def lora_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    study_dir = tmp_path_factory.mktemp("study") / "tiny_lora"
    done = run_script("-m", "monolm.study", "run", "study=tiny_lora", f"study_dir={study_dir}",
                      *SMALL)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "0 failed, 0 blocked" in done.stdout
    return study_dir


def test_each_arm_is_tuned_on_an_equal_budget_and_its_seed_trains_with_the_choice(
    lora_study: Path,
) -> None:
    for subject in SUBJECTS:
        counts = []
        for arm in ARMS:
            selection = json.loads(
                (lora_study / "runs" / subject / arm / "select" / "selection.json").read_text()
            )
            trials = selection["trials"]
            counts.append(len(trials))
            best = min(trials, key=lambda t: t["value"])
            assert selection["chosen"]["name"] == best["name"]
            run = json.loads((lora_study / "runs" / subject / arm / "s0" / "train" / "run.json")
                             .read_text())  # fmt: skip
            config = run["config"]
            for override in best["overrides"]:
                key, value = override.split("=", 1)
                section, name = key.split(".", 1)
                assert str(config[section][name]) == str(float(value) if "lr" in key else value)
            assert config["adapter"]["name"] == ("none" if arm == "full" else "lora")
        assert len(set(counts)) == 1  # the equal budget


def test_the_lora_runs_checkpoint_only_their_adapters(lora_study: Path) -> None:
    for subject in SUBJECTS:
        run_dir = lora_study / "runs" / subject / "lora" / "s0" / "train"
        state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        assert state and all(".lora_A." in k or ".lora_B." in k for k in state)
        adapter = json.loads((run_dir / "adapter.json").read_text())["final"]
        assert adapter["base_model"]["model"] == "tiny_llama"
        full = lora_study / "runs" / subject / "full" / "s0" / "train"
        assert not (full / "adapter.json").exists()


def test_the_report_states_the_official_metrics_recomputed_from_the_examples(
    lora_study: Path,
) -> None:
    results = json.loads((lora_study / "report" / "results.json").read_text())
    for arm in ARMS:
        eval_dir = lora_study / "runs" / "tiny_llama_paraphrase" / arm / "s0" / "eval"
        examples = rows(eval_dir / "own.examples.jsonl")
        acc = sum(r["correct"] for r in examples) / len(examples)
        summary = results["subjects"]["tiny_llama_paraphrase"]["summaries"]["evaluate/own/acc"]
        assert summary["arms"][arm]["per_seed"] == [pytest.approx(acc)]
        recorded = json.loads((eval_dir / "eval.json").read_text())["tasks"]["own"]
        assert recorded["kind"] == "classification" and recorded["split"] == "validation"

        eval_dir = lora_study / "runs" / "tiny_llama_squad" / arm / "s0" / "eval"
        examples = rows(eval_dir / "own.examples.jsonl")
        recorded = json.loads((eval_dir / "eval.json").read_text())["tasks"]["own"]
        assert recorded["kind"] == "question_answering" and len(examples) == 16
        f1 = 100 * sum(r["f1"] for r in examples) / len(examples)
        assert recorded["metrics"]["f1"]["mean"] == pytest.approx(f1)
        summary = results["subjects"]["tiny_llama_squad"]["summaries"]["evaluate/own/f1"]
        assert summary["arms"][arm]["per_seed"] == [pytest.approx(f1)]
    report = (lora_study / "report" / "report.md").read_text()
    assert "tiny_llama_paraphrase: tuning (min val/loss on the held-out split)" in report


def test_the_simple_baselines_stand_beside_the_arms(lora_study: Path) -> None:
    results = json.loads((lora_study / "report" / "results.json").read_text())
    table = results["subjects"]["tiny_llama_paraphrase"]["simple_baselines"]
    measure = table["measures"]["evaluate/own/acc"]
    examples = rows(lora_study / "baselines" / "tiny_llama_paraphrase" / "majority"
                    / "own.examples.jsonl")  # fmt: skip
    assert len({r["prediction"] for r in examples}) == 1  # one label for every example
    assert measure["baselines"]["majority"]["value"] == pytest.approx(
        sum(r["correct"] for r in examples) / len(examples)
    )
    assert set(measure["baselines"]) == {"majority", "uniform", "zero_shot"}
    squad = results["subjects"]["tiny_llama_squad"]["simple_baselines"]
    assert "uniform" in squad["not_planned"]  # uniform random labels: classification only
    abstained = rows(lora_study / "baselines" / "tiny_llama_squad" / "majority"
                     / "own.examples.jsonl")  # fmt: skip
    assert all(r["prediction"] == "" for r in abstained)


def test_the_report_shows_how_similar_the_arms_representations_are(lora_study: Path) -> None:
    """CKA of full vs LoRA vs the base model, layer by layer, from the representations stage's
    cka.json; with one seed there is no floor, and the table says so."""
    results = json.loads((lora_study / "report" / "results.json").read_text())
    for subject in SUBJECTS:
        record = json.loads((lora_study / "representations" / subject / "cka.json").read_text())
        found = results["subjects"][subject]["representations"]
        pairs = [(c["a"], c["b"]) for c in found["comparisons"]]
        assert pairs == [("full", "lora"), ("full", "tiny_llama"), ("lora", "tiny_llama")]
        for mine, theirs in zip(found["comparisons"], record["comparisons"], strict=True):
            assert mine["mean"] == theirs["mean"]
            assert [d["layer"] for d in mine["layers"]] == [f"layer.{i}" for i in range(4)]
        assert found["inputs"]["n"] == 16
    report = (lora_study / "report" / "report.md").read_text()
    assert "tiny_llama_squad: representation similarity (CKA, final models)" in report
    assert "no seed floor: the study has one seed" in report
    assert (lora_study / "report" / "figures" / "tiny_llama_squad-cka_layers.png").is_file()
