"""`python -m monolm.constraints verify|export`: the command lives in monolm.tools."""

from monolm.cli import run
from monolm.tools.constraints_cli import main

if __name__ == "__main__":
    run(main)
