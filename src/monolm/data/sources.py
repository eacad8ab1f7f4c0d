"""Raw train / validation splits for a dataset config, always through `datasets.load_dataset`.

Three sources share that one call: a hub dataset (`path`, `config_name`, `revision`, optionally
`data_files` inside the hub repo), local files (`data_files` pointing at json/jsonl/parquet/csv on
disk, whatever `path` says), and the datasets bundled with the package.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset

from monolm.data.bundled import bundled_files
from monolm.errors import UserError

_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


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


def load_arguments(ds_cfg: Any) -> tuple[str, dict[str, Any]]:
    """(path, kwargs) for `datasets.load_dataset`; checks local files exist first."""
    if ds_cfg.bundled:
        return "json", {"data_files": bundled_files(ds_cfg.bundled)}
    data_files = dict(ds_cfg.data_files) if ds_cfg.data_files else None
    if data_files and all(_looks_local(p) for v in data_files.values() for p in _as_list(v)):
        resolved: dict[str, list[str]] = {}
        for split, value in data_files.items():
            paths = []
            for pattern in _as_list(value):
                matches = sorted(glob.glob(str(Path(pattern).expanduser())))
                if not matches:
                    raise UserError(f"dataset.data_files.{split}: no file matches '{pattern}'")
                paths.extend(matches)
            resolved[split] = paths
        return _builder_for([p for ps in resolved.values() for p in ps]), {"data_files": resolved}
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


def load_split(path: str, kwargs: dict[str, Any], split: str, ds_cfg: Any) -> Dataset:
    try:
        return datasets.load_dataset(path, split=split, **kwargs)
    except ValueError as exc:
        if "split" in str(exc).lower():
            raise UserError(f"dataset '{ds_cfg.name}' has no split '{split}' ({exc})") from exc
        raise UserError(f"cannot load dataset '{ds_cfg.name}' from '{path}': {exc}") from exc
    except (OSError, datasets.exceptions.DatasetsError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot load dataset '{ds_cfg.name}' from '{path}': {first}") from exc


def _limit(ds: Dataset, limit: int | None) -> Dataset:
    return ds if limit is None or limit >= len(ds) else ds.select(range(limit))


def load_splits(ds_cfg: Any, seed: int) -> tuple[Dataset, Dataset]:
    """The raw (train, validation) datasets, limited and checked for the fields the task needs."""
    path, kwargs = load_arguments(ds_cfg)
    train = load_split(path, kwargs, ds_cfg.train_split, ds_cfg)
    if ds_cfg.validation_split:
        validation = load_split(path, kwargs, ds_cfg.validation_split, ds_cfg)
    else:
        if not 0.0 < ds_cfg.validation_fraction < 1.0:
            raise UserError(
                f"dataset '{ds_cfg.name}' has no validation_split: set "
                f"dataset.validation_fraction in (0, 1), got {ds_cfg.validation_fraction}"
            )
        parts = train.train_test_split(test_size=ds_cfg.validation_fraction, seed=seed)
        train, validation = parts["train"], parts["test"]
    train = _limit(train, ds_cfg.max_train_examples)
    validation = _limit(validation, ds_cfg.max_validation_examples)
    fields = (
        [ds_cfg.text_field]
        if ds_cfg.task == "language_modeling"
        else [ds_cfg.source_field, ds_cfg.target_field]
    )
    for split_name, split in (("train", train), ("validation", validation)):
        missing = [f for f in fields if f not in split.column_names]
        if missing:
            raise UserError(
                f"dataset '{ds_cfg.name}' {split_name} split has no field {missing[0]!r}; "
                f"its fields: {split.column_names}"
            )
        if len(split) == 0:
            raise UserError(f"dataset '{ds_cfg.name}' {split_name} split is empty")
    return train, validation


def split_rows(
    ds_cfg: Any, split: str | None, seed: int, max_examples: int | None, which: str = "validation"
) -> Dataset:
    """The raw rows of `split`; split None means the `which` ('train' or 'validation') split as
    training saw it (held out of train with the run's seed when there is no validation split).
    At most `max_examples` rows, in the split's order."""
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
