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
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from monolm.errors import UserError
from monolm.models.loading import AUTO_MODEL
from monolm.provenance import provenance, write_json
from monolm.run_dir import EXPORT_RECORD
from monolm.subjects import Subject

LOGITS_ATOL = 1e-5
PROBE_TEXT = "The council voted on Tuesday to approve the new budget for the city."


def probe_logits(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    encoded = tokenizer([PROBE_TEXT], return_tensors="pt")
    inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    if model.config.is_encoder_decoder:
        inputs["decoder_input_ids"] = encoded["input_ids"][:, :8]
    device = next(model.parameters()).device
    with torch.no_grad():
        return model(**{k: v.to(device) for k, v in inputs.items()}).logits.float().cpu()


def check_export_target(out_dir: Path) -> Path:
    """The temporary sibling the export is written to; refuses a non-empty `out_dir` (nothing
    already saved is overwritten)."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError(f"export target '{out_dir}' exists and is not empty: choose a new path")
    partial = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    return partial


def export_run(run: Subject, out_dir: str | Path) -> dict[str, Any]:
    """Write the trained model of `run` (a run-dir subject) as a plain HF directory at `out_dir`;
    return its record."""
    out_dir = Path(out_dir)
    if run.ref.kind != "run":
        raise UserError(f"'{run.ref.name}' is not a training run dir: only runs are exported")
    run.transform.check_exportable()
    partial = check_export_target(out_dir)
    family = run.family
    plain = AUTO_MODEL[family].from_config(copy.deepcopy(run.model.config), dtype=torch.float32)
    loaded = plain.load_state_dict(run.transform.export_state_dict(run.model), strict=False)
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
    with run.inference():
        expected = probe_logits(run.model, run.tokenizer)
    difference = float((probe_logits(reloaded, run.tokenizer) - expected).abs().max())
    if difference > LOGITS_ATOL:
        raise RuntimeError(f"exported logits differ by {difference:.3g} > {LOGITS_ATOL}")

    constrained = sorted(run.constrained_layers)
    record = {
        **provenance(OmegaConf.to_container(run.config, resolve=True), int(run.config.seed)),
        "source_run_dir": str(run.ref.run.path.resolve()),
        "checkpoint": str(run.ref.checkpoint.resolve()),
        "checkpoint_sha256": run.source["checkpoint_sha256"],
        "checkpoint_step": run.source["checkpoint_step"],
        "auto_class": AUTO_MODEL[family].__name__,
        "vanilla_load": {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": []},
        "max_abs_logit_difference": difference,
        "constrained_layers": constrained,
        "guarantee": run.transform.report(reloaded),
    }
    write_json(partial / EXPORT_RECORD, record)
    if out_dir.exists():
        out_dir.rmdir()
    os.replace(partial, out_dir)
    return record
