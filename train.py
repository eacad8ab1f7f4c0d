"""Train a Pythia or T5 model, baseline or constrained.

python train.py                                   # tiny_pythia on bundled text, CPU
python train.py model=pythia_1.4b constraint=monotonic trainer=gpu seed=1337
python train.py -m seed=42,1337,2024 constraint=none,monotonic
python train.py --cfg job                         # print the composed config
"""

import hydra
from omegaconf import DictConfig

from monolm.cli import run, user_errors_exit
from monolm.config.schema import register_configs
from monolm.constraints import register_constraint_configs

register_configs()
register_constraint_configs()


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
@user_errors_exit
def main(cfg: DictConfig) -> float | None:
    from monolm.training.run import train  # heavy imports only after the config composed

    metrics = train(cfg)
    return metrics.get("val/loss")


if __name__ == "__main__":
    run(main)
