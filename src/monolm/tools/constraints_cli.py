"""python -m monolm.constraints {verify,export}: check or export a trained model (the command
lives here, above the subject loader; monolm/constraints/__main__.py only starts it).

  python -m monolm.constraints verify RUN_DIR_OR_EXPORT [--batches N --samples N ...]
  python -m monolm.constraints export RUN_DIR OUT_DIR [--checkpoint FILE]

`verify` writes verification.json (guarantee record + Jacobian sampling and search) next to the
model; `export` writes a plain Hugging Face directory (see monolm.tools.export).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from omegaconf import OmegaConf

from monolm.cli import run
from monolm.config.schema import register_configs
from monolm.constraints.guarantee import summary_line
from monolm.constraints.verify import (
    VerifySettings,
    verify_on_validation_data,
    verify_settings,
)
from monolm.errors import UserError
from monolm.provenance import provenance, write_json
from monolm.run_dir import (
    EXPORT_RECORD,
    RUN_RECORD,
    VERIFICATION_RECORD,
    RunDir,
    is_export_dir,
    is_run_dir,
)
from monolm.subjects import Subject, load_subject, resolve_model, resolve_run
from monolm.tools.export import check_export_target, export_run

# The package's conf/ (an export names its own model config, so no option is read from it).
CONF_DIR = Path(__file__).resolve().parents[3] / "conf"

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


def _subject(path: Path, checkpoint: Path | None) -> Subject:
    """A run dir or an export, through the one subject loader."""
    if is_run_dir(path):
        ref = resolve_run(RunDir(path), None if checkpoint is None else str(checkpoint))
    elif is_export_dir(path):
        ref = resolve_model(CONF_DIR, str(path))
    else:
        raise UserError(
            f"'{path}' is neither a training run dir ({RUN_RECORD}) nor an exported model "
            f"({EXPORT_RECORD})"
        )
    return load_subject(ref, cache_dir="")  # runs and exports bring their own tokenizer


def verify(args: argparse.Namespace) -> Path:
    subject = _subject(args.path, args.checkpoint)
    cfg = subject.config
    overrides = {k: v for k, v in vars(args).items() if k in VerifySettings.__dataclass_fields__}
    settings = verify_settings(cfg.constraint.get("verify"), **overrides)
    subject.model.to("cuda" if torch.cuda.is_available() else "cpu")
    record = verify_on_validation_data(
        subject.model,
        subject.model_cfg,
        set(subject.constrained_layers),
        subject.validation_data(),
        settings,
        subject.transform.cached_weights,
    )
    out = args.out or args.path / VERIFICATION_RECORD
    plain_cfg = OmegaConf.to_container(cfg, resolve=True)
    write_json(out, {**provenance(plain_cfg, int(cfg.seed)), "source": subject.source, **record})
    found = record["verification"]["summary"]
    print(summary_line(record))
    print(
        f"verifier: violations in {found['with_violations']} of {found['sublayers']} "
        f"sublayers, worst Jacobian entry {found['worst_entry']:.4g}"
    )
    return out


def export(args: argparse.Namespace) -> Path:
    check_export_target(args.out_dir)
    record = export_run(_subject(args.run_dir, args.checkpoint), args.out_dir)
    print(f"max |logit difference| after vanilla reload: {record['max_abs_logit_difference']:.3g}")
    return args.out_dir


def main() -> None:
    args = _parser().parse_args()
    register_configs()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = verify(args) if args.command == "verify" else export(args)
    print(out)


if __name__ == "__main__":
    run(main)
