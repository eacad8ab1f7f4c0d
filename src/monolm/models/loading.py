"""Build the tokenizer and model a config names: hub id, local directory, or architecture dict.

Hub ids and local directories go through the same `from_pretrained` calls, so a model saved with
`save_pretrained` loads exactly like the hub model it stands in for. Weights are always loaded in
fp32: mixed precision happens in autocast, never in the stored parameters.

Where the architecture comes from:

- `model.architecture` (the tiny options): built from those values, the vocabulary and special
  tokens from the tokenizer;
- pretrained weights (`model.pretrained=true`, a hub id or a local directory): the config that
  comes with them (`from_pretrained`);
- random weights of a real option (`model.pretrained=false`): `model.published`, the values its
  hub config.json publishes (vocabulary size included), with no download and no tokenizer
  needed; a local directory in `model.name_or_path` brings its own config.json instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from monolm.data.tokenizer import bundled_tokenizer_dir
from monolm.errors import UserError

FAMILIES = ("causal", "seq2seq")
AUTO_MODEL = {"causal": AutoModelForCausalLM, "seq2seq": AutoModelForSeq2SeqLM}


def _hub_kwargs(model_cfg: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"trust_remote_code": bool(model_cfg.trust_remote_code)}
    if model_cfg.revision:
        kwargs["revision"] = model_cfg.revision
    return kwargs


def _unloadable(what: str, source: str, exc: Exception) -> UserError:
    local = Path(source).expanduser()
    if local.exists() or source.startswith((".", "/", "~")):
        detail = "a directory written by save_pretrained" if local.is_dir() else "no such directory"
        return UserError(f"cannot load {what} from '{source}': {detail} ({exc})")
    return UserError(
        f"cannot load {what} '{source}': not a local directory, and the Hugging Face hub "
        f"did not provide it ({type(exc).__name__}: {str(exc).splitlines()[0]})"
    )


def load_tokenizer(model_cfg: Any, cache_dir: str | Path) -> PreTrainedTokenizerBase:
    """The model's tokenizer; `tokenizer: bundled` trains one on the shipped text (cached)."""
    source = model_cfg.tokenizer or model_cfg.name_or_path
    if source == "bundled":
        source = str(bundled_tokenizer_dir(Path(cache_dir), family=model_cfg.family))
    if source is None:
        raise UserError(f"model '{model_cfg.name}' names no tokenizer: set model.tokenizer")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **_hub_kwargs(model_cfg))
    except (OSError, ValueError) as exc:
        raise _unloadable("tokenizer", source, exc) from exc
    if tokenizer.pad_token is None:
        # GPT-NeoX ships without a pad token; padding positions are masked out of every loss.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _is_local_dir(source: str | None) -> bool:
    return source is not None and Path(source).expanduser().is_dir()


def builds_from_published(model_cfg: Any) -> bool:
    """Random weights on the published architecture, offline (module docstring)."""
    return (
        model_cfg.architecture is None
        and not model_cfg.pretrained
        and model_cfg.get("published") is not None
        and not _is_local_dir(model_cfg.name_or_path)
    )


def _published_config(
    model_cfg: Any, tokenizer: PreTrainedTokenizerBase | None
) -> PretrainedConfig:
    """The option's published architecture. Its vocabulary size stands (the embedding is the
    real model's, whatever tokenizer feeds it); a tokenizer's special token ids replace the
    published ones, since they are what its data holds."""
    values = dict(model_cfg.published)
    model_type = values.pop("model_type", None)
    if model_type is None or "vocab_size" not in values:
        raise UserError(
            f"model.published of '{model_cfg.name}' needs a model_type and a vocab_size "
            f"(has {sorted(model_cfg.published)})"
        )
    if tokenizer is not None:
        if len(tokenizer) > values["vocab_size"]:
            raise UserError(
                f"model '{model_cfg.name}': the tokenizer has {len(tokenizer)} tokens, more than "
                f"model.published.vocab_size={values['vocab_size']} embedding rows"
            )
        values["pad_token_id"] = tokenizer.pad_token_id
        values["eos_token_id"] = tokenizer.eos_token_id
        if model_cfg.family == "seq2seq":
            values["decoder_start_token_id"] = tokenizer.pad_token_id
        else:
            bos = tokenizer.bos_token_id
            values["bos_token_id"] = tokenizer.eos_token_id if bos is None else bos
    try:
        return AutoConfig.for_model(model_type, **values)
    except (ValueError, TypeError) as exc:
        raise UserError(f"model.published of '{model_cfg.name}': {exc}") from exc


def load_model_config(
    model_cfg: Any, tokenizer: PreTrainedTokenizerBase | None
) -> PretrainedConfig:
    """The architecture config (cheap: no weights), used to validate lengths before loading.
    `tokenizer` may be None only where the vocabulary does not come from it (published
    architectures, the benchmarks' synthetic batches)."""
    if builds_from_published(model_cfg):
        return _published_config(model_cfg, tokenizer)
    if model_cfg.architecture is not None:
        if tokenizer is None:
            raise UserError(f"model '{model_cfg.name}' takes its vocabulary from its tokenizer")
        arch = dict(model_cfg.architecture)
        model_type = arch.pop("model_type", None)
        if model_type is None:
            raise UserError(f"model.architecture of '{model_cfg.name}' needs a model_type")
        arch.setdefault("vocab_size", len(tokenizer))
        arch.setdefault("pad_token_id", tokenizer.pad_token_id)
        arch.setdefault("eos_token_id", tokenizer.eos_token_id)
        if model_cfg.family == "seq2seq":
            arch.setdefault("decoder_start_token_id", tokenizer.pad_token_id)
        else:
            arch.setdefault("bos_token_id", tokenizer.eos_token_id)
        try:
            return AutoConfig.for_model(model_type, **arch)
        except (ValueError, TypeError) as exc:
            raise UserError(f"model.architecture of '{model_cfg.name}': {exc}") from exc
    if model_cfg.name_or_path is None:
        raise UserError(f"model '{model_cfg.name}' sets neither name_or_path nor architecture")
    try:
        config = AutoConfig.from_pretrained(model_cfg.name_or_path, **_hub_kwargs(model_cfg))
    except (OSError, ValueError) as exc:
        raise _unloadable("model config", model_cfg.name_or_path, exc) from exc
    if (
        tokenizer is not None
        and getattr(config, "pad_token_id", None) is None
        and not config.is_encoder_decoder
    ):
        # TinyLlama and Pythia ship no pad token: the tokenizer's (EOS) is written into the
        # config too, which batched sequence classification and generation read
        config.pad_token_id = tokenizer.pad_token_id
    return config


def max_positions(config: PretrainedConfig) -> int | None:
    """The longest sequence the architecture can embed, or None for relative positions (T5)."""
    if getattr(config, "is_encoder_decoder", False):
        return None
    return getattr(config, "max_position_embeddings", None)


def load_model(model_cfg: Any, config: PretrainedConfig) -> PreTrainedModel:
    """Pretrained weights (hub id or local dir) or a fresh init from `config` (seeded by caller)."""
    auto = AUTO_MODEL[model_cfg.family]
    if model_cfg.architecture is not None or not model_cfg.pretrained:
        model = auto.from_config(config, dtype=torch.float32)
    else:
        try:
            model = auto.from_pretrained(
                model_cfg.name_or_path, dtype=torch.float32, **_hub_kwargs(model_cfg)
            )
        except (OSError, ValueError) as exc:
            raise _unloadable("model weights", model_cfg.name_or_path, exc) from exc
    return model
