"""User-facing fixes of the entry points: data_files on a bundled dataset, each entry point's own
--help, and output/sweep directory names (train sweeps, evaluate, attack).

The configs are taken from the scripts themselves (`--cfg ... --resolve`), so these tests check
what `python train.py ...` / `evaluate.py` / `attack.py` really compose."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.helpers import FAST, run_script
from tests.test_bad_input import assert_one_line_error

TIMESTAMP = r"\d{4}-\d{2}-\d{2}/\d{2}-\d{2}-\d{2}"


def _printed(script: str, *args: str) -> str:
    result = run_script(script, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _hydra(script: str, *overrides: str):
    """The resolved `hydra` node (run.dir, sweep.subdir, ...) as `script` composes it; job number
    1 stands in for a sweep's."""
    printed = _printed(script, *overrides, "hydra.job.num=1", "--cfg", "all", "--resolve", "-p",
                       "hydra")  # fmt: skip
    return OmegaConf.create(printed)


def _jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def _files_override(train: Path, validation: Path | None = None) -> str:
    splits = f"train:'{train}'" + (f",validation:'{validation}'" if validation else "")
    return f"dataset.data_files={{{splits}}}"


# 1. dataset.data_files on the default (bundled) dataset ------------------------------------


def _train_dataset(*overrides: str):
    """`cfg.dataset` exactly as `python train.py <overrides>` composes it."""
    return OmegaConf.create(_printed("train.py", *overrides, "--cfg", "job", "--resolve", "-p",
                                     "dataset"))  # fmt: skip


def test_data_files_replace_the_bundled_dataset(tmp_path: Path) -> None:
    train_texts = [f"file training text number {i}" for i in range(5)]
    validation_texts = ["file validation text a", "file validation text b"]
    train = _jsonl(tmp_path / "train.jsonl", train_texts)
    validation = _jsonl(tmp_path / "validation.jsonl", validation_texts)
    ds = _train_dataset(_files_override(train, validation))
    assert ds.bundled == "tiny_lm"  # dataset=tiny keeps naming its bundled data ...

    from monolm.data.sources import load_splits, split_rows

    train_rows, validation_rows = load_splits(ds, seed=0)  # what TextDataModule.build() loads
    assert list(train_rows["text"]) == train_texts  # ... but the files are what is read
    assert list(validation_rows["text"]) == validation_texts
    assert list(split_rows(ds, None, 0, None, which="train")["text"]) == train_texts


def test_train_py_trains_on_the_given_files(tmp_path: Path) -> None:
    """End to end: a train file too short for one 128-token block can only fail if it, not the
    bundled text, is the training data."""
    train = _jsonl(tmp_path / "train.jsonl", ["too short"])
    validation = _jsonl(tmp_path / "validation.jsonl", ["also short"])
    result = run_script("train.py", f"hydra.run.dir={tmp_path / 'run'}", *FAST,
                        "trainer.max_steps=2", _files_override(train, validation))  # fmt: skip
    assert_one_line_error(result, "train split yields no training example")


def test_a_missing_data_file_is_a_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "train.jsonl"
    result = run_script("train.py", f"hydra.run.dir={tmp_path / 'run'}", *FAST,
                        "trainer.max_steps=2", _files_override(missing, missing))  # fmt: skip
    line = assert_one_line_error(result, str(missing), "dataset.data_files.train")
    assert "jsonl" in line  # says what is valid
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("pattern", ["not/a/file.jsonl", "./missing.jsonl", "data-*.jsonl"])
def test_a_bundled_dataset_takes_only_local_files(tmp_path: Path, pattern: str) -> None:
    from monolm.data.sources import load_splits
    from monolm.errors import UserError

    ds = _train_dataset(f"dataset.data_files={{train:'{pattern}',validation:'{pattern}'}}")
    with pytest.raises(UserError, match=re.escape(f"no file matches '{pattern}'")):
        load_splits(ds, seed=0)


def test_data_files_without_the_validation_split_say_how_to_add_it(tmp_path: Path) -> None:
    from monolm.data.sources import load_splits
    from monolm.errors import UserError

    ds = _train_dataset(_files_override(_jsonl(tmp_path / "t.jsonl", ["some text"] * 3)))
    with pytest.raises(UserError, match="no 'validation' split") as error:
        load_splits(ds, seed=0)
    assert "dataset.data_files.validation" in str(error.value)
    assert "validation_fraction" in str(error.value)
    held_out = OmegaConf.merge(ds, {"validation_split": None, "validation_fraction": 0.34})
    train_rows, validation_rows = load_splits(held_out, seed=0)
    assert len(train_rows) + len(validation_rows) == 3


# 2. each entry point's --help lists its own groups -----------------------------------------


def _groups_section(help_text: str) -> str:
    start = help_text.index("== Configuration groups ==")
    end = help_text.index("== Config ==", start)
    return help_text[start:end]


def _group_line(section: str, group: str) -> list[str]:
    (line,) = [x for x in section.splitlines() if x.startswith(f"{group}: ")]
    return [option.strip() for option in line.split(": ", 1)[1].split(",")]


def test_train_help_lists_only_train_groups() -> None:
    text = _printed("train.py", "--help")
    groups = _groups_section(text)
    for foreign in ("evaluate/task", "attack/attack", "lambada", "hellaswag", "schema/",
                    "evaluate:", "attack:"):  # fmt: skip
        assert foreign not in groups, foreign
    assert _group_line(groups, "constraint") == ["monotonic", "none"]
    for group in ("model", "dataset", "trainer", "logger", "callbacks", "paths", "experiment",
                  "debug", "hydra/launcher"):  # fmt: skip
        assert _group_line(groups, group), group
    assert {"tiny", "tiny_lm", "cnn_dailymail"} <= set(_group_line(groups, "dataset"))
    assert "tiny_pythia" in _group_line(groups, "model")
    assert {"local", "slurm"} <= set(_group_line(groups, "hydra/launcher"))
    assert "--hydra-help" in text and "--multirun" in text  # Hydra's flags are still shown


@pytest.mark.parametrize(
    ("script", "group", "option"),
    [("evaluate.py", "task", "lambada"), ("attack.py", "attack", "uat")],
)
def test_evaluate_and_attack_help_list_their_own_options(
    script: str, group: str, option: str
) -> None:
    text = _printed(script, "--help")
    groups = _groups_section(text)
    assert option in _group_line(groups, group)
    for foreign in ("constraint", "trainer", "logger", "experiment", "evaluate/task",
                    "attack/attack", "schema/"):  # fmt: skip
        assert foreign not in groups, foreign
    head = text[: text.index("== Config ==")]
    assert "tiny_pythia" in _group_line(head, "model")  # what model= accepts
    datasets = [x for x in head.splitlines() if re.match(r"(task\.<name>\.)?dataset: ", x)]
    assert datasets and "cnn_dailymail" in datasets[0]
    assert "--hydra-help" in text


# 3. train sweep job dirs are named like single runs ----------------------------------------


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        (("seed=1",), "tiny_pythia_tiny_lm_none_s1"),
        (("model=tiny_t5", "constraint=monotonic", "seed=2"),
         "tiny_t5_tiny_summarization_monotonic_s2"),
    ],
)  # fmt: skip
def test_train_sweep_job_dirs_are_named_like_single_runs(
    overrides: tuple[str, ...], name: str
) -> None:
    hydra = _hydra("train.py", *overrides)
    assert hydra.sweep.subdir == f"1_{name}"
    assert re.fullmatch(rf"outputs/train/{TIMESTAMP}_{name}", hydra.run.dir), hydra.run.dir


# 4. evaluate and attack output dirs name the subject (and the attack) ----------------------


@pytest.mark.parametrize(
    ("subject", "name"),
    [
        ("run_dir=outputs/train/2025-01-02/03-04-05_tiny_t5_tiny_summarization_none_s1/",
         "03-04-05_tiny_t5_tiny_summarization_none_s1"),
        ("model=EleutherAI/pythia-70m", "pythia-70m"),
        ("model=tiny_pythia", "tiny_pythia"),
    ],
)  # fmt: skip
def test_evaluate_dirs_name_the_subject(subject: str, name: str) -> None:
    hydra = _hydra("evaluate.py", subject)
    assert re.fullmatch(rf"outputs/evaluate/{TIMESTAMP}_{re.escape(name)}", hydra.run.dir)
    assert hydra.sweep.subdir == f"1_{name}"


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        (("attack=hotflip", "run_dir=outputs/multirun/x/1_tiny_pythia_tiny_lm_monotonic_s3"),
         "hotflip_1_tiny_pythia_tiny_lm_monotonic_s3"),
        (("attack=uat", "model=EleutherAI/pythia-160m"), "uat_pythia-160m"),
        (("attack=random", "model=t5_small"), "random-gcg_t5_small"),
        (("model=t5_small",), "gcg_t5_small"),
        (("attack=random", "attack.mimic=uat", "model=t5_small"), "random-uat_t5_small"),
    ],
)  # fmt: skip
def test_attack_dirs_name_the_attack_and_the_subject(overrides: tuple[str, ...], name: str) -> None:
    hydra = _hydra("attack.py", *overrides)
    assert re.fullmatch(rf"outputs/attack/{TIMESTAMP}_{re.escape(name)}", hydra.run.dir)
    assert hydra.sweep.subdir == f"1_{name}"


def test_subject_names_are_short_and_filesystem_safe() -> None:
    from monolm.config.schema import attack_label, subject_name

    assert subject_name(None, "EleutherAI/pythia-70m") == "pythia-70m"
    assert subject_name("/runs/a b:c,d=e/", "tiny_pythia") == "a_b_c_d_e"
    assert subject_name("", None) == subject_name(None, None) == "unnamed"
    assert subject_name("..") not in ("", ".", "..")
    long = subject_name("x" * 300)
    assert len(long) <= 80 and set(long) == {"x"}
    assert attack_label("random", "uat") == "random-uat"
    assert attack_label("hotflip", None) == attack_label("hotflip", "uat") == "hotflip"
