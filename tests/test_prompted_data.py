"""Prompted tasks (classification, question answering) as training data: the model is trained on
exactly the answer tokens that evaluation scores; the bundled tiny_paraphrase and tiny_squad_v2
sets have the schema, sizes and balance of GLUE MRPC and SQuAD v2; tiny runs train on them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset
from transformers import AutoTokenizer

from monolm.data import prompts
from monolm.data.bundled import bundled_files
from monolm.data.datamodule import IGNORE_INDEX, PromptedCausalCollator, TextDataModule
from monolm.data.sources import load_splits, split_rows
from monolm.data.tokenize import tokenize_prompted
from monolm.data.tokenizer import bundled_tokenizer_dir
from monolm.errors import UserError
from monolm.metrics.likelihood import encode_requests
from monolm.training.validate import validate_train_config
from tests.helpers import FAST, compose_train

OUT = "paths.output_dir=/tmp/unused"
MODEL_OF_FAMILY = {"causal": "tiny_pythia", "seq2seq": "tiny_t5"}


@pytest.fixture(scope="module")
def tokenizers(isolated_caches: Path) -> dict[str, Any]:
    cache = isolated_caches / "monolm"
    return {
        family: AutoTokenizer.from_pretrained(bundled_tokenizer_dir(cache, family))
        for family in ("causal", "seq2seq")
    }


def bundled_rows(name: str, split: str = "train") -> list[dict[str, Any]]:
    with open(bundled_files(name)[split], encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def dataset_cfg(family: str, dataset: str, *overrides: str) -> Any:
    return compose_train(f"model={MODEL_OF_FAMILY[family]}", f"dataset={dataset}", OUT, *overrides)


def scored_request(cfg: Any, row: dict[str, Any], family: str) -> tuple[str, str]:
    """The (context, continuation) pair evaluation scores for a row."""
    answer = prompts.training_target(cfg.dataset, row)
    return prompts.prompt_text(cfg.dataset, row), prompts.continuation(cfg.dataset, answer, family)


# --- causal: prompt tokens ignored, answer tokens + EOS trained --------------------------------


@pytest.mark.parametrize("dataset", ["tiny_paraphrase", "tiny_squad_v2"])
def test_causal_labels_are_the_scored_answer_tokens_and_eos(tokenizers, dataset: str) -> None:
    tokenizer, cfg = tokenizers["causal"], dataset_cfg("causal", dataset)
    rows = bundled_rows(dataset)[:12]  # QA: answerable and unanswerable ("unanswerable") rows
    encoded = tokenize_prompted(Dataset.from_list(rows), tokenizer, cfg.dataset, "causal")
    requests = [scored_request(cfg, row, "causal") for row in rows]
    scored = encode_requests(tokenizer, requests, seq2seq=False)
    eos = tokenizer.eos_token_id
    for example, (context, continuation) in zip(encoded, scored, strict=True):
        assert example["input_ids"] == context + continuation + [eos]
        assert example["labels"] == [IGNORE_INDEX] * len(context) + continuation + [eos]
    if dataset == "tiny_squad_v2":
        answers = {answer for _, answer in requests}
        assert " unanswerable" in answers and len(answers) > 2


def test_left_truncation_keeps_the_answer_and_the_end_of_the_prompt(tokenizers) -> None:
    tokenizer = tokenizers["causal"]
    cfg = dataset_cfg("causal", "tiny_squad_v2", "dataset.max_length=40")
    row = next(r for r in bundled_rows("tiny_squad_v2") if r["answers"]["text"])
    [(context, continuation)] = encode_requests(
        tokenizer, [scored_request(cfg, row, "causal")], seq2seq=False
    )
    assert len(context) + len(continuation) + 1 > 40
    example = tokenize_prompted(Dataset.from_list([row]), tokenizer, cfg.dataset, "causal")[0]
    answer = [*continuation, tokenizer.eos_token_id]
    kept = 40 - len(answer)
    assert example["input_ids"] == context[-kept:] + answer
    assert example["labels"] == [IGNORE_INDEX] * kept + answer
    assert tokenizer.decode(example["input_ids"][:kept]).endswith(f"{row['question']}\n\nAnswer:")


def test_a_long_answer_is_cut_to_max_target_length_eos_included(tokenizers) -> None:
    tokenizer = tokenizers["causal"]
    cfg = dataset_cfg("causal", "tiny_squad_v2", "dataset.max_target_length=3")
    rows = bundled_rows("tiny_squad_v2")
    scored = encode_requests(tokenizer, [scored_request(cfg, r, "causal") for r in rows], False)
    row, (_, continuation) = next(
        (r, s) for r, s in zip(rows, scored, strict=True) if len(s[1]) > 3
    )
    example = tokenize_prompted(Dataset.from_list([row]), tokenizer, cfg.dataset, "causal")[0]
    assert example["labels"][-3:] == [*continuation[:2], tokenizer.eos_token_id]
    assert sum(label != IGNORE_INDEX for label in example["labels"]) == 3


def test_a_label_word_that_max_target_length_would_cut_is_an_error(tokenizers) -> None:
    long_word = "'yes, the two sentences say exactly the same thing'"
    cfg = dataset_cfg("causal", "tiny_paraphrase", f"dataset.choices=[no,{long_word}]")
    rows = Dataset.from_list(bundled_rows("tiny_paraphrase")[:4])
    with pytest.raises(UserError, match=r"dataset\.max_target_length=8: set it to at least"):
        tokenize_prompted(rows, tokenizers["causal"], cfg.dataset, "causal")


# --- seq2seq: the prompt is the source, the answer (no delimiter) + </s> the target ----------


def test_seq2seq_pairs_are_prompt_source_and_answer_target(tokenizers) -> None:
    tokenizer, cfg = tokenizers["seq2seq"], dataset_cfg("seq2seq", "tiny_squad_v2")
    rows = bundled_rows("tiny_squad_v2")[:12]
    encoded = tokenize_prompted(Dataset.from_list(rows), tokenizer, cfg.dataset, "seq2seq")
    requests = [scored_request(cfg, row, "seq2seq") for row in rows]
    scored = encode_requests(tokenizer, requests, seq2seq=True)
    for example, (prompt, answer), (context, continuation) in zip(
        encoded, requests, scored, strict=True
    ):
        assert not answer.startswith(" ")  # no delimiter for a seq2seq target
        assert example["input_ids"] == tokenizer(prompt)["input_ids"] == context
        assert example["input_ids"][-1] == tokenizer.eos_token_id
        assert example["labels"] == tokenizer(text_target=answer)["input_ids"]
        assert example["labels"] == [*continuation, tokenizer.eos_token_id]


def test_a_long_seq2seq_prompt_keeps_its_end(tokenizers) -> None:
    tokenizer = tokenizers["seq2seq"]
    cfg = dataset_cfg("seq2seq", "tiny_squad_v2", "dataset.max_length=30")
    row = bundled_rows("tiny_squad_v2")[0]
    full = tokenizer(prompts.prompt_text(cfg.dataset, row))["input_ids"]
    example = tokenize_prompted(Dataset.from_list([row]), tokenizer, cfg.dataset, "seq2seq")[0]
    assert len(full) > 30 and example["input_ids"] == full[-30:]  # the question and </s> stay


# --- batches -----------------------------------------------------------------------------------


def test_the_causal_collator_right_pads_to_the_longest_row() -> None:
    rows = [
        {"input_ids": torch.tensor([5, 6, 7, 8]), "labels": torch.tensor([-100, -100, 7, 8])},
        {"input_ids": torch.tensor([9, 10]), "labels": torch.tensor([-100, 10])},
    ]
    batch = PromptedCausalCollator(pad_token_id=0)(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [9, 10, 0, 0]]
    assert batch["labels"].tolist() == [[-100, -100, 7, 8], [-100, 10, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]


@pytest.mark.parametrize("family", ["causal", "seq2seq"])
def test_the_datamodule_batches_prompted_rows_for_the_family(tokenizers, family: str) -> None:
    cfg = dataset_cfg(family, "tiny_paraphrase", "data.eval_batch_size=4")
    module = TextDataModule(cfg.dataset, cfg.data, tokenizers[family], cfg.seed)
    assert module.family == family  # read from the config the dataset belongs to
    module.build()
    batch = next(iter(module.val_dataloader()))
    trained = batch["labels"] != IGNORE_INDEX
    assert (trained.sum(dim=1) <= cfg.dataset.max_target_length).all()
    if family == "causal":
        assert batch["labels"].shape == batch["input_ids"].shape
        assert not trained[:, 0].any()  # the prompt comes first and is never a label


# --- held-out split and bad input ----------------------------------------------------------------


def test_split_seed_fixes_the_held_out_examples_whatever_the_run_seed() -> None:
    cfg = dataset_cfg("causal", "tiny_paraphrase")
    assert cfg.dataset.validation_split is None and cfg.dataset.split_seed == 0

    def held_out(ds_cfg: Any, seed: int) -> list[int]:
        return load_splits(ds_cfg, seed)[1]["idx"]

    assert held_out(cfg.dataset, seed=1) == held_out(cfg.dataset, seed=2)
    assert split_rows(cfg.dataset, None, 3, None)["idx"] == held_out(cfg.dataset, seed=1)
    unfixed = dataset_cfg("causal", "tiny_paraphrase", "dataset.split_seed=null").dataset
    assert held_out(unfixed, seed=1) != held_out(unfixed, seed=2)
    assert split_rows(unfixed, None, 2, None)["idx"] == held_out(unfixed, seed=2)


def one_line_error(match: str) -> Any:
    return pytest.raises(UserError, match=match)


def test_a_field_the_prompt_names_but_the_data_lacks_is_named() -> None:
    cfg = dataset_cfg("causal", "tiny_paraphrase", "dataset.prompt='{sentence1} / {sentence3}'")
    with one_line_error("has no field 'sentence3'; its fields:") as error:
        load_splits(cfg.dataset, seed=0)
    assert "\n" not in str(error.value)


def test_a_label_outside_the_choices_is_named(tmp_path: Path) -> None:
    rows = bundled_rows("tiny_paraphrase")[:20]
    rows[7]["label"] = -1  # as GLUE's hidden test labels
    for split in ("train", "validation"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    files = f"{{train:{tmp_path}/train.jsonl,validation:{tmp_path}/validation.jsonl}}"
    cfg = dataset_cfg(
        "causal",
        "tiny_paraphrase",
        f"dataset.data_files={files}",
        "dataset.validation_split=validation",
    )
    with one_line_error(r"train split: label=-1 is not a label in \[0, 2\)") as error:
        load_splits(cfg.dataset, seed=0)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (("dataset.task=translation",), "dataset.task='translation' is not an option: .*valid: "),
        (
            ("dataset.choices=[yes]",),
            r"needs the verbalised labels \(at least two\), got \['yes'\]",
        ),
        (("dataset.choices=[yes,yes]",), "must be distinct, non-empty label words"),
        (("dataset.positive_label=2",), "dataset.positive_label=2 is not a label id: valid: 0, 1"),
        (("dataset.prompt=''",), "dataset.prompt is empty"),
        (("dataset.prompt='Same for all:'",), "names no field of the data"),
        (("dataset.prompt='{sentence1} {}'",), "positional field"),
        (("dataset.max_target_length=1",), "dataset.max_target_length=1 must be >= 2"),
        (("dataset.max_length=8",), "dataset.max_length=8 must exceed dataset.max_target_length=8"),
        (("dataset.split_seed=-1",), "dataset.split_seed=-1 must be >= 0"),
    ],
)
def test_bad_prompted_settings_fail_before_anything_loads(overrides, match: str) -> None:
    cfg = dataset_cfg("causal", "tiny_paraphrase", *overrides)
    with one_line_error(match) as error:
        validate_train_config(cfg)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("family", ["causal", "seq2seq"])
@pytest.mark.parametrize("dataset", ["tiny_paraphrase", "tiny_squad_v2"])
def test_every_family_trains_on_prompted_tasks(family: str, dataset: str) -> None:
    validate_train_config(dataset_cfg(family, dataset))


def test_each_family_keeps_its_unprompted_task() -> None:
    with one_line_error("training supports summarization, classification, question_answering"):
        validate_train_config(dataset_cfg("seq2seq", "tiny_lm"))
    with one_line_error("training supports language_modeling, classification, question_answering"):
        validate_train_config(dataset_cfg("causal", "tiny_summarization"))


def test_a_question_answering_set_needs_a_no_answer_text() -> None:
    cfg = dataset_cfg("causal", "tiny_squad_v2", "dataset.no_answer=' '")
    with one_line_error("dataset.no_answer is empty"):
        validate_train_config(cfg)


# --- the bundled sets --------------------------------------------------------------------------


@pytest.mark.parametrize(("split", "size"), [("train", 400), ("validation", 100)])
def test_tiny_paraphrase_is_mrpc_shaped_and_two_thirds_positive(split: str, size: int) -> None:
    rows = bundled_rows("tiny_paraphrase", split)
    assert len(rows) == size
    for index, row in enumerate(rows):
        assert list(row) == ["idx", "sentence1", "sentence2", "label"]
        assert row["idx"] == index and row["label"] in (0, 1)
        assert row["sentence1"] != row["sentence2"]  # paraphrases are rewritten too
    assert 0.6 <= sum(row["label"] for row in rows) / size <= 0.75


@pytest.mark.parametrize(("split", "size"), [("train", 400), ("validation", 100)])
def test_tiny_squad_v2_is_squad_shaped_and_half_unanswerable(split: str, size: int) -> None:
    rows = bundled_rows("tiny_squad_v2", split)
    assert len(rows) == size and len({row["id"] for row in rows}) == size
    most = 1 if split == "train" else 3
    for row in rows:
        assert list(row) == ["id", "title", "context", "question", "answers"]
        assert len(row["id"]) == 24 and int(row["id"], 16) >= 0
        assert 40 <= len(row["context"].split()) <= 90 and row["question"].endswith("?")
        texts, starts = row["answers"]["text"], row["answers"]["answer_start"]
        assert len(texts) == len(starts) <= most
        for text, start in zip(texts, starts, strict=True):
            assert row["context"][start : start + len(text)] == text
    unanswerable = sum(not row["answers"]["text"] for row in rows) / size
    assert 0.4 <= unanswerable <= 0.6
    if split == "validation":  # several gold answers, as in SQuAD dev
        assert any(len(row["answers"]["text"]) > 1 for row in rows)


@pytest.mark.parametrize("family", ["causal", "seq2seq"])
@pytest.mark.parametrize("dataset", ["tiny_paraphrase", "tiny_squad_v2"])
def test_bundled_prompts_and_answers_fit_max_length(tokenizers, family: str, dataset: str) -> None:
    tokenizer, cfg = tokenizers[family], dataset_cfg(family, dataset)
    rows = bundled_rows(dataset, "train") + bundled_rows(dataset, "validation")
    requests = [scored_request(cfg, row, family) for row in rows]
    encoded = encode_requests(tokenizer, requests, seq2seq=family == "seq2seq")
    longest = max(len(c) + len(x) + 1 for c, x in encoded)
    assert longest <= cfg.dataset.max_length  # nothing is truncated
    assert max(len(x) + 1 for _, x in encoded) <= cfg.dataset.max_target_length
    unknown = tokenizer.unk_token_id
    assert all(unknown not in c + x for c, x in encoded)  # byte-level: every new word encodes


# --- tiny end-to-end runs -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "dataset"),
    [
        ("tiny_pythia", "tiny_paraphrase"),
        ("tiny_pythia", "tiny_squad_v2"),
        ("tiny_t5", "tiny_squad_v2"),
    ],
)
def test_a_tiny_run_trains_on_a_prompted_set(tmp_path: Path, model: str, dataset: str) -> None:
    from monolm.training.run import train

    cfg = compose_train(
        f"model={model}", f"dataset={dataset}", *FAST, "trainer.max_steps=4",
        "trainer.val_check_interval=null", "dataset.max_train_examples=16",
        f"paths.output_dir={tmp_path}",
    )  # fmt: skip
    metrics = train(cfg)
    assert math.isfinite(metrics["val/loss"]) and metrics["val/loss"] > 0
