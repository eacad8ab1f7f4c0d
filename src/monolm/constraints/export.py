"""Export a trained run to a plain Hugging Face directory that any HF tool loads unchanged.

`save_pretrained` on a parametrised model writes `...parametrizations.weight.original` (V), which a
vanilla model silently ignores and re-initialises. Instead the weights the forward pass uses
(W = softplus(V)) are copied into a fresh, unparametrised model of the same config; the export is
then reloaded with vanilla `from_pretrained` and checked: no missing or unexpected keys and the
same logits as the trained model.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from monolm.constraints.activations import REPLACEMENTS
from monolm.constraints.guarantee import guarantee_record
from monolm.errors import UserError
from monolm.models.loading import AUTO_MODEL
from monolm.runs import TrainedRun
from monolm.training.record import provenance, write_json

EXPORT_RECORD = "monolm_export.json"
LOGITS_ATOL = 1e-5
PROBE_TEXT = "The council voted on Tuesday to approve the new budget for the city."


def materialised_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict a plain model of the same class has: every parametrised tensor replaced by
    its value (`layer.weight`), under the plain name."""
    plain: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if ".parametrizations." not in key:
                plain[key] = value
                continue
            owner, rest = key.split(".parametrizations.", 1)
            tensor_name = rest.split(".", 1)[0]
            plain[f"{owner}.{tensor_name}"] = getattr(model.get_submodule(owner), tensor_name)
    return {key: value.detach().clone() for key, value in plain.items()}


def probe_logits(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    encoded = tokenizer([PROBE_TEXT], return_tensors="pt")
    inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    if model.config.is_encoder_decoder:
        inputs["decoder_input_ids"] = encoded["input_ids"][:, :8]
    device = next(model.parameters()).device
    with torch.no_grad():
        return model(**{k: v.to(device) for k, v in inputs.items()}).logits.float().cpu()


def _check_exportable(run: TrainedRun) -> None:
    settings = getattr(run.constraint, "settings", None)
    activation = getattr(settings, "activation", "keep")
    if activation != "keep" and REPLACEMENTS[activation][1] is None:
        raise UserError(
            f"constraint.activation={activation} has no Hugging Face activation name, so a "
            "plain HF model cannot reproduce it: train with constraint.activation=relu to export"
        )


def check_export_target(out_dir: Path) -> Path:
    """The temporary sibling the export is written to; refuses a non-empty `out_dir` (nothing
    already saved is overwritten)."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError(f"export target '{out_dir}' exists and is not empty: choose a new path")
    partial = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    return partial


def export_run(run: TrainedRun, out_dir: str | Path) -> dict[str, Any]:
    """Write `run`'s trained model as a plain HF directory at `out_dir`; return its record."""
    out_dir = Path(out_dir)
    _check_exportable(run)
    partial = check_export_target(out_dir)
    family = run.config.model.family
    plain = AUTO_MODEL[family].from_config(copy.deepcopy(run.model.config), dtype=torch.float32)
    loaded = plain.load_state_dict(materialised_state_dict(run.model), strict=False)
    if loaded.missing_keys or loaded.unexpected_keys:
        raise RuntimeError(f"plain model does not match: {loaded}")
    plain.save_pretrained(partial)
    run.tokenizer.save_pretrained(partial)

    reloaded, info = AUTO_MODEL[family].from_pretrained(
        partial, dtype=torch.float32, output_loading_info=True
    )
    problems = {k: v for k, v in info.items() if k != "error_msgs" and v} | (
        {"error_msgs": info["error_msgs"]} if info.get("error_msgs") else {}
    )
    if problems:
        raise RuntimeError(f"vanilla from_pretrained of the export reports {problems}")
    reloaded.eval()
    with run.constraint.cached_weights():
        expected = probe_logits(run.model, run.tokenizer)
    difference = float((probe_logits(reloaded, run.tokenizer) - expected).abs().max())
    if difference > LOGITS_ATOL:
        raise RuntimeError(f"exported logits differ by {difference:.3g} > {LOGITS_ATOL}")

    constrained = sorted(getattr(run.constraint, "layers", {}))
    record = {
        **provenance(OmegaConf.to_container(run.config, resolve=True), int(run.config.seed)),
        "source_run_dir": str(run.run_dir.resolve()),
        "checkpoint": str(run.checkpoint.resolve()),
        "checkpoint_sha256": run.checkpoint_sha256,
        "auto_class": AUTO_MODEL[family].__name__,
        "vanilla_load": {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": []},
        "max_abs_logit_difference": difference,
        "constrained_layers": constrained,
        "guarantee": guarantee_record(reloaded, run.config.model.ffn, set(constrained)),
    }
    write_json(partial / EXPORT_RECORD, record)
    if out_dir.exists():
        out_dir.rmdir()
    os.replace(partial, out_dir)
    return record
