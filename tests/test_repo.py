"""Repository hygiene that CI enforces: lint, format, and the README's commands."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

CODE = ["src", "tests", "benchmarks", "train.py"]


def test_ruff_lint_and_format_are_clean() -> None:
    for args in (["check", *CODE], ["format", "--check", *CODE]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *args], cwd=REPO, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_layers_point_down_only() -> None:
    """The import-linter layers contract in pyproject.toml: no module imports a higher layer."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint_imports)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Contracts: 1 kept, 0 broken." in result.stdout


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    quickstart = re.findall(r"```bash\n(.+?)\n```", readme.split("## Quickstart")[1], re.S)[:2]
    train_command, test_command = quickstart
    assert train_command.endswith("python train.py")
    assert test_command in (REPO / ".ci" / "run").read_text().splitlines()
