"""python -m monolm.study plan|run|status|report study=<option> [study_dir=<dir>] [overrides]

plan    write <study_dir>/study.json: every stage of every run, its dir, overrides and needs
run     plan (if the plan changed: again) and run the stages not done yet (executor=local)
status  each stage: done, failed (with its log), blocked or missing
report  aggregate the finished stages (tables, statistics, figures)
"""

from monolm.cli import run
from monolm.study.command import main

if __name__ == "__main__":
    run(main)
