"""The evaluation tasks: plan (cheap checks, before any model loads), then run on a Subject.

Every task returns metrics with percentile bootstrap CIs over its examples (seeded) and one row
per example (id, input, reference, generated text where there is one, every per-example score),
and states the convention each number follows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from monolm.config.eval_schema import (
    TASK_KINDS,
    BootstrapConfig,
    GenerationConfig,
    PerplexityConfig,
)
from monolm.data.prompts import PROMPTED_TASKS
from monolm.data.sources import split_rows
from monolm.errors import UserError, did_you_mean
from monolm.metrics.bootstrap import bootstrap_ci
from monolm.subjects import Subject, dataset_option

ROUGE_SCALE = 100.0  # ROUGE is reported as a percentage, as in the literature
# Prompted datasets (classification, question answering) are reported on this split: GLUE's and
# SQuAD's test labels are hidden, and their training runs validate on a part held out of train.
REPORTING_SPLIT = "validation"


@dataclass
class PlannedTask:
    name: str
    kind: str  # a runner's kind: TASK_KINDS but `own`, which is resolved at planning
    dataset: DictConfig | None
    split: str | None
    max_examples: int | None


@dataclass
class TaskResult:
    metrics: dict[str, dict[str, float]]
    rows: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)
    # more output files beside eval.json: file name -> what writes it (given the path; it
    # returns the paths written when they are more than that one)
    files: dict[str, Callable[[Path], Any]] = field(default_factory=dict)


def own_kind(dataset: DictConfig, family: str) -> str:
    """What `own` measures on the data a run trained on: its prompted task, else perplexity
    (causal) or summarisation (seq2seq)."""
    if dataset.task in PROMPTED_TASKS:
        return str(dataset.task)
    return "perplexity" if family == "causal" else "summarization"


def plan_tasks(
    cfg: DictConfig, conf_dir: Path, family: str, own_dataset: DictConfig | None
) -> list[PlannedTask]:
    """Check every task against the model family and the dataset options; nothing is loaded.

    `own` on a prompted dataset is evaluated on its reporting split (`validation`), not on the
    part of train its run held out for validation and selection."""
    if not cfg.task:
        raise UserError("no task selected: e.g. task=[own] or task=[lambada,hellaswag]")
    planned = []
    for name, task in cfg.task.items():
        if task.kind not in TASK_KINDS:
            raise UserError(
                f"task.{name}.kind='{task.kind}': {did_you_mean(task.kind, TASK_KINDS)}"
            )
        kind, dataset, split = task.kind, None, task.split
        if kind in ("own", "monotonicity") or (kind == "cka" and task.dataset is None):
            dataset = (  # a copy: one task's data_files must not reach another's (or the run's)
                OmegaConf.create(OmegaConf.to_container(own_dataset, resolve=True))
                if own_dataset is not None
                else dataset_option(conf_dir, "tiny", family)
            )
            if kind == "own":
                kind = own_kind(dataset, family)
            if kind in (*PROMPTED_TASKS, "cka") and dataset.task in PROMPTED_TASKS:
                split = split or REPORTING_SPLIT
        elif task.dataset is None:
            raise UserError(f"task.{name} ({kind}) names no dataset: set task.{name}.dataset")
        else:
            dataset = dataset_option(conf_dir, task.dataset, family)
        if task.data_files is not None:
            dataset.data_files, dataset.bundled = task.data_files, None
        if kind in PROMPTED_TASKS and dataset.task != kind:
            raise UserError(
                f"task '{name}' is a {kind} task; dataset '{dataset.name}' is "
                f"{dataset.task}: name a dataset with task: {kind}"
            )
        if kind == "perplexity" and family != "causal":
            raise UserError(
                f"task '{name}' measures perplexity, which needs a causal model; this model is "
                f"{family}: evaluate it on a summarisation task"
            )
        limit = task.max_examples if task.max_examples is not None else cfg.max_examples
        if limit is not None and limit < 1:
            raise UserError(f"max_examples={limit} must be >= 1")
        planned.append(PlannedTask(name, kind, dataset, split, limit))
    return planned


def task_rows(task: PlannedTask, seed: int) -> Any:
    return split_rows(task.dataset, task.split, seed, task.max_examples)


def _require_fields(task: PlannedTask, rows: Any, fields: Sequence[str]) -> None:
    missing = [f for f in fields if f not in rows.column_names]
    if missing:
        raise UserError(
            f"task '{task.name}': dataset '{task.dataset.name}' has no field "
            f"{missing[0]!r}; its fields: {rows.column_names}"
        )


def _ids(rows: Any) -> list[Any]:
    return list(rows["id"]) if "id" in rows.column_names else list(range(len(rows)))


def example_ids(rows: Any) -> list[Any]:
    """Each row's own id (`idx` in GLUE, `id` in SQuAD), else its index in the split."""
    for name in ("idx", "id"):
        if name in rows.column_names:
            return list(rows[name])
    return list(range(len(rows)))


def bootstrap_interval(values: Sequence[float], settings: Any) -> dict[str, float]:
    return bootstrap_ci(
        np.asarray(values, dtype=np.float64), settings.resamples, settings.confidence, settings.seed
    )


def ratio_ci(
    numerators: Sequence[float],
    denominators: Sequence[float],
    settings: Any,
    transform: Callable[[np.ndarray], np.ndarray],
) -> dict[str, float]:
    """Percentile bootstrap of transform(sum(num) / sum(den)) over resampled examples (corpus-level
    perplexities are ratios of sums, not means of per-example values)."""
    num, den = np.asarray(numerators, float), np.asarray(denominators, float)
    rng = np.random.default_rng(settings.seed)
    stats = np.empty(settings.resamples)
    for start in range(0, settings.resamples, 100):
        idx = rng.integers(0, len(num), size=(min(100, settings.resamples - start), len(num)))
        stats[start : start + len(idx)] = transform(num[idx].sum(1) / den[idx].sum(1))
    tail = (1 - settings.confidence) / 2
    low, high = np.quantile(stats, [tail, 1 - tail])
    point = float(transform(np.array(num.sum() / den.sum())))
    return {
        "mean": point,
        "low": float(low),
        "high": float(high),
        "n": len(num),
        "resamples": settings.resamples,
        "confidence": settings.confidence,
    }


@dataclass(frozen=True)
class TaskContext:
    """What every task runner gets: the subject, the evaluate settings it reads, and the
    precision the subject's inference context runs at."""

    subject: Subject
    generation: GenerationConfig
    perplexity: PerplexityConfig
    bootstrap: BootstrapConfig
    batch_size: int
    seed: int
    autocast_dtype: torch.dtype | None
    cka: Any = None  # the checked `cka` settings (evaluation.representations.CkaPlan) or None

    @classmethod
    def of(
        cls, subject: Subject, cfg: DictConfig, autocast_dtype: torch.dtype | None, cka: Any = None
    ) -> TaskContext:
        return cls(
            subject,
            OmegaConf.to_object(cfg.generation),
            OmegaConf.to_object(cfg.perplexity),
            OmegaConf.to_object(cfg.bootstrap),
            int(cfg.batch_size),
            int(cfg.seed),
            autocast_dtype,
            cka,
        )

    def inference(self) -> AbstractContextManager[None]:
        return self.subject.inference(self.autocast_dtype)


def _chunks(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def scored_in_chunks(
    score: Callable[[list[Any]], list[Any]],
    items: Sequence[Any],
    chunk: int,
    progress: Any,
    label: str,
) -> list[Any]:
    """`score` over `items` a chunk at a time, so a long evaluation shows progress."""
    progress.reset(total=len(items))
    progress.set_description(label)
    results: list[Any] = []
    for part in _chunks(len(items), chunk):
        results += score([items[i] for i in part])
        progress.update(len(part))
    return results


def run_summarization(task: PlannedTask, ctx: TaskContext, progress: Any) -> TaskResult:
    from monolm.metrics.rouge import ROUGE_TYPES, rouge_per_example
    from monolm.models.generation import generate_summaries

    ds = task.dataset
    rows = task_rows(task, ctx.subject.seed)
    _require_fields(task, rows, [ds.source_field, ds.target_field])
    sources = [ds.source_prefix + text for text in rows[ds.source_field]]
    references = list(rows[ds.target_field])
    progress.reset(total=len(sources))
    progress.set_description(f"{task.name}: generating")
    with ctx.inference():
        generated = generate_summaries(
            ctx.subject.model,
            ctx.subject.tokenizer,
            sources,
            ctx.generation,
            ds.max_length,
            progress.update,
        )
    scores = rouge_per_example(generated, references)
    out_rows = [
        {
            "id": i,
            "input": s,
            "reference": r,
            "generated": g,
            **{k: ROUGE_SCALE * v for k, v in score.items()},
        }
        for i, s, r, g, score in zip(
            _ids(rows), sources, references, generated, scores, strict=True
        )
    ]
    metrics = {
        k: bootstrap_interval([row[k] for row in out_rows], ctx.bootstrap) for k in ROUGE_TYPES
    }
    return TaskResult(
        metrics,
        out_rows,
        {
            "conventions": {
                "rouge": "F1 x 100, Google rouge-score with Porter stemming; rougeLsum on "
                "sentences split offline and joined by newlines (rougeL on the raw text)",
                "generation": asdict(ctx.generation),
                "max_source_tokens": ds.max_length,
            }
        },
    )


def _context_length(ctx: TaskContext) -> int:
    from monolm.metrics.likelihood import default_max_length

    if ctx.perplexity.max_length:
        return int(ctx.perplexity.max_length)
    return default_max_length(ctx.subject.model)


def run_perplexity(task: PlannedTask, ctx: TaskContext, progress: Any) -> TaskResult:
    from monolm.metrics.likelihood import document_loglikelihoods, perplexities

    ds = task.dataset
    rows = task_rows(task, ctx.subject.seed)
    _require_fields(task, rows, [ds.text_field])
    # lm-eval scores an empty document as 0 nats over 0 tokens but still counts its one "word"
    # (re.split on "" gives [""]), which would bias word perplexity; they are left out and the
    # record says how many.
    kept = [(i, t) for i, t in zip(_ids(rows), rows[ds.text_field], strict=True) if t.strip()]
    dropped = len(rows) - len(kept)
    if not kept:
        raise UserError(f"task '{task.name}': every text of '{ds.name}' is empty")
    max_length, stride = _context_length(ctx), ctx.perplexity.stride
    if stride is not None and not 1 <= stride <= max_length:
        raise UserError(f"perplexity.stride={stride} must be in [1, {max_length}]")
    with ctx.inference():
        scores = scored_in_chunks(
            lambda texts: document_loglikelihoods(
                ctx.subject.model, ctx.subject.tokenizer, texts, max_length, ctx.batch_size, stride
            ),
            [text for _, text in kept],
            256,
            progress,
            f"{task.name}: scoring",
        )
    out_rows = [
        {
            "id": i,
            "input": t,
            "loglikelihood": s.loglikelihood,
            "tokens": s.tokens,
            "words": s.words,
            "bytes": s.bytes,
            "token_perplexity": float(np.exp(-s.loglikelihood / max(1, s.tokens))),
        }
        for (i, t), s in zip(kept, scores, strict=True)
    ]
    nll = [-s.loglikelihood for s in scores]
    totals = perplexities(scores)
    metrics = {
        name: ratio_ci(nll, [getattr(s, unit) for s in scores], ctx.bootstrap, transform)
        for name, unit, transform in (
            ("token_perplexity", "tokens", np.exp),
            ("word_perplexity", "words", np.exp),
            ("byte_perplexity", "bytes", np.exp),
            ("bits_per_byte", "bytes", lambda x: x / np.log(2)),
        )
    }
    for name, values in metrics.items():
        values["mean"] = float(totals[name])  # the evaluator's own corpus-level figure
    convention = (
        f"lm-evaluation-harness loglikelihood_rolling: disjoint windows of {max_length} tokens, "
        "each token scored once with up to max_length tokens of context, the first from the "
        "EOS/BOS token"
        if stride is None
        else f"strided sliding window: windows of {max_length} tokens moving by {stride}, each "
        "token scored once with the rest of its window as context"
    )
    return TaskResult(
        metrics,
        out_rows,
        {
            "conventions": {
                "perplexity": convention,
                "max_length": max_length,
                "stride": stride,
                "words": "len(re.split(r'\\s+', text))",
                "bytes": "len(text.encode('utf-8'))",
                "aggregation": "corpus level: exp(total NLL / total tokens|words|bytes)",
                "empty_documents_dropped": dropped,
                "empty_documents": "empty or whitespace-only documents are left out (lm-eval "
                "would count one word and no tokens for each)",
            }
        },
    )


def run_lambada(task: PlannedTask, ctx: TaskContext, progress: Any) -> TaskResult:
    from monolm.metrics.likelihood import lambada_request, lambada_scores

    rows = task_rows(task, ctx.subject.seed)
    _require_fields(task, rows, [task.dataset.text_field])
    texts = list(rows[task.dataset.text_field])
    with ctx.inference():
        scored = scored_in_chunks(
            lambda part: lambada_scores(
                ctx.subject.model, ctx.subject.tokenizer, part, ctx.batch_size
            ),
            texts,
            512,
            progress,
            f"{task.name}: scoring",
        )
    out_rows = []
    for i, text, score in zip(_ids(rows), texts, scored, strict=True):
        context, target = lambada_request(text)
        out_rows.append(
            {
                "id": i,
                "input": context,
                "reference": target,
                "loglikelihood": score["loglikelihood"],
                "correct": int(score["correct"]),
            }
        )
    mean_ll = bootstrap_interval([r["loglikelihood"] for r in out_rows], ctx.bootstrap)
    perplexity = {
        **mean_ll,
        "mean": float(np.exp(-mean_ll["mean"])),
        "low": float(np.exp(-mean_ll["high"])),
        "high": float(np.exp(-mean_ll["low"])),
    }
    metrics = {
        "acc": bootstrap_interval([r["correct"] for r in out_rows], ctx.bootstrap),
        "perplexity": perplexity,
    }
    return TaskResult(
        metrics,
        out_rows,
        {
            "conventions": {
                "acc": "every token of the final word is the greedy prediction (lambada_openai)",
                "perplexity": "exp(-mean over examples of the target word's log-likelihood)",
            }
        },
    )


def run_hellaswag(task: PlannedTask, ctx: TaskContext, progress: Any) -> TaskResult:
    from monolm.metrics.likelihood import hellaswag_query, hellaswag_scores

    rows = task_rows(task, ctx.subject.seed)
    _require_fields(task, rows, ["ctx_a", "ctx_b", "endings", "label", "activity_label"])
    examples = [dict(row) for row in rows]
    with ctx.inference():
        scored = scored_in_chunks(
            lambda part: hellaswag_scores(
                ctx.subject.model, ctx.subject.tokenizer, part, ctx.batch_size
            ),
            examples,
            256,
            progress,
            f"{task.name}: scoring",
        )
    out_rows = []
    for i, example, score in zip(_ids(rows), examples, scored, strict=True):
        query, endings, label = hellaswag_query(example)
        out_rows.append(
            {
                "id": example.get("ind", i),
                "input": query,
                "reference": endings[label],
                "endings": endings,
                **score,
            }
        )
    metrics = {
        key: bootstrap_interval([r[key] for r in out_rows], ctx.bootstrap)
        for key in ("acc", "acc_norm")
    }
    return TaskResult(
        metrics,
        out_rows,
        {
            "conventions": {
                "acc": "argmax of the endings' summed log-likelihoods",
                "acc_norm": "argmax of log-likelihood / character length of the ending",
            }
        },
    )


def run_monotonicity(task: PlannedTask, ctx: TaskContext, progress: Any) -> TaskResult:
    from monolm.constraints.verify import verify_on_validation_data, verify_settings

    subject = ctx.subject
    recorded = subject.config.constraint.get("verify") if subject.config is not None else None
    settings = verify_settings(recorded, seed=ctx.seed)
    progress.reset(total=1)
    progress.set_description(f"{task.name}: verifying")
    record = verify_on_validation_data(
        subject.model,
        subject.model_cfg,
        set(subject.constrained_layers),
        subject.validation_data(task.dataset),
        settings,
        subject.transform.cached_weights,
    )
    progress.update(1)
    found = record["verification"]
    summary = found["summary"]
    metrics = {
        "proven_sublayers": {"mean": float(record["summary"]["proven"]), "n": summary["sublayers"]},
        "sublayers_with_violations": {
            "mean": float(summary["with_violations"]),
            "n": summary["sublayers"],
        },
        "worst_jacobian_entry": {"mean": float(summary["worst_entry"]), "n": summary["sublayers"]},
    }
    levels = {s["name"]: s for s in record["sublayers"]}
    out_rows = [{"id": s["name"], **levels[s["name"]], **s} for s in found["sublayers"]]
    return TaskResult(
        metrics,
        out_rows,
        {
            "guarantee": record["summary"],
            "verification": {k: v for k, v in found.items() if k != "sublayers"},
        },
    )
