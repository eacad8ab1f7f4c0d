"""python -m monolm.constraints {verify,export}: check or export a trained model.

  python -m monolm.constraints verify RUN_DIR_OR_EXPORT [--batches N --samples N ...]
  python -m monolm.constraints export RUN_DIR OUT_DIR [--checkpoint FILE]

`verify` writes verification.json (guarantee record + Jacobian sampling and search) next to the
model; `export` writes a plain Hugging Face directory (see monolm.constraints.export).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from monolm.cli import run
from monolm.config.schema import register_configs
from monolm.errors import UserError

log = logging.getLogger("monolm.constraints")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monolm.constraints",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="verify FFN monotonicity of a run or an export")
    verify.add_argument("path", type=Path, help="a training run dir or an exported model dir")
    verify.add_argument("--checkpoint", type=Path, help="checkpoint file (default: last.ckpt)")
    verify.add_argument("--out", type=Path, help="result file (default: PATH/verification.json)")
    for name in ("batches", "samples", "search-starts", "search-steps", "seed"):
        verify.add_argument(f"--{name}", type=int)
    verify.add_argument("--search-lr", type=float)
    export = commands.add_parser("export", help="export a run to a plain Hugging Face directory")
    export.add_argument("run_dir", type=Path)
    export.add_argument("out_dir", type=Path)
    export.add_argument("--checkpoint", type=Path, help="checkpoint file (default: last.ckpt)")
    return parser


def _load_for_verify(path: Path, checkpoint: Path | None) -> dict[str, Any]:
    from monolm.constraints.export import EXPORT_RECORD
    from monolm.runs import load_trained_run

    if (path / "run.json").is_file():
        trained = load_trained_run(path, checkpoint)
        return {
            "config": trained.config,
            "model": trained.model,
            "tokenizer": trained.tokenizer,
            "constrained": set(getattr(trained.constraint, "layers", {})),
            "inference": trained.constraint.cached_weights,
            "source": {"run_dir": str(path), "checkpoint": str(trained.checkpoint),
                       "checkpoint_sha256": trained.checkpoint_sha256},
        }  # fmt: skip
    if (path / EXPORT_RECORD).is_file():
        from transformers import AutoTokenizer

        from monolm.models.loading import AUTO_MODEL

        meta = json.loads((path / EXPORT_RECORD).read_text())
        config = OmegaConf.create(meta["config"])
        model = AUTO_MODEL[config.model.family].from_pretrained(path, dtype=torch.float32).eval()
        return {
            "config": config,
            "model": model,
            "tokenizer": AutoTokenizer.from_pretrained(path),
            "constrained": set(meta["constrained_layers"]),
            "inference": None,
            "source": {"export_dir": str(path), "checkpoint_sha256": meta["checkpoint_sha256"]},
        }
    raise UserError(
        f"'{path}' is neither a training run dir (run.json) nor an exported model "
        "(monolm_export.json)"
    )


def verify(args: argparse.Namespace) -> Path:
    import contextlib

    from monolm.constraints.guarantee import summary_line
    from monolm.constraints.verify import VerifySettings, verify_on_validation_data
    from monolm.training.record import provenance, write_json

    loaded = _load_for_verify(args.path, args.checkpoint)
    cfg = loaded["config"]
    verify_cfg = cfg.constraint.get("verify") or {}
    settings = VerifySettings.from_dict(OmegaConf.to_container(verify_cfg) if verify_cfg else {})
    overrides = {
        key: value
        for key, value in vars(args).items()
        if key in VerifySettings.__dataclass_fields__ and value is not None
    }
    settings = replace(settings, **overrides)
    VerifySettings.from_dict(vars(settings))
    model = loaded["model"].to("cuda" if torch.cuda.is_available() else "cpu")
    record = verify_on_validation_data(
        model, cfg.model, loaded["constrained"], loaded["inference"] or contextlib.nullcontext,
        loaded["tokenizer"], cfg.dataset, cfg.data, int(cfg.seed), settings,
    )  # fmt: skip
    out = args.out or args.path / "verification.json"
    plain_cfg = OmegaConf.to_container(cfg, resolve=True)
    write_json(out, {**provenance(plain_cfg, int(cfg.seed)), "source": loaded["source"], **record})
    found = record["verification"]["summary"]
    print(summary_line(record))
    print(f"verifier: violations in {found['with_violations']} of {found['sublayers']} "
          f"sublayers, worst Jacobian entry {found['worst_entry']:.4g}")  # fmt: skip
    return out


def main() -> None:
    args = _parser().parse_args()
    register_configs()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "verify":
        out = verify(args)
    else:
        from monolm.constraints.export import check_export_target, export_run
        from monolm.runs import load_trained_run

        check_export_target(args.out_dir)
        record = export_run(load_trained_run(args.run_dir, args.checkpoint), args.out_dir)
        out = args.out_dir
        print(
            f"max |logit difference| after vanilla reload: {record['max_abs_logit_difference']:.3g}"
        )
    print(out)


if __name__ == "__main__":
    run(main)
