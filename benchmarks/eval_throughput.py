"""Tokens/s of the rolling-perplexity evaluator versus a minimal direct Hugging Face loop.

Both score every token of the same documents with the same model and the same lm-eval rolling
windows (disjoint windows of --max-length, the first token predicted from the prefix token):

- evaluator: `monolm.metrics.likelihood.document_loglikelihoods`, all windows of all documents
  batched together, longest first;
- direct: one document at a time, one window at a time, `model(input_ids).logits` ->
  `log_softmax` -> `gather`, under `torch.inference_mode()`.

The two must agree on the total log-likelihood (checked before timing). They run alternately in
one process; the median tokens/s of each and their ratio are printed. Target: ratio >= 1.0 on
CPU (batching should win); on GPU it should win by much more. Default: tiny_pythia on the
bundled tiny_lm validation texts; Hydra overrides select another model
(e.g. `model=pythia_160m`, or `model.architecture.num_hidden_layers=8`).

    python benchmarks/eval_throughput.py [--max-length 128] [--batch-size 16] [--repeats 5]
        [--device cpu|cuda] [--autocast none|bf16] [overrides...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir

from monolm.config.schema import register_configs
from monolm.data.bundled import bundled_files
from monolm.metrics.likelihood import document_loglikelihoods, prefix_token_id
from monolm.models.loading import load_model, load_model_config, load_tokenizer

REPO = Path(__file__).resolve().parents[1]


def direct_loglikelihood(model, token_lists, prefix: int, max_length: int, autocast) -> float:
    """The plain loop: lm-eval's disjoint windows, one unpadded forward per window."""
    device = next(model.parameters()).device
    total = 0.0
    with torch.inference_mode(), autocast():
        for tokens in token_lists:
            sequence = [prefix, *tokens]
            scored = 0
            while scored < len(tokens):
                end = min(scored + max_length, len(tokens))
                begin = max(0, end - max_length)
                inputs = torch.tensor([sequence[begin:end]], device=device)
                targets = torch.tensor(sequence[scored + 1 : end + 1], device=device)
                logits = model(inputs).logits[0, -len(targets) :].float()
                logprobs = logits.log_softmax(-1).gather(1, targets[:, None])
                total += logprobs.sum().item()
                scored = end
    return total


def timed(fn) -> tuple[float, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--autocast", choices=["none", "bf16"], default=None,
                        help="default: bf16 on cuda, none on cpu")  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="train.py config overrides")
    args = parser.parse_args()
    autocast_name = args.autocast or ("bf16" if args.device.startswith("cuda") else "none")
    dtype = torch.bfloat16 if autocast_name == "bf16" else None

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["model=tiny_pythia", f"paths.output_dir={tempfile.mkdtemp()}",
                       *args.overrides],
        )  # fmt: skip
    tokenizer = load_tokenizer(cfg.model, cfg.paths.cache_dir)
    L.seed_everything(cfg.seed, verbose=False)
    model = load_model(cfg.model, load_model_config(cfg.model, tokenizer)).to(args.device).eval()

    with open(bundled_files("tiny_lm")["validation"], encoding="utf-8") as handle:
        texts = [json.loads(line)["text"] for line in handle]
    token_lists = tokenizer(texts)["input_ids"]
    n_tokens = sum(map(len, token_lists))
    prefix = prefix_token_id(tokenizer)

    def autocast():
        return torch.autocast(torch.device(args.device).type, dtype=dtype, enabled=bool(dtype))

    def evaluator() -> float:
        scores = document_loglikelihoods(
            model, tokenizer, texts, args.max_length, args.batch_size, autocast_dtype=dtype
        )
        return sum(s.loglikelihood for s in scores)

    def direct() -> float:
        return direct_loglikelihood(model, token_lists, prefix, args.max_length, autocast)

    ours, theirs = evaluator(), direct()  # warm-up, and the agreement check
    tolerance = 1e-5 if dtype is None else 1e-2
    agree = abs(ours - theirs) <= tolerance * abs(theirs)
    print(f"total log-likelihood: evaluator {ours:.4f}  direct {theirs:.4f}  agree={agree}")
    if not agree:
        raise SystemExit("the evaluator and the direct loop disagree: not timing")

    rates: dict[str, list[float]] = {"evaluator": [], "direct": []}
    for repeat in range(args.repeats):
        for name, fn in (("evaluator", evaluator), ("direct", direct)):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            _, seconds = timed(fn)
            rates[name].append(n_tokens / seconds)
        print(
            f"repeat {repeat}: direct {rates['direct'][-1]:,.0f} tok/s  "
            f"evaluator {rates['evaluator'][-1]:,.0f} tok/s",
            flush=True,
        )
    evaluator_rate = statistics.median(rates["evaluator"])
    direct_rate = statistics.median(rates["direct"])
    print(
        f"model={cfg.model.name} docs={len(texts)} tokens={n_tokens} max_length={args.max_length} "
        f"batch={args.batch_size} device={args.device} autocast={autocast_name} "
        f"threads={torch.get_num_threads()}"
    )
    print(
        f"median tok/s: direct {direct_rate:,.0f}  evaluator {evaluator_rate:,.0f}  "
        f"ratio {evaluator_rate / direct_rate:.2f}  (target >= 1.0)"
    )


if __name__ == "__main__":
    sys.exit(main())
