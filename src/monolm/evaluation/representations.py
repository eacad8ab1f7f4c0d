"""Task kind `cka`: how similar two subjects' layer representations are, on the same inputs.

The evaluated subject is compared with every subject of `cka.against` (and, with
`cka.all_pairs`, those with each other); each `cka.floor` entry is the same comparison between
two runs that differ only by their seed: the noise floor, below which a difference between arms
is not told apart from a different seed.

- Inputs: the task's dataset rows (the run's own validation data by default), read as each
  model reads them in training: a causal model the text (a prompted task's prompt and answer,
  a summarisation's source); a T5 its source in the encoder and its target in the decoder
  (teacher forcing). Every subject tokenises the same texts with its own tokenizer.
- Representations: the residual stream after each block (`models/hidden_states.py`), mean-
  pooled over each input's non-padding tokens (`cka.pooling=mean`, one row per input) or every
  token kept (`tokens`, one row per token: the same tokenizer on both sides).
- Estimator: debiased linear CKA (the U-statistic HSIC) in float64 on centred features, for
  every layer pair (the full matrix) and its diagonal (layer i of each); the biased estimator is
  far from 0 for unrelated representations with many more features than inputs.
- Intervals (diagonal and its mean over layers): half-sampling of inputs
  (`metrics.representations.half_sample_intervals`), with `bootstrap.resamples`,
  `bootstrap.confidence` and `bootstrap.seed`. The matrix's off-diagonal values are points.

Outputs beside eval.json: `cka.json` (every value, interval and floor, the inputs' ids and
hash, each subject's identity), `cka-layers.png` (the diagonal per layer, one line per
comparison with its interval, each floor shaded) and one `cka-<a>--<b>.png` heatmap per
comparison.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from monolm.config.eval_schema import CkaConfig
from monolm.data.prompts import PROMPTED_TASKS, prompt_text, training_target
from monolm.errors import UserError
from monolm.evaluation.tasks import PlannedTask, TaskContext, TaskResult, example_ids, task_rows
from monolm.metrics.representations import (
    centre_gram,
    cka_of_centred,
    gram_linear,
    half_sample_intervals,
)
from monolm.models.hidden_states import POOLINGS, example_of_rows, layer_states
from monolm.provenance import provenance, write_json
from monolm.subjects import Subject, SubjectRef, load_subject, resolve_target

CKA_RECORD = "cka.json"
LAYERS_FIGURE = "cka-layers.png"
ESTIMATOR = "debiased linear CKA (U-statistic HSIC), float64, column-centred features"
CPU = torch.device("cpu")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


@dataclass(frozen=True)
class Comparison:
    a: str  # subject labels
    b: str
    floor: bool = False

    @property
    def name(self) -> str:
        return f"{'floor ' if self.floor else ''}{self.a} vs {self.b}"


@dataclass
class CkaPlan:
    """The checked `cka` settings: every subject labelled and the others resolved (nothing
    loaded)."""

    settings: CkaConfig
    others: dict[str, SubjectRef]  # label -> subject: `against`, then the floors' own
    against: list[str]  # labels
    floors: list[tuple[str, str]]  # (label, label)
    labels: dict[str, str]  # every subject as given (the evaluated ones too) -> label
    cache_dir: str
    config: dict[str, Any]  # evaluate's resolved config: cka.json records it
    device: torch.device  # where the other subjects load and the grams are computed

    def comparisons(self, evaluated: str) -> list[Comparison]:
        pairs = [Comparison(evaluated, other) for other in self.against if other != evaluated]
        if self.settings.all_pairs:
            pairs += [
                Comparison(a, b) for i, a in enumerate(self.against) for b in self.against[i + 1 :]
            ]
        return pairs + [Comparison(a, b, floor=True) for a, b in self.floors]


def subject_labels(names: list[str], run_dirs: set[str]) -> dict[str, str]:
    """Each subject as given -> a short label. Run dirs: the fewest trailing parts (the same
    number for all) that tell them apart, after the trailing parts they all share
    (`runs/x/none/s0/train`, `runs/x/mono/s0/train` -> `none/s0`, `mono/s0`); any other
    subject: its last part (`EleutherAI/pythia-70m` -> `pythia-70m`), or its whole name when
    that is taken."""
    run_names = [n for n in names if n in run_dirs]
    runs = [Path(n).parts for n in run_names]
    shared = 0
    while len(runs) > 1 and all(len(p) > shared + 1 for p in runs):
        if len({p[-1 - shared] for p in runs}) > 1:
            break
        shared += 1
    trimmed = [p[: len(p) - shared] for p in runs]
    depth = 1
    while len({p[-depth:] for p in trimmed}) < len(trimmed) and depth < max(map(len, trimmed)):
        depth += 1
    labels = {n: "/".join(p[-depth:]) for n, p in zip(run_names, trimmed, strict=True)}
    for name in names:
        if name not in run_dirs:
            short = Path(name).name or name
            labels[name] = name if short in labels.values() else short
    return labels


def plan_cka(
    cfg: DictConfig,
    conf_dir: Path,
    evaluated: list[SubjectRef],
    device: torch.device = CPU,
) -> CkaPlan | None:
    """Check the `cka` settings against the tasks selected and resolve the subjects they name
    (cheap: no weights); None when no `cka` task is selected. `device`: where the other
    subjects load and the gram matrices are computed."""
    settings: CkaConfig = OmegaConf.to_object(cfg.cka)
    selected = [name for name, task in cfg.task.items() if task.kind == "cka"]
    if not selected:
        for key in ("against", "floor"):
            if getattr(settings, key):
                raise UserError(
                    f"cka.{key} is set but no task has kind cka, so it would be ignored: add "
                    "cka to task=[...] or drop cka.*"
                )
        return None
    if len(selected) > 1:
        raise UserError(f"tasks {selected} are both kind cka: select one")
    if cfg.baseline is not None:
        raise UserError(f"baseline={cfg.baseline} has no model, so no representations: drop cka")
    if not settings.against:
        raise UserError(
            "task cka compares the subject with others: set cka.against=[<run dir | model "
            "option | model directory | hub id>, ...]"
        )
    if settings.pooling not in POOLINGS:
        raise UserError(f"cka.pooling={settings.pooling}: one of {', '.join(POOLINGS)}")
    for key in ("max_length", "max_rows"):
        if getattr(settings, key) < 1:
            raise UserError(f"cka.{key}={getattr(settings, key)} must be >= 1")
    for pair in settings.floor:
        if len(pair) != 2 or pair[0] == pair[1]:
            raise UserError(
                f"cka.floor has {list(pair)}: a floor is two runs of one arm that differ only by "
                "their seed, [[<run dir>, <run dir>], ...]"
            )
    given = [str(n) for n in [*settings.against, *(n for pair in settings.floor for n in pair)]]
    resolved = {name: resolve_target(conf_dir, name) for name in dict.fromkeys(given)}
    families = {ref.family for ref in [*evaluated, *resolved.values()]}
    if len(families) > 1:
        raise UserError(
            f"task cka compares layers of one architecture family; these subjects are "
            f"{' and '.join(sorted(families))}"
        )
    run_dirs = {ref.name for ref in [*evaluated, *resolved.values()] if ref.run is not None}
    labels = subject_labels(
        list(dict.fromkeys([*(ref.name for ref in evaluated), *given])), run_dirs
    )
    return CkaPlan(
        settings,
        {labels[name]: ref for name, ref in resolved.items()},
        [labels[str(name)] for name in dict.fromkeys(settings.against)],
        [(labels[str(a)], labels[str(b)]) for a, b in settings.floor],
        labels,
        str(cfg.paths.cache_dir),
        OmegaConf.to_container(cfg, resolve=True),
        device,
    )


@dataclass
class Inputs:
    """What every subject reads: texts (and a T5's decoder targets), with the rows' ids."""

    texts: list[str]
    targets: list[str] | None
    ids: list[Any]

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps([self.texts, self.targets]).encode()).hexdigest()


def read_inputs(task: PlannedTask, family: str, seed: int) -> Inputs:
    """The task's rows as the subjects read them in training (the module docstring)."""
    ds = task.dataset
    rows = task_rows(task, seed)
    records = [dict(row) for row in rows]
    if ds.task in PROMPTED_TASKS:
        prompts = [prompt_text(ds, row) for row in records]
        answers = [training_target(ds, row) for row in records]
        if family == "seq2seq":
            texts, targets = prompts, answers
        else:
            joined = zip(prompts, answers, strict=True)
            texts, targets = [p + ds.target_delimiter + a for p, a in joined], None
    elif family == "seq2seq" or ds.task == "summarization":
        texts = [ds.source_prefix + str(row[ds.source_field]) for row in records]
        targets = [str(row[ds.target_field]) for row in records] if family == "seq2seq" else None
    else:
        texts, targets = [str(row[ds.text_field]) for row in records], None
    if len(texts) < 8:
        raise UserError(
            f"task '{task.name}': CKA with intervals needs at least 8 inputs, dataset "
            f"'{ds.name}' gives {len(texts)}"
        )
    return Inputs(texts, targets, example_ids(rows))


@dataclass
class Representations:
    layers: dict[str, np.ndarray]  # layer name -> rows x hidden (float64)
    rows: dict[str, np.ndarray]  # layer name -> the input each row comes from


def representations(
    subject: Subject, inputs: Inputs, ctx: TaskContext, settings: CkaConfig
) -> Representations:
    with subject.inference(ctx.autocast_dtype):
        layers = layer_states(
            subject.model,
            subject.tokenizer,
            inputs.texts,
            ctx.batch_size,
            settings.max_length,
            settings.pooling,
            inputs.targets,
        )
    by_stack = {
        "decoder": example_of_rows(
            subject.tokenizer,
            inputs.targets or [],
            settings.max_length,
            settings.pooling,
            as_targets=True,
        ),
        "other": example_of_rows(
            subject.tokenizer, inputs.texts, settings.max_length, settings.pooling
        ),
    }
    rows = {
        name: by_stack["decoder" if name.startswith("decoder.") else "other"] for name in layers
    }
    largest = max(len(r) for r in rows.values())
    if largest > settings.max_rows:
        raise UserError(
            f"cka.pooling=tokens gives {largest} rows (gram matrices of {largest}^2 float64): "
            f"lower max_examples or cka.max_length, or raise cka.max_rows={settings.max_rows}"
        )
    return Representations(layers, rows)


@dataclass
class Grams:
    """A subject's layers as gram matrices on the comparison device: raw (the intervals
    centre each half-sample) and centred once for the full matrix."""

    raw: dict[str, torch.Tensor]
    centred: dict[str, torch.Tensor]
    rows: dict[str, np.ndarray]

    @classmethod
    def of(cls, found: Representations, device: torch.device) -> Grams:
        raw = {
            name: gram_linear(torch.as_tensor(x, device=device)) for name, x in found.layers.items()
        }
        return cls(raw, {n: centre_gram(g, debiased=True) for n, g in raw.items()}, found.rows)


def compare(a: Grams, b: Grams, comparison: Comparison, bootstrap: Any) -> dict[str, Any]:
    """One comparison: the full layer matrix (NaN where two layers' rows are different tokens)
    and its diagonal (layers of the same name) with intervals, and their mean."""
    common = [name for name in a.raw if name in b.raw]
    if not common:
        raise UserError(f"{comparison.name}: the two subjects have no layer name in common")
    for name in common:
        if len(a.rows[name]) != len(b.rows[name]):
            raise UserError(
                f"{comparison.name}: cka.pooling=tokens compares the same tokens, but the two "
                f"tokenizers split the inputs into {len(a.rows[name])} and {len(b.rows[name])} "
                "tokens: use cka.pooling=mean"
            )
    matrix = [
        [
            cka_of_centred(ca, cb)
            if len(a.rows[na]) == len(b.rows[nb]) and np.array_equal(a.rows[na], b.rows[nb])
            else float("nan")
            for nb, cb in b.centred.items()
        ]
        for na, ca in a.centred.items()
    ]
    low, high = half_sample_intervals(
        [(a.raw[name], b.raw[name]) for name in common],
        [a.rows[name] for name in common],
        bootstrap.resamples,
        bootstrap.confidence,
        bootstrap.seed,
    )
    values = [cka_of_centred(a.centred[name], b.centred[name]) for name in common]
    return {
        "a": comparison.a,
        "b": comparison.b,
        "floor": comparison.floor,
        "diagonal": [
            {"layer": name, "cka": value, "low": float(lo), "high": float(hi)}
            for name, value, lo, hi in zip(common, values, low, high, strict=False)
        ],
        "mean": {
            "mean": float(np.mean(values)),
            "low": float(low[-1]),
            "high": float(high[-1]),
            "n": len(values),
        },
        "matrix": {"rows": list(a.raw), "columns": list(b.raw), "values": matrix},
    }


def run_cka(task: PlannedTask, ctx: TaskContext, progress: Any) -> TaskResult:
    plan: CkaPlan = ctx.cka
    settings = plan.settings
    evaluated = plan.labels[ctx.subject.ref.name]
    inputs = read_inputs(task, ctx.subject.family, ctx.subject.seed)
    comparisons = plan.comparisons(evaluated)
    # the evaluated subject first, then in the order named (one load each, a fixed order)
    needed = list(dict.fromkeys([evaluated, *(n for c in comparisons for n in (c.a, c.b))]))
    progress.reset(total=len(needed) + len(comparisons))
    grams: dict[str, Grams] = {}
    identities: dict[str, Any] = {}
    for label in needed:
        progress.set_description(f"{task.name}: representations of {label}")
        if label == evaluated:
            subject = ctx.subject  # also when cka.against or a floor names it
        else:
            subject = load_subject(plan.others[label], plan.cache_dir, ctx.seed)
            subject.model.to(plan.device)
        grams[label] = Grams.of(representations(subject, inputs, ctx, settings), plan.device)
        identities[label] = subject.record()
        del subject  # another subject's weights are freed before the next one loads
        progress.update(1)
    results = []
    for comparison in comparisons:
        progress.set_description(f"{task.name}: {comparison.name}")
        results.append(compare(grams[comparison.a], grams[comparison.b], comparison, ctx.bootstrap))
        progress.update(1)
    record = {
        **provenance(plan.config, ctx.seed),
        "estimator": ESTIMATOR,
        "pooling": settings.pooling,
        "max_length": settings.max_length,
        "interval": {
            "method": "half-sampling of inputs (basic interval)",
            "resamples": ctx.bootstrap.resamples,
            "confidence": ctx.bootstrap.confidence,
            "seed": ctx.bootstrap.seed,
        },
        "inputs": {
            "dataset": task.dataset.name,
            "split": task.split or task.dataset.validation_split,
            "n": len(inputs.texts),
            "sha256": inputs.sha256(),
            "ids": inputs.ids,
            "decoder_targets": inputs.targets is not None,
        },
        "evaluated": evaluated,
        "subjects": identities,
        "comparisons": results,
    }
    metrics = {
        ("floor " if r["floor"] else "") + f"{r['a']} vs {r['b']}": r["mean"] for r in results
    }
    rows = [
        {
            "id": f"{r['a']} vs {r['b']}/{d['layer']}",
            "a": r["a"],
            "b": r["b"],
            "floor": r["floor"],
            **d,
        }
        for r in results
        for d in r["diagonal"]
    ]
    return TaskResult(
        metrics,
        rows,
        {"pooling": settings.pooling, "comparisons": len(results), "record": CKA_RECORD},
        files={CKA_RECORD: lambda path: write_json(path, record), **_figure_writers(results)},
    )


def _figure_writers(results: list[dict[str, Any]]) -> dict[str, Callable[[Path], Any]]:
    """cka-layers.png (and .pdf) and one heat map per comparison (floors included)."""
    from monolm import figures

    def curve(result: dict[str, Any], layers: list[str]) -> figures.LayerCurve:
        by_layer = {d["layer"]: d for d in result["diagonal"]}
        name = f"{result['a']} vs {result['b']}"
        return figures.LayerCurve(
            name,
            tuple(
                figures.Interval(by_layer[n]["cka"], by_layer[n]["low"], by_layer[n]["high"])
                for n in layers
            ),
        )

    def layers_figure(path: Path) -> list[Path]:
        layers = [d["layer"] for d in results[0]["diagonal"]]
        shared = [r for r in results if [d["layer"] for d in r["diagonal"]] == layers]
        return figures.layer_similarity(
            layers,
            [curve(r, layers) for r in shared if not r["floor"]],
            path.with_suffix(""),
            [curve(r, layers) for r in shared if r["floor"]],
            title="CKA per layer",
        )

    writers: dict[str, Callable[[Path], Any]] = {}
    if any(not r["floor"] for r in results):
        writers[LAYERS_FIGURE] = layers_figure
    for r in results:
        matrix = r["matrix"]
        pair = _UNSAFE.sub("-", f"{r['a']}--{r['b']}")
        stem = f"cka-{'floor-' if r['floor'] else ''}{pair}"

        def heatmap(
            path: Path, r: dict[str, Any] = r, matrix: dict[str, Any] = matrix
        ) -> list[Path]:
            return figures.cka_heatmap(
                matrix["values"],
                matrix["rows"],
                matrix["columns"],
                path.with_suffix(""),
                row_label=f"layer of {r['a']}",
                column_label=f"layer of {r['b']}",
                title=f"CKA: {r['a']} vs {r['b']}",
            )

        writers[f"{stem}.png"] = heatmap
    return writers
