"""The SLURM and local launcher configs compose, follow the trainer, and take overrides."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from tests.helpers import CONF, register_train_configs


def launcher(*overrides: str) -> dict:
    register_train_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


def test_slurm_asks_for_one_task_per_gpu_of_the_trainer() -> None:
    conf = launcher("hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4",
                    "trainer.num_nodes=2")  # fmt: skip
    assert conf["_target_"].endswith("SlurmLauncher")
    assert conf["nodes"] == 2 and conf["tasks_per_node"] == 4 and conf["gpus_per_node"] == 4
    assert conf["gpus_per_task"] is None  # would hide GPUs from the ranks
    assert conf["max_num_timeout"] > 0 and conf["signal_delay_s"] >= 120
    assert conf["partition"] is None and conf["account"] is None  # the site's to set


def test_slurm_on_a_cpu_trainer_asks_for_no_gpu() -> None:
    conf = launcher("hydra/launcher=slurm")
    assert conf["gpus_per_node"] is None and conf["tasks_per_node"] == 1


def test_every_slurm_key_is_overridable() -> None:
    conf = launcher(
        "hydra/launcher=slurm", "hydra.launcher.partition=a100", "hydra.launcher.account=lab",
        "hydra.launcher.qos=high", "hydra.launcher.timeout_min=90",
        "hydra.launcher.signal_delay_s=600", "hydra.launcher.mem_gb=500",
        "+hydra.launcher.additional_parameters.mail-type=END",
    )  # fmt: skip
    assert (conf["partition"], conf["account"], conf["qos"]) == ("a100", "lab", "high")
    assert (conf["timeout_min"], conf["signal_delay_s"], conf["mem_gb"]) == (90, 600, 500)
    assert conf["additional_parameters"] == {"mail-type": "END"}


def test_local_runs_the_same_machinery_as_subprocesses() -> None:
    conf = launcher("hydra/launcher=local", "hydra.launcher.timeout_min=5")
    assert conf["_target_"].endswith("LocalLauncher") and conf["timeout_min"] == 5


def test_a_gpu_job_needs_a_number_of_devices() -> None:
    with pytest.raises(Exception, match=r"trainer\.devices=auto"):
        launcher("hydra/launcher=slurm", "trainer=gpu", "trainer.devices=auto")


def test_a_site_launcher_file_extends_slurm(tmp_path) -> None:
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    (conf / "hydra" / "launcher" / "site.yaml").write_text(
        "defaults:\n  - slurm\npartition: a100\naccount: lab\n"
    )
    register_train_configs()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=site", "hydra.launcher.qos=low"],
                      return_hydra_config=True)  # fmt: skip
    launcher = cfg.hydra.launcher
    assert (launcher.partition, launcher.account, launcher.qos) == ("a100", "lab", "low")
    assert launcher.max_num_timeout == 20  # the rest comes from slurm.yaml
