"""Tokens/s of the rolling-perplexity evaluator versus a minimal direct Hugging Face loop.

Both score every token of the same documents with the same model and the same lm-eval rolling
windows (disjoint windows of --max-length, the first token predicted from the prefix token):

- evaluator: the path `evaluate.py` takes for a perplexity task. The model is loaded as a
  `Subject` (`resolve_model` + `load_subject`, moved to the `Placement`'s device), a real
  `TaskContext.of(subject, cfg, placement.autocast_dtype)` is built from the composed
  evaluate config, and `monolm.metrics.likelihood.document_loglikelihoods` (all windows of all
  documents batched together, longest first) runs inside `ctx.inference()`, the one inference
  context (eval mode, inference mode, the transform's cached weights, the stage's autocast);
- direct (the reference): one document at a time, one window at a time,
  `model(input_ids).logits` -> `log_softmax` -> `gather`, under `torch.inference_mode()` and a
  plain `torch.autocast` at the same dtype.

`--device` and `--precision` are evaluate.py's `device=` and `precision=`, mapped through
`monolm.inference.Placement`: precision=auto is bf16 autocast on CUDA and fp32 on CPU.

The two must agree on the total log-likelihood (checked before timing). They run alternately in
one process; the median tokens/s of each and their ratio are printed. Target: ratio >= 1.0 on
CPU (batching should win); on GPU it should win by much more. Default: tiny_pythia on the
bundled tiny_lm validation texts. Overrides are evaluate.py's (`model=<conf/model option,
local directory or hub id>`, ...), plus `model.<key>=<value>` applied to the model option's
config before it loads (e.g. `model=pythia_1.4b model.pretrained=false model.tokenizer=bundled`:
the published architecture, offline, with the bundled tokenizer; or
`model.architecture.num_hidden_layers=8`).

    python benchmarks/eval_throughput.py [--max-length 128] [--batch-size 16] [--repeats 5]
        [--split validation|train] [--max-docs N] [--device auto|cpu|cuda]
        [--precision auto|32|bf16] [overrides...]

The output dtype of the FFN input projections during the evaluator's pass is recorded too: under
bf16 autocast it must be bfloat16 (the FFN really ran in bf16).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from monolm.config.eval_schema import register_evaluate_configs
from monolm.config.schema import register_configs
from monolm.data.bundled import bundled_files
from monolm.evaluation.tasks import TaskContext
from monolm.inference import DEVICES, PRECISIONS, placement_of
from monolm.metrics.likelihood import document_loglikelihoods, prefix_token_id
from monolm.models.ffn import find_ffn_sublayers
from monolm.subjects import load_subject, resolve_model

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


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> tuple[float, float]:
    sync(device)
    start = time.perf_counter()
    value = fn()
    sync(device)
    return value, time.perf_counter() - start


def load_texts(split: str = "validation", max_docs: int | None = None) -> list[str]:
    """The bundled tiny_lm documents of `split` (the first `max_docs`)."""
    with open(bundled_files("tiny_lm")[split], encoding="utf-8") as handle:
        texts = [json.loads(line)["text"] for line in handle]
    return texts[:max_docs]


@contextmanager
def ffn_output_dtypes(model, layout) -> Iterator[set[str]]:
    """The dtypes the FFN input projections' outputs had while the context was open: under
    bf16 autocast, {"torch.bfloat16"} says the FFN matmuls really ran in bf16."""
    seen: set[str] = set()
    hooks = [
        projection.register_forward_hook(lambda _m, _i, out: seen.add(str(out.dtype)))
        for sublayer in find_ffn_sublayers(model, layout)
        for projection in sublayer.input_projections.values()
    ]
    try:
        yield seen
    finally:
        for hook in hooks:
            hook.remove()


def measure(
    overrides: list[str],
    model_overrides: list[str],
    texts: list[str],
    *,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = 16,
    max_length: int = 128,
    repeats: int = 5,
    report=print,
) -> dict[str, Any]:
    """evaluate.py's perplexity path vs the direct loop on `texts`: tokens/s of each (medians
    over `repeats`), their ratio, the agreement of their totals and the FFN's dtype."""
    if not any(o.startswith("model=") for o in overrides):
        overrides = ["model=tiny_pythia", *overrides]
    with initialize_config_dir(config_dir=str(REPO / "conf" / "evaluate"), version_base="1.3"):
        cfg = compose(
            "evaluate",
            overrides=[
                f"device={device}",
                f"precision={precision}",
                f"batch_size={batch_size}",
                f"perplexity.max_length={max_length}",
                *overrides,
            ],
        )
    # evaluate.py's own steps (monolm.evaluation.run.evaluate): placement, subject, context.
    placement = placement_of(cfg)
    ref = resolve_model(REPO / "conf", str(cfg.model))
    if model_overrides:
        model_cfg = OmegaConf.merge(ref.model_cfg, OmegaConf.from_dotlist(model_overrides))
        ref = dataclasses.replace(ref, model_cfg=model_cfg)
    subject = load_subject(ref, cfg.paths.cache_dir, int(cfg.seed))
    subject.model.to(placement.torch_device)
    ctx = TaskContext.of(subject, cfg, placement.autocast_dtype)
    model, tokenizer, torch_device = subject.model, subject.tokenizer, placement.torch_device
    dtype, max_length = placement.autocast_dtype, int(ctx.perplexity.max_length)

    token_lists = tokenizer(texts)["input_ids"]
    n_tokens = sum(map(len, token_lists))
    prefix = prefix_token_id(tokenizer)

    def autocast():
        return torch.autocast(torch_device.type, dtype=dtype, enabled=dtype is not None)

    def evaluator() -> float:
        with ctx.inference():  # as run_perplexity does
            scores = document_loglikelihoods(model, tokenizer, texts, max_length, ctx.batch_size)
        return sum(s.loglikelihood for s in scores)

    def direct() -> float:
        return direct_loglikelihood(model, token_lists, prefix, max_length, autocast)

    with ffn_output_dtypes(model, subject.model_cfg.ffn) as ffn_dtypes:
        ours = evaluator()  # warm-up, the agreement check, and what the FFN ran in
    theirs = direct()
    tolerance = 1e-5 if dtype is None else 1e-2
    agree = abs(ours - theirs) <= tolerance * abs(theirs)
    report(f"total log-likelihood: evaluator {ours:.4f}  direct {theirs:.4f}  agree={agree}")
    if not agree:
        raise SystemExit("the evaluator and the direct loop disagree: not timing")

    rates: dict[str, list[float]] = {"evaluator": [], "direct": []}
    for repeat in range(repeats):
        for name, fn in (("evaluator", evaluator), ("direct", direct)):
            _, seconds = timed(fn, torch_device)
            rates[name].append(n_tokens / seconds)
        report(
            f"repeat {repeat}: direct {rates['direct'][-1]:,.0f} tok/s  "
            f"evaluator {rates['evaluator'][-1]:,.0f} tok/s"
        )
    evaluator_rate = statistics.median(rates["evaluator"])
    direct_rate = statistics.median(rates["direct"])
    return {
        "model": str(subject.model_cfg.name),
        "docs": len(texts),
        "tokens": n_tokens,
        "max_length": max_length,
        "batch_size": int(ctx.batch_size),
        "device": str(torch_device),
        "precision": placement.precision,
        "autocast": str(dtype),
        "threads": torch.get_num_threads(),
        "loglikelihood_evaluator": ours,
        "loglikelihood_direct": theirs,
        "agree": agree,
        "ffn_output_dtypes": sorted(ffn_dtypes),
        "evaluator_tokens_per_s": evaluator_rate,
        "direct_tokens_per_s": direct_rate,
        "ratio": evaluator_rate / direct_rate,
        "ratios": [e / d for e, d in zip(rates["evaluator"], rates["direct"], strict=True)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--split", choices=("validation", "train"), default="validation")
    parser.add_argument("--max-docs", type=int, default=None, help="the first N documents")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="evaluate.py's device=")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="evaluate.py's precision=: auto is bf16 autocast on cuda, fp32 on cpu",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        help="evaluate.py overrides (model=...), and model.<key>=<value> for the model option",
    )
    args = parser.parse_args()
    model_overrides = [o.removeprefix("model.") for o in args.overrides if o.startswith("model.")]
    overrides = [o for o in args.overrides if not o.startswith("model.")]

    register_configs()
    register_evaluate_configs()
    r = measure(
        overrides,
        model_overrides,
        load_texts(args.split, args.max_docs),
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        max_length=args.max_length,
        repeats=args.repeats,
    )
    print(
        f"model={r['model']} docs={r['docs']} tokens={r['tokens']} "
        f"max_length={r['max_length']} batch={r['batch_size']} device={r['device']} "
        f"precision={r['precision']} autocast={r['autocast']} threads={r['threads']} "
        f"ffn outputs={','.join(r['ffn_output_dtypes'])}"
    )
    print(f"per-repeat ratios: {' '.join(f'{x:.2f}' for x in r['ratios'])}")
    print(
        f"median tok/s: direct {r['direct_tokens_per_s']:,.0f}  evaluator "
        f"{r['evaluator_tokens_per_s']:,.0f}  ratio {r['ratio']:.2f}  (target >= 1.0)"
    )


if __name__ == "__main__":
    sys.exit(main())
