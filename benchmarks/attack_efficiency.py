"""How much of an attack's wall time is spent inside the model, and how fast it scores candidates.

For each model (tiny_t5 on the bundled tiny_summarization validation articles, tiny_pythia on the
bundled tiny_lm validation texts), in one process:

1. HotFlip (gradient proposer, `flip_search`: --examples examples, budget 5, top_k 20), GCG
   (`gcg_search`: attack=gcg's top_k 16 and B 512 candidates per step, 4 steps, budget 5), UAT
   (gradient proposer, `trigger_search`: length 6, top_k 20, 1 restart, 4 steps, batches of 8,
   optimised on the same examples) and the audit (`attack.audit`'s scoring of single flips, on
   the first --audit-examples examples, once, not repeated; a sample of each table, below),
   each run with a fresh `Objective`. Wall time of the whole search; `Objective.model_seconds`
   (time inside model forward/backward calls, loss included); share = model_seconds / wall.
   Targets: share >= 0.80 (HotFlip, UAT), >= 0.90 (GCG and the audit: hundreds of candidates
   per forward); the audit row's `forward_passes_per_example` and `per_example_s` are its cost
   per audited example (the whole table, positions x candidates; projected from the first
   AUDIT_SAMPLE flips scored, at the measured rate: a full table at attack.py's default
   128-token contexts takes hours on CPU).
2. Candidates scored per second, (queries - gradient_queries) / wall, against a reference
   measured in the same run: the plain batched forward, `model(input_ids, attention_mask, ...)`
   inside `Objective.inference()` (the same context the attack's scoring runs in: eval and
   inference mode, the transform's cached weights, the stage's autocast), sequences/s over the
   rows of the attack's largest scoring call (recorded during the run), chunked like the
   objective (sorted by length, --batch-size rows per batch), padded and on the device before
   the clock starts, no loss. `ratio` is the
   attack's candidate rate over that reference; the gradient passes (one per beam and step) are
   charged to the attack, so it sits below the share. `scoring ratio` is the candidates per
   second of scoring model time (model_seconds minus the gradient calls' model seconds) over the
   reference: how well `Objective.losses` batches compared with the raw call.

Each repeat runs the attack, then the reference; medians over repeats are printed as a table
and one JSON line. Run it on an idle machine: the figures are ratios, but OpenMP threads
competing with other processes for a few cores distort them (`--threads 1` suffers least).
`--profile` adds a cProfile of one run of each attack (top functions by own time).
`--device` and `--precision` are attack.py's `device=` and `precision=`, mapped through
`monolm.inference.Placement` (precision=auto: bf16 autocast on CUDA, fp32 on CPU). Causal LM
examples are cut with attack.py's defaults (`ExampleSettings`: 128 context + 32 continuation
tokens, at least 16 of context).
`--gpu-sizes` (CUDA only) instead builds t5_small and pythia_1.4b with random weights on their
published architectures (conf/model `published`, `model.pretrained=false`; or the config of a
local copy named by `model.name_or_path=`) and records per-example HotFlip and GCG seconds (and
the same figures; the audit only with --audit-examples, ~vocabulary x input tokens forward passes
per example) on random-token inputs (seq2seq 256 input / 64 target tokens; causal 96 context +
32 continuation): no tokenizer, no download. `--attacks` picks the attacks (benchmarks/
gpu_suite.sh runs HotFlip and UAT this way).

    python benchmarks/attack_efficiency.py [--models tiny_t5 tiny_pythia] [--examples 16]
        [--repeats 3] [--batch-size 32] [--device auto|cpu|cuda] [--precision auto|32|bf16]
        [--constraint none|monotonic] [--threads N] [--audit-examples 1] [--profile] [--gpu-sizes]
        [--attacks hotflip gcg uat] [overrides...]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from transformers import PreTrainedModel

from monolm.attacks.audit import flip_losses
from monolm.attacks.config import AttackRunConfig
from monolm.attacks.examples import (
    AttackExample,
    ExampleSettings,
    causal_lm_example,
    pack,
    seq2seq_example,
)
from monolm.attacks.gcg import GCGSearchSettings, gcg_search
from monolm.attacks.hotflip import FlipSettings, flip_scores, flip_search, start_results
from monolm.attacks.objective import IGNORE, Objective, Row
from monolm.attacks.triggers import TriggerSettings, trigger_search
from monolm.attacks.vocabulary import CandidateVocabulary, candidate_vocabulary
from monolm.config.schema import register_configs
from monolm.constraints import build_constraint
from monolm.data.bundled import bundled_files
from monolm.inference import DEVICES, PRECISIONS, Placement
from monolm.models.loading import load_model, load_model_config, load_tokenizer

REPO = Path(__file__).resolve().parents[1]
TARGET_SHARE = {"hotflip": 0.80, "uat": 0.80, "gcg": 0.90, "audit": 0.90}
# GCG as attack=gcg's defaults (top_k 16, B 512), 4 steps to keep the run short.
GCG_SETTINGS = GCGSearchSettings(budget=5, steps=4, top_k=16, candidates=512)
AUDIT_SAMPLE = 4096  # flips scored per audited example; the table's cost is projected
# --gpu-sizes: these options' published architectures (conf/model, `model.published`; or the
# config of a local copy named by model.name_or_path=), random init.
SIZED_MODELS = ("t5_small", "pythia_1.4b")
REAL_VOCAB = {"t5_small": 32000, "pythia_1.4b": 50277}  # rows that are real, non-special tokens
KINDS = ("hotflip", "gcg", "uat")


class RecordingObjective(Objective):
    """An Objective that keeps the rows of every scoring call (for the reference's shapes) and
    the model seconds spent in gradient calls (the rest of `model_seconds` is scoring)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.calls: list[list[Row]] = []
        self.gradient_seconds = 0.0

    def losses(self, rows: Sequence[Row]) -> list[float]:
        self.calls.append(list(rows))
        return super().losses(rows)

    def gradients(self, rows: Sequence[Row]) -> tuple[list[float], list[torch.Tensor]]:
        before = self.model_seconds
        out = super().gradients(rows)
        self.gradient_seconds += self.model_seconds - before
        return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_batches(
    model: PreTrainedModel, rows: list[Row], batch_size: int, pad_id: int, device: torch.device
) -> list[dict[str, torch.Tensor | int]]:
    """The model inputs of `rows`, chunked by length like the objective, built once up front."""
    rows = sorted(rows, key=lambda r: len(r[0]) + len(r[1]))
    out: list[dict[str, torch.Tensor | int]] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        seqs = [r[0] if model.config.is_encoder_decoder else r[0] + r[1] for r in chunk]
        width = max(map(len, seqs))
        ids = torch.tensor([list(s) + [pad_id] * (width - len(s)) for s in seqs])
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        inputs: dict[str, torch.Tensor | int] = {
            "input_ids": ids.to(device),
            "attention_mask": mask.to(device),
        }
        if model.config.is_encoder_decoder:
            t = max(len(r[1]) for r in chunk)
            labels = torch.tensor([list(r[1]) + [IGNORE] * (t - len(r[1])) for r in chunk])
            decoder = model.prepare_decoder_input_ids_from_labels(labels=labels)
            inputs["decoder_input_ids"] = decoder.to(device)
        else:
            inputs["logits_to_keep"] = width - min(len(r[0]) for r in chunk) + 1
        out.append(inputs)
    return out


def reference_rate(model: PreTrainedModel, objective: Objective, batches: list[dict]) -> float:
    """Sequences/s of the raw batched forward (no loss, no attack machinery)."""
    sync(objective.device)
    start = time.perf_counter()
    with objective.inference():  # the context Objective.losses scores in
        for inputs in batches:
            model(**inputs, use_cache=False).logits  # noqa: B018
    sync(objective.device)
    return sum(len(b["input_ids"]) for b in batches) / (time.perf_counter() - start)


def run_attack(
    kind: str,
    objective: RecordingObjective,
    examples: list[AttackExample],
    vocab: CandidateVocabulary,
    initial: int,
) -> dict[str, float]:
    sync(objective.device)
    start = time.perf_counter()
    if kind == "hotflip":
        flip_search(objective, examples, vocab, FlipSettings(budget=5, top_k=20, beam=1))
    elif kind == "gcg":
        gcg_search(objective, examples, vocab, GCG_SETTINGS)
    elif kind == "audit":
        sampled = table = 0
        for example in examples:
            scored, flips = audit_sample(objective, example, vocab, AUDIT_SAMPLE)
            sampled, table = sampled + scored, table + flips
    else:
        settings = TriggerSettings(length=6, top_k=20, restarts=1, steps=4, batch_size=8)
        trigger_search(objective, examples, vocab, settings, (initial,) * settings.length)
    sync(objective.device)
    wall = time.perf_counter() - start
    candidates = objective.queries - objective.gradient_queries
    scoring = objective.model_seconds - objective.gradient_seconds
    # the audit: the whole table at the measured rate
    extra = {"table_flips": table, "projected_s": wall * table / sampled} if kind == "audit" else {}
    return {
        **extra,
        "wall_s": wall,
        "model_s": objective.model_seconds,
        "share": objective.model_seconds / wall,
        "gradient_s": objective.gradient_seconds,
        "candidates": candidates,
        "gradient_rows": objective.gradient_queries,
        "candidates_per_s": candidates / wall,
        "candidates_per_scoring_s": candidates / scoring,
    }


def audit_sample(
    objective: Objective, example: AttackExample, vocab: CandidateVocabulary, limit: int
) -> tuple[int, int]:
    """The audit's own path (`attack.audit`: HotFlip's flips and blocked candidates, one
    gradient, then `flip_losses`' batched forward passes) on the first `limit` flips of the
    example's table: (flips scored, flips in the whole table). The whole table (positions x
    candidates, ~250k flips for a 128-token causal context) would take hours on CPU; its cost is
    projected from the measured rate."""
    (result,) = start_results(objective, [example], [None])
    ((scores,),) = flip_scores(objective, [result], vocab)
    pairs = torch.isfinite(scores.cpu()).nonzero()
    chosen = pairs[:limit]
    flip_losses(
        objective, result.best.ids, example.target, chosen[:, 0].numpy(), chosen[:, 1].numpy()
    )
    return len(chosen), len(pairs)


def tiny_examples(cfg: Any, tokenizer: Any, n: int) -> list[AttackExample]:
    ds, examples = cfg.dataset, []
    with open(bundled_files(ds.bundled)["validation"], encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    for i, row in enumerate(rows):
        if cfg.model.family == "seq2seq":
            examples.append(
                seq2seq_example(
                    tokenizer,
                    i,
                    row[ds.source_field],
                    row[ds.target_field],
                    ds.source_prefix,
                    ds.max_length,
                    ds.max_target_length,
                )
            )
        else:
            d = ExampleSettings()  # attack.py's defaults
            example = causal_lm_example(
                tokenizer,
                i,
                row[ds.text_field],
                d.context_tokens,
                d.continuation_tokens,
                d.min_context_tokens,
                ds.max_length,
            )
            examples += [example] if example else []
        if len(examples) == n:
            break
    return examples


# Random-token inputs of --gpu-sizes: (input, target) tokens, seq2seq and causal LM.
RANDOM_LENGTHS = {"seq2seq": (256, 64), "causal": (96, 32)}


def random_examples(
    seq2seq: bool,
    vocab: CandidateVocabulary,
    n: int,
    gen: torch.Generator,
    lengths: tuple[int, int] | None = None,
) -> list[AttackExample]:
    """`n` examples of random candidate tokens, `lengths` (input, target) tokens long (default
    RANDOM_LENGTHS)."""
    ids = vocab.ids
    source, target = lengths or RANDOM_LENGTHS["seq2seq" if seq2seq else "causal"]

    def draw(k: int) -> tuple[int, ...]:
        return tuple(ids[torch.randint(len(ids), (k,), generator=gen)].tolist())

    if seq2seq:  # "summarize:" stand-in, body, </s>; target + </s>
        return [
            AttackExample(
                i, draw(3), draw(source - 4), (1,), (*draw(target - 1), 1), "", source, "head"
            )
            for i in range(n)
        ]
    return [
        AttackExample(i, (), draw(source), (), draw(target), "", source, "tail") for i in range(n)
    ]


def measure(
    name: str,
    model: PreTrainedModel,
    transform: Any,
    pad_id: int,
    examples: list[AttackExample],
    vocab: CandidateVocabulary,
    initial: int,
    args: argparse.Namespace,
    kinds: Sequence[str],
) -> list[dict[str, Any]]:
    """Per attack, each repeat: the attack (recording its scoring calls), then the reference on
    the rows of its largest scoring call. Medians over repeats."""
    dtype = args.placement.autocast_dtype

    def make() -> RecordingObjective:
        return RecordingObjective(model, transform, pad_id, args.batch_size, dtype)

    clean = [(pack(e).ids, e.target) for e in examples]
    warm = make()  # untimed: CUDA/cuBLAS init, allocator
    warm.losses(clean)
    warm.gradients(clean[: args.batch_size])
    out = []
    for kind in kinds:
        runs, refs = [], []
        # the audit scores every single flip: one pass over --audit-examples examples
        subset = examples[: args.audit_examples] if kind == "audit" else examples
        for _ in range(1 if kind == "audit" else args.repeats):
            objective = make()
            runs.append(run_attack(kind, objective, subset, vocab, initial))
            largest = max(objective.calls, key=len)  # the same call in every (seeded) run
            batches = plain_batches(model, largest, args.batch_size, pad_id, objective.device)
            refs.append(reference_rate(model, objective, batches))
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(run_attack, kind, make(), subset, vocab, initial)
            print(f"--- cProfile: {name} {kind} (top 15 by own time)")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        row = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        row.update(
            model=name, attack=kind, examples=len(subset), ref_seq_per_s=statistics.median(refs)
        )
        row["ratio_to_reference"] = row["candidates_per_s"] / row["ref_seq_per_s"]
        row["scoring_ratio"] = row["candidates_per_scoring_s"] / row["ref_seq_per_s"]
        row["per_example_s"] = row["wall_s"] / len(subset)
        row["forward_passes_per_example"] = row["candidates"] / len(subset)
        if kind == "audit":  # a sample of each table was scored: the whole table's cost
            row["per_example_s"] = row["projected_s"] / len(subset)
            row["forward_passes_per_example"] = row["table_flips"] / len(subset)
        row["target_share"] = TARGET_SHARE[kind]
        row["target_met"] = row["share"] >= TARGET_SHARE[kind]
        out.append(row)
        print(
            f"{name} {kind}: share {row['share']:.3f}  cand/s {row['candidates_per_s']:,.0f}  "
            f"ref seq/s {row['ref_seq_per_s']:,.0f}",
            flush=True,
        )
    return out


def sized_subject(
    cfg: Any, n: int, lengths: tuple[int, int] | None = None
) -> tuple[PreTrainedModel, CandidateVocabulary, int, list[AttackExample], int]:
    """The option's published architecture with random weights (the config of a local copy,
    if model.name_or_path= names one) and random-token examples: no tokenizer, no download."""
    cfg.model.pretrained = False
    config = load_model_config(cfg.model, None)
    model = load_model(cfg.model, config)
    rows = model.get_input_embeddings().weight.shape[0]
    mask = torch.zeros(rows, dtype=torch.bool)
    mask[2 : min(REAL_VOCAB.get(cfg.model.name, rows), rows)] = True
    vocab, pad_id = CandidateVocabulary(mask, {}), int(config.pad_token_id or 0)
    examples = random_examples(
        config.is_encoder_decoder, vocab, n, torch.Generator().manual_seed(0), lengths
    )
    return model, vocab, pad_id, examples, int(vocab.ids[0])


def tiny_subject(
    cfg: Any, n: int
) -> tuple[PreTrainedModel, CandidateVocabulary, int, list[AttackExample], int]:
    """The model with its tokenizer, on the bundled validation texts."""
    tokenizer = load_tokenizer(cfg.model, cfg.paths.cache_dir)
    model = load_model(cfg.model, load_model_config(cfg.model, tokenizer))
    vocab = candidate_vocabulary(tokenizer, model.get_input_embeddings().weight.shape[0])
    the = tokenizer(" the", add_special_tokens=False)["input_ids"]
    initial = the[0] if len(the) == 1 and vocab.mask[the[0]] else int(vocab.ids[0])
    return model, vocab, tokenizer.pad_token_id, tiny_examples(cfg, tokenizer, n), initial


def attack_rows(
    models: Sequence[str],
    args: argparse.Namespace,
    overrides: Sequence[str],
    kinds: Sequence[str],
    sized: bool = False,
    lengths: Mapping[str, tuple[int, int]] | None = None,
) -> list[dict[str, Any]]:
    """`measure` for each model (train.py overrides applied; `sized`: `sized_subject`, its
    inputs `lengths[family]` tokens long), with `args`' placement, batch size, repeats, audit
    examples, profile and constraint."""
    rows: list[dict] = []
    for name in models:
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose(
                "train",
                overrides=[
                    f"model={name}",
                    f"constraint={args.constraint}",
                    f"paths.output_dir={tempfile.mkdtemp()}",
                    *overrides,
                ],
            )
        L.seed_everything(cfg.seed, verbose=False)
        family = str(cfg.model.family)
        model, vocab, pad_id, examples, initial = (
            sized_subject(cfg, args.examples, (lengths or {}).get(family))
            if sized
            else tiny_subject(cfg, args.examples)
        )
        transform = build_constraint(cfg.constraint)
        transform.apply(model, cfg.model)
        model.to(args.placement.torch_device).eval()
        run_kinds = [*kinds, *(["audit"] if args.audit_examples > 0 else [])]
        rows += measure(name, model, transform, pad_id, examples, vocab, initial, args, run_kinds)
        del model
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny_t5", "tiny_pythia"])
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=AttackRunConfig.batch_size)
    parser.add_argument("--device", choices=DEVICES, default="auto", help="attack.py's device=")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="attack.py's precision=: auto is bf16 autocast on cuda, fp32 on cpu",
    )
    parser.add_argument("--constraint", choices=["none", "monotonic"], default="none")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--audit-examples",
        type=int,
        default=None,
        help="examples whose every single flip is scored (attack.audit's cost); 0: no audit; "
        "default 1, with --gpu-sizes 0",
    )
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--gpu-sizes", action="store_true")
    parser.add_argument(
        "--attacks",
        nargs="+",
        choices=KINDS,
        default=None,
        help="default: hotflip gcg uat (with --gpu-sizes: hotflip gcg)",
    )
    parser.add_argument("overrides", nargs="*", help="train.py config overrides")
    args = parser.parse_args()
    args.placement = Placement(args.device, args.precision)
    if args.audit_examples is None:
        args.audit_examples = 0 if args.gpu_sizes else 1
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but no CUDA device is visible")
    device = args.placement.torch_device
    if args.gpu_sizes and device.type != "cuda":
        raise SystemExit("--gpu-sizes needs CUDA: run with --device cuda on a GPU machine")
    if args.threads:
        torch.set_num_threads(args.threads)
    register_configs()
    kinds = args.attacks or (["hotflip", "gcg"] if args.gpu_sizes else list(KINDS))
    models = SIZED_MODELS if args.gpu_sizes else args.models
    rows = attack_rows(models, args, args.overrides, kinds, sized=args.gpu_sizes)
    print(
        f"device={device} precision={args.precision} autocast={args.placement.autocast_dtype} "
        f"constraint={args.constraint} "
        f"batch={args.batch_size} repeats={args.repeats} threads={torch.get_num_threads()} "
        f"(medians; target share >= {TARGET_SHARE})"
    )
    print(
        "| model | attack | wall s | s/example | model s (grad) | share | candidates | cand/s "
        "| plain fwd seq/s | ratio | scoring ratio |\n" + "|---" * 11 + "|"
    )
    for r in rows:
        flag = "" if r["target_met"] else " (below target)"
        print(
            f"| {r['model']} | {r['attack']} | {r['wall_s']:.2f} | {r['per_example_s']:.3f} "
            f"| {r['model_s']:.2f} ({r['gradient_s']:.2f}) | **{r['share']:.3f}**{flag} "
            f"| {r['candidates']:.0f} | {r['candidates_per_s']:,.0f} | {r['ref_seq_per_s']:,.0f} "
            f"| {r['ratio_to_reference']:.3f} | {r['scoring_ratio']:.3f} |"
        )
    print(
        json.dumps(
            {
                "device": str(device),
                "precision": args.precision,
                "autocast": str(args.placement.autocast_dtype),
                "results": rows,
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
