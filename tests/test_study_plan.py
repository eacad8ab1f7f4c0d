"""The study's plan: every stage of every run, deterministic dirs, what each needs, hashes that
change exactly when what defines a stage changes (conf/study/tiny.yaml composed for real)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from monolm.config.typed import typed_settings
from monolm.errors import UserError
from monolm.study.plan import build_plan, stage_hashes
from monolm.study.settings import StudySettings
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
    before = stage_hashes(build_plan(tiny(), tmp_path))
    assert before == stage_hashes(build_plan(tiny(), tmp_path))
    changed = stage_hashes(build_plan(tiny(**{"attacks.gcg.overrides": ["attack=gcg"]}), tmp_path))
    differ = {key for key in before if before[key] != changed[key]}
    assert differ and all("/gcg" in key or key == "report" for key in differ)
    assert before["tiny_t5/none/s0/train"] == changed["tiny_t5/none/s0/train"]
    # a changed training run changes everything downstream of it, and nothing else
    longer = tiny(**{"subjects.tiny_t5": ["model=tiny_t5", "trainer.max_steps=120"]})
    retrained = stage_hashes(build_plan(longer, tmp_path))
    differ = {key for key in before if before[key] != retrained[key]}
    assert "tiny_t5/none/s0/control/gcg" in differ and "tiny_t5/s1/transfer/uat/none" in differ
    assert not any(key.startswith("tiny_pythia/") for key in differ)


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
