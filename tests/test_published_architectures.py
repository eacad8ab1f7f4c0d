"""Every real conf/model option builds its published architecture offline (model.pretrained=false).

The frozen copies below are the architecture fields of each model's config.json on the Hugging
Face hub, as published (written from the hub files: huggingface.co/<id>/blob/main/config.json;
fields that do not shape the model, e.g. architectures, torch_dtype, transformers_version,
use_cache, task_specific_params, are left out). The parameter totals are the model cards'
(Pythia: the "Naming convention and parameter count" table of huggingface.co/EleutherAI/pythia-*;
T5: the totals transformers reports for the checkpoints, with tied embeddings; TinyLlama:
1,100,048,384), an independent check of the same values: a wrong width, depth or vocabulary
changes them. No test here reaches the hub (tests/conftest.py sets HF_HUB_OFFLINE).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoConfig, PretrainedConfig

from monolm.errors import UserError
from monolm.models.loading import AUTO_MODEL, load_model, load_model_config, load_tokenizer
from monolm.training.identity import compare, identity_sha256
from tests.helpers import CONF, compose_train

OUT = "paths.output_dir=/tmp/unused"


def _pythia(hidden: int, layers: int, heads: int, ffn: int, vocab: int = 50304) -> dict:
    """EleutherAI/pythia-*: every size shares all but these five values."""
    return {
        "model_type": "gpt_neox",
        "bos_token_id": 0,
        "eos_token_id": 0,
        "hidden_act": "gelu",
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": ffn,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": 2048,
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "rotary_emb_base": 10000,
        "rotary_pct": 0.25,
        "tie_word_embeddings": False,
        "use_parallel_residual": True,
        "vocab_size": vocab,
    }


def _t5(d_model: int, d_ff: int, heads: int, layers: int) -> dict:
    """google-t5/t5-*: the original T5 (ReLU FFN; its config.json names no feed_forward_proj,
    num_decoder_layers or tie_word_embeddings: transformers' defaults, relu, = num_layers, tied)."""
    return {
        "model_type": "t5",
        "d_ff": d_ff,
        "d_kv": 64,
        "d_model": d_model,
        "decoder_start_token_id": 0,
        "dropout_rate": 0.1,
        "eos_token_id": 1,
        "initializer_factor": 1.0,
        "layer_norm_epsilon": 1e-06,
        "n_positions": 512,
        "num_heads": heads,
        "num_layers": layers,
        "pad_token_id": 0,
        "relative_attention_num_buckets": 32,
        "vocab_size": 32128,
    }


PUBLISHED: dict[str, dict[str, Any]] = {
    "pythia_70m": _pythia(512, 6, 8, 2048),
    "pythia_160m": _pythia(768, 12, 12, 3072),
    "pythia_410m": _pythia(1024, 24, 16, 4096),
    "pythia_1.4b": _pythia(2048, 24, 16, 8192),
    "pythia_2.8b": _pythia(2560, 32, 32, 10240),
    "pythia_6.9b": _pythia(4096, 32, 32, 16384, vocab=50432),  # 6.9b's table is padded wider
    "t5_small": _t5(512, 2048, 8, 6),
    "t5_base": _t5(768, 3072, 12, 12),
    "t5_large": _t5(1024, 4096, 16, 24),
    "flan_t5_base": {  # google/flan-t5-base
        "model_type": "t5",
        "d_ff": 2048,
        "d_kv": 64,
        "d_model": 768,
        "decoder_start_token_id": 0,
        "dense_act_fn": "gelu_new",
        "dropout_rate": 0.1,
        "eos_token_id": 1,
        "feed_forward_proj": "gated-gelu",
        "initializer_factor": 1.0,
        "is_gated_act": True,
        "layer_norm_epsilon": 1e-06,
        "n_positions": 512,
        "num_decoder_layers": 12,
        "num_heads": 12,
        "num_layers": 12,
        "pad_token_id": 0,
        "relative_attention_max_distance": 128,
        "relative_attention_num_buckets": 32,
        "tie_word_embeddings": False,
        "vocab_size": 32128,
    },
    "tinyllama_1.1b": {  # TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T (= Chat-v1.0)
        "model_type": "llama",
        "attention_bias": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": 2048,
        "initializer_range": 0.02,
        "intermediate_size": 5632,
        "max_position_embeddings": 2048,
        "num_attention_heads": 32,
        "num_hidden_layers": 22,
        "num_key_value_heads": 4,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "vocab_size": 32000,
    },
}

PARAMETERS = {
    "pythia_70m": 70_426_624,
    "pythia_160m": 162_322_944,
    "pythia_410m": 405_334_016,
    "pythia_1.4b": 1_414_647_808,
    "pythia_2.8b": 2_775_208_960,
    "pythia_6.9b": 6_857_302_016,
    "t5_small": 60_506_624,
    "t5_base": 222_903_552,
    "t5_large": 737_668_096,
    "flan_t5_base": 247_577_856,  # its own lm_head: 24,674,304 more than t5-base
    "tinyllama_1.1b": 1_100_048_384,
}

# The architecture in the terms the issue names it, read off a built config the way the
# modelling code reads it (a value transformers silently dropped would show here).
# (hidden, layers, heads, kv heads, FFN, vocabulary, activation, positions, tied embeddings)
SHAPES = {
    "pythia_70m": (512, 6, 8, 8, 2048, 50304, "gelu", 2048, False),
    "pythia_160m": (768, 12, 12, 12, 3072, 50304, "gelu", 2048, False),
    "pythia_410m": (1024, 24, 16, 16, 4096, 50304, "gelu", 2048, False),
    "pythia_1.4b": (2048, 24, 16, 16, 8192, 50304, "gelu", 2048, False),
    "pythia_2.8b": (2560, 32, 32, 32, 10240, 50304, "gelu", 2048, False),
    "pythia_6.9b": (4096, 32, 32, 32, 16384, 50432, "gelu", 2048, False),
    "t5_small": (512, 6, 8, 8, 2048, 32128, "relu", None, True),
    "t5_base": (768, 12, 12, 12, 3072, 32128, "relu", None, True),
    "t5_large": (1024, 24, 16, 16, 4096, 32128, "relu", None, True),
    "flan_t5_base": (768, 12, 12, 12, 2048, 32128, "gelu_new", None, False),
    "tinyllama_1.1b": (2048, 22, 32, 4, 5632, 32000, "silu", 2048, False),
}

REAL = sorted(PUBLISHED)


def test_every_real_option_carries_a_published_architecture_and_is_checked_here() -> None:
    options = {p.stem: compose_train(f"model={p.stem}", OUT).model for p in CONF.glob("model/*")}
    real = {name for name, cfg in options.items() if cfg.name_or_path is not None}
    assert real == set(PUBLISHED) == set(PARAMETERS) == set(SHAPES)
    for name, cfg in options.items():
        assert (cfg.published is not None) == (name in real), name


def published_config(option: str, *overrides: str) -> tuple[Any, PretrainedConfig]:
    cfg = compose_train(f"model={option}", "model.pretrained=false", *overrides, OUT)
    return cfg, load_model_config(cfg.model, None)  # no tokenizer, no network


def shape_of(config: PretrainedConfig) -> tuple:
    if config.model_type == "t5":
        # transformers 5 always ties T5's embeddings; a config published untied (T5 v1.1,
        # FLAN) keeps that as "do not rescale the decoder output" instead
        return (
            config.d_model, config.num_layers, config.num_heads, config.num_heads, config.d_ff,
            config.vocab_size, config.dense_act_fn, None, config.scale_decoder_outputs,
        )  # fmt: skip
    return (
        config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
        getattr(config, "num_key_value_heads", config.num_attention_heads),
        config.intermediate_size, config.vocab_size, config.hidden_act,
        config.max_position_embeddings, config.tie_word_embeddings,
    )  # fmt: skip


@pytest.mark.parametrize("option", REAL)
def test_pretrained_false_builds_the_published_config_offline(option: str) -> None:
    _, built = published_config(option)
    frozen = dict(PUBLISHED[option])
    expected = AutoConfig.for_model(frozen.pop("model_type"), **frozen)  # as the hub's is read
    assert type(built) is type(expected)
    assert built.to_dict() == expected.to_dict()
    assert shape_of(built) == SHAPES[option]
    if built.model_type == "gpt_neox":  # rotary settings and the parallel residual
        assert built.rope_parameters["partial_rotary_factor"] == 0.25
        assert built.rope_parameters["rope_theta"] == 10000
        assert built.use_parallel_residual and built.layer_norm_eps == 1e-5
    if built.model_type == "llama":
        assert built.rope_parameters["rope_theta"] == 10000.0 and built.rms_norm_eps == 1e-5
    if built.model_type == "t5":
        assert built.is_gated_act == (option == "flan_t5_base")


@pytest.mark.parametrize("option", REAL)
def test_published_architectures_have_the_model_cards_parameter_counts(option: str) -> None:
    cfg, config = published_config(option)
    with torch.device("meta"):  # shapes only: no memory, no init
        model = AUTO_MODEL[cfg.model.family].from_config(config)
    count = sum(p.numel() for p in model.parameters())
    if option == "flan_t5_base":
        # transformers 5 ties lm_head to the shared embedding on a fresh init (the checkpoint's
        # own lm_head is kept by from_pretrained): the same FLOPs, one 32128 x 768 matrix fewer
        assert model.lm_head.weight is model.shared.weight
        count += 32128 * 768
    assert count == PARAMETERS[option]


def test_a_real_architecture_trains_offline_with_no_tokenizer_of_its_own() -> None:
    cfg, config = published_config("pythia_70m")
    torch.manual_seed(0)
    model = load_model(cfg.model, config)
    assert model.get_input_embeddings().weight.shape == (50304, 512)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    ids = torch.randint(50304, (2, 16))  # a synthetic batch: no tokenizer at all
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert torch.isfinite(loss)


def test_with_the_bundled_tokenizer_the_vocabulary_stays_the_published_one(tmp_path: Path) -> None:
    cfg = compose_train(
        "model=pythia_1.4b", "model.pretrained=false", "model.tokenizer=bundled", OUT
    )
    tokenizer = load_tokenizer(cfg.model, tmp_path)
    config = load_model_config(cfg.model, tokenizer)
    assert len(tokenizer) < config.vocab_size == 50304  # the real embedding, not len(tokenizer)
    assert (config.pad_token_id, config.eos_token_id) == (tokenizer.pad_token_id, 1)
    too_small = compose_train(
        "model=pythia_70m", "model.pretrained=false", "model.tokenizer=bundled",
        "model.published.vocab_size=100", OUT,
    ).model  # fmt: skip
    with pytest.raises(UserError, match=r"2048 tokens, more than model.published.vocab_size=100"):
        load_model_config(too_small, tokenizer)


def test_pretrained_weights_still_come_with_their_own_config_from_the_hub() -> None:
    cfg = compose_train("model=pythia_70m", OUT)  # pretrained=true: never the published copy
    with pytest.raises(UserError, match="cannot load model config 'EleutherAI/pythia-70m'"):
        load_model_config(cfg.model, None)


def test_a_local_directory_brings_its_own_config_even_with_random_weights(tmp_path: Path) -> None:
    _, tiny = published_config("pythia_70m", "model.published.hidden_size=64")
    tiny.save_pretrained(tmp_path)
    _, config = published_config("pythia_1.4b", f"model.name_or_path={tmp_path}")
    assert config.hidden_size == 64 and config.num_hidden_layers == 6


def test_a_published_architecture_without_its_model_type_is_named() -> None:
    cfg = compose_train("model=t5_small", "model.pretrained=false", "~model.published.model_type")
    with pytest.raises(UserError, match=r"model.published of 't5_small' needs a model_type"):
        load_model_config(cfg.model, None)


def _without_published(config: dict) -> dict:
    model = {k: v for k, v in config["model"].items() if k != "published"}
    return {**config, "model": model}


@pytest.mark.parametrize("option", ["pythia_1.4b", "flan_t5_base", "tiny_pythia"])
def test_the_new_key_leaves_the_identity_of_earlier_runs_as_it_was(option: str) -> None:
    from omegaconf import OmegaConf

    now = OmegaConf.to_container(compose_train(f"model={option}", OUT), resolve=True)
    before = _without_published(now)  # a run recorded before model.published existed
    assert identity_sha256(now) == identity_sha256(before)
    compare("run", before, before, now, [])  # it resumes: nothing defining differs


def test_with_random_weights_the_published_architecture_is_part_of_the_run() -> None:
    from omegaconf import OmegaConf

    def config(*overrides: str) -> dict:
        cfg = compose_train("model=pythia_70m", "model.pretrained=false", *overrides, OUT)
        return OmegaConf.to_container(cfg, resolve=True)

    run, wider = config(), config("model.published.hidden_size=1024")
    assert identity_sha256(run) != identity_sha256(wider)
    with pytest.raises(UserError, match=r"model.published.hidden_size 512 -> 1024"):
        compare("run", run, run, wider, [])
