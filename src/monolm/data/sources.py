"""Raw train / validation splits for a dataset config, always through `datasets.load_dataset`.

Three sources share that one call: a hub dataset (`path`, `config_name`, `revision`, optionally
`data_files` inside the hub repo), local files (`data_files` pointing at json/jsonl/parquet/csv on
disk, whatever `path` says), and the datasets bundled with the package (`bundled`).

Which one: `data_files`, when set, wins. Local files replace the dataset's source, bundled or hub
(so `dataset=tiny dataset.data_files={train: a.jsonl, validation: b.jsonl}` trains on those files,
as evaluate's and attack's `data_files=` do); without a hub `path` (a bundled dataset) they must
be local files, and one that does not exist is an error. Otherwise `bundled`, then `path`.
"""

from __future__ import annotations

import glob
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset

from monolm.data import prompts
from monolm.data.bundled import bundled_files
from monolm.errors import UserError

_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
log = logging.getLogger(__name__)


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _builder_for(files: list[str]) -> str:
    suffixes = {
        Path(f.removesuffix(".gz").removesuffix(".zst").removesuffix(".bz2")).suffix for f in files
    }
    builders = {_BUILDERS.get(s) for s in suffixes}
    if len(builders) != 1 or None in builders:
        raise UserError(
            f"cannot tell the format of data files {files}: use one of {sorted(_BUILDERS)}"
        )
    return builders.pop()


def _looks_local(pattern: str) -> bool:
    return pattern.startswith(("/", ".", "~")) or Path(pattern).expanduser().exists()


def _split_files(value: Any) -> dict[str, Any]:
    """`data_files` as {split: file(s)}; a bare file or list of files is the train split (as in
    `datasets.load_dataset`)."""
    if value is None or (isinstance(value, str | Mapping | Sequence) and len(value) == 0):
        return {}
    if isinstance(value, str):
        return {"train": value}
    if isinstance(value, Mapping):
        return {str(split): files for split, files in value.items()}
    if isinstance(value, Sequence):
        return {"train": list(value)}
    raise UserError(
        f"dataset.data_files={value!r}: give {{split: file(s)}}, e.g. "
        "{train: train.jsonl, validation: validation.jsonl}"
    )


def _local_files(data_files: dict[str, Any]) -> dict[str, list[str]]:
    resolved: dict[str, list[str]] = {}
    for split, value in data_files.items():
        paths = []
        for pattern in _as_list(value):
            matches = sorted(glob.glob(str(Path(pattern).expanduser())))
            if not matches:
                where = "" if Path(pattern).expanduser().is_absolute() else f", from {Path.cwd()}"
                raise UserError(
                    f"dataset.data_files.{split}: no file matches '{pattern}' (local "
                    f"{'/'.join(s[1:] for s in _BUILDERS)} files or globs{where})"
                )
            paths.extend(matches)
        resolved[split] = paths
    return resolved


def load_arguments(ds_cfg: Any) -> tuple[str, dict[str, Any]]:
    """(path, kwargs) for `datasets.load_dataset`; checks local files exist first. `data_files`
    wins over `bundled` and `path` (see the module docstring)."""
    data_files = _split_files(ds_cfg.data_files)
    patterns = [p for v in data_files.values() for p in _as_list(v)]
    if data_files and (ds_cfg.bundled or not ds_cfg.path or all(_looks_local(p) for p in patterns)):
        resolved = _local_files(data_files)
        if ds_cfg.bundled:
            log.info(
                "dataset '%s': data_files %s replace the bundled '%s' data",
                ds_cfg.name,
                resolved,
                ds_cfg.bundled,
            )
        return _builder_for([p for ps in resolved.values() for p in ps]), {"data_files": resolved}
    if ds_cfg.bundled:
        return "json", {"data_files": bundled_files(ds_cfg.bundled)}
    if not ds_cfg.path:
        raise UserError(f"dataset '{ds_cfg.name}' sets none of path, data_files, bundled")
    kwargs: dict[str, Any] = {}
    if ds_cfg.config_name:
        kwargs["name"] = ds_cfg.config_name
    if ds_cfg.revision:
        kwargs["revision"] = ds_cfg.revision
    if data_files:
        kwargs["data_files"] = data_files
    return ds_cfg.path, kwargs


def _check_local_split(path: str, kwargs: dict[str, Any], split: str, ds_cfg: Any) -> None:
    """A split that local (or bundled) files do not have, named before `load_dataset` runs."""
    files = kwargs.get("data_files")
    if path not in _BUILDERS.values() or not isinstance(files, dict):
        return
    if not re.fullmatch(r"[\w-]+", split) or split in files:
        return  # slices and sums (train[:10], train+validation) are left to `datasets`
    if ds_cfg.data_files:
        hint = (
            f"add dataset.data_files.{split}=<file>, or set dataset.validation_split=null "
            "dataset.validation_fraction=0.05 to hold out part of train"
            if split == ds_cfg.validation_split
            else f"add dataset.data_files.{split}=<file>"
        )
        raise UserError(
            f"dataset.data_files has no '{split}' split (it has: {', '.join(files)}): {hint}"
        )
    raise UserError(
        f"dataset '{ds_cfg.name}' has no split '{split}' (its splits: {', '.join(files)})"
    )


def _first_cause(exc: BaseException) -> str:
    """The first line of what went wrong underneath `exc` (datasets' generation errors say only
    "An error occurred while generating the dataset")."""
    cause = exc.__cause__ or exc.__context__ or exc
    text = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
    return f"{type(cause).__name__}: {text}" if cause is not exc else text


def _unreadable_files(path: str, kwargs: dict[str, Any], ds_cfg: Any, exc: Exception) -> UserError:
    """A data file `datasets` could not parse, named with the parser's first line. Every split's
    files are named: `datasets` reads them all at once, whichever split was asked for."""
    files = kwargs.get("data_files") or {}
    listed = "; ".join(f"{split}: {', '.join(_as_list(f))}" for split, f in files.items())
    return UserError(
        f"cannot read the {path} data files of dataset '{ds_cfg.name}' ({listed}): "
        f"{_first_cause(exc)}"
    )


def load_split(path: str, kwargs: dict[str, Any], split: str, ds_cfg: Any) -> Dataset:
    _check_local_split(path, kwargs, split, ds_cfg)
    try:
        return datasets.load_dataset(path, split=split, **kwargs)
    except datasets.exceptions.DatasetGenerationError as exc:
        if path in _BUILDERS.values() and isinstance(kwargs.get("data_files"), dict):
            raise _unreadable_files(path, kwargs, ds_cfg, exc) from exc
        raise UserError(
            f"cannot load dataset '{ds_cfg.name}' from '{path}': {_first_cause(exc)}"
        ) from exc
    except ValueError as exc:
        if "split" in str(exc).lower():
            raise UserError(f"dataset '{ds_cfg.name}' has no split '{split}' ({exc})") from exc
        raise UserError(f"cannot load dataset '{ds_cfg.name}' from '{path}': {exc}") from exc
    except (OSError, datasets.exceptions.DatasetsError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot load dataset '{ds_cfg.name}' from '{path}': {first}") from exc


def _limit(ds: Dataset, limit: int | None) -> Dataset:
    return ds if limit is None or limit >= len(ds) else ds.select(range(limit))


def holdout_seed(ds_cfg: Any, seed: int) -> int:
    """The seed of the `validation_fraction` hold-out: `dataset.split_seed` when set (the same
    held-out examples for every arm and seed of a study), else the run's seed."""
    split_seed = getattr(ds_cfg, "split_seed", None)
    return seed if split_seed is None else int(split_seed)


def required_fields(ds_cfg: Any) -> list[str]:
    """The fields every row needs for the dataset's task."""
    if ds_cfg.task == "language_modeling":
        return [ds_cfg.text_field]
    if ds_cfg.task in prompts.PROMPTED_TASKS:
        return prompts.required_fields(ds_cfg)
    return [ds_cfg.source_field, ds_cfg.target_field]


def _check_labels(ds_cfg: Any, split_name: str, split: Dataset) -> None:
    """Every label of a classification split is a choice's index (GLUE's test labels are -1)."""
    count = len(ds_cfg.choices)
    for label in sorted(set(split[ds_cfg.label_field]), key=repr):
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < count:
            raise UserError(
                f"dataset '{ds_cfg.name}' {split_name} split: {ds_cfg.label_field}={label!r} is "
                f"not a label in [0, {count}) (dataset.choices={list(ds_cfg.choices)}; GLUE's "
                "test splits hide their labels as -1: use validation)"
            )


def load_splits(ds_cfg: Any, seed: int) -> tuple[Dataset, Dataset]:
    """The raw (train, validation) datasets, limited and checked for the fields the task needs.

    Without a validation split, `validation_fraction` of train is held out with
    `holdout_seed(ds_cfg, seed)`.
    """
    path, kwargs = load_arguments(ds_cfg)
    for split in (ds_cfg.train_split, ds_cfg.validation_split):
        if split:
            _check_local_split(path, kwargs, split, ds_cfg)  # both, before either is loaded
    train = load_split(path, kwargs, ds_cfg.train_split, ds_cfg)
    if ds_cfg.validation_split:
        validation = load_split(path, kwargs, ds_cfg.validation_split, ds_cfg)
    else:
        if not 0.0 < ds_cfg.validation_fraction < 1.0:
            raise UserError(
                f"dataset '{ds_cfg.name}' has no validation_split: set "
                f"dataset.validation_fraction in (0, 1), got {ds_cfg.validation_fraction}"
            )
        parts = train.train_test_split(
            test_size=ds_cfg.validation_fraction, seed=holdout_seed(ds_cfg, seed)
        )
        train, validation = parts["train"], parts["test"]
    train = _limit(train, ds_cfg.max_train_examples)
    validation = _limit(validation, ds_cfg.max_validation_examples)
    fields = required_fields(ds_cfg)
    for split_name, split in (("train", train), ("validation", validation)):
        missing = [f for f in fields if f not in split.column_names]
        if missing:
            raise UserError(
                f"dataset '{ds_cfg.name}' {split_name} split has no field {missing[0]!r}; "
                f"its fields: {split.column_names}"
            )
        if len(split) == 0:
            raise UserError(f"dataset '{ds_cfg.name}' {split_name} split is empty")
        if ds_cfg.task == "classification":
            _check_labels(ds_cfg, split_name, split)
    return train, validation


def split_rows(
    ds_cfg: Any, split: str | None, seed: int, max_examples: int | None, which: str = "validation"
) -> Dataset:
    """The raw rows of `split`; split None means the `which` ('train' or 'validation') split as
    training saw it (held out of train, when there is no validation split, with
    `dataset.split_seed` or else the run's `seed`, as `load_splits` does). At most
    `max_examples` rows, in the split's order."""
    if split is None and not ds_cfg.validation_split:
        rows = load_splits(ds_cfg, seed)[0 if which == "train" else 1]
    else:
        default = ds_cfg.train_split if which == "train" else ds_cfg.validation_split
        path, kwargs = load_arguments(ds_cfg)
        rows = load_split(path, kwargs, split or default, ds_cfg)
    if max_examples is not None and max_examples < len(rows):
        rows = rows.select(range(max_examples))
    if len(rows) == 0:
        raise UserError(f"dataset '{ds_cfg.name}': split '{split or which}' is empty")
    return rows
