"""What evaluate, attack, verify and export measure: one loader for every kind of subject.

A subject is named by `run_dir=` (a training run dir, or a sweep dir of them) or `model=` (a
conf/model option, a directory written by the export command, any local Hugging Face directory
or a hub id). `resolve_subjects` checks everything cheap (the run dir is complete, its checkpoint
exists, the model option exists, the family is known) without loading weights; `load_subject`
then rebuilds the model.

A run's model is rebuilt from the run dir alone: the resolved config (`run.json`), the tokenizer,
the architecture (`model_config/`), the transform re-applied (so parametrised parameter names
match), and the checkpoint loaded weights-only. There is one checkpoint rule
(`RunDir.checkpoint`) and never a fallback to pretrained weights.

Every result file records which weights it measured (`SubjectIdentity`, the same keys for every
kind of subject). A run that has not completed (still training, stopped or failed) is measured
all the same, with one warning line naming its status and the checkpoint's step.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import AutoConfig, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from monolm.cli import warn
from monolm.config.schema import DataConfig, DatasetConfig, ModelConfig
from monolm.constraints import build_transform
from monolm.constraints.base import ModelTransform, NoConstraint
from monolm.constraints.verify import ValidationData
from monolm.errors import UserError, did_you_mean
from monolm.inference import inference_context
from monolm.models.loading import AUTO_MODEL, load_model, load_model_config, load_tokenizer
from monolm.run_dir import (
    RunDir,
    is_export_dir,
    is_run_dir,
    read_export_record,
    run_dirs_under,
    sha256_of,
)
from monolm.training.checkpoint_io import load_checkpoint
from monolm.training.record import read_transform_records

# conf/model options whose FFN layout describes a plain model of this architecture.
_LAYOUT_OPTION = {
    ("gpt_neox", False): "pythia_70m",
    ("t5", False): "t5_small",
    ("t5", True): "flan_t5_base",
    ("llama", False): "tinyllama_1.1b",
}
_MODEL_PREFIX = "model."  # the LightningModule's attribute holding the HF model


@dataclass(frozen=True)
class SubjectRef:
    """One subject, resolved and checked, nothing loaded.

    `kind`: `run` (a training run dir), `option` (a conf/model option), `export` (a directory
    written by the export command) or `pretrained` (a local Hugging Face directory or a hub id).
    """

    kind: str
    name: str  # the run dir, option, directory or hub id as given
    family: str
    model_cfg: DictConfig
    run: RunDir | None = None
    checkpoint: Path | None = None
    config: DictConfig | None = None  # the run's (or the exported run's) resolved config
    constrained: frozenset[str] = frozenset()  # an export's constrained layers (its record)
    exported_from_sha256: str | None = None
    exported_from_step: int | None = None  # the global step of the checkpoint exported

    @property
    def own_dataset(self) -> DictConfig | None:
        """The data the model was trained on (None for a model with no training)."""
        return self.config.dataset if self.config is not None else None

    @property
    def label(self) -> str:
        """A short name: the run dir's or the directory's name, or the option / hub id."""
        return Path(self.name).name or self.name

    def data_seed(self, stage_seed: int) -> int:
        """The seed the loaded subject splits data with (`Subject.seed`): a run's own training
        seed (its held-out split), else the stage's `seed`."""
        return int(self.config.seed) if self.run is not None else stage_seed


@dataclass(frozen=True)
class SubjectQuery:
    """What a stage was asked to measure: `run_dir=` (+ `checkpoint=`) or `model=`."""

    run_dir: str | None = None
    model: str | None = None
    checkpoint: str | None = None

    @classmethod
    def of(cls, cfg: Any) -> SubjectQuery:
        return cls(
            None if cfg.run_dir is None else str(cfg.run_dir),
            None if cfg.model is None else str(cfg.model),
            None if cfg.checkpoint is None else str(cfg.checkpoint),
        )


def model_option(conf_dir: Path, name: str) -> DictConfig:
    """conf/model/<name>.yaml on the schema (typo -> UserError naming the options)."""
    path = conf_dir / "model" / f"{name}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in (conf_dir / "model").glob("*.yaml"))
        raise UserError(f"unknown model option '{name}': {did_you_mean(name, options)}")
    return OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(path))


def dataset_option(conf_dir: Path, name: str, family: str) -> DictConfig:
    """conf/dataset/<name>.yaml on the schema, resolved for a model of `family`."""
    path = conf_dir / "dataset" / f"{name}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in (conf_dir / "dataset").glob("*.yaml"))
        raise UserError(f"unknown dataset '{name}': {did_you_mean(name, options)}")
    merged = OmegaConf.merge(OmegaConf.structured(DatasetConfig), OmegaConf.load(path))
    root = OmegaConf.create({"model": {"family": family}, "dataset": merged})
    return OmegaConf.create(OmegaConf.to_container(root.dataset, resolve=True))


def _hf_config(source: str, named: str) -> Any:
    try:
        return AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise UserError(
            f"{named} is not a conf/model option, a local Hugging Face directory or a "
            f"reachable hub id ({str(exc).splitlines()[0]})"
        ) from exc


def _plain_model_cfg(
    conf_dir: Path, source: str, base: DictConfig | None, named: str
) -> DictConfig:
    """A model config for a directory or hub id: `base` (an export's own), else the FFN layout
    of the conf/model option with the same architecture."""
    if base is None:
        hf = _hf_config(source, named)
        option = _LAYOUT_OPTION.get((hf.model_type, bool(getattr(hf, "is_gated_act", False))))
        if option is None:
            raise UserError(f"{named} is a {hf.model_type}: supported are GPT-NeoX, T5 and Llama")
        base = model_option(conf_dir, option)
    cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), base)
    cfg.name = Path(source).name or source
    cfg.name_or_path, cfg.architecture, cfg.pretrained, cfg.tokenizer = source, None, True, None
    cfg.published = None  # a directory or hub id brings its own config.json
    return cfg


def _looks_like_path(name: str) -> bool:
    return "/" in name or Path(name).exists()


def _names_a_local_path(name: str) -> bool:
    """A name that cannot be a hub id (`org/name`): absolute, ./ ../ ~, or more than one `/`."""
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1


def resolve_model(conf_dir: Path, name: str, named: str | None = None) -> SubjectRef:
    """`model=<name>`: a conf/model option, an export, a local HF directory or a hub id.
    `named`: how error messages name the value (default `model='<name>'`)."""
    named = named or f"model='{name}'"
    if (conf_dir / "model" / f"{name}.yaml").is_file() or not _looks_like_path(name):
        model_cfg = model_option(conf_dir, name)  # an option, or a typo of one
        return SubjectRef("option", name, str(model_cfg.family), model_cfg)
    path = Path(name)
    if is_export_dir(path):
        record = read_export_record(path)
        config = OmegaConf.create(record["config"])
        model_cfg = _plain_model_cfg(conf_dir, name, config.model, named)
        return SubjectRef(
            "export",
            name,
            str(model_cfg.family),
            model_cfg,
            config=config,
            constrained=frozenset(record.get("constrained_layers", [])),
            exported_from_sha256=record.get("checkpoint_sha256"),
            exported_from_step=record.get("checkpoint_step"),
        )
    model_cfg = _plain_model_cfg(conf_dir, name, None, named)
    family = "seq2seq" if _hf_config(name, named).is_encoder_decoder else "causal"
    model_cfg.family = family
    return SubjectRef("pretrained", name, family, model_cfg)


def resolve_run(run: RunDir, checkpoint: str | None = None) -> SubjectRef:
    """A training run dir: its config, and the checkpoint to read (which must exist)."""
    config = run.config()
    path = run.checkpoint(checkpoint)
    run.require_complete()
    return SubjectRef(
        "run",
        str(run.path),
        str(config.model.family),
        config.model,
        run=run,
        checkpoint=path,
        config=config,
    )


def resolve_subjects(query: SubjectQuery, conf_dir: Path) -> list[SubjectRef]:
    """Every subject `query` names (a sweep dir gives one per run), checked, nothing loaded."""
    if (query.run_dir is None) == (query.model is None):
        raise UserError(
            "say what to measure: run_dir=<train run dir> or model=<conf/model option, local "
            "directory or hub id> (exactly one)"
        )
    if query.model is not None:
        return [resolve_model(conf_dir, query.model)]
    return [resolve_run(run, query.checkpoint) for run in run_dirs_under(Path(query.run_dir))]


def resolve_target(conf_dir: Path, target: str) -> SubjectRef:
    """A run dir (its last checkpoint) or a model: what `attack.transfer_to` names (messages
    name the entry; the caller names the key)."""
    path = Path(target)
    if is_run_dir(path):
        return resolve_run(RunDir(path))
    if not path.exists() and _names_a_local_path(target):
        raise UserError(
            f"'{target}' does not exist (give train run dirs, model directories, conf/model "
            "options or hub ids)"
        )
    if path.is_dir() and not (path / "config.json").is_file():
        raise UserError(f"'{target}' is neither a train run dir (run.json) nor a model directory")
    return resolve_model(conf_dir, target, named=f"'{target}'")


def load_subject_tokenizer(ref: SubjectRef, cache_dir: str) -> PreTrainedTokenizerBase:
    """The subject's tokenizer, without its weights."""
    if ref.run is not None:
        return AutoTokenizer.from_pretrained(ref.run.tokenizer_dir)
    return load_tokenizer(ref.model_cfg, cache_dir)


@dataclass(frozen=True)
class SubjectIdentity:
    """Which weights a result measured: the same keys for every kind of subject, null where one
    does not apply. Every result file records it beside its own seed (`Subject.record`)."""

    model: str | None = None  # the model option, directory or hub id as given (None: a run)
    run_dir: str | None = None
    training_seed: int | None = None  # the run's (an export's: its run's) config seed
    constraint: str = "none"  # the transform the weights were trained under
    adapter: str | None = None  # the adapter trained (lora), None: every weight trained
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    checkpoint_step: int | None = None  # the checkpoint's global_step (an export's: its run's)
    run_status: str | None = None  # run.json's status when the weights were loaded


def adapter_name(config: DictConfig | None) -> str | None:
    """The run's adapter option (None for none, and for runs recorded before adapters)."""
    name = OmegaConf.select(config, "adapter.name", default="none") if config is not None else None
    return None if name in (None, "none") else str(name)


def same_weights(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two subject records name the same weights: a run's checkpoint by its sha256
    (wherever the run dir lies), any other subject by its name."""
    if a.get("checkpoint_sha256") or b.get("checkpoint_sha256"):
        return a.get("checkpoint_sha256") == b.get("checkpoint_sha256")
    return a.get("model") == b.get("model")


def describe_weights(record: Mapping[str, Any]) -> str:
    """A subject record's weights in a few words, for messages."""
    sha = record.get("checkpoint_sha256")
    if sha:
        return f"checkpoint sha256 {sha[:12]}.. of {record.get('run_dir')}"
    return f"model '{record.get('model')}'"


_DIGESTS: dict[tuple[str, int, int, int], str] = {}


def _file_version(path: Path) -> tuple[str, int, int, int]:
    """(path, inode, size, mtime): a checkpoint replaced by a save is a new version."""
    stat = path.stat()
    return str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns


def checkpoint_sha256(path: Path) -> str:
    """`sha256_of(path)`, once per version of the file: a pre-flight check that hashes a
    checkpoint (the random control's) and the load that follows read it once between them."""
    version = _file_version(path)
    if version not in _DIGESTS:
        _DIGESTS[version] = sha256_of(path)
    return _DIGESTS[version]


def weights_identity(ref: SubjectRef) -> dict[str, Any]:
    """The keys of `SubjectIdentity` that `same_weights` compares, before any weights load (a
    run's checkpoint is hashed)."""
    if ref.checkpoint is not None:
        return {"run_dir": ref.name, "checkpoint_sha256": checkpoint_sha256(ref.checkpoint)}
    return {"model": ref.name}


@dataclass
class Subject:
    """A loaded model with what the stages need to know about it."""

    ref: SubjectRef
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    transform: ModelTransform
    seed: int  # the run's seed (its held-out split), else the stage's
    source: dict[str, Any] = field(default_factory=dict)  # `SubjectIdentity` and an export's

    @property
    def family(self) -> str:
        return self.ref.family

    @property
    def model_cfg(self) -> DictConfig:
        return self.ref.model_cfg

    @property
    def config(self) -> DictConfig | None:
        return self.ref.config

    @property
    def own_dataset(self) -> DictConfig | None:
        return self.ref.own_dataset

    @property
    def checkpoint_sha256(self) -> str | None:
        return self.source.get("checkpoint_sha256")

    @property
    def constrained_layers(self) -> frozenset[str]:
        """Full names of the layers the transform changed (an export's: from its record)."""
        return frozenset(self.transform.layers) or self.ref.constrained

    def inference(
        self, autocast_dtype: torch.dtype | None = None, grad: bool = False
    ) -> AbstractContextManager[None]:
        """The one inference context (see `monolm.inference.inference_context`)."""
        return inference_context(self.model, self.transform.cached_weights, autocast_dtype, grad)

    def validation_data(self, dataset: DictConfig | None = None) -> ValidationData:
        """Validation batches of `dataset` (default: its own), tokenised as training did."""
        data = self.config.data if self.config is not None else OmegaConf.structured(DataConfig)
        chosen = dataset if dataset is not None else self.own_dataset
        if chosen is None:
            raise UserError(f"'{self.ref.name}' has no training data of its own: name a dataset")
        return ValidationData(self.tokenizer, chosen, data, self.seed, self.family)

    def record(self) -> dict[str, Any]:
        """What result files say about the subject: its identity, model name and family."""
        return {**self.source, "model_name": self.model_cfg.name, "family": self.family}


def _read_checkpoint(path: Path) -> tuple[dict[str, Any], str]:
    """The checkpoint's state and the sha256 of the same file version. A run still training
    replaces its checkpoint (a new file, renamed over the old) at every save: the version read
    is checked unchanged around the read, so the digest recorded is that of the weights
    loaded (the state is memory-mapped from that version)."""
    for _ in range(3):
        version = _file_version(path)
        digest = checkpoint_sha256(path)
        state = load_checkpoint(path)
        if _file_version(path) == version:
            return state, digest
    raise UserError(
        f"checkpoint '{path}' was replaced three times while it was read (a run saving very "
        "often): name a periodic checkpoint with checkpoint=<step-*.ckpt>"
    )


def _load_run_weights(
    ref: SubjectRef, model: PreTrainedModel, transform: ModelTransform
) -> tuple[str, int | None]:
    """Load the checkpoint's weights into `model`; return its sha256 and its global step."""
    state, digest = _read_checkpoint(ref.checkpoint)
    if "state_dict" not in state:
        raise UserError(
            f"checkpoint '{ref.checkpoint}' has no state_dict: not a checkpoint of this framework"
        )
    weights = {
        key.removeprefix(_MODEL_PREFIX): value
        for key, value in state["state_dict"].items()
        if key.startswith(_MODEL_PREFIX)
    }
    result = model.load_state_dict(weights, strict=False)
    missing = result.missing_keys if transform.strict_loading else []
    if missing or result.unexpected_keys:
        raise UserError(
            f"checkpoint '{ref.checkpoint}' does not fit the run's model: missing "
            f"{missing[:3]}, unexpected {result.unexpected_keys[:3]}"
        )
    step = state.get("global_step")
    return digest, None if step is None else int(step)


_UNFINISHED = {
    "running": "is still training",
    "stopped": "was stopped before its end (the same train command resumes it)",
    "failed": "failed",
}


def _warn_if_unfinished(identity: SubjectIdentity) -> None:
    """One warning line for a run that has not completed: its checkpoint is a mid-training one."""
    if identity.run_status == "completed":
        return
    state = _UNFINISHED.get(str(identity.run_status), "has not completed")
    warn(
        f"{identity.run_dir} {state} (run.json status {identity.run_status!r}): measuring its "
        f"checkpoint {Path(str(identity.checkpoint)).name} at step {identity.checkpoint_step}"
    )


def _load_run(ref: SubjectRef, seed: int) -> Subject:
    """A run's model, rebuilt from its run dir, with its checkpoint's weights."""
    transform = build_transform(ref.config.constraint, ref.config.get("adapter"))
    tokenizer = AutoTokenizer.from_pretrained(ref.run.tokenizer_dir)
    architecture = AutoConfig.from_pretrained(ref.run.model_config_dir)
    if transform.strict_loading:  # the checkpoint holds every weight
        model = AUTO_MODEL[ref.family].from_config(architecture, dtype=torch.float32)
    else:  # it holds part of them: the rest are rebuilt exactly as training built them
        torch.manual_seed(int(ref.config.seed))
        model = load_model(ref.config.model, architecture)
    transform.apply(model, ref.config.model)
    transform.check_rebuilt(read_transform_records(ref.run, transform))
    status = ref.run.status()  # before the checkpoint: 'completed' then means its final weights
    digest, step = _load_run_weights(ref, model, transform)
    identity = SubjectIdentity(
        run_dir=ref.name,
        training_seed=int(ref.config.seed),
        constraint=transform.name,
        adapter=adapter_name(ref.config),
        checkpoint=str(ref.checkpoint),
        checkpoint_sha256=digest,
        checkpoint_step=step,
        run_status=status,
    )
    _warn_if_unfinished(identity)
    return Subject(ref, model.eval(), tokenizer, transform, seed, asdict(identity))


def _model_identity(ref: SubjectRef) -> dict[str, Any]:
    """A model's identity; an export's carries its run's seed, constraint and step."""
    if ref.kind != "export":
        return asdict(SubjectIdentity(model=ref.name))
    config = ref.config
    identity = SubjectIdentity(
        model=ref.name,
        training_seed=int(config.seed),
        constraint=str(OmegaConf.select(config, "constraint.name", default="none")),
        adapter=adapter_name(config),
        checkpoint_step=ref.exported_from_step,
    )
    return {
        **asdict(identity),
        "export_dir": ref.name,
        "exported_from_checkpoint_sha256": ref.exported_from_sha256,
    }


def load_subject(ref: SubjectRef, cache_dir: str, seed: int = 0) -> Subject:
    """The subject's model in fp32 and eval mode, transform applied and weights loaded."""
    if ref.run is not None:
        return _load_run(ref, ref.data_seed(seed))
    tokenizer = load_tokenizer(ref.model_cfg, cache_dir)
    torch.manual_seed(seed)  # models built from an architecture start from a seeded init
    model = load_model(ref.model_cfg, load_model_config(ref.model_cfg, tokenizer)).eval()
    return Subject(ref, model, tokenizer, NoConstraint(), ref.data_seed(seed), _model_identity(ref))


def load_run(run_dir: str | Path, checkpoint: str | None = None) -> Subject:
    """A training run's trained model (its `checkpoints/last.ckpt` unless `checkpoint` names
    another file): the loader evaluate and attack use, for notebooks and tests. (A run brings
    its own tokenizer, so no tokenizer cache is read.)"""
    return load_subject(resolve_run(RunDir(Path(run_dir)), checkpoint), cache_dir="")
