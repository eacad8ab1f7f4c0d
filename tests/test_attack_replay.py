"""`replay_attack`: a finished attack's attacked inputs, read from its directory, replayed on
another run give exactly the rows and cells attack.py's in-process transfer wrote (both families:
NLLs, and for T5 the summaries generated and their ROUGE-L); bad input is one UserError naming
the file or value, before any weights load."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from monolm.attacks.replay import replay_attack
from monolm.errors import UserError
from monolm.run_dir import ATTACK_EXAMPLES, ATTACK_RECORD, TRANSFER_RECORD
from tests.helpers import CONF, FAST, compose_train
from tests.test_one_house import compose_attack

pytestmark = pytest.mark.slow

FAMILIES = {"causal": "tiny_pythia", "seq2seq": "tiny_t5"}
TRAIN = (*FAST, "trainer.max_steps=2", "trainer.val_check_interval=null")
QUICK = ("attack=gcg", "attack.gcg.budget=2", "attack.gcg.steps=2", "attack.gcg.candidates=8",
         "max_examples=3", "bootstrap.resamples=50", "generation.num_beams=1",
         "generation.max_new_tokens=8", "generation.min_new_tokens=2")  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Per family two runs of 2 steps (seeds 0 and 1; the source and the target), trained in
    this process (train.py's body: no interpreter to start per run)."""
    from monolm.training.run import train

    root = tmp_path_factory.mktemp("replay-runs")
    made = {}
    for family, model in FAMILIES.items():
        for seed in (0, 1):
            out = root / f"{model}_s{seed}"
            out.mkdir()  # Hydra's job (train.py) creates it
            train(
                compose_train(f"model={model}", f"seed={seed}", *TRAIN, f"paths.output_dir={out}")
            )
        made[family] = (root / f"{model}_s0", root / f"{model}_s1")
    return made


@pytest.fixture(scope="module")
def attacked(
    runs: dict[str, tuple[Path, Path]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Per family the source run attacked through attack.py's entry point, with the in-process
    transfer to the target (`attack.transfer_to`)."""
    from monolm.attacks.run import attack

    made = {}
    for family, (source, target) in runs.items():
        out = tmp_path_factory.mktemp(f"attack-{family}")
        cfg = compose_attack(out, f"run_dir={source}", *QUICK, f"attack.transfer_to=[{target}]")
        assert attack(cfg, CONF) == [out / ATTACK_RECORD]
        made[family] = out
    return made


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_replay_from_files_gives_the_in_process_transfer_exactly(
    runs: dict[str, tuple[Path, Path]], attacked: dict[str, Path], family: str, tmp_path: Path
) -> None:
    _, target = runs[family]
    source = attacked[family]
    written = replay_attack(source, {"seed 1": target}, tmp_path / "replay", CONF)
    assert written == tmp_path / "replay" / TRANSFER_RECORD
    replayed = json.loads(written.read_text())
    record = json.loads((source / ATTACK_RECORD).read_text())
    in_process = record["transfer"][str(target)]

    cell = replayed["cells"]["seed 1"]
    assert list(replayed["cells"]) == ["seed 1"]
    assert cell["examples_file"] == "seed_1.examples.jsonl"
    assert {k: v for k, v in cell.items() if k != "examples_file"} == {
        k: v for k, v in in_process.items() if k != "examples_file"
    }
    assert cell["subject"]["run_dir"] == str(target) and cell["n"] == 3

    rows = _rows(tmp_path / "replay" / cell["examples_file"])
    assert rows == _rows(source / in_process["examples_file"])  # NLLs, statuses, ids, texts
    source_rows = _rows(source / ATTACK_EXAMPLES)
    for key in ("id", "clean_ids", "attacked_ids", "tokens_changed"):
        assert [r[key] for r in rows] == [r[key] for r in source_rows]
    assert [r["source_status"] for r in rows] == [r["status"] for r in source_rows]
    assert any(r["attacked_ids"] != r["clean_ids"] for r in rows)  # the attack changed inputs
    assert ("clean_rougeL" in rows[0]) == (family == "seq2seq")

    assert replayed["attack"] == "gcg" and replayed["seed"] == record["seed"]
    assert replayed["source"] == {"attack_dir": str(source), "subject": record["subject"]}
    assert replayed["code"]["git_commit"] and replayed["packages"]["torch"]
    config = dict(replayed["config"])
    assert config.pop("replay") == {"attack_dir": str(source), "targets": {"seed 1": str(target)}}
    assert config == record["config"]
    assert replayed["note"]


def test_one_run_of_an_attacked_sweep_is_replayed_from_its_subdir(
    runs: dict[str, tuple[Path, Path]], attacked: dict[str, Path], tmp_path: Path
) -> None:
    """A sweep's attack.json records the sweep dir as run_dir: the run it names is replayed."""
    source, target = _copy(attacked, tmp_path), runs["causal"][1]
    _edit_config(source, "run_dir", str(target.parent))  # the runs' sweep dir, four runs
    written = replay_attack(source, {"b": target}, tmp_path / "replay", CONF)
    cell = json.loads(written.read_text())["cells"]["b"]
    in_process = json.loads((source / ATTACK_RECORD).read_text())["transfer"][str(target)]
    assert _rows(written.parent / cell["examples_file"]) == _rows(
        source / in_process["examples_file"]
    )


def _copy(attacked: dict[str, Path], tmp_path: Path) -> Path:
    copy = tmp_path / "source"
    shutil.copytree(attacked["causal"], copy)
    return copy


def _edit_rows(source: Path, edit: Callable[[list[dict]], None]) -> None:
    rows = _rows(source / ATTACK_EXAMPLES)
    edit(rows)
    (source / ATTACK_EXAMPLES).write_text("".join(json.dumps(r) + "\n" for r in rows))


def _edit_config(source: Path, key: str, value) -> None:
    record = json.loads((source / ATTACK_RECORD).read_text())
    record["config"][key] = value
    (source / ATTACK_RECORD).write_text(json.dumps(record))


def _append(path: Path, text: str) -> None:
    with path.open("a") as handle:
        handle.write(text)


def _first_id(source: Path):
    return _rows(source / ATTACK_EXAMPLES)[0]["id"]


def _change_clean_ids(rows: list[dict]) -> None:
    rows[0]["clean_ids"][-1] += 1


def _drop(key: str) -> Callable[[list[dict]], None]:
    return lambda rows: rows[1].pop(key)


def _rename_second(rows: list[dict]) -> None:
    rows[1]["id"] = "renamed-example"


# (name, how the copied source is broken, fragments the message names: "{source}", "{target}",
# "{other_family}" and "{first_id}" are filled in)
BAD = [
    ("no attack.json", lambda s: (s / ATTACK_RECORD).unlink(), ("{source}", ATTACK_RECORD)),
    (
        "corrupt attack.json",
        lambda s: (s / ATTACK_RECORD).write_text('{"config": '),
        (f"{{source}}/{ATTACK_RECORD}", "not valid JSON"),
    ),
    (
        "attack.json without its config",
        lambda s: (s / ATTACK_RECORD).write_text('{"subject": {}}'),
        (f"{{source}}/{ATTACK_RECORD}", "'config'"),
    ),
    ("no examples.jsonl", lambda s: (s / ATTACK_EXAMPLES).unlink(), ("{source}", ATTACK_EXAMPLES)),
    (
        "corrupt examples.jsonl",
        lambda s: _append(s / ATTACK_EXAMPLES, "{not json\n"),
        (f"{{source}}/{ATTACK_EXAMPLES}", "row 4", "not valid JSON"),
    ),
    (
        "a row without attacked_ids",
        lambda s: _edit_rows(s, _drop("attacked_ids")),
        (f"{{source}}/{ATTACK_EXAMPLES}", "row 2", "'attacked_ids'"),
    ),
    (
        "a row without clean_ids",
        lambda s: _edit_rows(s, _drop("clean_ids")),
        (f"{{source}}/{ATTACK_EXAMPLES}", "row 2", "'clean_ids'"),
    ),
    (
        "an example id that is not the rebuilt one",
        lambda s: _edit_rows(s, _rename_second),
        (f"{{source}}/{ATTACK_EXAMPLES}", "'renamed-example'", "data or the tokenizer changed"),
    ),
    (
        "clean ids that are not the rebuilt ones",
        lambda s: _edit_rows(s, _change_clean_ids),
        ("{first_id}", "clean_ids", "data or the tokenizer changed"),
    ),
    (
        "a config that now cuts other examples",
        lambda s: _edit_config(s, "context_tokens", 17),
        ("{first_id}", "clean_ids", "data or the tokenizer changed"),
    ),
    (
        "a config that now picks fewer examples",
        lambda s: _edit_config(s, "max_examples", 2),
        ("3 examples", "gives 2", "data or the tokenizer changed"),
    ),
    (
        "a config naming a run dir that is gone",
        lambda s: _edit_config(s, "run_dir", "/nonexistent/run"),
        ("replaying '{source}'", "/nonexistent/run", "does not exist"),
    ),
    (
        "a config key attack.py does not have",
        lambda s: _edit_config(s, "max_exampels", 2),
        (f"{{source}}/{ATTACK_RECORD}", "max_exampels", "max_examples"),
    ),
]


@pytest.mark.parametrize(
    ("break_source", "fragments"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_a_broken_source_is_one_line_before_any_weights_load(
    runs: dict[str, tuple[Path, Path]],
    attacked: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    break_source: Callable[[Path], None],
    fragments: tuple[str, ...],
) -> None:
    source = _copy(attacked, tmp_path)
    first_id = _first_id(source)
    break_source(source)
    _assert_refused(
        monkeypatch,
        lambda: replay_attack(source, {"b": runs["causal"][1]}, tmp_path / "out", CONF),
        [f.format(source=source, first_id=first_id) for f in fragments],
    )
    assert not (tmp_path / "out").exists()


def _assert_refused(
    monkeypatch: pytest.MonkeyPatch, call: Callable[[], object], fragments: list[str]
) -> None:
    def no_weights(*args, **kwargs):
        raise AssertionError("weights loaded before the input was checked")

    monkeypatch.setattr("monolm.attacks.transfer.load_subject", no_weights)
    with pytest.raises(UserError) as error:
        call()
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_a_target_that_is_not_a_run_dir_or_has_another_tokenizer_is_refused(
    runs: dict[str, tuple[Path, Path]],
    attacked: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, (_, target) = attacked["causal"], runs["causal"]
    for targets, fragments in (
        ({"b": target, "nowhere": tmp_path / "nowhere"}, ["'nowhere'", "not a training run dir"]),
        ({"plain": source}, [str(source), "not a training run dir"]),
        ({"t5": runs["seq2seq"][1]}, [str(runs["seq2seq"][1]), "different tokenizers"]),
        ({"b_": target, "b?": target}, ["'b_'", "'b?'", "same file"]),
        ({}, ["no targets"]),
    ):
        _assert_refused(
            monkeypatch, lambda t=targets: replay_attack(source, t, tmp_path / "out", CONF),
            fragments,
        )  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_a_sweep_or_a_missing_dir_is_not_one_attack_dir(
    runs: dict[str, tuple[Path, Path]],
    attacked: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sweep = tmp_path / "sweep"
    for job in ("0", "1"):
        shutil.copytree(attacked["causal"], sweep / job)
    targets = {"b": runs["causal"][1]}
    for source, fragments in (
        (sweep, [str(sweep), "sweep of 2 attacks", "replay one attack dir"]),
        (tmp_path / "missing", [str(tmp_path / "missing"), "does not exist"]),
    ):
        _assert_refused(
            monkeypatch, lambda s=source: replay_attack(s, targets, tmp_path / "out", CONF),
            fragments,
        )  # fmt: skip
    _assert_refused(
        monkeypatch,
        lambda: replay_attack(sweep / "0", targets, sweep / "0", CONF),
        ["out_dir", "source attack dir"],
    )
