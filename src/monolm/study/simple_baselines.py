"""The simple baselines of a study (`study.baselines`): per subject, evaluate.py run on the same
tasks as the arms' evaluations, with no training: `majority` and `uniform`
(`evaluate.py baseline=...`, src/monolm/evaluation/baselines.py) and `zero_shot` (the subject's
model option untrained, `evaluate.py model=<option>`).

Each is one `evaluate` stage in `baselines/<subject>/<baseline>/` that needs nothing. Its
overrides are the study's `evaluate` overrides, so the same tasks, caps and bootstrap settings as
the arms', with two changes:

- `own` (the data a run trained on) has no run to read here: it becomes the evaluate task option
  named like the subject's dataset option (conf/evaluate/task/<dataset>.yaml), given as
  `task.own.kind/dataset/split` *before* the study's overrides (so the study's own `task.own.*`
  settings, e.g. a cap, still win). The task keeps the name `own`, so the baseline's
  `evaluate/own/acc` is the arms' `evaluate/own/acc`: the report pairs them by name;
- `majority` evaluates only the classification and question-answering tasks, `uniform` only the
  classification ones (what evaluate.py accepts for them); a baseline with no such task is not
  planned for that subject (the report says so). `uniform` draws with the study's first seed.

A baseline evaluates the dataset option and the model option as written, so a subject that
overrides `dataset.*` (but the caps of its training data, `TRAINING_ONLY_DATASET_KEYS`) or, for
`zero_shot`, `model.*` is refused in one line: its baselines would measure something else than
its arms.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from omegaconf import OmegaConf

from monolm.errors import UserError
from monolm.study.settings import StudySettings

BASELINES_DIR = "baselines"
OWN = "own"
_PREFIXES = ("++", "+", "~")
# dataset keys a subject may override with baselines: they cap the training run's data only (the
# evaluation of a prompted task reads its split whole, capped by evaluate's max_examples)
TRAINING_ONLY_DATASET_KEYS = ("dataset.max_train_examples", "dataset.max_validation_examples")


def override_key(override: str) -> str:
    """`+dataset.max_length=5` -> `dataset.max_length`."""
    key = override.split("=", 1)[0]
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def option_of(overrides: list[str] | tuple[str, ...], group: str) -> str | None:
    """The option the last `<group>=<option>` override picks, or None."""
    picked = [o.split("=", 1)[1] for o in overrides if "=" in o and override_key(o) == group]
    return picked[-1] if picked else None


def _refuse_key_overrides(subject: str, overrides: list[str], group: str, why: str) -> None:
    changed = [
        o
        for o in overrides
        if override_key(o).startswith(f"{group}.")
        and override_key(o) not in TRAINING_ONLY_DATASET_KEYS
    ]
    if changed:
        raise UserError(
            f"study.subjects.{subject} overrides {override_key(changed[0])}, which its {why} "
            f"would not see (they read the {group} option as written): put it in a {group} "
            "option, or leave the baselines out"
        )


def evaluated_tasks(settings: StudySettings, conf_dir: Path, study_dir: Path) -> dict[str, str]:
    """Task name -> kind in the arms' evaluations (`own` for own), from evaluate.py's config
    composed with the study's `evaluate` overrides."""
    from monolm.cli import describe
    from monolm.study.compose import compose_script

    try:
        cfg = compose_script(
            conf_dir, "evaluate", "evaluate", tuple(settings.evaluate or ()), study_dir
        )
    except Exception as exc:
        message = describe(exc)
        if message is None:
            raise
        raise UserError(f"study.evaluate: {message}") from exc
    return {str(name): str(task.kind) for name, task in cfg.task.items()}


def own_task(conf_dir: Path, subject: str, overrides: list[str]) -> tuple[str, tuple[str, ...]]:
    """(kind, overrides) that make a baseline's `own` task the evaluate task option named like
    the subject's dataset option."""
    dataset = option_of(overrides, "dataset")
    where = f"study.subjects.{subject}"
    if dataset is None:
        raise UserError(
            f"{where} has no dataset=<option> override: its baselines evaluate task 'own' as "
            "the evaluate task option named like its dataset; add dataset=<option> to it"
        )
    path = conf_dir / "evaluate" / "task" / f"{dataset}.yaml"
    if not path.is_file():
        raise UserError(
            f"{where} trains on dataset={dataset}, which has no evaluate task option for its "
            f"baselines' task 'own': add conf/evaluate/task/{dataset}.yaml (kind, dataset, split)"
        )
    _refuse_key_overrides(subject, overrides, "dataset", "baselines")
    option = OmegaConf.load(path)
    kind, named = option.get("kind"), option.get("dataset")
    if kind in (None, OWN) or named != dataset:
        raise UserError(
            f"'{path}' (the baselines' task 'own' of {where}) must give a kind other than own "
            f"and dataset: {dataset}"
        )
    task = [f"task.{OWN}.kind={kind}", f"task.{OWN}.dataset={dataset}"]
    if option.get("split") is not None:
        task.append(f"task.{OWN}.split={option.split}")
    return str(kind), tuple(task)


def _experiment_model(conf_dir: Path, experiment: str) -> str | None:
    """The model option conf/experiment/<experiment>.yaml selects (`override /model: <x>`)."""
    path = conf_dir / "experiment" / f"{experiment}.yaml"
    if not path.is_file():
        return None
    option = OmegaConf.to_container(OmegaConf.load(path))
    for entry in option.get("defaults") or [] if isinstance(option, dict) else []:
        if isinstance(entry, Mapping):
            for key, value in entry.items():
                if str(key).replace("override", "").strip().lstrip("/") == "model":
                    return str(value)
    return None


def subject_model(conf_dir: Path, subject: str, overrides: list[str], why: str) -> str:
    """The conf/model option `subject`'s overrides pick (what its base model is): its
    model=<option>, else the one its experiment=<option> selects."""
    model = option_of(overrides, "model")
    where = f"study.subjects.{subject}"
    experiment = option_of(overrides, "experiment")
    if model is None and experiment is not None:
        model = _experiment_model(conf_dir, experiment)
    if model is None:
        raise UserError(
            f"{where} has no model=<option> override: the {why} reads that option untrained; "
            "add model=<option> to it"
        )
    if not (conf_dir / "model" / f"{model}.yaml").is_file():
        raise UserError(f"{where}: model={model} is no conf/model option ({why})")
    _refuse_key_overrides(subject, overrides, "model", why)
    return model


def _without_tasks(overrides: list[str], dropped: list[str]) -> list[str]:
    """The overrides but those setting a dropped task (`task.<name>...`)."""
    return [
        o
        for o in overrides
        if not any(override_key(o).split(".")[:2] == ["task", name] for name in dropped)
    ]


def baseline_stages(
    settings: StudySettings, conf_dir: Path, subject: str, tasks: dict[str, str]
) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """(baseline, dir, evaluate.py overrides) of each baseline planned for `subject`; `tasks`
    from `evaluated_tasks`."""
    from monolm.evaluation.baselines import BASELINE_KINDS  # the kinds each one scores

    subject_overrides = settings.subjects[subject]
    kinds, own = dict(tasks), ()
    if OWN in kinds:
        kinds[OWN], own = own_task(conf_dir, subject, subject_overrides)
    evaluate = list(settings.evaluate or ())
    for name in settings.baselines:
        where = f"{BASELINES_DIR}/{subject}/{name}"
        if name == "zero_shot":
            model = subject_model(conf_dir, subject, subject_overrides, "zero_shot baseline")
            yield name, where, (*own, *evaluate, f"model={model}")
            continue
        applies = [task for task, kind in kinds.items() if kind in BASELINE_KINDS[name]]
        if not applies:
            continue
        dropped = [task for task in kinds if task not in applies]
        chosen = (f"task=[{','.join(applies)}]",) if dropped else ()
        seed = (f"seed={settings.seeds[0]}",) if name == "uniform" else ()
        yield (
            name,
            where,
            (
                *(own if OWN in applies else ()),
                *_without_tasks(evaluate, dropped),
                *chosen,
                f"baseline={name}",
                *seed,
            ),
        )
