"""Checks on values the schema's types cannot express, run before anything heavy is loaded."""

from __future__ import annotations

from typing import Any

from monolm.config.schema import TrainConfig
from monolm.config.typed import reject_unknown_keys
from monolm.constraints import constraint_names
from monolm.errors import UserError, did_you_mean

FAMILY_TASKS = {"causal": "language_modeling", "seq2seq": "summarization"}
SCHEDULES = ("linear", "cosine", "constant")
STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true", "fsdp")
PRECISIONS = ("32-true", "32", "bf16-mixed", "bf16", "16-mixed", "64-true")
REFUSED_PRECISIONS = ("bf16-true", "16-true", "transformer-engine")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


def _choice(key: str, value: Any, valid: tuple[str, ...] | list[str]) -> None:
    _require(value in valid, f"{key}='{value}' is not an option: {did_you_mean(str(value), valid)}")


def validate_train_config(cfg: Any) -> None:
    """Raise UserError naming the first impossible value; return None when the config is sound."""
    reject_unknown_keys(cfg, TrainConfig, "")
    _choice("model.family", cfg.model.family, list(FAMILY_TASKS))
    _choice("dataset.task", cfg.dataset.task, list(FAMILY_TASKS.values()))
    expected = FAMILY_TASKS[cfg.model.family]
    _require(
        cfg.dataset.task == expected,
        f"dataset '{cfg.dataset.name}' is a {cfg.dataset.task} dataset but model "
        f"'{cfg.model.name}' is {cfg.model.family}: training supports {expected} for it",
    )
    _require(cfg.seed >= 0, f"seed={cfg.seed} must be >= 0")

    optim = cfg.optim
    _require(optim.lr > 0, f"optim.lr={optim.lr} must be > 0")
    _require(optim.weight_decay >= 0, f"optim.weight_decay={optim.weight_decay} must be >= 0")
    _require(optim.eps > 0, f"optim.eps={optim.eps} must be > 0")
    _require(
        len(optim.betas) == 2 and all(0 <= b < 1 for b in optim.betas),
        f"optim.betas={list(optim.betas)} must be two values in [0, 1)",
    )
    _choice("optim.schedule", optim.schedule, SCHEDULES)
    _require(
        0 <= optim.warmup_ratio < 1, f"optim.warmup_ratio={optim.warmup_ratio} must be in [0, 1)"
    )
    _require(
        0 <= optim.min_lr_ratio <= 1, f"optim.min_lr_ratio={optim.min_lr_ratio} must be in [0, 1]"
    )
    _require(
        optim.schedule_steps is None or optim.schedule_steps > 0,
        f"optim.schedule_steps={optim.schedule_steps} must be > 0 (or null: trainer.max_steps)",
    )

    data, ds = cfg.data, cfg.dataset
    _require(data.batch_size >= 1, f"data.batch_size={data.batch_size} must be >= 1")
    _require(data.eval_batch_size >= 1, f"data.eval_batch_size={data.eval_batch_size} must be >= 1")
    _require(data.num_workers >= 0, f"data.num_workers={data.num_workers} must be >= 0")
    _require(
        ds.train_split != ds.validation_split,
        f"dataset '{ds.name}': train_split={ds.train_split} is also its validation_split, so the "
        "run would be validated on the data it trains on (an evaluation set, e.g. lambada, is "
        "for evaluate.py): set dataset.validation_split=null dataset.validation_fraction=0.05",
    )
    _require(ds.max_length >= 2, f"dataset.max_length={ds.max_length} must be >= 2")
    _require(
        ds.max_target_length >= 1, f"dataset.max_target_length={ds.max_target_length} must be >= 1"
    )
    for key in ("max_train_examples", "max_validation_examples"):
        value = ds[key]
        _require(value is None or value >= 1, f"dataset.{key}={value} must be >= 1 (or null)")

    trainer = cfg.trainer
    _require(
        trainer.max_steps > 0 or (trainer.max_steps == -1 and (trainer.max_epochs or 0) >= 1),
        f"trainer.max_steps={trainer.max_steps} must be > 0 (or -1 with trainer.max_epochs >= 1)",
    )
    _require(
        trainer.accumulate_grad_batches >= 1,
        f"trainer.accumulate_grad_batches={trainer.accumulate_grad_batches} must be >= 1",
    )
    _require(
        trainer.precision not in REFUSED_PRECISIONS,
        f"trainer.precision='{trainer.precision}' keeps weights in low precision, where AdamW "
        "updates round away: use bf16-mixed (fp32 master weights)",
    )
    _choice("trainer.precision", str(trainer.precision), PRECISIONS)
    _choice("trainer.strategy", trainer.strategy, STRATEGIES)

    callbacks = cfg.callbacks
    _require(
        callbacks.checkpoint_every_n_steps >= 1,
        f"callbacks.checkpoint_every_n_steps={callbacks.checkpoint_every_n_steps} must be >= 1",
    )
    _require(
        callbacks.keep_checkpoints >= 0,
        f"callbacks.keep_checkpoints={callbacks.keep_checkpoints} must be >= 0",
    )
    _require(
        cfg.resume.lock_stale_after_s > 0,
        f"resume.lock_stale_after_s={cfg.resume.lock_stale_after_s} must be > 0 (seconds)",
    )
    _choice("constraint", cfg.constraint.get("name"), constraint_names())
    for name, logger in (cfg.logger or {}).items():
        _require(
            logger is not None and "_target_" in logger,
            f"logger.{name} has no _target_ (a Lightning logger class)",
        )


def validate_max_length(cfg: Any, positions: int | None) -> None:
    """dataset.max_length must fit the model's position embeddings (None: relative positions)."""
    _require(
        positions is None or cfg.dataset.max_length <= positions,
        f"dataset.max_length={cfg.dataset.max_length} exceeds the {positions} positions of model "
        f"'{cfg.model.name}': use at most {positions}",
    )
