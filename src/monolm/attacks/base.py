"""The attack contract: what attack.py knows about an attack. A new attack is one module (its
settings dataclass, an `Attack` subclass with its pre-flight checks and its run, and a
`register_attack` call in attacks/registry.py) plus one YAML file in conf/attack/attack/.

attack.py plans first (every subject, dataset and setting checked, `Attack.check` and
`Attack.check_tokenizer` included, before any weights load), then per subject builds the
examples, the candidate vocabulary and the objective, calls `Attack.run`, and measures what came
back (clean vs attacked NLL, summaries and ROUGE-L, success) the same way for every attack.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from omegaconf import DictConfig
from transformers import PreTrainedTokenizerBase

from monolm.attacks.examples import AttackExample, ExampleSettings
from monolm.attacks.objective import Objective
from monolm.attacks.vocabulary import CandidateVocabulary
from monolm.config.typed import at_least
from monolm.errors import UserError
from monolm.subjects import SubjectRef

Ids = tuple[int, ...]


@dataclass
class AuditSettings:
    """`attack.audit` (every attack option has it): the exhaustive audit (attacks/audit.py) of
    HotFlip, GCG, UAT and their random controls, run after the attack on its first `examples`
    examples (UAT: restarts)."""

    examples: int = 0  # 0: off; UAT: restarts audited
    batch_size: int | None = None  # sequences per forward pass; null: the run's batch_size

    def check(self) -> None:
        at_least("attack.audit", self, ("examples",), 0)
        at_least("attack.audit", self, ("batch_size",), 1)


@dataclass
class AttackSettings:
    """Keys every attack option has (`attack.<key>`); options add their own."""

    name: str = "none"
    # Success: seq2seq, relative ROUGE-L drop of the generated summary above success_threshold;
    # causal LM, relative NLL increase above nll_success_threshold. Examples whose clean score is
    # under the floor (ROUGE-L x 100 below rouge_floor; NLL below nll_floor nats/token, where a
    # relative increase means nothing) are reported as skipped.
    success_threshold: float = 0.15
    nll_success_threshold: float = 0.15
    rouge_floor: float = 5.0
    nll_floor: float = 0.05
    transfer_to: list[str] = field(default_factory=list)  # run dirs or models to replay on
    audit: AuditSettings = field(default_factory=AuditSettings)  # off unless examples > 0

    def check(self) -> None:
        """Raise UserError naming the first value out of range; options extend it."""
        self.audit.check()
        for key in ("success_threshold", "nll_success_threshold", "rouge_floor", "nll_floor"):
            if not getattr(self, key) >= 0:
                raise UserError(f"attack.{key}={getattr(self, key)} must be >= 0")


@dataclass(frozen=True)
class AttackPlan:
    """One subject's attack, as planned before any weights load."""

    family: str  # causal | seq2seq
    dataset: DictConfig  # the data attacked (a conf/dataset config, resolved)
    split: str  # the evaluation split (or a description of the held-out part)
    out_dir: Path  # where this subject's records go
    run_name: str | None  # the run dir's name (None for a model): finds a sweep's subdir
    subject: SubjectRef  # what is attacked, resolved (not loaded)
    selection: dict[str, Any]  # the keys that pick and cut the examples (`example_selection`)


@dataclass
class AttackRun:
    """What an attack's `run` gets: everything is built, the model is on its device."""

    objective: Objective
    tokenizer: PreTrainedTokenizerBase
    examples: list[AttackExample]  # the evaluation examples, in order
    vocab: CandidateVocabulary
    generator: torch.Generator
    plan: AttackPlan
    example_settings: ExampleSettings  # how examples are cut (for optimisation examples)
    data_seed: int  # the seed the run split its data with
    subject: dict[str, Any]  # the loaded subject's record (`Subject.record`)


@dataclass
class AttackOutcome:
    """What an attack did, per evaluation example (same order as `AttackRun.examples`)."""

    clean: list[Ids]  # the packed clean inputs
    attacked: list[Ids]  # the attacked inputs
    tokens_changed: list[int]  # flipped positions or inserted trigger tokens
    per_example: list[dict[str, Any]]  # extra fields of each example row (queries, flips...)
    info: dict[str, Any]  # the attack's summary in attack.json
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # file name -> JSON
    # In memory only, never written: what the audit (attacks/audit.py) re-reads (UAT: the
    # optimisation examples and the restarts).
    memory: dict[str, Any] = field(default_factory=dict)


class Attack(ABC):
    """One kind of attack (`attack=<name>`)."""

    name: ClassVar[str]
    settings_type: ClassVar[type[AttackSettings]]

    def check(self, settings: AttackSettings, plan: AttackPlan) -> None:  # noqa: B027
        """Pre-flight checks that need the plan (dataset, splits, files), not the model; none
        by default."""

    def check_tokenizer(  # noqa: B027
        self, settings: AttackSettings, tokenizer: PreTrainedTokenizerBase
    ) -> None:
        """Pre-flight checks that need the subject's tokenizer, not its weights; none by
        default."""

    @abstractmethod
    def run(self, settings: AttackSettings, run: AttackRun) -> AttackOutcome:
        """Attack `run.examples`."""


class Search(Attack):
    """An attack whose search a gradient-free control can run with random candidates
    (`attack=random attack.mimic=<name>`) and the same query budget."""

    # Its settings group (`attack.<settings_key>`), which a control of it shares.
    settings_key: ClassVar[str]
    # The file in its output dir that records the queries spent per example or restart.
    queries_record: ClassVar[str]

    @abstractmethod
    def settings_of(self, settings: Any) -> Any:
        """The search's own settings group inside `settings` (its options or the control's)."""

    @abstractmethod
    def search(
        self, settings: Any, run: AttackRun, proposer: str, budgets: list[int] | None
    ) -> AttackOutcome:
        """Run with `proposer` gradient or random; `budgets`: queries per example or restart."""

    @abstractmethod
    def recorded_budgets(self, base: Path, settings: Any, run: AttackRun) -> list[int]:
        """The queries an earlier run of this search (output dir `base`) spent."""

    def run(self, settings: AttackSettings, run: AttackRun) -> AttackOutcome:
        return self.search(self.settings_of(settings), run, "gradient", None)
