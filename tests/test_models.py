"""The hub-loading code path, exercised on tiny models saved the way the hub stores them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from monolm.errors import UserError
from monolm.models.ffn import find_attention_outputs, find_ffn_sublayers
from monolm.models.loading import max_positions
from tests.helpers import FAST, build_model, compose_train, run_script


def save_like_the_hub(tmp_path: Path, *overrides: str) -> tuple[Path, torch.nn.Module]:
    _, tokenizer, model = build_model(*overrides)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    return tmp_path, model


@pytest.mark.parametrize(
    ("tiny", "real"),
    [("tiny_pythia", "pythia_70m"), ("tiny_t5", "t5_small"), ("tiny_t5", "flan_t5_base")],
)
def test_a_local_directory_loads_wherever_a_hub_id_does(
    tmp_path: Path, tiny: str, real: str
) -> None:
    arch = ["model.architecture.feed_forward_proj=gated-gelu"] if real == "flan_t5_base" else []
    saved, original = save_like_the_hub(tmp_path, f"model={tiny}", *arch)
    cfg, tokenizer, loaded = build_model(f"model={real}", f"model.name_or_path={saved}")
    assert type(loaded) is type(original)
    for key, value in original.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    assert next(loaded.parameters()).dtype == torch.float32
    text = "The council voted on Tuesday."
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text

    blocks = find_ffn_sublayers(loaded, cfg.model.ffn)
    config = loaded.config
    layers = config.num_hidden_layers if tiny == "tiny_pythia" else 2 * config.num_layers
    assert len(blocks) == layers
    assert set(blocks[0].input_projections) == set(cfg.model.ffn.input_projections)
    assert find_attention_outputs(loaded, cfg.model.ffn)


def test_tiny_models_are_built_in_fp32_with_the_tokenizer_vocabulary() -> None:
    for name, expected_positions in (("tiny_pythia", 512), ("tiny_t5", None)):
        _, tokenizer, model = build_model(f"model={name}")
        assert model.config.vocab_size == len(tokenizer)
        assert max_positions(model.config) == expected_positions
        assert all(p.dtype == torch.float32 for p in model.parameters())


def test_the_ffn_layout_of_a_wrong_architecture_is_reported() -> None:
    _, _, t5 = build_model("model=tiny_t5")
    pythia_layout = compose_train("model=pythia_70m", "paths.output_dir=/x").model.ffn
    with pytest.raises(UserError, match="no FFN blocks match"):
        find_ffn_sublayers(t5, pythia_layout)


def test_a_local_path_that_does_not_exist_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=f"cannot load tokenizer from '{tmp_path / 'nope'}'"):
        build_model("model=pythia_70m", f"model.name_or_path={tmp_path / 'nope'}")


@pytest.mark.slow
def test_train_cli_trains_a_model_saved_to_a_local_directory(tmp_path: Path) -> None:
    saved, _ = save_like_the_hub(tmp_path / "pythia", "model=tiny_pythia")
    run_dir = tmp_path / "run"
    result = run_script(
        "train.py", "model=pythia_70m", f"model.name_or_path={saved}", f"hydra.run.dir={run_dir}",
        *FAST, "trainer.max_steps=2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
