"""The small datasets shipped inside the package (see bundled/README.md)."""

from __future__ import annotations

from pathlib import Path

from monolm.errors import UserError, did_you_mean

BUNDLED_ROOT = Path(__file__).resolve().parent / "bundled"


def bundled_names() -> list[str]:
    return sorted(p.name for p in BUNDLED_ROOT.iterdir() if p.is_dir() and any(p.glob("*.jsonl")))


def bundled_files(name: str) -> dict[str, str]:
    """split -> jsonl path of a bundled dataset."""
    folder = BUNDLED_ROOT / name
    if not folder.is_dir():
        raise UserError(f"unknown bundled dataset '{name}': {did_you_mean(name, bundled_names())}")
    return {path.stem: str(path) for path in sorted(folder.glob("*.jsonl"))}
