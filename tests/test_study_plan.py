"""The study's plan: every stage of every run, deterministic dirs, what each needs, hashes that
change exactly when what defines a stage changes (conf/study/tiny.yaml composed for real)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from monolm.config.typed import typed_settings
from monolm.errors import UserError
from monolm.study.plan import build_plan, stage_hashes
from monolm.study.settings import StudySettings
from monolm.study.slurm import StageTask, build_groups, dependency_of
from monolm.study.stages import check_stages
from tests.helpers import CONF


def tiny(**changes) -> StudySettings:
    node = OmegaConf.load(CONF / "study" / "tiny.yaml")
    for key, value in changes.items():
        OmegaConf.update(node, key, value, merge=False)
    return typed_settings(StudySettings, node, "study.")


def test_tiny_plans_every_stage_of_both_arms_seeds_and_subjects(tmp_path: Path) -> None:
    stages = build_plan(tiny(), tmp_path)
    kinds = [s.kind for s in stages]
    runs = 2 * 2 * 2  # subjects x arms x seeds
    assert kinds.count("train") == runs
    # own evaluation at the end and at step 50; two attacks and their controls at both
    assert kinds.count("evaluate") == runs * 2
    assert kinds.count("attack") == kinds.count("control") == runs * 2 * 2
    assert kinds.count("transfer") == 2 * 2 * 2 * 2  # subjects x seeds x attacks x sources
    assert kinds[-1] == "report" and len({s.key for s in stages}) == len(stages)
    assert len({s.dir for s in stages}) == len(stages)
    position = {s.key: i for i, s in enumerate(stages)}
    for stage in stages:  # every stage comes after what it needs
        assert all(position[need] < position[stage.key] for need in stage.needs)


def test_a_control_matches_its_attack_and_a_checkpoint_stage_names_its_file(
    tmp_path: Path,
) -> None:
    stages = {s.key: s for s in build_plan(tiny(), tmp_path)}
    attack = stages["tiny_t5/monotonic/s1/attack/gcg"]
    control = stages["tiny_t5/monotonic/s1/control/gcg"]
    assert control.needs == (attack.key,)
    assert "attack=random" in control.overrides and "attack.mimic=gcg" in control.overrides
    assert f"attack.queries_from={tmp_path / attack.dir}" in control.overrides
    assert "attack.gcg.budget=3" in control.overrides and "attack=gcg" not in control.overrides
    train = stages["tiny_t5/monotonic/s1/train"]
    assert train.dir == "runs/tiny_t5/monotonic/s1/train"
    assert "constraint=monotonic" in train.overrides and "seed=1" in train.overrides
    early = stages["tiny_t5/monotonic/s1/attack/gcg/step-50"]
    assert early.step == 50 and early.dir.endswith("attack/gcg/step-50")
    assert (
        f"checkpoint={tmp_path / train.dir / 'checkpoints' / 'step-0000050.ckpt'}"
        in early.overrides
    )


def test_a_stages_hash_changes_with_what_defines_it_and_only_that(tmp_path: Path) -> None:
    before = stage_hashes(build_plan(tiny(), tmp_path), tmp_path)
    assert before == stage_hashes(build_plan(tiny(), tmp_path), tmp_path)
    changed = stage_hashes(
        build_plan(tiny(**{"attacks.gcg.overrides": ["attack=gcg"]}), tmp_path), tmp_path
    )
    differ = {key for key in before if before[key] != changed[key]}
    assert differ and all("/gcg" in key or key == "report" for key in differ)
    assert before["tiny_t5/none/s0/train"] == changed["tiny_t5/none/s0/train"]
    # a changed training run changes everything downstream of it, and nothing else
    longer = tiny(**{"subjects.tiny_t5": ["model=tiny_t5", "trainer.max_steps=120"]})
    retrained = stage_hashes(build_plan(longer, tmp_path), tmp_path)
    differ = {key for key in before if before[key] != retrained[key]}
    assert "tiny_t5/none/s0/control/gcg" in differ and "tiny_t5/s1/transfer/uat/none" in differ
    assert not any(key.startswith("tiny_pythia/") for key in differ)
    # a study dir moved elsewhere keeps its hashes (paths inside it count relative to it)
    moved = tmp_path / "elsewhere"
    assert stage_hashes(build_plan(tiny(), moved), moved) == before


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"arms": {"none": ["constraint=none"]}}, "one arm"),
        ({"baseline": "monotone"}, "monotonic"),
        ({"seeds": [0, 0]}, "repeated"),
        ({"checkpoints": [0]}, ">= 1"),
    ],
)
def test_an_impossible_study_is_refused_naming_the_value(
    tmp_path: Path, changes: dict, fragment: str
) -> None:
    with pytest.raises(UserError, match=fragment):
        build_plan(tiny(**changes), tmp_path)


def test_on_slurm_each_group_is_an_array_chained_by_the_plans_needs(tmp_path: Path) -> None:
    stages = build_plan(tiny(), tmp_path)
    groups = build_groups(stages)
    ids = {g.name: str(100 + i) for i, g in enumerate(groups)}
    dependency = {g.name: dependency_of(g, groups, ids) for g in groups}
    train = ids["tiny_t5.train"]
    assert [s.key for s in groups[0].stages] == [
        f"tiny_t5/{arm}/s{seed}/train" for seed in (0, 1) for arm in ("none", "monotonic")
    ]
    assert dependency["tiny_t5.train"] is None
    # task i of every per-run array needs task i of the training array (or of its attack)
    assert dependency["tiny_t5.evaluate.step-50"] == f"aftercorr:{train}"
    assert dependency["tiny_t5.attack.gcg"] == f"aftercorr:{train}"
    assert dependency["tiny_t5.control.gcg"] == f"aftercorr:{ids['tiny_t5.attack.gcg']}"
    # a transfer needs its source attack (task i) and every arm's training run (all of them)
    uat = ids["tiny_t5.attack.uat"]
    assert dependency["tiny_t5.transfer.uat"] == f"aftercorr:{uat},afterok:{train}"
    # the report waits for everything, whatever its outcome
    assert dependency["report"] == "afterany:" + ":".join(
        ids[g.name] for g in groups if g.name != "report"
    )
    # groups already done are not waited for
    del ids["tiny_t5.train"]
    assert dependency_of(groups[1], groups, ids) is None


def test_an_array_task_is_picklable_and_requeues_itself_with_its_index(tmp_path: Path) -> None:
    stages = build_plan(tiny(), tmp_path)
    hashes = stage_hashes(stages, tmp_path)
    task = StageTask(tmp_path, CONF, stages[:2], [hashes[s.key] for s in stages[:2]])
    again = pickle.loads(pickle.dumps(task))
    assert again == task
    delayed = task.checkpoint(1)
    assert delayed.function is task and delayed.args == (1,)


def test_a_typo_in_an_arm_or_an_attack_is_refused_before_anything_runs(tmp_path: Path) -> None:
    arm = tiny(**{"arms.monotonic": ["constraint=monotone"]})
    wrong = r"tiny_t5/monotonic/s0/train: unknown constraint option 'monotone'"
    with pytest.raises(UserError, match=wrong):
        check_stages(tmp_path, CONF, build_plan(arm, tmp_path))
    attack = tiny(**{"attack_overrides": ["max_exampels=3"]})
    with pytest.raises(UserError, match=r"attack/gcg: unknown config key 'max_exampels'"):
        check_stages(tmp_path, CONF, build_plan(attack, tmp_path))
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("option", ["t5_cnndm", "pythia_pile"])
def test_the_real_studies_plan_and_every_stage_composes(option: str, tmp_path: Path) -> None:
    node = OmegaConf.load(CONF / "study" / f"{option}.yaml")
    settings = typed_settings(StudySettings, node, "study.")
    stages = build_plan(settings, tmp_path)
    check_stages(tmp_path, CONF, stages)  # raises on any option, key or value that fails
    assert len(settings.seeds) == 3 and set(settings.arms) == {"none", "monotonic"}
    assert {s.kind for s in stages} == {"train", "evaluate", "attack", "control", "transfer",
                                        "representations", "report"}  # fmt: skip
    (cka,) = [s for s in stages if s.kind == "representations"]  # one subject
    base = "t5_small" if option == "t5_cnndm" else "pythia_1.4b"  # its experiment's model
    assert any(o.startswith("cka.against=") and o.endswith(f"'{base}']") for o in cka.overrides)
