"""`adapter=lora`: LoRA (peft) as a second model transform after the constraint.

What a researcher relies on: the guarantee record says `none` for a constrained layer an adapter
wraps from outside, and holds with `inside_constraint`; checkpoints hold only the trainable
tensors; evaluation, attacks and export rebuild the same model (base weights checked by hash);
the export merges the adapter correctly (peft's own merge drops it on parametrised layers)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from monolm.constraints import build_transform
from monolm.errors import UserError
from monolm.subjects import load_run
from monolm.tools.export import export_run
from tests.helpers import FAST, build_model, compose_train, run_script

STEPS = ("trainer.max_steps=4", "trainer.val_check_interval=null", "optim.lr=3e-2")
FFN_IN = "dense_h_to_4h"  # tiny_pythia's FFN input projections (constrained by monotonic)


def train(run_dir: Path, *overrides: str) -> Path:
    result = run_script("train.py", f"hydra.run.dir={run_dir}", *FAST, *STEPS, *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def final(run_dir: Path, record: str) -> dict:
    return json.loads((run_dir / f"{record}.json").read_text())["final"]


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LoRA on the constrained FFN input projections and on attention, from outside."""
    return train(
        tmp_path_factory.mktemp("outside"),
        "constraint=monotonic",
        "adapter=lora",
        f"adapter.target_modules=[{FFN_IN},query_key_value]",
        "adapter.r=4",
    )


@pytest.fixture(scope="module")
def inside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same adapter inside the parametrisation, W = softplus(V0 + BA); relu: provable."""
    return train(
        tmp_path_factory.mktemp("inside"),
        "constraint=monotonic",
        "constraint.activation=relu",
        "adapter=lora",
        f"adapter.target_modules=[{FFN_IN},query_key_value]",
        "adapter.r=4",
        "adapter.inside_constraint=true",
    )


def ffn_projection(record: dict, child: str) -> list[dict]:
    return [s["projections"][child] for s in record["sublayers"]]


def test_an_adapter_outside_the_constraint_drops_the_level_to_none(outside: Path) -> None:
    record = final(outside, "monotonicity")
    assert record["summary"]["all_ffn_sublayers"] == "none"
    assert all(s["level"] == "none" for s in record["sublayers"])
    assert all(f"unconstrained projections: {FFN_IN}" in s["reason"] for s in record["sublayers"])
    assert sorted(record["released_layers"]) == [
        f"gpt_neox.layers.{i}.mlp.{FFN_IN}" for i in range(4)
    ]
    # the record measures W + BA, the weight the forward pass uses: training made it negative
    assert sum(p["negative_count"] for p in ffn_projection(record, FFN_IN)) > 0
    # the output projections the adapter left alone keep their non-negative weights
    assert all(p["constrained"] and p["min_weight"] >= 0
               for p in ffn_projection(record, "dense_4h_to_h"))  # fmt: skip


def test_an_adapter_inside_the_constraint_keeps_the_weights_non_negative(inside: Path) -> None:
    record = final(inside, "monotonicity")
    assert record["summary"]["all_ffn_sublayers"] == "proven"
    assert "released_layers" not in record
    run = load_run(inside)
    layer = run.model.gpt_neox.layers[0].mlp.dense_h_to_4h
    shift = layer.parametrizations.weight[0]
    assert shift.lora_B.abs().max() > 0  # trained: the adapter moved
    assert not layer.parametrizations.weight.original.requires_grad  # V0 frozen
    for block in run.model.gpt_neox.layers:
        assert block.mlp.dense_h_to_4h.weight.min() >= 0
    adapter = final(inside, "adapter")
    assert adapter["inside_constraint"] == [f"gpt_neox.layers.{i}.mlp.{FFN_IN}" for i in range(4)]


@pytest.mark.parametrize("which", ["outside", "inside"])
def test_a_checkpoint_holds_only_the_trainable_tensors(which: str, request) -> None:
    run_dir = request.getfixturevalue(which)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    keys = set(checkpoint["state_dict"])
    assert keys and all("lora_A" in k or "lora_B" in k for k in keys)
    adapter = final(run_dir, "adapter")
    assert sum(checkpoint["state_dict"][k].numel() for k in keys) == adapter[
        "trainable_parameters"]  # fmt: skip
    # a full checkpoint holds every weight plus AdamW's two moments of each, in fp32
    full_bytes = 3 * 4 * adapter["total_parameters"]
    size = (run_dir / "checkpoints" / "last.ckpt").stat().st_size
    assert size < 0.2 * full_bytes, (size, full_bytes)


def test_evaluate_rebuilds_the_adapter_run_and_records_it(outside: Path) -> None:
    run = load_run(outside)
    assert run.source["adapter"] == "lora" and run.source["constraint"] == "monotonic"
    checkpoint = torch.load(outside / "checkpoints" / "last.ckpt", weights_only=True)
    state = run.model.state_dict()
    for key, value in checkpoint["state_dict"].items():
        assert torch.equal(state[key.removeprefix("model.")], value), key
    layer = run.model.gpt_neox.layers[0].mlp.dense_h_to_4h
    inputs = torch.randn(2, layer.in_features)
    with torch.no_grad():
        assert (layer(inputs) - layer.base_layer(inputs)).abs().max() > 1e-4  # adapter active


def test_a_changed_base_model_is_refused_when_the_run_is_rebuilt(tmp_path: Path, outside) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(outside, copy)
    path = copy / "adapter.json"
    record = json.loads(path.read_text())
    record["initial"]["base_model"]["weights_sha256"] = "0" * 64
    path.write_text(json.dumps(record))
    with pytest.raises(UserError, match="base model rebuilt for this adapter run differs"):
        load_run(copy)


@pytest.mark.parametrize("which", ["outside", "inside"])
def test_export_merges_the_adapter_and_reloads_as_a_plain_model(
    which: str, request, tmp_path: Path
) -> None:
    run = load_run(request.getfixturevalue(which))
    record = export_run(run, tmp_path / "export")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "export", dtype=torch.float32).eval()
    assert not any("lora" in name for name, _ in plain.named_parameters())
    ids = torch.tensor([[5, 17, 42, 7, 99, 3]])
    with torch.no_grad(), run.inference():
        expected = run.model(input_ids=ids).logits
    with torch.no_grad():
        merged = plain(input_ids=ids).logits
    torch.testing.assert_close(merged, expected, rtol=1e-5, atol=1e-5)
    level = record["guarantee"]["summary"]["all_ffn_sublayers"]
    assert level == ("none" if which == "outside" else "proven")


def transform_of(*overrides: str):
    cfg, _, model = build_model(*overrides)
    transform = build_transform(cfg.constraint, cfg.adapter)
    transform.apply(model, cfg.model)
    return transform, model


def test_lora_on_tiny_llama_trains_only_its_adapters() -> None:
    _, model = transform_of(
        "model=tiny_llama", "adapter=lora", "adapter.target_modules=[q_proj,v_proj]"
    )
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(("q_proj.lora_" in n or "v_proj.lora_" in n) for n in trainable), (
        trainable
    )


def test_modules_to_save_train_in_full_beside_the_adapters() -> None:
    transform, model = transform_of(
        "adapter=lora",
        "adapter.target_modules=[query_key_value]",
        "adapter.modules_to_save=[lm_head]",
    )
    assert model.lm_head.weight.requires_grad
    assert "model.lm_head.weight" in transform.checkpoint_state(
        {f"model.{k}": v for k, v in model.state_dict().items()}
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("adapter.r=0", "adapter.r=0 must be >= 1"),
        ("adapter.dropout=1.5", "adapter.dropout=1.5 must be in [0, 1)"),
        ("adapter.target_modules=everything", "adapter.target_modules='everything'"),
        ("adapter.target_modules=[no_such_layer]", "matches no linear layer of model"),
    ],
)
def test_bad_adapter_settings_are_one_line_errors(override: str, message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        transform_of("adapter=lora", override)


def test_inside_constraint_needs_a_parametrised_constraint() -> None:
    with pytest.raises(UserError, match=r"constraint\.parametrization=project"):
        transform_of(
            "constraint=monotonic",
            "constraint.parametrization=project",
            "adapter=lora",
            "adapter.inside_constraint=true",
        )


def test_an_unknown_adapter_option_names_the_valid_ones() -> None:
    result = run_script("train.py", "adapter=lorra", "hydra.run.dir=/tmp/never-written")
    assert result.returncode != 0
    assert "lora" in result.stderr.strip().splitlines()[-1]
    assert not Path("/tmp/never-written").exists()


def test_no_adapter_leaves_the_constraint_alone() -> None:
    cfg = compose_train("constraint=monotonic")
    transform = build_transform(cfg.constraint, cfg.adapter)
    assert transform.name == "monotonic" and transform.parts() == [transform]


def test_attack_loads_an_adapter_run_like_any_other(outside: Path, tmp_path: Path) -> None:
    result = run_script("attack.py", f"run_dir={outside}", f"hydra.run.dir={tmp_path}",
                        "attack=hotflip", "attack.flip.budget=1", "attack.flip.top_k=4",
                        "max_examples=2", "bootstrap.resamples=50")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "attack.json").read_text())
    assert record["subject"]["adapter"] == "lora"
    checkpoint = outside / "checkpoints" / "last.ckpt"
    assert record["subject"]["checkpoint_sha256"] == load_run(outside).checkpoint_sha256
    assert Path(record["subject"]["checkpoint"]) == checkpoint


def test_lora_off_the_constrained_layers_keeps_the_guarantee() -> None:
    transform, model = transform_of(
        "constraint=monotonic",
        "constraint.activation=relu",
        "adapter=lora",
        "adapter.target_modules=[query_key_value]",
    )
    record = transform.report(model)
    assert record["summary"]["all_ffn_sublayers"] == "proven"
    assert "released_layers" not in record
    adapter = transform.parts()[1].report(model)
    assert adapter["released_from_constraint"] == {} and len(adapter["layers"]) == 4
