"""The config tree is the user interface: every option composes, and mistakes fail early."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException

from monolm.cli import describe
from monolm.errors import UserError
from monolm.training.validate import (
    FAMILY_TASKS,
    TASK_FAMILIES,
    validate_max_length,
    validate_train_config,
)
from tests.helpers import CONF, compose_train

MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
DATASETS = sorted(p.stem for p in (CONF / "dataset").glob("*.yaml"))
OUT = "paths.output_dir=/tmp/unused"


def test_the_issue_lists_every_model_and_dataset() -> None:
    expected_models = {f"pythia_{s}" for s in ("70m", "160m", "410m", "1.4b", "2.8b", "6.9b")}
    expected_models |= {"t5_small", "t5_base", "t5_large", "flan_t5_base"}
    expected_models |= {"tiny_pythia", "tiny_t5", "tiny_flan_t5", "tiny_llama", "tinyllama_1.1b"}
    assert set(MODELS) == expected_models
    assert set(DATASETS) == {
        "cnn_dailymail", "xsum", "samsum", "dialogsum", "pile", "wikitext103",
        "tiny_summarization", "tiny_lm", "tiny", "lambada", "hellaswag",
        "glue_mrpc", "glue_sst2", "glue_rte", "squad_v2", "tiny_paraphrase", "tiny_squad_v2",
    }  # fmt: skip


def test_the_default_tiny_dataset_follows_the_model_family() -> None:
    for model, expected in (("tiny_pythia", "tiny_lm"), ("tiny_t5", "tiny_summarization")):
        cfg = compose_train(f"model={model}", OUT)
        assert cfg.dataset.name == expected
        assert cfg.dataset.task == FAMILY_TASKS[cfg.model.family]
        assert cfg.dataset.bundled == expected


# Whether a pair trains depends on the model's family and the dataset's task only: every model
# with the default dataset, and every dataset with a model of each family (the full product,
# 255 composes, took a minute and a half of the suite).
FAMILY_MODELS = ("tiny_pythia", "tiny_t5", "tiny_llama")
PAIRS = sorted(
    {(model, "tiny") for model in MODELS}
    | {(model, dataset) for model in FAMILY_MODELS for dataset in DATASETS}
)


@pytest.mark.parametrize(("model", "dataset"), PAIRS)
def test_every_model_and_dataset_composes(model: str, dataset: str) -> None:
    cfg = compose_train(f"model={model}", f"dataset={dataset}", OUT)
    assert cfg.model.name == model
    assert cfg.dataset.name == dataset or dataset == "tiny"
    evaluation_only = cfg.dataset.train_split == cfg.dataset.validation_split  # e.g. lambada
    trainable = cfg.model.family in TASK_FAMILIES.get(cfg.dataset.task, ())
    if trainable and not evaluation_only:
        validate_train_config(cfg)
    elif trainable:
        with pytest.raises(UserError, match="validated on the data it trains on"):
            validate_train_config(cfg)
    else:
        with pytest.raises(UserError, match=cfg.dataset.task):  # e.g. hellaswag: eval only
            validate_train_config(cfg)


@pytest.mark.parametrize("model", MODELS)
def test_model_configs_name_family_source_and_ffn_location(model: str) -> None:
    cfg = compose_train(f"model={model}", OUT).model
    assert cfg.family in ("causal", "seq2seq")
    assert (cfg.name_or_path is None) == (cfg.architecture is not None)
    assert cfg.ffn.blocks and cfg.ffn.input_projections and cfg.ffn.output_projections
    assert cfg.ffn.gated == ("flan_t5" in model or "llama" in model)  # gated GELU, SwiGLU
    if cfg.name_or_path:
        assert cfg.name_or_path.startswith(
            ("EleutherAI/pythia-", "google-t5/t5-", "google/flan-t5", "TinyLlama/TinyLlama-1.1B")
        )


@pytest.mark.parametrize(
    "group",
    ["trainer", "logger", "callbacks", "paths", "experiment", "debug", "constraint", "adapter"],
)
def test_every_option_of_every_group_composes(group: str) -> None:
    for option in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
        cfg = compose_train(f"{group}={option}", OUT)
        if group in ("experiment", "debug"):
            validate_train_config(cfg)


def test_overrides_reach_the_config() -> None:
    cfg = compose_train(
        "optim.lr=3e-4", "trainer.max_steps=200", "dataset.max_length=256", "seed=7", OUT
    )
    assert (cfg.optim.lr, cfg.trainer.max_steps, cfg.dataset.max_length, cfg.seed) == (
        3e-4,
        200,
        256,
        7,
    )


def test_experiment_selects_model_dataset_and_trainer() -> None:
    cfg = compose_train("experiment=t5_small_cnn_dailymail", OUT)
    assert (cfg.model.name, cfg.dataset.name, cfg.trainer.precision) == (
        "t5_small",
        "cnn_dailymail",
        "bf16-mixed",
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "unknown config key 'optim.lrr': did you mean 'lr'?"),
        (
            "trainer.max_stepz=1",
            "unknown config key 'trainer.max_stepz': did you mean 'max_steps'?",
        ),
        ("optim.lr=fast", "Value 'fast' of type 'str' could not be converted to Float"),
        ("trainer.max_steps=1.5", "Value '1.5' of type 'float' could not be converted to Integer"),
        ("model=pythia_1b", "unknown model option 'pythia_1b': did you mean 'pythia_1.4b'?"),
        ("dataset=cnn", "unknown dataset option 'cnn'"),
    ],
)
def test_typos_and_wrong_types_fail_at_composition_in_one_line(override: str, message: str) -> None:
    with pytest.raises((ConfigCompositionException, MissingConfigException)) as info:
        compose_train(override, OUT)
    described = describe(info.value)
    assert message in described and "\n" not in described


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("optim.lr=-0.1", "optim.lr=-0.1 must be > 0"),
        ("optim.warmup_ratio=1.5", "optim.warmup_ratio=1.5"),
        ("optim.schedule=cosin", "did you mean 'cosine'"),
        ("data.batch_size=0", "data.batch_size=0"),
        ("trainer.max_steps=0", "trainer.max_steps=0"),
        ("trainer.precision=bf16-true", "use bf16-mixed"),
        ("trainer.strategy=dp", "trainer.strategy='dp'"),
        ("trainer.accumulate_grad_batches=0", "accumulate_grad_batches=0"),
        ("+model.hidden=3", "unknown config key 'model.hidden'"),
        ("model.family=causa", "did you mean 'causal'"),
        ("dataset=lambada", "train_split=test is also its validation_split"),
    ],
)
def test_impossible_values_are_named(override: str, fragment: str) -> None:
    with pytest.raises(UserError, match=fragment.replace("(", r"\(").replace("?", r"\?")):
        validate_train_config(compose_train(override, OUT))


def test_max_length_must_fit_positions() -> None:
    cfg = compose_train("dataset.max_length=4096", OUT)
    with pytest.raises(UserError, match=r"dataset\.max_length=4096 exceeds the 2048 positions"):
        validate_max_length(cfg, 2048)
    validate_max_length(cfg, None)  # relative positions (T5): no limit


def test_local_site_config_is_ignored_by_git() -> None:
    ignored = (Path(CONF).parent / ".gitignore").read_text()
    assert "conf/local/*" in ignored
