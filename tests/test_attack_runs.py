"""Attacks on tiny models trained a few hundred steps: the gradient attacks beat the random
control at the same query budget, and attack.py end to end (outputs, transfer, seeds, bad input)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from monolm.attacks.examples import causal_lm_example, pack, seq2seq_example
from monolm.attacks.gcg import GCGSearchSettings, gcg_search
from monolm.attacks.hotflip import FlipSettings, flip_search
from monolm.attacks.objective import Objective
from monolm.attacks.triggers import TriggerSettings, best_restart, trigger_search
from monolm.attacks.vocabulary import candidate_vocabulary
from monolm.data.bundled import bundled_files
from monolm.subjects import load_run
from tests.helpers import run_script
from tests.test_bad_input import assert_one_line_error

pytestmark = pytest.mark.slow

TRAIN = ("trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
         "trainer.val_check_interval=null", "trainer.max_steps=300")  # fmt: skip
QUICK = ("max_examples=6", "bootstrap.resamples=200", "generation.num_beams=2",
         "generation.max_new_tokens=24", "generation.min_new_tokens=2")  # fmt: skip
QUICK_FLIP = ("attack.flip.budget=3", "attack.flip.top_k=8")
QUICK_UAT = ("attack.trigger.length=3", "attack.trigger.top_k=8", "attack.trigger.restarts=2",
             "attack.trigger.steps=2", "attack.trigger.batch_size=4",
             "attack.trigger.optimization_examples=16")  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """tiny_t5 and tiny_pythia (300 steps) and a second tiny_pythia (seed 1, 100 steps) beside it
    in one sweep dir."""
    root = tmp_path_factory.mktemp("attack-runs")
    sweep = root / "sweep"
    made = {}
    for name, overrides, run_dir in (
        ("t5", ("model=tiny_t5",), root / "t5"),
        ("pythia", ("model=tiny_pythia", "seed=0"), sweep / "0"),
        ("pythia_b", ("model=tiny_pythia", "seed=1", "trainer.max_steps=100"), sweep / "1"),
    ):
        result = run_script(
            "train.py", *TRAIN, *overrides, f"hydra.run.dir={run_dir}", timeout=1200
        )
        assert result.returncode == 0, result.stderr[-3000:]
        made[name] = run_dir
    made["sweep"] = sweep
    return made


def _validation(name: str, n: int) -> list[dict]:
    with open(bundled_files(name)["validation"]) as handle:
        return [json.loads(line) for line in handle][:n]


def _train(name: str, n: int) -> list[dict]:
    with open(bundled_files(name)["train"]) as handle:
        return [json.loads(line) for line in handle][:n]


def _examples(run, rows: list[dict]):
    tokenizer, dataset = run.tokenizer, run.config.dataset
    if run.config.model.family == "seq2seq":
        return [seq2seq_example(tokenizer, i, r["article"], r["highlights"], "summarize: ",
                                dataset.max_length, dataset.max_target_length)
                for i, r in enumerate(rows)]  # fmt: skip
    made = [causal_lm_example(tokenizer, i, r["text"], 64, 16, 16, dataset.max_length)
            for i, r in enumerate(rows)]  # fmt: skip
    return [e for e in made if e is not None]


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


@pytest.mark.parametrize("name", ["t5", "pythia"])
def test_hotflip_raises_the_loss_more_than_random_flips_with_the_same_queries(
    runs: dict[str, Path], name: str
) -> None:
    run = load_run(runs[name])
    examples = _examples(run, _validation(run.config.dataset.bundled, 8))
    objective = Objective(run.model, run.transform, run.tokenizer.pad_token_id, 32)
    vocab = candidate_vocabulary(run.tokenizer, run.model.get_input_embeddings().weight.shape[0])
    settings = FlipSettings(budget=3, top_k=8)
    hotflip = flip_search(objective, examples, vocab, settings)
    spent = [r.queries for r in hotflip]
    control = flip_search(objective, examples, vocab, settings, "random", spent,
                          torch.Generator().manual_seed(0))  # fmt: skip
    assert all(c.queries <= s for c, s in zip(control, spent, strict=True))
    gain = _mean(r.best.loss - r.trajectory[0] for r in hotflip)
    random_gain = _mean(r.best.loss - r.trajectory[0] for r in control)
    assert gain > random_gain > 0, (gain, random_gain)


@pytest.mark.parametrize("name", ["t5", "pythia"])
def test_gcg_raises_the_loss_more_than_random_flips_with_the_same_queries(
    runs: dict[str, Path], name: str
) -> None:
    run = load_run(runs[name])
    examples = _examples(run, _validation(run.config.dataset.bundled, 8))
    objective = Objective(run.model, run.transform, run.tokenizer.pad_token_id, 32)
    vocab = candidate_vocabulary(run.tokenizer, run.model.get_input_embeddings().weight.shape[0])
    settings = GCGSearchSettings(budget=3, steps=3, top_k=8, candidates=8)
    found = gcg_search(
        objective, examples, vocab, settings, generator=torch.Generator().manual_seed(0)
    )
    spent = [r.queries for r in found]
    control = gcg_search(objective, examples, vocab, settings, "random", spent,
                         torch.Generator().manual_seed(0))  # fmt: skip
    assert all(c.queries <= s for c, s in zip(control, spent, strict=True))
    gain = _mean(r.gain for r in found)
    random_gain = _mean(r.gain for r in control)
    assert gain > random_gain > 0, (gain, random_gain)


def test_a_universal_trigger_beats_random_triggers_with_the_same_queries(
    runs: dict[str, Path],
) -> None:
    run = load_run(runs["pythia"])
    optimization = _examples(run, _train("tiny_lm", 24))
    evaluation = _examples(run, _validation("tiny_lm", 16))
    objective = Objective(run.model, run.transform, run.tokenizer.pad_token_id, 32)
    vocab = candidate_vocabulary(run.tokenizer, run.model.get_input_embeddings().weight.shape[0])
    settings = TriggerSettings(length=3, top_k=10, restarts=2, steps=3, batch_size=6)
    initial = tuple(run.tokenizer(" the", add_special_tokens=False)["input_ids"]) * 3
    found = trigger_search(objective, optimization, vocab, settings, initial)
    control = trigger_search(
        objective,
        optimization,
        vocab,
        settings,
        initial,
        "random",
        [r.queries for r in found],
        torch.Generator().manual_seed(1),
    )
    assert [r.queries for r in control] == [r.queries for r in found]

    def gain(trigger: tuple[int, ...]) -> float:
        clean = objective.losses([(pack(e).ids, e.target) for e in evaluation])
        attacked = objective.losses([(pack(e, trigger).ids, e.target) for e in evaluation])
        return _mean(a - c for a, c in zip(attacked, clean, strict=True))

    assert gain(best_restart(found).trigger) > gain(best_restart(control).trigger)


def _attack(out: Path, *overrides: str):
    return run_script("attack.py", f"hydra.run.dir={out}", *overrides)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_hotflip_and_its_control_end_to_end_on_tiny_t5(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    result = _attack(tmp_path / "hotflip", f"run_dir={runs['t5']}", "attack=hotflip", *QUICK,
                     *QUICK_FLIP)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(tmp_path / "hotflip" / "attack.json") in result.stdout
    record = json.loads((tmp_path / "hotflip" / "attack.json").read_text())
    checkpoint = runs["t5"] / "checkpoints" / "last.ckpt"
    assert record["subject"]["checkpoint_sha256"] == hashlib.sha256(
        checkpoint.read_bytes()).hexdigest()  # fmt: skip
    assert record["code"]["git_commit"] and record["packages"]["torch"] and record["seed"] == 0
    assert record["config"]["attack"]["flip"]["budget"] == 3
    assert record["data"] == {"dataset": "tiny_summarization", "split": "validation",
                              "examples": 6, "left_out_too_short": 0,
                              "source": record["data"]["source"]}  # fmt: skip
    assert record["data"]["source"]["name"] == "tiny_summarization"
    metrics = record["metrics"]
    rows = _rows(tmp_path / "hotflip" / "examples.jsonl")
    assert len(rows) == 6 == metrics["n"]
    for row in rows:
        assert row["attacked_ids"][:6] == row["clean_ids"][:6]  # the task prefix is untouched
        assert row["tokens_changed"] == sum(
            a != b for a, b in zip(row["clean_ids"], row["attacked_ids"], strict=True)
        )
        assert row["delta_nll"] == pytest.approx(row["attacked_nll"] - row["clean_nll"])
        assert row["tokens_changed"] <= len(row["flips"]) <= 3
        assert {"clean_generated", "attacked_generated", "clean_rougeL", "attacked_rougeL"} <= (
            row.keys())  # fmt: skip
        drop = row["rougeL_relative_drop"]
        expected = ("skipped" if row["clean_rougeL"] < 5.0
                    else "success" if drop > 0.15 else "failure")  # fmt: skip
        assert row["status"] == expected
    decided = metrics["successes"] + metrics["failures"]
    assert metrics["successes"] + metrics["failures"] + metrics["skipped"] == 6
    if decided:
        rate = metrics["success_rate"]
        assert rate["mean"] == pytest.approx(metrics["successes"] / decided)
        assert rate["low"] <= rate["mean"] <= rate["high"]
    assert metrics["delta_nll"]["mean"] > 0
    assert metrics["queries"]["mean"] == pytest.approx(_mean(r["queries"] for r in rows))

    control = _attack(tmp_path / "random", f"run_dir={runs['t5']}", "attack=random",
                      "attack.mimic=hotflip", f"attack.queries_from={tmp_path / 'hotflip'}",
                      *QUICK, *QUICK_FLIP)  # fmt: skip
    assert control.returncode == 0, control.stderr[-3000:]
    control_rows = _rows(tmp_path / "random" / "examples.jsonl")
    for row, matched in zip(control_rows, rows, strict=True):
        assert row["id"] == matched["id"] and row["gradient_queries"] == 0
        assert row["query_budget"] == matched["queries"] >= row["queries"]


def test_a_trigger_sweep_with_a_transfer_matrix_end_to_end_on_tiny_pythia(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    targets = f"attack.transfer_to=[{runs['pythia']},{runs['pythia_b']}]"
    result = _attack(tmp_path, f"run_dir={runs['sweep']}", "attack=uat", targets, *QUICK,
                     *QUICK_UAT)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    matrix = json.loads((tmp_path / "transfer.json").read_text())
    names = [str(runs["pythia"]), str(runs["pythia_b"])]
    assert matrix["sources"] == names and matrix["targets"] == names
    assert all(isinstance(v, float) for row in matrix["delta_nll"] for v in row)
    for run_name, source in (("0", runs["pythia"]), ("1", runs["pythia_b"])):
        out = tmp_path / run_name
        record = json.loads((out / "attack.json").read_text())
        triggers = json.loads((out / "triggers.json").read_text())
        assert len(triggers["restarts"]) == 2 and len(triggers["trigger_ids"]) == 3
        assert triggers["trigger_text"] and record["attack"]["trigger_ids"] == triggers[
            "trigger_ids"]  # fmt: skip
        rows = _rows(out / "examples.jsonl")
        for row in rows:
            assert row["attacked_ids"][:3] == triggers["trigger_ids"]  # position=start
            assert row["tokens_changed"] == 3
        other = names[1] if str(source) == names[0] else names[0]
        transferred = _rows(out / record["transfer"][other]["examples_file"])
        assert [r["attacked_ids"] for r in transferred] == [r["attacked_ids"] for r in rows]
        assert matrix["cells"][str(source)][str(source)]["delta_nll"] == pytest.approx(
            record["metrics"]["delta_nll"]["mean"])  # fmt: skip


def test_the_same_seed_gives_the_same_attack(runs: dict[str, Path], tmp_path: Path) -> None:
    outputs = []
    for name in ("a", "b"):
        result = _attack(tmp_path / name, f"run_dir={runs['pythia']}", "attack=random",
                         "attack.mimic=uat", *QUICK, *QUICK_UAT)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        outputs.append(
            (
                (tmp_path / name / "examples.jsonl").read_text(),
                json.loads((tmp_path / name / "triggers.json").read_text()),
            )
        )
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (("attack=hotflp",), ("hotflp", "hotflip")),
        (("attack=uat", "attack.trigger.position=middle"), ("position=middle", "start")),
        # A setting the chosen attack would ignore (GCG, the default, has no trigger) is refused.
        (("attack.trigger.position=start",), ("attack.trigger", "valid: audit, gcg")),
        (("attack=random", "attack.mimic=hotflop"), ("mimic=hotflop", "hotflip")),
        (("attack=random", "attack.queries_from=/nonexistent"), ("/nonexistent", "attack.json")),
        (("attack=hotflip", "attack.flip.budget=-1"), ("attack.flip.budget=-1", ">= 0")),
        (("attack.gcg.top_k=0",), ("attack.gcg.top_k=0", ">= 1")),
        (("attack=uat", "split=train"), ("split=train", "optimization_split")),
        (
            ("attack=uat", "attack.trigger.optimization_split=validation"),
            ("split=validation", "optimization_split"),
        ),
        (("attack=uat", "attack.trigger.init=' the cat'"), ("trigger.init", "one")),
        (("checkpoint=nope.ckpt",), ("nope.ckpt", "no fallback")),
    ],
)
def test_bad_input_is_one_line_before_any_model_loads(
    runs: dict[str, Path], tmp_path: Path, overrides: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    result = _attack(tmp_path, f"run_dir={runs['pythia']}", *overrides)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "attack.json").exists()


def test_transfer_needs_the_same_tokenizer(runs: dict[str, Path], tmp_path: Path) -> None:
    result = _attack(tmp_path, f"run_dir={runs['pythia']}", f"attack.transfer_to=[{runs['t5']}]")
    assert_one_line_error(result, str(runs["t5"]), "tokenizer")
