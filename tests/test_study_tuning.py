"""Hyper-parameter tuning inside a study: a grid per arm with an equal budget, each trial a
training run, the best configuration selected on the held-out split (the trial's metrics.json),
then the seeds trained with it; hashes, resume, SLURM arrays and the report follow."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from monolm.config.typed import typed_settings
from monolm.errors import UserError
from monolm.study.bookkeeping import STAGE_RECORD, record_dir
from monolm.study.plan import Stage, build_plan, stage_hashes
from monolm.study.settings import StudySettings
from monolm.study.slurm import build_groups, dependency_of
from monolm.study.stages import KINDS, blocking_needs, check_stages, is_done, run_stage
from monolm.study.stages.select import SELECTION, best_trial, effective_overrides
from tests.helpers import CONF

PYTHIA = ["model=tiny_pythia", "dataset=tiny_lm"]
GRIDS = {
    "full": {"optim.lr": [1e-4, 3e-4, 1e-3, 3e-3]},
    "mono": {"optim.lr": [1e-4, 1e-3], "optim.weight_decay": [0.0, 0.1]},
}


def tuned(**changes) -> StudySettings:
    node = OmegaConf.create(
        {
            "name": "tuned",
            "seeds": [0, 1],
            "arms": {"full": ["constraint=none"], "mono": ["constraint=monotonic"]},
            "subjects": {"tiny_pythia": PYTHIA},
            "evaluate": None,
            "tuning": {
                "seed": 7,
                "select": "val/loss",
                "mode": "min",
                "overrides": ["trainer.max_steps=3"],
                "grids": GRIDS,
            },
        }
    )
    for key, value in changes.items():
        OmegaConf.update(node, key, value, merge=False)
    return typed_settings(StudySettings, node, "study.")


def planned(settings: StudySettings, study_dir: Path) -> tuple[dict[str, Stage], dict[str, str]]:
    stages = build_plan(settings, study_dir)
    return {s.key: s for s in stages}, stage_hashes(stages, study_dir)


def finish_run(study_dir: Path, stage: Stage, sha256: str, metrics: dict | None, **record) -> None:
    """What a finished training stage leaves: run.json completed, metrics.json, stage.json."""
    out = study_dir / stage.dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps({"status": "completed"}))
    (out / "metrics.json").write_text(json.dumps({"metrics": metrics or {}}))
    records = record_dir(study_dir, stage)
    records.mkdir(parents=True, exist_ok=True)
    (records / STAGE_RECORD).write_text(json.dumps({"key": stage.key, "sha256": sha256, **record}))


def fail_run(study_dir: Path, stage: Stage) -> None:
    out = study_dir / stage.dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps({"status": "failed"}))


def trials_of(stages: dict[str, Stage], arm: str) -> list[Stage]:
    return [stages[key] for key in stages[f"tiny_pythia/{arm}/select"].needs]


def select(study_dir: Path, stages: dict[str, Stage], hashes: dict[str, str], arm: str) -> dict:
    stage = stages[f"tiny_pythia/{arm}/select"]
    run_stage(study_dir, CONF, stage, hashes[stage.key])
    return json.loads((study_dir / stage.dir / SELECTION).read_text())


def give_values(study_dir: Path, stages, hashes, arm: str, values: list[float | None]) -> None:
    """Each trial of `arm` finished with that val/loss (None: the trial failed)."""
    for trial, value in zip(trials_of(stages, arm), values, strict=True):
        if value is None:
            fail_run(study_dir, trial)
        else:
            finish_run(study_dir, trial, hashes[trial.key], {"val/loss": value, "global_step": 3})


# --- the plan ---------------------------------------------------------------------------------


def test_each_arm_is_tuned_on_its_grid_then_its_seeds_train_after_the_selection(
    tmp_path: Path,
) -> None:
    stages, _ = planned(tuned(), tmp_path)
    kinds = [s.kind for s in stages.values()]
    assert kinds.count("tune") == 4 + 4 and kinds.count("select") == 2
    assert kinds.count("train") == 2 * 2
    mono = trials_of(stages, "mono")
    # grid order: the last key varies fastest; names readable and filesystem-safe
    assert [t.dir for t in mono] == [
        f"runs/tiny_pythia/mono/tune/optim.lr_{lr}__optim.weight_decay_{wd}"
        for lr in ("0.0001", "0.001")
        for wd in ("0.0", "0.1")
    ]
    trial = mono[1]
    assert trial.kind == "tune" and trial.seed == 7 and trial.needs == ()
    assert trial.overrides == (*PYTHIA, "constraint=monotonic", "trainer.max_steps=3",
                               "optim.lr=0.0001", "optim.weight_decay=0.1", "seed=7")  # fmt: skip
    seed_run = stages["tiny_pythia/mono/s1/train"]
    assert seed_run.needs == ("tiny_pythia/mono/select",)
    assert seed_run.selection == "runs/tiny_pythia/mono/select"
    assert seed_run.overrides == (*PYTHIA, "constraint=monotonic", "seed=1")  # chosen: at run time
    order = list(stages)
    assert order.index("tiny_pythia/mono/select") < order.index("tiny_pythia/full/s0/train")
    assert set(stages["report"].needs) >= {t.key for t in mono}


def test_a_changed_grid_value_reruns_that_arms_selection_and_seeds_and_nothing_else(
    tmp_path: Path,
) -> None:
    _, before = planned(tuned(), tmp_path)
    _, after = planned(
        tuned(**{"tuning.grids.mono": {**GRIDS["mono"], "optim.weight_decay": [0.0, 0.2]}}),
        tmp_path,
    )
    changed = {key for key in before.keys() & after.keys() if before[key] != after[key]}
    assert changed == {"tiny_pythia/mono/select", "tiny_pythia/mono/s0/train",
                       "tiny_pythia/mono/s1/train", "report"}  # fmt: skip
    assert not any(key.startswith("tiny_pythia/full/") for key in changed)
    # the trial whose value changed is another trial (another dir), the others are kept
    assert "tiny_pythia/mono/tune/optim.lr_0.0001__optim.weight_decay_0.2" in after
    assert (
        before["tiny_pythia/mono/tune/optim.lr_0.0001__optim.weight_decay_0.0"]
        == after["tiny_pythia/mono/tune/optim.lr_0.0001__optim.weight_decay_0.0"]
    )
    # the trials' shared budget changes every trial, selection and seed run
    _, longer = planned(tuned(**{"tuning.overrides": ["trainer.max_steps=4"]}), tmp_path)
    assert all(before[k] != longer[k] for k in before if "/tune/" in k or k.endswith("train"))


def test_a_study_without_tuning_plans_no_tuning_stages(tmp_path: Path) -> None:
    stages, _ = planned(tuned(tuning=None), tmp_path)
    assert {s.kind for s in stages.values()} == {"train", "report"}
    assert all(s.needs == () and s.selection is None for s in stages.values() if s.kind == "train")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"tuning.grids.mono": {"optim.lr": [1e-4, 1e-3, 1e-2]}},
            "equal tuning budget: full has 4 trials, mono 3",
        ),
        ({"tuning.grids.monotone": {"optim.lr": [1e-4]}}, "grids.monotone: no such arm"),
        ({"tuning.grids": {"full": GRIDS["full"]}}, "no grid for arm mono: when one arm is tuned"),
        (
            {"tuning.grids.full": {"optim.lr": []}},
            r"grids.full.optim.lr=\[\]: give at least one value",
        ),
        ({"tuning.mode": "lowest"}, "tuning.mode=lowest: one of min, max"),
        ({"tuning.grids.full": {"trainer.max_steps": [1, 2, 3, 4]}}, "budget is not tuned"),
        ({"tuning.grids.full": {"optim.lr": [1e-4, 1e-4, 1e-3, 3e-3]}}, "same dir name"),
    ],
)
def test_an_impossible_tuning_is_refused_in_one_line_naming_the_value(
    tmp_path: Path, changes: dict, message: str
) -> None:
    with pytest.raises(UserError, match=message) as refused:
        build_plan(tuned(**changes), tmp_path)
    assert "\n" not in str(refused.value)


def test_every_trial_and_a_seed_run_with_its_first_grid_point_are_composed_before_running(
    tmp_path: Path,
) -> None:
    check_stages(tmp_path, CONF, build_plan(tuned(), tmp_path))  # the real configs compose
    typo = tuned(**{"tuning.grids.mono": {"optim.lr": [1e-4, 1e-3], "optim.wd": [0.0, 0.1]}})
    wrong = r"tiny_pythia/mono/tune/optim.lr_0.0001__optim.wd_0.0: unknown config key 'optim.wd'"
    with pytest.raises(UserError, match=wrong):
        check_stages(tmp_path, CONF, build_plan(typo, tmp_path))
    assert not any(tmp_path.iterdir())


# --- the selection ----------------------------------------------------------------------------


def test_ties_go_to_the_first_trial_and_skipped_trials_never_win() -> None:
    assert best_trial([2.0, 1.0, 1.0, 3.0], "min") == 1
    assert best_trial([2.0, 1.0, 3.0, 3.0], "max") == 2
    assert best_trial([None, 5.0, None], "min") == 1
    assert best_trial([None, None], "max") is None


def test_the_lowest_held_out_loss_is_chosen_and_failed_or_non_finite_trials_are_listed(
    tmp_path: Path,
) -> None:
    stages, hashes = planned(tuned(), tmp_path)
    give_values(tmp_path, stages, hashes, "full", [2.0, None, 1.5, math.nan])
    selection = select(tmp_path, stages, hashes, "full")
    trials = selection["trials"]
    assert [t["status"] for t in trials] == ["valid", "not completed", "valid", "no finite value"]
    assert [t["value"] for t in trials] == [2.0, None, 1.5, None]
    assert selection["skipped"] == ["optim.lr_0.0003", "optim.lr_0.003"]
    assert selection["chosen"]["overrides"] == ["optim.lr=0.001"]
    assert selection["chosen"]["dir"] == "runs/tiny_pythia/full/tune/optim.lr_0.001"
    assert "code" in selection and "packages" in selection  # provenance
    select_stage = stages["tiny_pythia/full/select"]
    assert is_done(tmp_path, select_stage, hashes[select_stage.key])
    # the seed runs train with the arm's overrides, then the chosen ones
    seed_run = stages["tiny_pythia/full/s0/train"]
    assert effective_overrides(tmp_path, seed_run) == (*seed_run.overrides, "optim.lr=0.001")


def test_mode_max_picks_the_highest_value(tmp_path: Path) -> None:
    stages, hashes = planned(tuned(**{"tuning.mode": "max"}), tmp_path)
    give_values(tmp_path, stages, hashes, "full", [2.0, 3.0, 3.0, 1.0])
    assert select(tmp_path, stages, hashes, "full")["chosen"]["overrides"] == ["optim.lr=0.0003"]


def test_no_valid_trial_fails_the_selection_in_one_line_and_blocks_its_seeds(
    tmp_path: Path,
) -> None:
    stages, hashes = planned(tuned(**{"tuning.select": "val/acc"}), tmp_path)
    give_values(tmp_path, stages, hashes, "full", [2.0, None, 1.0, 1.0])
    wanted = (
        r"no trial of tiny_pythia/full/select has a finite 'val/acc' "
        r"\(optim.lr_0.0001: no 'val/acc' in its metrics.json"
    )
    with pytest.raises(UserError, match=wanted):
        select(tmp_path, stages, hashes, "full")
    failure = record_dir(tmp_path, stages["tiny_pythia/full/select"]) / "stage-failed.json"
    assert "\n" not in json.loads(failure.read_text())["reason"]
    # a select stage runs while any trial is there; its seeds wait for it
    select_stage, seed_run = stages["tiny_pythia/full/select"], stages["tiny_pythia/full/s0/train"]
    some_failed = {trial.key for trial in trials_of(stages, "full")[:3]}
    assert blocking_needs(select_stage, some_failed) == []
    assert blocking_needs(select_stage, some_failed | {select_stage.needs[3]}) != []
    assert blocking_needs(seed_run, {select_stage.key}) == [select_stage.key]


def test_a_finished_selection_stands_when_a_skipped_trial_is_retried(tmp_path: Path) -> None:
    """Its seed runs, and their evaluations and attacks, were built on it: only a changed hash
    (a changed grid or trial budget) redoes it, and then everything after it by hash."""
    stages, hashes = planned(tuned(), tmp_path)
    give_values(tmp_path, stages, hashes, "full", [2.0, None, 1.5, 1.8])
    select(tmp_path, stages, hashes, "full")
    retried = trials_of(stages, "full")[1]
    finish_run(tmp_path, retried, hashes[retried.key], {"val/loss": 1.0})
    select_stage = stages["tiny_pythia/full/select"]
    assert is_done(tmp_path, select_stage, hashes[select_stage.key])


def test_a_seed_run_that_trained_with_another_choice_is_set_aside_and_trains_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A changed grid reruns the selection and, by hash, the seeds: a seed run whose choice
    changed cannot continue in its dir (train.py refuses another lr), so the old run is kept
    beside it."""
    stages, hashes = planned(tuned(), tmp_path)
    give_values(tmp_path, stages, hashes, "full", [2.0, 1.0, 3.0, 4.0])
    select(tmp_path, stages, hashes, "full")
    seed_run = stages["tiny_pythia/full/s0/train"]
    finish_run(tmp_path, seed_run, hashes[seed_run.key], None, chosen=["optim.lr=0.001"])
    ran_with = []

    def fake_training(study_dir: Path, conf_dir: Path, stage: Stage, out: Path) -> None:
        ran_with.append(effective_overrides(study_dir, stage))
        assert not out.exists()  # a fresh run dir: train.py would refuse the other choice's
        finish_run(study_dir, stage, "", {"val/loss": 0.5})

    monkeypatch.setitem(KINDS, "train", replace(KINDS["train"], run=fake_training))
    run_stage(tmp_path, CONF, seed_run, hashes[seed_run.key])
    assert ran_with == [(*seed_run.overrides, "optim.lr=0.0003")]
    aside = tmp_path / seed_run.dir.replace("/train", "/train.replaced-1")
    assert (aside / "run.json").is_file()
    assert is_done(tmp_path, seed_run, hashes[seed_run.key])
    assert json.loads((record_dir(tmp_path, seed_run) / STAGE_RECORD).read_text())["chosen"] == [
        "optim.lr=0.0003"
    ]


def test_status_lists_the_trials_and_selections_like_every_other_stage(tmp_path: Path) -> None:
    from monolm.study.command import status_lines

    plan = build_plan(tuned(), tmp_path)
    stages, hashes = {s.key: s for s in plan}, stage_hashes(plan, tmp_path)
    give_values(tmp_path, stages, hashes, "full", [2.0, 1.0, 3.0, 4.0])
    select(tmp_path, stages, hashes, "full")
    states = {line.split()[0]: line.split(maxsplit=1)[1] for line in status_lines(
        tmp_path, plan, hashes)}  # fmt: skip
    assert states["tiny_pythia/full/tune/optim.lr_0.0001"] == "done"
    assert states["tiny_pythia/full/select"] == "done"
    assert states["tiny_pythia/mono/select"] == "missing"
    assert states["tiny_pythia/full/s0/train"] == "missing"


# --- SLURM ------------------------------------------------------------------------------------


def test_on_slurm_trials_then_selections_then_seeds_are_arrays_chained_by_their_needs(
    tmp_path: Path,
) -> None:
    stages = build_plan(tuned(), tmp_path)
    groups = build_groups(stages)
    assert [g.name for g in groups] == [
        "tiny_pythia.tune", "tiny_pythia.select", "tiny_pythia.train", "report"
    ]  # fmt: skip
    assert [len(g.stages) for g in groups] == [8, 2, 4, 1]
    ids = {g.name: str(100 + i) for i, g in enumerate(groups)}
    dependency = {g.name: dependency_of(g, groups, ids) for g in groups}
    # a failed trial is skipped by its selection, not fatal to it
    assert dependency["tiny_pythia.select"] == "afterany:100"
    assert dependency["tiny_pythia.train"] == "afterok:101"
    assert dependency["report"] == "afterany:100:101:102"
    # one seed: seed run i needs exactly selection i
    one_seed = build_groups(build_plan(tuned(seeds=[0]), tmp_path))
    assert dependency_of(one_seed[2], one_seed, ids) == "aftercorr:101"


# --- end to end -------------------------------------------------------------------------------

TUNED_STUDY = """
name: tuned
seeds: [0]
arms:
  none: [constraint=none]
  monotonic: [constraint=monotonic]
subjects:
  tiny_pythia: [model=tiny_pythia, dataset=tiny_lm, trainer.max_steps=2,
    trainer.val_check_interval=null, trainer.enable_progress_bar=false,
    trainer.enable_model_summary=false, data.batch_size=4, data.eval_batch_size=8,
    dataset.max_validation_examples=8, dataset.max_train_examples=16, dataset.max_length=32]
evaluate: null
tuning:
  seed: 3
  select: val/loss
  mode: min
  grids:
    none: {optim.lr: [1e-4, 3e-2]}
    monotonic: {optim.lr: [1e-4, 3e-2]}
"""


@pytest.mark.slow
def test_a_tuned_study_runs_end_to_end_and_its_seeds_train_with_the_chosen_lr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from monolm.study.command import main

    conf = tmp_path / "conf"
    (conf / "study").mkdir(parents=True)
    (conf / "study" / "tuned.yaml").write_text(TUNED_STUDY)
    study_dir = tmp_path / "study"
    main(["run", f"hydra.searchpath=[file://{conf}]", "study=tuned", f"study_dir={study_dir}"])
    assert "0 failed, 0 blocked" in capsys.readouterr().out
    for arm in ("none", "monotonic"):
        selection = json.loads(
            (study_dir / f"runs/tiny_pythia/{arm}/select" / SELECTION).read_text()
        )
        assert [t["status"] for t in selection["trials"]] == ["valid", "valid"]
        values = [t["value"] for t in selection["trials"]]
        chosen = selection["chosen"]["overrides"]
        assert chosen == [f"optim.lr={'0.0001' if values[0] <= values[1] else '0.03'}"]
        run = json.loads((study_dir / f"runs/tiny_pythia/{arm}/s0/train/run.json").read_text())
        assert run["config"]["optim"]["lr"] == float(chosen[0].split("=")[1])
        assert run["config"]["seed"] == 0
        trial = study_dir / f"runs/tiny_pythia/{arm}/tune/optim.lr_0.0001/run.json"
        assert json.loads(trial.read_text())["config"]["seed"] == 3
    report = (study_dir / "report" / "report.md").read_text()
    assert "tiny_pythia: tuning (min val/loss on the held-out split)" in report
    assert "budget per arm: none 2 trials x 2 steps, monotonic 2 trials x 2 steps" in report
    # a rerun finds everything done
    main(["run", f"hydra.searchpath=[file://{conf}]", "study=tuned", f"study_dir={study_dir}"])
    assert "1 ran, 8 already done" in capsys.readouterr().out  # the report always runs
