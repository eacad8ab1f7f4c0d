"""The train.py configs benchmarks/gpu_suite.sh composes, from one place.

Real architectures with random weights, built offline from their published configs
(`model.pretrained=false`), on the bundled text tokenised by the bundled tokenizer
(`model.tokenizer=bundled`: its ids fit the published vocabulary; the embedding keeps the real
model's size). tests/test_gpu_suite.py composes and validates every one at GPU sizes.
"""

from __future__ import annotations

from pathlib import Path

from suite_settings import SuiteSettings


def train_overrides(
    s: SuiteSettings, option: str, seq_len: int, batch_size: int, trainer: tuple[str, ...] = ()
) -> list[str]:
    """train.py overrides for `option`'s published architecture with random weights on the
    bundled text (tokenised by the bundled tokenizer), offline."""
    return [
        f"model={option}",
        "model.pretrained=false",
        "model.tokenizer=bundled",
        *s.published(option),
        "dataset=tiny_lm",
        f"dataset.max_length={seq_len}",
        f"data.batch_size={batch_size}",
        *(trainer or s.trainer),
        "logger=csv",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
    ]


ARMS = {
    "none": ("constraint=none",),
    "softplus": ("constraint=monotonic", "constraint.parametrization=softplus"),
    "project": ("constraint=monotonic", "constraint.parametrization=project"),
}


def train_configs(s: SuiteSettings, work: Path) -> dict[str, list[str]]:
    """Every train.py config the parts compose, by name (tests compose and validate each one
    at GPU sizes too: a typo in an override fails on a CPU, not on the GPU)."""
    configs: dict[str, list[str]] = {}
    horizon = s.repeats * 2 * (s.warmup + s.steps)  # the none arm's steps
    for arm, extra in ARMS.items():
        configs[f"train_constraint/{arm}"] = [
            *train_overrides(s, s.train_model, s.seq_len, s.batch_size),
            f"trainer.max_steps={horizon}",
            *extra,
            f"paths.output_dir={work / arm}",
        ]
    configs["train_loop"] = [
        *train_overrides(s, s.train_model, s.seq_len, s.batch_size),
        f"trainer.max_steps={s.loop_warmup + s.loop_steps}",
        "trainer.limit_val_batches=0",
        "callbacks.checkpoint_every_n_steps=1000000",
        f"paths.output_dir={work / 'loop'}",
    ]
    configs["checkpoint"] = [  # after checkpoint_cost.measure_model's own (model=, 2 steps...)
        *train_overrides(s, s.train_model, s.checkpoint_seq_len, s.checkpoint_batch_size),
    ]
    fsdp_trainer = ("trainer=fsdp", "trainer.devices=1", f"trainer.precision={s.precision}")
    if s.device != "cuda":
        fsdp_trainer += ("trainer.accelerator=cpu",)
    configs["fsdp"] = [
        *train_overrides(s, s.fsdp_model, s.small_seq_len, s.small_batch_size, fsdp_trainer),
        "constraint=monotonic",
        "trainer.max_steps=2",
        "trainer.val_check_interval=null",
        "dataset.max_validation_examples=8",
        f"paths.output_dir={work / 'fsdp'}",
    ]
    resume = [
        *train_overrides(s, s.resume_model, s.small_seq_len, s.small_batch_size),
        "optim.schedule_steps=2",
        "trainer.val_check_interval=null",
        "dataset.max_validation_examples=8",
    ]
    for run, steps, folder in RESUME_RUNS:
        configs[f"resume/{run}"] = [
            *resume,
            f"trainer.max_steps={steps}",
            f"paths.output_dir={work / folder}",
        ]
    return configs


# (name, steps, run dir): two straight runs, then one run in two segments
RESUME_RUNS = (
    ("straight", 2, "straight"),
    ("again", 2, "again"),
    ("first_step", 1, "resumed"),
    ("resumed", 2, "resumed"),
)
