"""`tfft cv`: one config trained on k folds and/or several seeds, the spread of its scores, and an ensemble export.

```bash
tfft cv --config=configs/cola.yaml --folds=5 --ensemble      # 5 runs, each validated on its held-out fold
tfft cv --config=configs/cola.yaml --seeds=0,1,2             # 3 runs on the whole split, validated on data.validation
```

Each member is a plain tfft run in `<output_dir>/fold-<i>` (`seed-<s>`, or
`fold-<i>-seed-<s>`): folds hold out part of `data.train` through
`data.split` (`tfft.folds`: stratified by label for classification, by
rarest label for multi-label, a context's questions together for QA, whole
sentences for NER). A rerun continues: finished members are read back,
an unfinished one resumes from its backup.

The results table (`cv_results.csv`, `cv_results.md`) has each member's
held-out scores, their mean and standard deviation. A fold's member keeps its
final weights (`train.restore_best=false`), so its held-out scores are of
weights that fold did not choose; members of `--seeds` alone follow the
config. When `data.validation` is set, every member and the ensemble are
also scored on it (the dev set the folds never saw). `ensemble=True` exports the members as one SavedModel
(`tfft.ensemble`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import statistics
import time

from tfft import child_run, run_dir, streaming, tables, tasks
from tfft import folds as folds_lib
from tfft.config import Config, ConfigError, SplitConfig, derived

logger = logging.getLogger(__name__)

__all__ = ["run", "plan", "Member", "CVResult", "RESULTS_CSV"]

RESULTS_CSV = "cv_results.csv"
RESULTS_MD = "cv_results.md"
RESULTS_JSON = "cv_results.json"
_OWN_FILES = (RESULTS_CSV, RESULTS_MD, RESULTS_JSON)
#: Scores that are no quality measure, left out of the table.
_NOT_SCORES = ("examples", "train_seconds")


@dataclasses.dataclass
class Member:
    """One run of a cross-validation: its name (`fold-2`, `seed-1`, `fold-2-seed-1`) and config."""

    name: str
    config: Config


@dataclasses.dataclass
class CVResult:
    """What `run` returns.

    Args:
        rows: list of dict. One per member, then the mean and the standard deviation.
        members: list of `Member`.
        held_out: list of dict. Each member's scores on its validation split.
        dev: dict or None. On `data.validation`: `members` (each one's scores) and `ensemble`.
        export_path: str or None. The ensemble's SavedModel version folder.
    """

    rows: list[dict]
    members: list[Member]
    held_out: list[dict]
    dev: dict | None = None
    export_path: str | None = None


def run(config: Config, folds: int = 0, seeds: tuple[int, ...] = (), ensemble: bool = False) -> CVResult:
    """Trains every member of `plan`, tabulates their scores and, with `ensemble`, exports them as one model.

    Args:
        config: `tfft.config.Config`. The base of every member.
        folds: int. 0: no folds (every member trains on all of `data.train`). Else the number of folds.
        seeds: tuple of int. `train.seed` of each member; empty: `config.train.seed` alone.
        ensemble: bool. Export the members as one SavedModel (`tfft.ensemble`).

    Returns:
        A `CVResult`.
    """
    members = plan(config, folds, seeds)
    check(config, folds, ensemble)
    with child_run.Children() as children:  # each member's process starts, and imports, while the one before trains
        held_out = [train_member(member, i, len(members), children) for i, member in enumerate(members)]
    result = CVResult(table(members, held_out, task_monitor(config)), members, held_out)
    if config.data.validation and folds or ensemble:
        result.dev, result.export_path = finish_members(config, members, ensemble)
    write_results(result, pathlib.Path(config.output_dir))
    return result


def plan(config: Config, folds: int, seeds: tuple[int, ...]) -> list[Member]:
    """The members' configs: each fold (held out through `data.split`) for each seed, in its own folder."""
    if folds == 1 or folds < 0:
        raise ConfigError(f"Argument `--folds` must be 0 (no folds) or >= 2. Received: folds={folds}")
    if not folds and len(seeds) < 2:
        raise ConfigError(f"`tfft cv` needs `--folds` >= 2 or at least two `--seeds`. Received: folds={folds}, "
                          f"seeds={list(seeds)}")
    seeds = tuple(seeds) or (config.train.seed,)
    members = []
    for fold in range(folds) if folds else [None]:
        for seed in seeds:
            parts = ([f"fold-{fold}"] if fold is not None else []) + ([f"seed-{seed}"] if len(seeds) > 1 else [])
            split = None if fold is None else SplitConfig(folds=folds, fold=fold, seed=config.data.split.seed,
                                                          stratify=config.data.split.stratify)
            # A fold keeps its final weights (`derived`, given the split).
            member = derived(config, pathlib.Path(config.output_dir) / "-".join(parts), {"train.seed": seed}, split,
                             member=True)  # a rerun resumes or reads back each run, never redoes it
            members.append(Member("-".join(parts), member))
    return members


def check(config: Config, folds: int, ensemble: bool = False) -> None:
    """Refuses bad input before anything is written.

    A folder holding files tfft cv did not write, streamed data, too few
    rows or labels for the folds, and an ensemble export (LiteRT, its
    destination) that the tokenizer or folder cannot take.
    """
    run_dir.refuse_foreign_entries(pathlib.Path(config.output_dir), _is_own, "cv")
    if folds and streaming.training_files(config.data) is not None:
        raise ConfigError("Argument `--folds` splits the training rows in memory; set `data.streaming=false`. "
                          f"Received: data.streaming={config.data.streaming!r}")
    if not folds and not ensemble:
        return
    task = tasks.create(config)
    examples = task.read(config.data.train, split="train")  # once, for both checks
    if ensemble:
        _check_export(config, task, examples.texts[:1000])
    if folds:
        folds_lib.fold_indices(task, examples, folds, config.data.split.seed, config.data.split.stratify)


def _is_own(name: str) -> bool:
    return name in _OWN_FILES or name.startswith(("fold-", "seed-"))


def _check_export(config: Config, task, sample_texts: list[str]) -> None:
    """The checks `tfft train` makes before training, for the ensemble's export (its members export nothing)."""
    from tfft import backbones, train

    source = backbones.resolve(config.model)
    source.prepare(sample_texts, None)
    train.check_outputs(dataclasses.replace(config, export=dataclasses.replace(config.export, enabled=True)), task,
                        source.packer())


def train_member(member: Member, index: int, count: int, children: child_run.Children) -> dict:
    """Trains (or resumes, or reads back) one member, in a process of its own (`tfft.child_run`: TensorFlow keeps
    memory from each `fit`); its scores on its validation split."""
    folder = pathlib.Path(member.config.output_dir)
    metrics = run_dir.finished_metrics(folder)
    started = time.monotonic()
    if metrics is None:
        logger.info("Cross-validation run %d of %d (%s): training in %s", index + 1, count, member.name, folder)
        metrics = children.run(member.config, more=index + 1 < count)
    scores = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k not in _NOT_SCORES}
    logger.info("Cross-validation run %d of %d (%s) done in %.1f s: %s", index + 1, count, member.name,
                time.monotonic() - started, ", ".join(f"{k}={v:.4f}" for k, v in scores.items()))
    return scores


def task_monitor(config: Config) -> str:
    return tasks.create(config).monitor[0]


def table(members: list[Member], held_out: list[dict], monitor: str) -> list[dict]:
    """One row per member, then `mean` and `std` (sample standard deviation) of every score."""
    names = list(dict.fromkeys([monitor, *(k for scores in held_out for k in scores)]))
    names = [n for n in names if all(n in scores for scores in held_out)]
    rows = [{"run": m.name, **{n: scores[n] for n in names}} for m, scores in zip(members, held_out, strict=True)]
    columns = {n: [scores[n] for scores in held_out] for n in names}
    rows.append({"run": "mean", **{n: statistics.mean(v) for n, v in columns.items()}})
    rows.append({"run": "std", **{n: statistics.stdev(v) if len(v) > 1 else 0.0 for n, v in columns.items()}})
    return rows


def finish_members(config: Config, members: list[Member], ensemble: bool) -> tuple[dict | None, str | None]:
    """Scores the members (and their ensemble) on `data.validation`, where set; exports the ensemble if asked."""
    import keras

    from tfft import ensemble as ensemble_lib
    from tfft.model import load_trained

    runs = [load_trained(m.config) for m in members]
    joined = ensemble_lib.join(runs, [m.config.output_dir for m in members]) if ensemble else None
    dev = score_on_validation(config, runs, joined) if config.data.validation else None
    path = ensemble_lib.export(joined, config) if joined is not None else None
    keras.backend.clear_session()
    return dev, path


def score_on_validation(config: Config, runs: list, joined) -> dict:
    """Each run's scores on `data.validation`, and the ensemble's (`joined`, or None)."""
    from tfft import evaluate

    task = runs[0].task
    examples = streaming.read_all(task, config.data.validation, "validation")
    batch = config.train.batch_size

    def score(trained):
        return _numbers(trained.task.score(examples, evaluate.predict_outputs(
            trained.task, trained.model, trained.packer, examples, batch)))

    dev = {"members": [score(run) for run in runs], "ensemble": score(joined) if joined is not None else None}
    monitor = task.monitor[0]
    together = f"; their ensemble {dev['ensemble'][monitor]:.4f}" if joined is not None else ""
    logger.info("On %s: the runs' %s %s (mean %.4f)%s", config.data.validation, monitor,
                " ".join(f"{s[monitor]:.4f}" for s in dev["members"]),
                statistics.mean(s[monitor] for s in dev["members"]), together)
    return dev


def _numbers(scores: dict) -> dict:
    return {k: v for k, v in scores.items() if isinstance(v, (int, float)) and k not in _NOT_SCORES}


def write_results(result: CVResult, output_dir: pathlib.Path) -> None:
    """`cv_results.csv`, `cv_results.md` (printed too) and `cv_results.json` in `output_dir`."""
    output_dir.mkdir(parents=True, exist_ok=True)
    columns = list(result.rows[0])
    tables.write_csv(result.rows, output_dir / RESULTS_CSV)
    lines = [tables.markdown(result.rows)]
    if result.dev is not None:
        monitor = columns[1]
        scores = [s[monitor] for s in result.dev["members"]]
        lines.append(f"\nOn data.validation, {monitor}: runs " + " ".join(f"{v:.4f}" for v in scores)
                     + f" (mean {statistics.mean(scores):.4f})")
        if result.dev["ensemble"] is not None:
            lines[-1] += f"; their ensemble {result.dev['ensemble'][monitor]:.4f}"
    text = "\n".join(lines) + "\n"
    (output_dir / RESULTS_MD).write_text(text, encoding="utf-8")
    (output_dir / RESULTS_JSON).write_text(json.dumps({"rows": result.rows, "dev": result.dev,
                                                       "export_path": result.export_path}, indent=2) + "\n")
    print(text, end="")
