"""ROUGE F1 per example, scored by Google's `rouge-score`: the implementation papers compare to.

We depend on the reference package rather than re-implement it: its tokenizer is part of the
metric. It lowercases, turns every character outside [a-z0-9] into a separator ("3.5" -> "3",
"5"; "state-of-the-art" -> four tokens; "café" -> "caf"; text in a non-Latin script has no
tokens at all) and, with stemming, Porter-stems tokens longer than 3 characters. A text with no
tokens (empty, punctuation only) scores 0 against anything, itself included.

`rougeLsum` is summary-level LCS over sentences, and rouge-score takes sentences to be the lines
of the text: on text without newlines it equals `rougeL`. The field's Hugging Face scripts put
one sentence per line with `nltk.sent_tokenize` (punkt) first; the earlier pipeline did not, so
its numbers were `rougeL` under another name (docs/science.md, section 3). punkt needs a
download, so `split_sentences` stands in for it here: offline, deterministic, and close on
news-style text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from nltk.stem import porter
from rouge_score import rouge_scorer, tokenize, tokenizers

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")

# Sentence-final punctuation, then closing quotes/brackets, then the whitespace we cut at.
_BOUNDARY = re.compile(r"[.!?]+[\"'”’»)\]]*(\s+)")
_OPENERS = frozenset("\"'“‘«([")
_LAST_WORD = re.compile(r"\S+\Z")
# Titles that end in "." mid-sentence. Kept small on purpose: "etc." and "Inc." end sentences
# too often to be worth guessing.
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "gen", "rep"})
# "J." (an initial) and dotted forms like "U.S", "e.g", "i.e" (the final "." is the boundary).
_INITIALS = re.compile(r"[A-Z]|(?:[A-Za-z]\.)+[A-Za-z]")


def _is_abbreviation(line: str, punct_start: int, punct: str) -> bool:
    """Whether the "." at `punct_start` most likely closes an abbreviation, not a sentence."""
    if punct != ".":
        return False
    last = _LAST_WORD.search(line, max(0, punct_start - 40), punct_start)
    if last is None:
        return False
    word = last.group().lstrip("\"'“‘«([")
    return word.lower() in _ABBREVIATIONS or _INITIALS.fullmatch(word) is not None


def _split_line(line: str) -> list[str]:
    sentences, start = [], 0
    for match in _BOUNDARY.finditer(line):
        after = match.end(1)
        if after >= len(line):
            break
        following = line[after]
        if not (following.isupper() or following.isdigit() or following in _OPENERS):
            continue
        punct = match.group().rstrip().rstrip("\"'”’»)]")
        if _is_abbreviation(line, match.start(), punct):
            continue
        sentences.append(line[start : match.start(1)])
        start = after
    sentences.append(line[start:])
    return sentences


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, for `rougeLsum`: a small stand-in for `nltk.sent_tokenize`.

    Existing line breaks are boundaries. Within a line, a boundary is whitespace after `.`, `!`
    or `?` (and any closing quotes or brackets) when the next character is an uppercase letter, a
    digit or an opening quote/bracket, unless the "." closes a title ("Mr.", "Dr.") or an initial
    ("J.", "U.S."). Cuts are only ever made at whitespace, so the text's ROUGE tokens are unchanged
    and only `rougeLsum` sees the split.
    """
    return [
        sentence.strip()
        for line in text.splitlines()
        for sentence in _split_line(line)
        if sentence.strip()
    ]


class _CachedStemmer:
    """Porter stemming memoised per word: stemming is about half of rouge-score's time otherwise,
    and summaries repeat words. Same stemmer, same outputs."""

    def __init__(self) -> None:
        self.stem = functools.lru_cache(maxsize=1 << 16)(porter.PorterStemmer().stem)


class _Tokenizer(tokenizers.Tokenizer):
    """rouge-score's own tokenize function (as its DefaultTokenizer uses it), cached stemmer."""

    def __init__(self, use_stemmer: bool) -> None:
        self._stemmer = _CachedStemmer() if use_stemmer else None

    def tokenize(self, text: str) -> list[str]:
        return tokenize.tokenize(text, self._stemmer)


@functools.cache
def _scorer(use_stemmer: bool) -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=_Tokenizer(use_stemmer))


def _one_sentence_per_line(text: str) -> str:
    return "\n".join(split_sentences(text))


def rouge_per_example(
    predictions: Sequence[str], references: Sequence[str], use_stemmer: bool = True
) -> list[dict[str, float]]:
    """F1 in [0, 1] (not x100) of each of `ROUGE_TYPES`, one dict per (prediction, reference).

    Both texts are passed one sentence per line. rouge1/2/L are scored on the text as given: the
    splitter only cuts at whitespace, which the tokenizer discards anyway, so their tokens are
    the same; rougeLsum sees the sentences. One scorer call per example computes all four.
    """
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError("predictions and references must be sequences of strings, not a string")
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references: they must pair up"
        )
    scorer = _scorer(use_stemmer)
    results = []
    for prediction, reference in zip(predictions, references, strict=True):
        # rouge-score's argument order is (target, prediction); rougeLsum is not symmetric.
        scores = scorer.score(_one_sentence_per_line(reference), _one_sentence_per_line(prediction))
        results.append({name: float(scores[name].fmeasure) for name in ROUGE_TYPES})
    return results
