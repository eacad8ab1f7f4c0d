"""What a run is, and which settings may change when it is continued.

Every key of the resolved training config falls in one class:

- defining (model, constraint, dataset, seed): a different value is a different run; resuming
  with one is refused, always;
- continuation: more steps, logging, checkpoint cadence, devices, validation cadence, data
  loading workers. A user continuing a run may change these; the change is recorded;
- free (paths, resume): where things live on this machine and how to resume; not compared;
- everything else (optimiser, schedule, batch, precision, clipping...): refused, unless the
  key is named in `resume.allow_changes=[...]`; then it is recorded in the run's segment
  history.

The lr schedule's horizon is compared as it takes effect: with `optim.schedule_steps` null it
follows `trainer.max_steps`, so training longer also stretches the schedule, and is refused
unless the horizon is pinned (`optim.schedule_steps=<old max_steps>`) or the change allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import MISSING as MISSING_FIELD
from dataclasses import dataclass, field
from typing import Any

from monolm.config.schema import DatasetConfig
from monolm.errors import UserError

DEFINING = ("model", "constraint", "adapter", "dataset", "seed")
FREE = ("paths", "resume")
CONTINUATION = (
    # more (or less) training
    "trainer.max_steps",
    "trainer.max_epochs",
    # logging
    "logger",
    "tags",
    "trainer.log_every_n_steps",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "callbacks.lr_monitor",
    "callbacks.throughput",
    "callbacks.progress_refresh_rate",
    # checkpoint cadence
    "callbacks.checkpoint_every_n_steps",
    "callbacks.keep_checkpoints",
    # devices (the data order follows the world size: not bit-exact, README "Resuming")
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    # validation cadence and loading, which do not touch the training numbers
    "trainer.val_check_interval",
    "trainer.check_val_every_n_epoch",
    "trainer.num_sanity_val_steps",
    "data.eval_batch_size",
    "data.num_workers",
    "data.tokenize_num_proc",
)
SCHEDULE_HORIZON = "optim.schedule_steps"


def _under(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == p or key.startswith(f"{p}.") for p in prefixes)


def kind_of(key: str) -> str:
    """defining | continuation | free | other."""
    if _under(key, FREE):
        return "free"
    if _under(key, CONTINUATION):
        return "continuation"
    if _under(key, DEFINING):
        return "defining"
    return "other"


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys to leaf values (lists are leaves)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


# Keys the training config gained after runs were made with it, at the values that mean what an
# older run did without them: left out of the comparison and the hash at those values, so a run
# recorded before them continues (and hashes) as it did.
_ADDED_DATASET_KEYS = (
    "prompt",
    "target_delimiter",
    "label_field",
    "choices",
    "positive_label",
    "answers_field",
    "no_answer",
    "split_seed",
)
ADDED_KEYS: dict[str, Any] = {
    "adapter.name": "none",
    "model.published": None,  # the tiny options (and any model with no published architecture)
    **{  # their schema defaults, read from the schema so the two cannot drift apart
        f"dataset.{f.name}": f.default_factory() if f.default is MISSING_FIELD else f.default
        for f in dataclasses.fields(DatasetConfig)
        if f.name in _ADDED_DATASET_KEYS
    },
}


# `model.published` (a real option's architecture as its hub config publishes it) builds the
# model only with random weights (model.pretrained=false). Pretrained weights bring their own
# config and never read it: it is left out then, so every pretrained run recorded before the
# key existed keeps its identity. With pretrained=false it defines the model and counts. (A run
# recorded before it with pretrained=false on a real option took the hub's config at run time,
# which its config does not hold: resuming one is refused, naming the model.published keys.)
PUBLISHED = "model.published"


def _left_out(key: str, value: Any, flat: Mapping[str, Any]) -> bool:
    if key in ADDED_KEYS and value == ADDED_KEYS[key]:
        return True
    return _under(key, [PUBLISHED]) and flat.get("model.pretrained", True) is not False


def effective(config: Mapping[str, Any]) -> dict[str, Any]:
    """The flattened config with the schedule horizon as training uses it (and without the
    `ADDED_KEYS` at their old meaning, nor a published architecture that takes no part)."""
    everything = flatten(config)
    flat = {
        key: value for key, value in everything.items() if not _left_out(key, value, everything)
    }
    if flat.get(SCHEDULE_HORIZON) is None:
        steps = flat.get("trainer.max_steps")
        if isinstance(steps, int) and steps > 0:
            flat[SCHEDULE_HORIZON] = steps
        else:
            flat[SCHEDULE_HORIZON] = f"{flat.get('trainer.max_epochs')} epochs"
    return flat


def identity_sha256(config: Mapping[str, Any]) -> str:
    """A hash of everything that determines the run's numbers (all but continuation and free
    keys): equal hashes, same run."""
    flat = effective(config)
    defining = {k: v for k, v in sorted(flat.items()) if kind_of(k) in ("defining", "other")}
    text = json.dumps(defining, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Change:
    key: str
    before: Any
    after: Any

    def describe(self) -> str:
        return f"{self.key} {self.before!r} -> {self.after!r}"


@dataclass
class Changes:
    """How a continuing segment's config differs from the run it continues."""

    continuation: list[Change] = field(default_factory=list)
    allowed: list[Change] = field(default_factory=list)  # named in resume.allow_changes

    def record(self) -> dict[str, dict[str, Any]]:
        """{key: {"before", "after", "allowed_by"}} for run.json and metrics.json."""
        return {
            **{
                c.key: {"before": c.before, "after": c.after, "allowed_by": "continuation"}
                for c in self.continuation
            },
            **{
                c.key: {"before": c.before, "after": c.after, "allowed_by": "resume.allow_changes"}
                for c in self.allowed
            },
        }


def _differences(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Change]:
    keys = sorted(set(before) | set(after))
    return [Change(k, before.get(k), after.get(k)) for k in keys if before.get(k) != after.get(k)]


def _defining_order(change: Change) -> tuple[int, bool, str]:
    """Model first, then constraint, dataset, seed; within each, its name first."""
    group = next(i for i, prefix in enumerate(DEFINING) if _under(change.key, [prefix]))
    return group, not change.key.endswith(".name"), change.key


def _listed(changes: list[Change], limit: int = 4) -> str:
    shown = ", ".join(c.describe() for c in changes[:limit])
    more = len(changes) - limit
    return f"{shown} and {more} more" if more > 0 else shown


def check_allow_changes(allow: Iterable[str], config: Mapping[str, Any]) -> list[str]:
    """`resume.allow_changes` entries, each a key of the config that may be allowed."""
    flat = effective(config)
    allowed = list(allow)
    for key in allowed:
        if not any(k == key or k.startswith(f"{key}.") for k in flat):
            raise UserError(
                f"resume.allow_changes: '{key}' is not a key of the training config "
                "(name keys like optim.lr, data.batch_size)"
            )
        if kind_of(key) == "defining":
            raise UserError(
                f"resume.allow_changes: '{key}' defines the run (model, constraint, dataset, "
                "seed): a run with another one is a new run; use another hydra.run.dir"
            )
    return allowed


def compare(
    run_dir: str,
    created: Mapping[str, Any],
    latest: Mapping[str, Any],
    new: Mapping[str, Any],
    allow: Iterable[str],
) -> Changes:
    """Check that `new` may continue a run created with `created` and last run with `latest`;
    the changes it makes, or a UserError naming the keys that differ."""
    allowed = check_allow_changes(allow, new)
    now = effective(new)
    defining = sorted(
        (c for c in _differences(effective(created), now) if kind_of(c.key) == "defining"),
        key=_defining_order,
    )
    if defining:
        raise UserError(
            f"hydra.run.dir='{run_dir}' holds another run: {_listed(defining)}. A different "
            "model, constraint, dataset or seed is a new run: use another hydra.run.dir "
            "(nothing was changed)"
        )
    changes = Changes()
    refused = []
    for change in _differences(effective(latest), now):
        kind = kind_of(change.key)
        if kind == "continuation":
            changes.continuation.append(change)
        elif kind == "other" and _under(change.key, allowed):
            changes.allowed.append(change)
        elif kind == "other":
            refused.append(change)
    if refused:
        hint = ""
        if any(c.key == SCHEDULE_HORIZON for c in refused) and latest_horizon_follows(latest):
            hint = (
                f" ({SCHEDULE_HORIZON} is null: the lr schedule follows trainer.max_steps; "
                f"pass {SCHEDULE_HORIZON}={effective(latest)[SCHEDULE_HORIZON]} to keep it)"
            )
        keys = ",".join(c.key for c in refused)
        raise UserError(
            f"resuming '{run_dir}' would change {_listed(refused)}{hint}: the run so far used "
            f"the old values. Continue with them, or allow the change explicitly with "
            f"resume.allow_changes=[{keys}] (recorded in run.json); nothing was changed"
        )
    return changes


def latest_horizon_follows(latest: Mapping[str, Any]) -> bool:
    return flatten(latest).get(SCHEDULE_HORIZON) is None
