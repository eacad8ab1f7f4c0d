"""LoRA (peft) on a monotone-constrained model: the adapter breaks non-negativity of a constrained
layer's effective weight, and merging needs the parametrisation removed first (peft's own merge
silently drops the update on a parametrised layer: the trap `merge_adapters` avoids)."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model

from monolm.constraints.lora import merge_adapters
from tests.test_monotonic import constrained


def adapted():
    """(inputs, the LoRA model): tiny_pythia under constraint=monotonic with LoRA on its
    constrained FFN input projections, B set as training would (non-zero)."""
    _, tokenizer, model, _ = constrained("model=tiny_pythia")
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["dense_h_to_4h"])
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(0)
    for name, parameter in peft_model.named_parameters():
        if "lora_B" in name:
            with torch.no_grad():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    inputs = tokenizer(["the cat sat on the mat", "a b c"], return_tensors="pt", padding=True)
    return inputs, peft_model.eval()


def logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def test_lora_on_a_constrained_layer_makes_its_effective_weight_negative() -> None:
    _, model = adapted()
    layer = model.base_model.model.gpt_neox.layers[0].mlp.dense_h_to_4h
    base = layer.base_layer.weight  # softplus(V): non-negative
    update = layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    effective = base + layer.scaling["default"] * update
    assert base.min() >= 0 and effective.min() < 0


def test_peft_merge_drops_the_update_on_a_parametrised_layer_and_merge_adapters_keeps_it() -> None:
    inputs, model = adapted()
    with_adapter = logits(model, inputs)
    with model.disable_adapter():
        base_only = logits(model, inputs)
    assert (with_adapter - base_only).abs().max() > 1e-2  # the adapter changes the model
    trapped = copy.deepcopy(model).merge_and_unload()
    assert (logits(trapped, inputs) - base_only).abs().max() < 1e-6  # peft: the update is lost
    merged = merge_adapters(copy.deepcopy(model))
    torch.testing.assert_close(logits(merged, inputs), with_adapter, rtol=1e-5, atol=1e-5)
    assert not any("lora" in name for name, _ in merged.named_parameters())


@pytest.mark.parametrize("unsafe", [False, True])
def test_the_trap_is_the_same_with_and_without_safe_merge(unsafe: bool) -> None:
    inputs, model = adapted()
    with model.disable_adapter():
        base_only = logits(model, inputs)
    trapped = copy.deepcopy(model).merge_and_unload(safe_merge=not unsafe)
    assert (logits(trapped, inputs) - base_only).abs().max() < 1e-6
