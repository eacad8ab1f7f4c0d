"""Attack a trained run, a pretrained model or an export: HotFlip, universal triggers, controls.

python attack.py run_dir=outputs/train/... attack=hotflip            # iterative HotFlip
python attack.py run_dir=outputs/train/... attack=uat                # a universal trigger
python attack.py run_dir=outputs/train/... attack=random attack.queries_from=<hotflip output dir>
python attack.py run_dir=outputs/train/a attack=uat 'attack.transfer_to=[outputs/train/b]'
python attack.py model=t5_small attack=hotflip dataset=cnn_dailymail
python attack.py -m run_dir=outputs/train/a,outputs/train/b attack=hotflip,uat
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from monolm.attacks.config import register_attack_configs
from monolm.cli import run, user_errors_exit
from monolm.config.schema import register_configs

register_configs()
register_attack_configs()
CONF = Path(__file__).resolve().parent / "conf"


@hydra.main(config_path="conf/attack", config_name="attack", version_base="1.3")
@user_errors_exit
def main(cfg: DictConfig) -> None:
    from monolm.attacks.run import attack  # heavy imports only after the config composed

    attack(cfg, CONF)


if __name__ == "__main__":
    run(main)
