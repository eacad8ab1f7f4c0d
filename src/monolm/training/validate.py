"""Checks on values the schema's types cannot express, run before anything heavy is loaded."""

from __future__ import annotations

from typing import Any

from monolm.config.schema import TrainConfig
from monolm.config.typed import reject_unknown_keys
from monolm.constraints import constraint_names
from monolm.data import prompts
from monolm.errors import UserError, did_you_mean

FAMILIES = ("causal", "seq2seq")
# The model families training supports for each dataset.task: packed LM blocks need a causal
# model, summarisation a seq2seq one; a prompted task is laid out for either family.
TASK_FAMILIES = {
    "language_modeling": ("causal",),
    "summarization": ("seq2seq",),
    "classification": FAMILIES,
    "question_answering": FAMILIES,
}
# Each family's own unprompted task (what dataset=tiny picks for it).
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
    _choice("model.family", cfg.model.family, FAMILIES)
    _choice("dataset.task", cfg.dataset.task, list(TASK_FAMILIES))
    supported = [task for task, families in TASK_FAMILIES.items() if cfg.model.family in families]
    _require(
        cfg.dataset.task in supported,
        f"dataset '{cfg.dataset.name}' is a {cfg.dataset.task} dataset but model "
        f"'{cfg.model.name}' is {cfg.model.family}: training supports {', '.join(supported)} "
        "for it",
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
    _require(
        ds.split_seed is None or ds.split_seed >= 0,
        f"dataset.split_seed={ds.split_seed} must be >= 0 (or null: the run's seed)",
    )
    if ds.task in prompts.PROMPTED_TASKS:
        validate_prompted_dataset(ds)

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


def validate_prompted_dataset(ds: Any) -> None:
    """A classification or question-answering dataset: a prompt naming the row's fields, the
    verbalised labels (classification) or the no-answer text (QA), and room for the answer."""
    _require(
        bool(str(ds.prompt).strip()),
        f"dataset '{ds.name}' is a {ds.task} task: dataset.prompt is empty; set a template over "
        "the row's fields, e.g. 'Question: {question} Answer:'",
    )
    _require(
        bool(prompts.prompt_fields(ds)),
        f"dataset.prompt={str(ds.prompt)!r} names no field of the data: every row would read the "
        "same prompt; name fields in braces, e.g. {sentence}",
    )
    if ds.task == "classification":
        names = prompts.choices(ds)  # at least two
        _require(
            all(name.strip() for name in names) and len(set(names)) == len(names),
            f"dataset.choices={names} must be distinct, non-empty label words (index = label id)",
        )
        _require(
            ds.positive_label is None or 0 <= ds.positive_label < len(names),
            f"dataset.positive_label={ds.positive_label} is not a label id: valid: "
            f"{', '.join(map(str, range(len(names))))} (or null)",
        )
    else:
        _require(
            bool(str(ds.no_answer).strip()),
            f"dataset '{ds.name}' is a question_answering task: dataset.no_answer is empty; set "
            "what the model answers to an unanswerable question, e.g. unanswerable",
        )
    _require(
        ds.max_target_length >= 2,
        f"dataset.max_target_length={ds.max_target_length} must be >= 2 for a {ds.task} task "
        "(the answer's tokens and EOS)",
    )
    _require(
        ds.max_length > ds.max_target_length,
        f"dataset.max_length={ds.max_length} must exceed dataset.max_target_length="
        f"{ds.max_target_length}: the prompt and its answer share max_length",
    )


def validate_max_length(cfg: Any, positions: int | None) -> None:
    """dataset.max_length must fit the model's position embeddings (None: relative positions)."""
    _require(
        positions is None or cfg.dataset.max_length <= positions,
        f"dataset.max_length={cfg.dataset.max_length} exceeds the {positions} positions of model "
        f"'{cfg.model.name}': use at most {positions}",
    )
