"""One house: every kind of subject goes through one loader; evaluate's and attack's precision
reaches the FFNs in every task; a transform registered outside src/ goes through train, resume,
evaluate and attack with no edit to the framework."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from tqdm.auto import tqdm

import tests.transforms.freeze  # noqa: F401  (registers constraint=freeze)
from monolm.attacks.objective import Objective
from monolm.errors import UserError
from monolm.evaluation.runners import RUNNERS
from monolm.evaluation.tasks import TaskContext, plan_tasks
from monolm.models.ffn import find_ffn_sublayers
from monolm.models.loading import load_model, load_model_config, load_tokenizer
from monolm.run_dir import ATTACK_RECORD, EVAL_RECORD, RunDir, sha256_of
from monolm.subjects import Subject, SubjectQuery, load_run, load_subject, resolve_subjects
from monolm.tools.export import export_run
from tests.helpers import CONF, FAST, REPO, compose_train, run_script
from tests.test_resume import assert_same_tensors

DATA = REPO / "tests" / "data"
TEST_CONF = DATA / "conf"  # test-only config options (constraint=freeze)
PROBE = "The council voted on Tuesday to approve the new budget for the city."


def _compose(folder: Path, name: str, *overrides: str) -> DictConfig:
    """An evaluate or attack config, as `python <name>.py <overrides>` would compose it."""
    from monolm.attacks.config import register_attack_configs
    from monolm.config.eval_schema import register_evaluate_configs
    from monolm.config.schema import register_configs

    register_configs()
    register_evaluate_configs()
    register_attack_configs()
    with initialize_config_dir(config_dir=str(folder), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def compose_evaluate(out: Path, *overrides: str) -> DictConfig:
    return _compose(CONF / "evaluate", "evaluate", f"paths.output_dir={out}", *overrides)


def compose_attack(out: Path, *overrides: str) -> DictConfig:
    return _compose(CONF / "attack", "attack", f"paths.output_dir={out}", *overrides)


def the_one_subject(query: SubjectQuery, cache_dir: Path) -> Subject:
    (ref,) = resolve_subjects(query, CONF)
    return load_subject(ref, str(cache_dir))


def probe_logits(subject: Subject) -> torch.Tensor:
    inputs = subject.tokenizer([PROBE], return_tensors="pt")
    inputs = {k: inputs[k] for k in ("input_ids", "attention_mask")}
    if subject.model.config.is_encoder_decoder:
        inputs["decoder_input_ids"] = inputs["input_ids"][:, :8]
    with subject.inference():
        return subject.model(**inputs).logits.clone()


# --- 1. One loader for every kind of subject ------------------------------------------------


FIRST, SECOND = "0_s42", "1_s1"  # the sweep's job dirs


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sweep dir of two tiny_pythia runs of 2 steps (seeds 42 and 1), from one `train.py -m`
    (one process: half the time of two)."""
    root = tmp_path_factory.mktemp("one-house") / "sweep"
    result = run_script(
        "train.py", "-m", "model=tiny_pythia", "seed=42,1", "trainer.max_steps=2",
        "trainer.val_check_interval=null", *FAST, f"hydra.sweep.dir={root}",
        "hydra.sweep.subdir=${hydra.job.num}_s${seed}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [FIRST, SECOND]
    return root


@pytest.fixture(scope="module")
def trained(sweep: Path) -> Subject:
    """The first run as evaluate and attack load it."""
    return load_run(sweep / FIRST)


@pytest.mark.slow
def test_a_run_dir_is_one_subject_holding_its_checkpoints_weights(
    sweep: Path, tmp_path: Path
) -> None:
    run = RunDir(sweep / FIRST)
    (ref,) = resolve_subjects(SubjectQuery(run_dir=str(run.path)), CONF)
    assert (ref.kind, ref.family, ref.label) == ("run", "causal", FIRST)
    assert ref.run == run and ref.checkpoint == run.last_checkpoint == run.checkpoint()
    assert ref.config.seed == 42 and ref.model_cfg.name == "tiny_pythia"

    subject = load_subject(ref, str(tmp_path))
    assert subject.seed == 42 and subject.transform.name == "none"
    assert not subject.model.training
    assert subject.record() == {
        "model": None,
        "run_dir": str(run.path),
        "training_seed": 42,
        "constraint": "none",
        "adapter": None,
        "checkpoint": str(run.last_checkpoint),
        "checkpoint_sha256": sha256_of(run.last_checkpoint),
        "checkpoint_step": 2,
        "run_status": "completed",
        "model_name": "tiny_pythia",
        "family": "causal",
    }
    saved = torch.load(run.last_checkpoint, weights_only=True)["state_dict"]
    assert_same_tensors(
        {f"model.{k}": v for k, v in subject.model.state_dict().items()}, saved, "state_dict"
    )


@pytest.mark.slow
def test_a_sweep_dir_is_one_run_subject_per_run_in_order(sweep: Path, tmp_path: Path) -> None:
    refs = resolve_subjects(SubjectQuery(run_dir=str(sweep)), CONF)
    assert [(r.kind, r.label, int(r.config.seed)) for r in refs] == [
        ("run", FIRST, 42),
        ("run", SECOND, 1),
    ]
    assert [r.checkpoint for r in refs] == [
        RunDir(sweep / n).last_checkpoint for n in (FIRST, SECOND)
    ]
    # A checkpoint name picks that file in every run of the sweep.
    named = resolve_subjects(SubjectQuery(run_dir=str(sweep), checkpoint="last.ckpt"), CONF)
    assert [r.checkpoint for r in named] == [r.checkpoint for r in refs]
    first, second = (load_subject(r, str(tmp_path)) for r in refs)
    assert (first.seed, second.seed) == (42, 1)
    assert not torch.equal(probe_logits(first), probe_logits(second))


def test_a_model_option_is_built_from_conf_model_with_a_seeded_init(tmp_path: Path) -> None:
    (ref,) = resolve_subjects(SubjectQuery(model="tiny_t5"), CONF)
    assert (ref.kind, ref.family, ref.label) == ("option", "seq2seq", "tiny_t5")
    assert ref.run is None and ref.checkpoint is None and ref.own_dataset is None
    subject = load_subject(ref, str(tmp_path), seed=0)
    assert subject.model.config.is_encoder_decoder and subject.transform.name == "none"
    assert subject.record() == {
        "model": "tiny_t5",
        "run_dir": None,
        "training_seed": None,
        "constraint": "none",
        "adapter": None,
        "checkpoint": None,
        "checkpoint_sha256": None,
        "checkpoint_step": None,
        "run_status": None,
        "model_name": "tiny_t5",
        "family": "seq2seq",
    }
    again = load_subject(ref, str(tmp_path), seed=0)
    assert torch.equal(probe_logits(subject), probe_logits(again))


@pytest.mark.slow
def test_an_export_is_a_subject_computing_what_the_run_computes(
    trained: Subject, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    export_run(trained, out)
    (ref,) = resolve_subjects(SubjectQuery(model=str(out)), CONF)
    assert (ref.kind, ref.family, ref.label) == ("export", "causal", "export")
    assert ref.exported_from_sha256 == trained.checkpoint_sha256
    assert ref.config.seed == trained.config.seed  # the exported run's own config
    exported = load_subject(ref, str(tmp_path))
    assert exported.record()["exported_from_checkpoint_sha256"] == trained.checkpoint_sha256
    # The exported run's identity: its seed, constraint and step; no run dir or checkpoint.
    assert {k: exported.record()[k] for k in ("training_seed", "checkpoint_step", "run_dir")} == {
        "training_seed": 42,
        "checkpoint_step": 2,
        "run_dir": None,
    }
    assert torch.equal(probe_logits(exported), probe_logits(trained))


@pytest.mark.slow
def test_a_hub_id_shaped_name_of_a_local_directory_is_a_pretrained_subject(
    trained: Subject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    local = tmp_path / "local-org" / "tiny-pythia"  # named as `org/name` on the hub would be
    trained.model.save_pretrained(local)
    trained.tokenizer.save_pretrained(local)
    (ref,) = resolve_subjects(SubjectQuery(model="local-org/tiny-pythia"), CONF)
    assert (ref.kind, ref.family, ref.label) == ("pretrained", "causal", "tiny-pythia")
    assert ref.model_cfg.name_or_path == "local-org/tiny-pythia" and ref.model_cfg.pretrained
    subject = load_subject(ref, str(tmp_path / "cache"))
    assert subject.record()["model"] == "local-org/tiny-pythia"
    assert torch.equal(probe_logits(subject), probe_logits(trained))


def test_a_typo_of_a_model_option_is_a_user_error_naming_it() -> None:
    with pytest.raises(UserError, match="'tiny_pythai': did you mean 'tiny_pythia'"):
        resolve_subjects(SubjectQuery(model="tiny_pythai"), CONF)
    with pytest.raises(UserError, match="exactly one"):
        resolve_subjects(SubjectQuery(run_dir="somewhere", model="tiny_pythia"), CONF)


@pytest.mark.slow
def test_a_missing_checkpoint_is_a_user_error_naming_it(sweep: Path, tmp_path: Path) -> None:
    named = sweep / FIRST / "checkpoints" / "step-0000099.ckpt"
    with pytest.raises(UserError, match=re.escape(f"'{named}' does not exist")):
        resolve_subjects(SubjectQuery(run_dir=str(sweep / FIRST), checkpoint=named.name), CONF)
    broken = tmp_path / "broken"  # a run dir whose checkpoints are gone
    broken.mkdir()
    shutil.copy(sweep / FIRST / "run.json", broken / "run.json")
    with pytest.raises(UserError, match="no fallback to pretrained weights") as error:
        resolve_subjects(SubjectQuery(run_dir=str(broken)), CONF)
    assert str(RunDir(broken).last_checkpoint) in str(error.value)


# --- 2. The stage's precision reaches the FFNs --------------------------------------------


@pytest.fixture(scope="module")
def option_subjects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Subject]:
    """tiny_pythia and tiny_t5 with no training (random init is enough to check dtypes)."""
    cache = tmp_path_factory.mktemp("cache")
    return {
        name: the_one_subject(SubjectQuery(model=name), cache)
        for name in ("tiny_pythia", "tiny_t5")
    }


@pytest.fixture
def ffn_output_dtypes(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A function hooking every FFN sublayer of a subject; it returns the list of the dtypes
    their outputs have, appended to as forward passes run."""
    handles = []

    def hook(subject: Subject) -> list[torch.dtype]:
        seen: list[torch.dtype] = []
        for sublayer in find_ffn_sublayers(subject.model, subject.model_cfg.ffn):
            handles.append(
                sublayer.block.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
            )
        return seen

    yield hook
    for handle in handles:
        handle.remove()


LAMBADA = f"task.lambada.data_files={{test:{DATA / 'lambada_sample.jsonl'}}}"
HELLASWAG = f"task.hellaswag.data_files={{validation:{DATA / 'hellaswag_sample.jsonl'}}}"
DATA_FILES = {"lambada": (LAMBADA,), "hellaswag": (HELLASWAG,)}
QUICK_TASKS = ("max_examples=2", "bootstrap.resamples=10", "generation.num_beams=1",
               "generation.max_new_tokens=4", "generation.min_new_tokens=1")  # fmt: skip


@pytest.mark.parametrize(
    ("model", "task", "kind"),
    [
        ("tiny_t5", "own", "summarization"),
        ("tiny_pythia", "tiny_summarization", "summarization"),
        ("tiny_pythia", "own", "perplexity"),
        ("tiny_pythia", "lambada", "lambada"),
        ("tiny_pythia", "hellaswag", "hellaswag"),
    ],
    ids=[
        "tiny_t5-summarization",
        "tiny_pythia-summarization",
        "perplexity",
        "lambada",
        "hellaswag",
    ],
)
def test_under_bf16_autocast_every_task_runs_its_ffns_in_bf16(
    option_subjects: dict[str, Subject],
    ffn_output_dtypes: Any,
    tmp_path: Path,
    model: str,
    task: str,
    kind: str,
) -> None:
    subject = option_subjects[model]
    cfg = compose_evaluate(
        tmp_path, f"model={model}", f"task=[{task}]", *QUICK_TASKS, *DATA_FILES.get(task, ())
    )
    (planned,) = plan_tasks(cfg, CONF, subject.family, subject.own_dataset)
    assert planned.kind == kind
    seen = ffn_output_dtypes(subject)
    for autocast_dtype, expected in ((torch.bfloat16, torch.bfloat16), (None, torch.float32)):
        seen.clear()
        with tqdm(total=0, disable=True) as progress:
            result = RUNNERS[kind](planned, TaskContext.of(subject, cfg, autocast_dtype), progress)
        assert len(result.rows) == 2
        assert seen and set(seen) == {expected}, (autocast_dtype, set(seen))


@pytest.mark.parametrize("model", ["tiny_pythia", "tiny_t5"])
def test_the_attack_objective_scores_and_differentiates_in_bf16(
    option_subjects: dict[str, Subject], ffn_output_dtypes: Any, model: str
) -> None:
    subject = option_subjects[model]
    ids = subject.tokenizer(PROBE, add_special_tokens=False)["input_ids"]
    rows = [(tuple(ids[:8]), tuple(ids[8:12])), (tuple(ids[2:12]), tuple(ids[12:14]))]
    seen = ffn_output_dtypes(subject)
    for autocast_dtype, expected in ((torch.bfloat16, torch.bfloat16), (None, torch.float32)):
        objective = Objective(
            subject.model, subject.transform, subject.tokenizer.pad_token_id, 4, autocast_dtype
        )
        seen.clear()
        losses = objective.losses(rows)
        assert seen and set(seen) == {expected}, ("losses", autocast_dtype, set(seen))
        seen.clear()
        graded, gradients = objective.gradients(rows)
        assert seen and set(seen) == {expected}, ("gradients", autocast_dtype, set(seen))
        assert all(g.dtype == torch.float32 and g.shape[0] == len(r[0])
                   for g, r in zip(gradients, rows, strict=True))  # fmt: skip
        assert graded == pytest.approx(losses, rel=0.05)


# --- 3. A transform registered outside src/ -------------------------------------------------


def _train(out: Path, steps: int) -> DictConfig:
    from monolm.training.run import train

    cfg = compose_train(
        f"hydra.searchpath=[file://{TEST_CONF}]", "constraint=freeze", "model=tiny_pythia",
        *FAST, f"trainer.max_steps={steps}", "optim.schedule_steps=4",
        "trainer.val_check_interval=null", f"paths.output_dir={out}",
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)  # Hydra's job (train.py) creates it
    train(cfg)
    return cfg


def _last(run: Path) -> dict[str, Any]:
    return torch.load(RunDir(run).last_checkpoint, weights_only=True)


@pytest.mark.slow
def test_a_transform_registered_in_a_test_trains_resumes_evaluates_and_attacks(
    tmp_path: Path,
) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    cfg = _train(straight, 4)
    assert cfg.constraint == {"name": "freeze", "modules": ["*.embed_in", "*.layers.0.*"]}
    _train(resumed, 2)
    assert _last(resumed)["global_step"] == 2
    _train(resumed, 4)
    a, b = _last(straight), _last(resumed)
    assert a["global_step"] == b["global_step"] == 4
    assert_same_tensors(a["state_dict"], b["state_dict"], "state_dict")
    assert_same_tensors(a["optimizer_states"], b["optimizer_states"], "optimizer")

    # Checkpoints hold the trainable tensors only; the frozen ones are the seeded init's.
    tokenizer = load_tokenizer(cfg.model, cfg.paths.cache_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    model = load_model(cfg.model, load_model_config(cfg.model, tokenizer))
    init = {name: p.detach() for name, p in model.named_parameters()}
    frozen = sorted(n for n in init if n.startswith(("gpt_neox.embed_in.", "gpt_neox.layers.0.")))
    trainable = [n for n in init if n not in frozen]
    assert len(frozen) == 13 and trainable
    assert not {f"model.{name}" for name in frozen} & a["state_dict"].keys()
    moved = [n for n in trainable if not torch.equal(a["state_dict"][f"model.{n}"], init[n])]
    assert "gpt_neox.layers.1.mlp.dense_h_to_4h.weight" in moved

    for run in (straight, resumed):
        record = json.loads(RunDir(run).transform_record("frozen").read_text())
        assert record["config"]["constraint"]["name"] == "freeze"
        assert sorted(record["initial"]["frozen"]) == frozen
        assert record["final"]["frozen"] == record["initial"]["frozen"]
        for name, total in record["initial"]["frozen"].items():
            assert total == pytest.approx(float(init[name].abs().double().sum()), rel=1e-12)

    # The later stages rebuild the model as training did: frozen tensors from the seeded init,
    # the rest from the checkpoint.
    subject = load_run(straight)
    assert subject.transform.name == "freeze" and subject.constrained_layers
    assert {n for n, p in subject.model.named_parameters() if not p.requires_grad} == set(frozen)
    loaded = dict(subject.model.named_parameters())
    for name in frozen:
        assert torch.equal(loaded[name], init[name]), name
    for name in trainable:
        assert torch.equal(loaded[name], a["state_dict"][f"model.{name}"]), name

    evaluated = compose_evaluate(tmp_path / "eval", f"run_dir={straight}", "task=[own]",
                                 "max_examples=2", "bootstrap.resamples=10")  # fmt: skip
    from monolm.evaluation.run import evaluate

    assert evaluate(evaluated, CONF) == [tmp_path / "eval" / EVAL_RECORD]
    written = json.loads((tmp_path / "eval" / EVAL_RECORD).read_text())
    assert written["subject"]["constraint"] == "freeze"
    assert written["subject"]["checkpoint_sha256"] == sha256_of(RunDir(straight).last_checkpoint)
    assert written["tasks"]["own"]["n"] == 2

    attacked = compose_attack(tmp_path / "attack", f"run_dir={straight}", "attack=hotflip",
                              "attack.flip.budget=1", "attack.flip.top_k=4", "max_examples=2",
                              "bootstrap.resamples=10")  # fmt: skip
    from monolm.attacks.run import attack

    assert attack(attacked, CONF) == [tmp_path / "attack" / ATTACK_RECORD]
    record = json.loads((tmp_path / "attack" / ATTACK_RECORD).read_text())
    assert record["subject"]["constraint"] == "freeze"
    assert record["data"]["examples"] == 2
