"""Evaluate a trained run, a pretrained model or an export: ROUGE, perplexity, LAMBADA, HellaSwag.

python evaluate.py run_dir=outputs/train/...                      # the run's own validation data
python evaluate.py run_dir=outputs/train/... 'task=[lambada,hellaswag]'
python evaluate.py model=pythia_1.4b 'task=[pile,lambada,hellaswag]'
python evaluate.py run_dir=outputs/train/... 'task=[monotonicity]'  # the FFN verifier
python evaluate.py -m run_dir=outputs/train/a,outputs/train/b       # or run_dir=<a sweep dir>
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from monolm.cli import run, user_errors_exit
from monolm.config.eval_schema import register_evaluate_configs
from monolm.config.schema import register_configs

register_configs()
register_evaluate_configs()
CONF = Path(__file__).resolve().parent / "conf"


@hydra.main(config_path="conf/evaluate", config_name="evaluate", version_base="1.3")
@user_errors_exit
def main(cfg: DictConfig) -> None:
    from monolm.evaluation.run import evaluate  # heavy imports only after the config composed

    evaluate(cfg, CONF)


if __name__ == "__main__":
    run(main)
