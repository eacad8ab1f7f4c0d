"""The end of a `-m` sweep: one line per job, read from the run dirs the jobs wrote (a Hydra
callback, conf/hydra/default.yaml; light imports: it is built before every run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from monolm.run_dir import METRICS_RECORD, RUN_RECORD


class SweepSummary(Callback):
    """At the end of a `-m` sweep: one line per job (status, step, validation loss/perplexity)
    read from the run dirs the jobs wrote."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        lines = []
        for run_json in sorted(sweep_dir.glob(f"*/{RUN_RECORD}")):
            run_dir = run_json.parent
            status = _read(run_json).get("status", "?")
            metrics = _read(run_dir / METRICS_RECORD).get("metrics", {})
            loss, ppl = metrics.get("val/loss"), metrics.get("val/ppl")
            lines.append(
                f"  {run_dir.name:<48} {status:<10} step {metrics.get('global_step', '-'):>6}  "
                f"val/loss {_num(loss)}  val/ppl {_num(ppl)}"
            )
        if lines:
            print(f"sweep {sweep_dir}: {len(lines)} runs", *lines, sep="\n", flush=True)


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else "-"
