"""Data: exact packing, label padding, loader order and mid-epoch restore, local files."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import AutoTokenizer

from monolm.data.bundled import BUNDLED_ROOT
from monolm.data.datamodule import IGNORE_INDEX, Seq2SeqCollator
from monolm.data.loader import EpochShuffleSampler, ResumableDataLoader, SkippableBatchSampler
from monolm.data.sources import load_splits
from monolm.data.tokenize import pack_for_causal_lm, tokenize_for_seq2seq
from monolm.data.tokenizer import bundled_tokenizer_dir
from monolm.errors import UserError
from tests.helpers import compose_train


@pytest.fixture(scope="module")
def tokenizers(isolated_caches: Path) -> dict[str, object]:
    cache = isolated_caches / "monolm"
    return {
        family: AutoTokenizer.from_pretrained(bundled_tokenizer_dir(cache, family))
        for family in ("causal", "seq2seq")
    }


def test_bundled_data_regenerates_byte_for_byte(tmp_path: Path) -> None:
    runpy.run_path(str(BUNDLED_ROOT / "generate.py"))["generate"](tmp_path)
    for shipped in BUNDLED_ROOT.glob("*/*.jsonl"):
        assert (tmp_path / shipped.parent.name / shipped.name).read_bytes() == shipped.read_bytes()


def test_bundled_tokenizer_is_a_normal_hf_tokenizer(tokenizers) -> None:
    causal, seq2seq = tokenizers["causal"], tokenizers["seq2seq"]
    text = "Rain is expected in Riverton on Sunday, with 12 mm by noon."
    assert causal.decode(causal(text)["input_ids"]) == text
    assert seq2seq(text)["input_ids"][-1] == seq2seq.eos_token_id  # T5-style </s>
    assert causal(text)["input_ids"][-1] != causal.eos_token_id
    assert (seq2seq.pad_token_id, seq2seq.eos_token_id) == (0, 1)


def test_causal_packing_is_exact(tokenizers) -> None:
    tokenizer = tokenizers["causal"]
    texts = [f"Document {i} says {'more ' * i}words." for i in range(30)]
    packed = pack_for_causal_lm(Dataset.from_dict({"text": texts}), tokenizer, "text", 16)
    stream = [t for text in texts for t in (*tokenizer(text)["input_ids"], tokenizer.eos_token_id)]
    assert len(packed) == len(stream) // 16
    assert [t for row in packed["input_ids"] for t in row] == stream[: len(packed) * 16]


def test_seq2seq_sources_get_the_prefix_and_padded_labels_are_ignored(tokenizers) -> None:
    tokenizer = tokenizers["seq2seq"]
    ds = Dataset.from_dict(
        {"article": ["A long article " * 50, "Short one."], "highlights": ["Sum.", "A b c d e f."]}
    )
    encoded = tokenize_for_seq2seq(ds, tokenizer, "article", "highlights", "summarize: ", 32, 4)
    assert len(encoded[0]["input_ids"]) == 32 and len(encoded[1]["labels"]) <= 4
    prefix = tokenizer("summarize:", add_special_tokens=False)["input_ids"]
    assert encoded[1]["input_ids"][: len(prefix)] == prefix
    batch = Seq2SeqCollator(tokenizer.pad_token_id)(list(encoded.with_format("torch")))
    short_label_len = len(encoded[0]["labels"])
    assert (batch["labels"][0, short_label_len:] == IGNORE_INDEX).all()
    assert batch["attention_mask"][1].sum() == len(encoded[1]["input_ids"])
    assert (batch["input_ids"][1, len(encoded[1]["input_ids"]) :] == tokenizer.pad_token_id).all()


def test_order_is_a_pure_function_of_seed_epoch_and_rank() -> None:
    def order(seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[int]:
        sampler = EpochShuffleSampler(103, seed=seed, rank=rank, world_size=world)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(1, 0) == order(1, 0) and order(1, 0) != order(1, 1) != order(2, 1)
    shards = [order(1, 3, rank, 4) for rank in range(4)]
    assert all(len(s) == 25 for s in shards)
    assert len({i for s in shards for i in s}) == 100  # disjoint, equal, tail dropped


def test_loader_restored_mid_epoch_continues_with_the_next_batch() -> None:
    data = torch.arange(40).unsqueeze(1)

    def loader() -> ResumableDataLoader:
        sampler = EpochShuffleSampler(len(data), seed=5)
        return ResumableDataLoader(data, batch_sampler=SkippableBatchSampler(sampler, 4))

    first = loader()
    first.epoch_sampler.set_epoch(2)
    straight = [b.tolist() for b in first]
    iterator = iter(first)
    for _ in range(3):
        next(iterator)
    state = first.state_dict()
    assert state == {"epoch": 2, "batches_consumed": 3}

    restored = loader()
    restored.load_state_dict(state)
    assert [b.tolist() for b in restored] == straight[3:]
    assert restored.state_dict() == {"epoch": 2, "batches_consumed": 10}


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_local_files_go_through_the_same_loader(tmp_path: Path, suffix: str) -> None:
    rows = [{"text": f"row {i}"} for i in range(10)]
    for split in ("train", "validation"):
        path = tmp_path / f"{split}.{suffix}"
        if suffix == "jsonl":
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        else:
            Dataset.from_list(rows).to_parquet(str(path))
    cfg = compose_train(
        "dataset.bundled=null",
        f"dataset.data_files={{train:{tmp_path}/train.{suffix},validation:{tmp_path}/validation.{suffix}}}",
        "dataset.max_train_examples=7",
        "paths.output_dir=/x",
    )
    train, validation = load_splits(cfg.dataset, seed=0)
    assert (len(train), len(validation)) == (7, 10)
    assert train[0]["text"] == "row 0"


def test_validation_is_held_out_from_train_when_there_is_no_validation_split() -> None:
    cfg = compose_train(
        "dataset.validation_split=null", "dataset.validation_fraction=0.1", "paths.output_dir=/x"
    )
    train, validation = load_splits(cfg.dataset, seed=0)
    assert (len(train), len(validation)) == (360, 40)
    assert not set(train["text"]) & set(validation["text"])


def test_a_missing_field_is_named() -> None:
    cfg = compose_train("dataset.text_field=body", "paths.output_dir=/x")
    with pytest.raises(UserError, match="has no field 'body'; its fields: \\['text'\\]"):
        load_splits(cfg.dataset, seed=0)
