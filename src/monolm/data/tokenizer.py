"""A byte-level BPE tokenizer trained on the bundled text, for the tiny models (no download).

It is saved as an ordinary Hugging Face tokenizer directory and loaded back with
`AutoTokenizer.from_pretrained`, the same call that loads a hub tokenizer. The directory is keyed
by a hash of the training text and settings, so a change of either builds a new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import tokenizers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from monolm.data.bundled import bundled_files

VOCAB_SIZE = 2048
PAD, EOS, UNK = "<pad>", "</s>", "<unk>"  # ids 0, 1, 2 as in T5
SOURCES = {"tiny_lm": ["text"], "tiny_summarization": ["article", "highlights"]}


def _training_files() -> list[Path]:
    return [Path(bundled_files(name)["train"]) for name in SOURCES]


def _texts() -> Iterator[str]:
    for name, fields in SOURCES.items():
        with open(bundled_files(name)["train"], encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                for field in fields:
                    yield row[field]


def _fingerprint(family: str) -> str:
    digest = hashlib.sha256(f"{VOCAB_SIZE}|{family}|{tokenizers.__version__}".encode())
    for path in _training_files():
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def train_bundled_tokenizer(family: str) -> PreTrainedTokenizerFast:
    """Train the BPE; seq2seq tokenizers append `</s>` to every sequence like T5's."""
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[PAD, EOS, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_texts(), trainer=trainer)
    if family == "seq2seq":
        eos_id = tokenizer.token_to_id(EOS)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, eos_id)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        bos_token=EOS if family == "causal" else None,
        model_max_length=1_000_000,
    )


def bundled_tokenizer_dir(cache_dir: Path, family: str) -> Path:
    """The saved tokenizer directory, trained on first use (written atomically)."""
    target = cache_dir / "tokenizers" / f"bundled-{family}-{_fingerprint(family)}"
    if (target / "tokenizer.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".staging-"))
    try:
        train_bundled_tokenizer(family).save_pretrained(staging)
        try:
            os.replace(staging, target)
        except OSError:  # another process finished first: theirs is identical
            if not (target / "tokenizer.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
