"""Per-layer representations for CKA: one entry per block, the residual stream after it, pooled
over exactly the non-padding positions, whatever the batch."""

from __future__ import annotations

import os

import numpy as np
import pytest

from monolm.models.hidden_states import example_of_rows, layer_states
from monolm.subjects import load_subject, resolve_model
from tests.helpers import CONF

TEXTS = ["the cat sat on the mat", "a short one", "rain is expected on Tuesday in the north"]


def subject(option: str):
    return load_subject(resolve_model(CONF, option), cache_dir=os.environ["MONOLM_CACHE"])


@pytest.mark.parametrize("option", ["tiny_pythia", "tiny_llama"])
def test_a_causal_model_gives_one_pooled_row_per_text_per_layer(option: str) -> None:
    loaded = subject(option)
    states = layer_states(loaded.model, loaded.tokenizer, TEXTS, batch_size=3, max_length=64)
    layers = loaded.model.config.num_hidden_layers
    assert list(states) == [f"layer.{i}" for i in range(layers)]
    assert all(s.shape == (3, loaded.model.config.hidden_size) for s in states.values())
    assert all(s.dtype == np.float64 for s in states.values())
    one_by_one = layer_states(loaded.model, loaded.tokenizer, TEXTS, batch_size=1, max_length=64)
    for name in states:  # padding never enters the mean
        np.testing.assert_allclose(states[name], one_by_one[name], atol=1e-5)


def test_token_pooling_keeps_every_non_padding_position() -> None:
    loaded = subject("tiny_pythia")
    states = layer_states(
        loaded.model, loaded.tokenizer, TEXTS, batch_size=2, max_length=64, pooling="tokens"
    )
    tokens = sum(len(loaded.tokenizer(t)["input_ids"]) for t in TEXTS)
    assert all(s.shape[0] == tokens for s in states.values())


def test_t5_gives_its_encoder_and_with_targets_its_decoder_layers() -> None:
    loaded = subject("tiny_t5")
    encoder_only = layer_states(loaded.model, loaded.tokenizer, TEXTS, batch_size=2,
                                max_length=64)  # fmt: skip
    layers = loaded.model.config.num_layers
    assert list(encoder_only) == [f"encoder.{i}" for i in range(layers)]
    both = layer_states(loaded.model, loaded.tokenizer, TEXTS, batch_size=2, max_length=64,
                        targets=["a cat", "one", "rain"])  # fmt: skip
    decoder = [name for name in both if name.startswith("decoder.")]
    assert len(decoder) == loaded.model.config.num_decoder_layers
    assert all(both[name].shape[0] == 3 for name in decoder)


def test_an_unknown_pooling_is_refused() -> None:
    loaded = subject("tiny_pythia")
    with pytest.raises(ValueError, match="mean, tokens"):
        layer_states(loaded.model, loaded.tokenizer, TEXTS, 2, 64, pooling="max")


def test_each_token_row_knows_its_text() -> None:
    """Intervals resample texts, not tokens: the rows of one text stay together."""
    loaded = subject("tiny_pythia")
    states = layer_states(
        loaded.model, loaded.tokenizer, TEXTS, batch_size=2, max_length=64, pooling="tokens"
    )
    rows = example_of_rows(loaded.tokenizer, TEXTS, max_length=64, pooling="tokens")
    assert len(rows) == states["layer.0"].shape[0]
    assert list(np.bincount(rows)) == [len(loaded.tokenizer(t)["input_ids"]) for t in TEXTS]
    assert list(example_of_rows(loaded.tokenizer, TEXTS, 64)) == [0, 1, 2]
