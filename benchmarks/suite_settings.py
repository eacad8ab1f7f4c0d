"""What benchmarks/gpu_suite.sh measures, at which sizes, and how long each part may take.

Two profiles run the same code: `GPU` (one H200, the real sizes) and `CPU_SMOKE` (the same
options with their published architectures shrunk to a few layers of width 64, so the whole
suite runs on a laptop CPU in about a minute and a typo never costs GPU minutes).

GPU sizing (estimates for one H200 at ~40% MFU; each part's bound leaves 1.5-3x headroom, and
the suite's budget caps the total whatever happens):

- environment, peak (10 s): device query; bf16 matmuls of 4096-16384, ~1 s per size.
- train_constraint (60 s): 3 pythia_1.4b arms built (~10 s each on the host); per repeat, each
  monotonic arm takes turns with none for 3 + 10 steps of 4 x 2048 tokens; 2 repeats: 104 steps
  of ~0.25 s.
- train_loop (45 s): the plain loop and train.py's loop, each a build and 5 + 25 steps.
- eval (35 s): a pythia_1.4b build; 256 bundled documents (~50k tokens) scored by evaluate's
  path and by the direct loop, 1 + 3 times.
- attack (45 s): t5_small and pythia_1.4b builds; HotFlip and UAT on 8 random-token examples,
  2 repeats.
- checkpoint (70 s): a pythia_1.4b build, 2 steps, one 17 GB checkpoint saved, fsynced, loaded
  and serialised.
- fsdp (30 s): train.py's body, pythia_160m, FSDP on one device, monotonic, 2 steps of 2 x 512.
- resume (50 s): train.py's body 4 times, pythia_70m, 2 steps of 4 x 512 (straight twice; one
  step, then resumed to two).

About 6 min in all, under the 8 min budget (480 s from start to results written).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

PARTS = (
    "environment",
    "peak",
    "train_constraint",
    "train_loop",
    "eval",
    "attack",
    "checkpoint",
    "fsdp",
    "resume",
)

# Seconds each part may run on the H200 (the suite's remaining budget may cut it shorter).
GPU_BOUNDS = {
    "environment": 60,
    "peak": 60,
    "train_constraint": 180,
    "train_loop": 150,
    "eval": 120,
    "attack": 150,
    "checkpoint": 180,
    "fsdp": 120,
    "resume": 150,
}


@dataclass(frozen=True)
class SuiteSettings:
    name: str  # gpu | cpu-smoke
    device: str  # cuda | cpu
    budget_s: float  # the whole suite, start to results written
    bounds: Mapping[str, float]  # per part, seconds
    precision: str = "bf16-mixed"  # training; evaluation and attacks run bf16 autocast
    threads: int | None = None  # torch CPU threads in every part (None: torch's default)
    # per conf/model option: overrides of its `published` architecture (the smoke's shrinking)
    shrink: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    peak_sizes: tuple[int, ...] = (4096, 8192, 16384)
    peak_seconds: float = 1.0  # per size, after warm-up
    train_model: str = "pythia_1.4b"
    seq_len: int = 2048
    batch_size: int = 4
    warmup: int = 3
    steps: int = 10
    repeats: int = 2
    loop_warmup: int = 5
    loop_steps: int = 25
    loop_repeats: int = 1
    eval_docs: int = 256  # bundled tiny_lm train documents
    eval_max_length: int = 2048
    eval_batch_size: int = 16
    eval_repeats: int = 3
    attack_models: tuple[str, ...] = ("t5_small", "pythia_1.4b")
    attack_examples: int = 8
    attack_repeats: int = 2
    attack_batch_size: int = 32
    # (input, target) tokens of the random examples by family; None: attack_efficiency's
    # RANDOM_LENGTHS (seq2seq 256 / 64, causal 96 / 32)
    attack_lengths: Mapping[str, tuple[int, int]] | None = None
    checkpoint_seq_len: int = 512
    checkpoint_batch_size: int = 2
    checkpoint_repeats: int = 1
    fsdp_model: str = "pythia_160m"
    resume_model: str = "pythia_70m"
    small_seq_len: int = 512
    small_batch_size: int = 4

    @property
    def trainer(self) -> tuple[str, ...]:
        """The trainer option of single-device training (bf16-mixed: fp32 master weights)."""
        if self.device == "cuda":
            return ("trainer=gpu", f"trainer.precision={self.precision}")
        return ("trainer=cpu", f"trainer.precision={self.precision}")

    def published(self, option: str) -> tuple[str, ...]:
        """`model.published.*` overrides of `option` (none at GPU sizes)."""
        return tuple(f"model.published.{o}" for o in self.shrink.get(option, ()))


GPU = SuiteSettings(name="gpu", device="cuda", budget_s=480, bounds=GPU_BOUNDS)


def _narrow_pythia() -> tuple[str, ...]:
    return (
        "hidden_size=64",
        "num_hidden_layers=2",
        "num_attention_heads=4",
        "intermediate_size=256",
        "vocab_size=2048",  # the bundled tokenizer's size: no fewer rows than its ids
    )


CPU_SMOKE = replace(
    GPU,
    name="cpu-smoke",
    device="cpu",
    # one thread: OpenMP threads on a small shared CPU stall each other at every barrier (a tiny
    # T5 forward took 0.34 s on 2 threads, 0.01 s on 1)
    threads=1,
    budget_s=900,
    bounds={part: 240 for part in PARTS},
    shrink={
        "pythia_1.4b": _narrow_pythia(),
        "pythia_160m": _narrow_pythia(),
        "pythia_70m": _narrow_pythia(),
        "t5_small": (
            "d_model=64",
            "d_ff=128",
            "d_kv=16",
            "num_heads=4",
            "num_layers=2",
            "vocab_size=2048",
        ),
    },
    peak_sizes=(256, 512),
    peak_seconds=0.3,
    seq_len=64,
    batch_size=2,
    warmup=1,
    steps=2,
    repeats=1,
    loop_warmup=1,
    loop_steps=2,
    eval_docs=6,
    eval_max_length=64,
    eval_batch_size=4,
    eval_repeats=1,
    attack_examples=2,
    attack_repeats=1,
    attack_batch_size=8,
    attack_lengths={"seq2seq": (24, 8), "causal": (16, 8)},
    checkpoint_seq_len=64,
    small_seq_len=64,
    small_batch_size=2,
)
