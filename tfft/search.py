"""`tfft search`: a hyperparameter search over any config keys, run by Optuna.

The space is the config's `search` section (or `--search=space.yaml`):

```yaml
search:
  trials: 20
  objective: accuracy        # a metric name; direction inferred, or `direction: maximize|minimize`
  space:
    train.learning_rate: {type: loguniform, low: 1.0e-5, high: 3.0e-4}
    train.epochs: {type: int, low: 1, high: 4}
    model.dropout: {type: choice, values: [0.0, 0.1]}
```

A search is four phases, as a run is: `check` (the space and the objective,
before anything is written), `open_study` (Optuna's study in its database),
`optimize` (the trials) and `finish` (the results table, `best_config.yaml`,
the plots, and with `train_best` the winner trained and exported).

Each trial is a tfft run of its own in `<output_dir>/trials/<n>`, scored on
`data.validation` or on a held-out slice of the training split
(`search.validation_fraction`, `tfft.folds`). Optuna's TPE sampler proposes
the values; its median pruner stops trials whose per-epoch validation score
trails, or ties with a higher validation loss (`tfft.trial_pruner`). The
study lives in SQLite in `output_dir` (or `search.storage`): a rerun of the
same command continues it, a trial cut by kill -9 is tried again with the
same values (its run resumes from its backup), and several processes or
machines pointed at one storage share the study.

```python
config = tfft.config.load_config("base.yaml", ["search.trials=10"])
result = tfft.search.run(config)
print(result.best_score, result.best_config_path)
```
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import logging
import math
import os
import pathlib
import socket
import threading
import time
import warnings
from typing import Any

from tfft import child_run, run_dir, tables, tasks, warm_runs
from tfft.config import Config, ConfigError, SearchConfig, SplitConfig, derived, set_key
from tfft.errors import OutputDirError, RunInUseError

logger = logging.getLogger(__name__)

__all__ = ["run", "SearchResult", "Param", "check", "BEST_CONFIG", "STUDY_DB", "TRIALS_CSV"]

STUDY_DB = "study.db"
TRIALS_CSV = "trials.csv"
BEST_CONFIG = "best_config.yaml"
SEARCH_CONFIG = "search.yaml"
TRIALS_DIR = "trials"
PLOTS = ("optimization_history.html", "param_importances.html")
#: How many times the study queues a trial again whose heartbeat went stale.
MAX_RETRIES = 3
#: SQLite's side files of `study.db`: a process killed mid-write leaves its rollback journal, which the next open of
#: the study needs to undo the half-done write.
STUDY_DB_SIDE_FILES = tuple(STUDY_DB + suffix for suffix in ("-journal", "-wal", "-shm"))
#: Everything a search writes in its `output_dir`; it refuses a folder holding anything else.
OWN_ENTRIES = frozenset({STUDY_DB, *STUDY_DB_SIDE_FILES, TRIALS_CSV, BEST_CONFIG, SEARCH_CONFIG, TRIALS_DIR, "best",
                         *PLOTS})
TYPES = ("loguniform", "uniform", "int", "choice")
#: Metric names with these in them are minimized when `search.direction` is `auto`.
_LOWER_IS_BETTER = ("loss", "error", "perplexity", "mse", "mae")


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched config key and its distribution (one entry of `search.space`)."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    values: tuple = ()
    log: bool = False
    step: float | None = None

    def suggest(self, trial) -> Any:
        """The trial's value for the key, from Optuna's `suggest_*`."""
        if self.type == "choice":
            return trial.suggest_categorical(self.key, list(self.values))
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, log=self.type == "loguniform", step=self.step)

    def extremes(self) -> list:
        """The values the space can reach at its edges: every choice, or low and high."""
        return list(self.values) if self.type == "choice" else [self.low, self.high]


@dataclasses.dataclass
class Objective:
    """What the trials are scored by: a validation metric name and its direction."""

    name: str
    direction: str


@dataclasses.dataclass
class SearchResult:
    """What `run` returns.

    Args:
        study: `optuna.Study`.
        best_score: float. The best finished trial's objective.
        best_params: dict. Its values, by config key.
        best_config_path: `pathlib.Path`. `best_config.yaml`, which `tfft train --config` takes as it is.
        rows: list of dict. The results table, one row per trial.
        trained: `tfft.train.TrainResult` or None. The winner, with `train_best`.
    """

    study: Any
    best_score: float
    best_params: dict
    best_config_path: pathlib.Path
    rows: list[dict]
    trained: Any = None


def run(config: Config, train_best: bool = False) -> SearchResult:
    """Searches `config.search.space` with Optuna, continuing the study its storage holds.

    Args:
        config: `tfft.config.Config`. The base of every trial, with its `search` section.
        train_best: bool. Train and export the best config when the study is done.

    Returns:
        A `SearchResult`.
    """
    space, objective = check(config)
    output_dir = pathlib.Path(config.output_dir)
    study = open_study(config, space, objective)
    optimize(study, config, space, objective)
    return finish(study, config, space, objective, output_dir, train_best)


# --- Phase 1: checks -------------------------------------------------------


def check(config: Config) -> tuple[list[Param], Objective]:
    """The parsed space and objective; a bad space, objective or output folder fails here, before any write."""
    config.validate()
    task = tasks.create(config)
    space = parse_space(config.search.space)
    for param in space:
        for value in param.extremes():
            _check_reachable(config, param, value)
    if not config.data.validation and not config.search.validation_fraction and not config.data.split.active:
        raise ConfigError("Argument `search.validation_fraction` must be > 0 when `data.validation` is empty: trials "
                          "need a validation split to be scored on. Received: validation_fraction=0.0")
    run_dir.refuse_foreign_entries(pathlib.Path(config.output_dir), OWN_ENTRIES.__contains__, "search")
    return space, objective_of(config.search, task)


def parse_space(space: dict) -> list[Param]:
    """`search.space` as `Param`s; an empty space, an unknown type or bad bounds fail naming the key."""
    if not space:
        raise ConfigError("Argument `search.space` must name at least one config key to search, e.g. "
                          "`train.learning_rate: {type: loguniform, low: 1.0e-5, high: 3.0e-4}`. Received: space={}")
    return [_param(key, spec) for key, spec in space.items()]


def _param(key: str, spec: Any) -> Param:
    name = f"search.space.{key}"
    if key.split(".")[0] in ("search", "output_dir", "name"):
        raise ConfigError(f"Argument `{name}` names a key a search sets itself or cannot vary. Search training, "
                          f"model or data keys, e.g. `train.learning_rate`. Received: {key}")
    if not isinstance(spec, dict) or spec.get("type") not in TYPES:
        raise ConfigError(f"Argument `{name}` must be a mapping with `type` one of {', '.join(TYPES)}, e.g. "
                          f"{{type: uniform, low: 0.0, high: 0.2}}. Received: {key}={spec!r}")
    unknown = set(spec) - {"type", "low", "high", "values", "log", "step"}
    if unknown:
        raise ConfigError(f"Argument `{name}` has unknown fields {sorted(unknown)}; it takes type, low, high, log, "
                          f"step (numbers) or values (choice). Received: {key}={spec!r}")
    if spec["type"] == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"Argument `{name}` of type choice must list its `values`, e.g. "
                              f"{{type: choice, values: [16, 32]}}. Received: {key}={spec!r}")
        return Param(key, "choice", values=tuple(values))
    low, high = _number(spec.get("low")), _number(spec.get("high"))
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
    if not numbers or not low < high or (spec["type"] == "loguniform" and low <= 0):
        need = "0 < low < high" if spec["type"] == "loguniform" else "low < high"
        raise ConfigError(f"Argument `{name}` must have numbers `low` and `high` with {need}. Received: "
                          f"{key}={spec!r}")
    if spec["type"] == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"Argument `{name}` of type int must have whole `low` and `high`. Received: {key}={spec!r}")
    return Param(key, spec["type"], float(low), float(high), log=bool(spec.get("log")), step=spec.get("step"))


def _number(value: Any) -> Any:
    """`value`, or the float a string spells: YAML 1.1 reads `1e-5` (no dot) as a string."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _check_reachable(config: Config, param: Param, value: Any) -> None:
    """Refuses a space whose edge (or choice) is no valid value of its key, naming both."""
    candidate = copy.deepcopy(config)
    try:
        set_key(candidate, param.key, int(value) if param.type == "int" else value)
        candidate.validate()
        tasks.create(candidate)
    except ConfigError as err:
        if str(err).startswith(("Unknown config key", "Override `")):  # no key, or a whole section
            raise ConfigError(f"Argument `search.space` names `{param.key}`: {err}") from None
        raise ConfigError(f"Argument `search.space.{param.key}` reaches {value!r}, which a run refuses: {err}") from None


def objective_of(search: SearchConfig, task) -> Objective:
    """The objective's metric and direction: `search.objective`, else the task's monitored score."""
    name = search.objective or task.monitor[0]
    if search.direction != "auto":
        return Objective(name, search.direction)
    if not search.objective:
        return Objective(name, "maximize" if task.monitor[1] == "max" else "minimize")
    lower = any(word in name.lower() for word in _LOWER_IS_BETTER)
    return Objective(name, "minimize" if lower else "maximize")


# --- Phase 2: the study ----------------------------------------------------


def open_study(config: Config, space: list[Param], objective: Objective):
    """Optuna's study in `search.storage` (default SQLite in `output_dir`), created or continued."""
    optuna = _optuna()
    output_dir = pathlib.Path(config.output_dir)
    if not config.search.storage:
        output_dir.mkdir(parents=True, exist_ok=True)  # the default SQLite file's folder
    storage = _storage(config.search, output_dir)
    s = config.search
    # `tfft.trial_sampler` and `tfft.trial_pruner` import Optuna, which `_optuna()` above found installed.
    from tfft.trial_pruner import LossBreaksTies
    from tfft.trial_sampler import TrialSeededTPE

    pruner = LossBreaksTies(n_startup_trials=2) if s.pruning else optuna.pruners.NopPruner()
    name = s.study_name or config.name
    study = optuna.create_study(study_name=name, storage=storage, direction=objective.direction, pruner=pruner,
                                load_if_exists=True)
    _check_same_search(study, space, objective)
    output_dir.mkdir(parents=True, exist_ok=True)
    config.save(output_dir / SEARCH_CONFIG)  # every check passed: the search's first file of its own
    study.sampler = TrialSeededTPE(s.seed)  # trial n's values: the same in one process or many started together
    _requeue_interrupted(study, storage)
    logger.info("Study %r in %s: %d of %d trials finished; scoring %s (%s) on %s.", name, _shown(storage), len(
        _finished(study)), s.trials, objective.name, objective.direction, _validation_split(config))
    return study


def _storage(search: SearchConfig, output_dir: pathlib.Path):
    optuna = _optuna()
    url = search.storage or f"sqlite:///{(output_dir / STUDY_DB).resolve()}"
    # SQLite shared by processes: wait for the lock instead of failing on it.
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    try:
        with warnings.catch_warnings():  # the heartbeat is experimental in Optuna 5
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine, heartbeat_interval=search.heartbeat_seconds,
                grace_period=grace_seconds(search.heartbeat_seconds), heartbeat_stale_trial_callback=_retry(max_retry=MAX_RETRIES),
            )
    except Exception as err:  # sqlalchemy's and the drivers' errors: no common base outside sqlalchemy
        raise ConfigError(f"Argument `search.storage` could not be opened ({str(err).splitlines()[0]}). Give a "
                          f"database URL Optuna takes, e.g. sqlite:///search.db or "
                          f"postgresql://user:pass@host/db. Received: storage={url!r}") from None


def _check_same_search(study, space: list[Param], objective: Objective) -> None:
    """A study keeps the space and objective it was made with; another is refused, naming the difference."""
    now = {"space": {p.key: dataclasses.asdict(p) for p in space}, "objective": dataclasses.asdict(objective)}
    now = json.loads(json.dumps(now))  # tuples as lists, as the storage returns them
    saved = study.user_attrs
    if "space" not in saved:
        for key, value in now.items():
            study.set_user_attr(key, value)
        return
    differences = [f"objective: {saved['objective']} there, {now['objective']} now"] if saved[
        "objective"] != now["objective"] else []
    for key in sorted(set(saved["space"]) | set(now["space"])):
        old, new = saved["space"].get(key), now["space"].get(key)
        if old != new:
            differences.append(f"{key}: {_spec(old)} there, {_spec(new)} now")
    if differences:
        raise ConfigError(f"Study {study.study_name!r} was made with another search: {'; '.join(differences)}. "
                          "Rerun with the same `search` section to continue it, or set `search.study_name` (or "
                          "another `output_dir`) for a new study.")


def _spec(param: dict | None) -> str:
    if param is None:
        return "absent"
    return ", ".join(f"{k}={v}" for k, v in param.items() if k != "key" and v not in (None, [], False))


def _requeue_interrupted(study, storage) -> None:
    """Trials stopped by Ctrl-C or SIGTERM run again with their values (and resume their run folders), once."""
    optuna = _optuna()
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    for trial in trials:
        if trial.state == optuna.trial.TrialState.FAIL and trial.user_attrs.get("interrupted") and (
                trial.number not in retried) and "duplicate_of" not in trial.system_attrs:
            _retry()(study, trial)
    drop_duplicate_retries(study, storage)


def drop_duplicate_retries(study, storage) -> None:
    """Fails every queued copy of a trial but its first: processes restarted together each read the interrupted
    trial as not yet queued, and each queued it (two runs of one trial in one folder)."""
    optuna = _optuna()
    copies: dict[int, list] = {}
    for trial in study.get_trials(deepcopy=False):
        if trial.system_attrs.get("retry_history"):
            copies.setdefault(trial.system_attrs["retry_history"][-1], []).append(trial)
    study_id = storage.get_study_id_from_name(study.study_name)
    for trials in copies.values():
        first, *extras = sorted(trials, key=lambda t: t.number)  # Optuna runs the first queued copy first
        for extra in extras:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, extra.number)
            if storage.get_trial(trial_id).state == optuna.trial.TrialState.WAITING:
                storage.set_trial_system_attr(trial_id, "duplicate_of", first.number)
                storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)


# --- Phase 3: the trials ---------------------------------------------------


def optimize(study, config: Config, space: list[Param], objective: Objective) -> None:
    """Runs trials until the study holds `search.trials` finished ones (from every process sharing it),
    `search.parallel_trials` at a time (`child_run.run_parallel`)."""
    optuna = _optuna()
    remaining = config.search.trials - len(_finished(study))
    if remaining <= 0:
        return
    waiting = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
    tickets = threading.Semaphore(remaining + waiting)  # trials this process may begin, over all its threads
    jobs = config.search.parallel_trials
    if jobs > 1:
        logger.info("Running %d trials at once, each with %d TensorFlow thread(s).", jobs,
                    child_run.threads_per_run(jobs))

    diverged = DivergedTrials()

    def work(children: child_run.Children) -> None:  # each trial's process starts while the one before trains
        while not children.stopping and len(_finished(study)) < config.search.trials and tickets.acquire(False):
            try:
                study.optimize(lambda trial: run_trial(trial, config, space, objective, children), n_trials=1,
                               gc_after_trial=True)
            except TrialDiverged:
                tickets.release()  # failed, not finished: another trial takes its place
                diverged.count()
            except FailedWhileRunning as err:  # its retry reports the finished run; this process may take it
                logger.warning("%s", err)
                tickets.release()
            else:
                diverged.reset()

    child_run.run_parallel(work, jobs)


def run_trial(trial, config: Config, space: list[Param], objective: Objective,
              children: child_run.Children) -> float:
    """One trial: its config's run, trained (or resumed) in `trials/<n>` in a child process (`tfft.child_run`:
    TensorFlow keeps memory from each `fit`), the last trial's where it can reuse its model and traced steps
    (`tfft.warm_runs`), scored on the validation split."""
    optuna = _optuna()
    values = {param.key: param.suggest(trial) for param in space}
    folder = pathlib.Path(config.output_dir) / TRIALS_DIR / str(trial.user_attrs.get("folder", trial.number))
    trial.set_user_attr("folder", int(folder.name))
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    trial.set_user_attr("began", trial.number)  # a retried copy carries its failed trial's attributes, not this
    logger.info("Trial %d (of %d): %s", trial.number, config.search.trials, _values(values))
    trial_run = trial_config(config, values, folder)
    pruning = PruneOnEpochs(trial, objective.name, epochs=trial_run.train.epochs)
    started = time.monotonic()
    try:
        wait_for_live_run(trial, folder, children)  # a retry of a trial failed as dead whose run goes on
        metrics = run_dir.finished_metrics(folder)  # finished before the process died, not yet told to the study
        if metrics is None:
            more = len(_finished(trial.study)) + 1 < config.search.trials  # as far as this process can tell
            # A space of keys the trials' process can reuse its model for: the next trial takes this one's process.
            ahead = more and not set(values) <= warm_runs.reusable_keys(config)
            metrics = children.run(trial_run, on_epoch=pruning.on_epoch_end, more=ahead)
    except KeyboardInterrupt:
        trial.set_user_attr("interrupted", True)
        raise
    except child_run.RunInterrupted as err:  # stopped on its own, or beside a trial that failed or was stopped
        trial.set_user_attr("interrupted", True)
        raise KeyboardInterrupt(str(err)) from None
    except child_run.RunDiverged as err:  # its values train badly: the search learns that, and goes on
        trial.set_user_attr("diverged", True)
        logger.warning("Trial %d (of %d) diverged in %.1f s (its training loss became NaN or infinite): failed, and "
                       "another trial takes its place | %s", trial.number, config.search.trials,
                       time.monotonic() - started, _values(trial.params))
        raise TrialDiverged(str(err)) from None
    if _running_copy(trial) is None:
        raise FailedWhileRunning(trial.number, folder, config.search.heartbeat_seconds, _retried(trial))
    score = _score(metrics, objective.name)
    trial.set_user_attr("seconds", round(time.monotonic() - started, 1))
    _log_trial(trial, config, objective, score, pruning, time.monotonic() - started)
    if pruning.pruned_at is not None:
        trial.set_user_attr("score", score)
        raise optuna.TrialPruned(f"pruned after epoch {pruning.pruned_at}")
    return score


def trial_config(config: Config, values: dict, folder: pathlib.Path) -> Config:
    """The base config with the trial's values, in its own folder, scored on the search's validation split."""
    fraction = config.search.validation_fraction
    split = SplitConfig(fraction=fraction, seed=config.search.seed) if fraction else None
    return derived(config, folder, values, split, member=True)  # a retry resumes its run; a split keeps final weights


def _score(metrics: dict | None, name: str) -> float:
    if name not in (metrics or {}):
        numbers = sorted(k for k, v in (metrics or {}).items() if isinstance(v, (int, float)))
        raise ConfigError(f"Argument `search.objective` must be a validation metric of this task: "
                          f"{', '.join(numbers)}. Received: objective={name!r}")
    return float(metrics[name])


class TrialDiverged(RuntimeError):
    """A trial's training loss became NaN or infinite: Optuna fails it, and the search goes on."""


def _running_copy(trial):
    """The study's `FrozenTrial` of `trial` while it holds it as running, else None. Optuna's heartbeat check, in
    another thread or process of the search, fails a trial whose heartbeat went unrecorded for `grace_seconds`, even
    one whose run goes on."""
    running = _optuna().trial.TrialState.RUNNING
    return next((t for t in trial.study.get_trials(deepcopy=False, states=(running,)) if t.number == trial.number),
                None)


class FailedWhileRunning(BaseException):
    """The study failed a trial as dead while its run went on (its heartbeat went unrecorded on a loaded machine).

    The search goes on: the study queued a retry of the trial, which waits for the run and reports it
    (`wait_for_live_run`) instead of training again. A `BaseException`, as `KeyboardInterrupt` is: Optuna catches
    `Exception` from a trial and tells the study it failed, and telling a trial the study already failed raises
    Optuna's own `ValueError` in its place.
    """

    def __init__(self, number: int, folder: pathlib.Path, heartbeat_seconds: int, retried: bool):
        outcome = ("the trial's retry reports it without training again" if retried else
                   f"it is not counted: Optuna queued no retry (it retries a trial at most {MAX_RETRIES} times)")
        super().__init__(
            f"Trial {number} was failed as dead while its run went on: its heartbeat went unrecorded for "
            f"{grace_seconds(heartbeat_seconds)} s (`search.heartbeat_seconds={heartbeat_seconds}` is too short for "
            f"this machine; a longer one avoids this). Its finished run in {folder} is kept, and {outcome}.")


def _retried(trial) -> bool:
    """Whether the study queued a retry of `trial` (Optuna's stale check, `_retry`)."""
    return any(trial.number in t.system_attrs.get("retry_history", []) for t in trial.study.get_trials(deepcopy=False))


def wait_for_live_run(trial, folder: pathlib.Path, children: child_run.Children) -> None:
    """Waits while another live process holds `folder`'s run: this trial retries one the study failed as dead (its
    heartbeat stale on a loaded machine) whose run goes on. The run then finished (its scores are this trial's) or
    died (this trial resumes it)."""
    holder = run_dir.holder(folder)
    if holder is None:
        return
    logger.warning("Trial %d retries trial %s, failed as dead while its run in %s went on in %s: waiting for that "
                   "run to end.", trial.number, folder.name, folder, holder)
    while holder is not None:
        if children.stopping:
            raise child_run.RunInterrupted(f"Not started: stopped while waiting for the run in {folder}.")
        time.sleep(1.0)
        holder = run_dir.holder(folder)


class DivergedTrials:
    """Counts trials that diverged one after another (over every thread of the search), and stops the search at
    `IN_A_ROW`, as KerasTuner stops at 3 consecutive failed trials: a space whose every draw diverges is wrong."""

    IN_A_ROW = 3

    def __init__(self):
        self._in_a_row = 0
        self._lock = threading.Lock()

    def count(self) -> None:
        with self._lock:
            self._in_a_row += 1
            if self._in_a_row >= self.IN_A_ROW:
                raise ConfigError(
                    f"Argument `search.space` gave {self._in_a_row} trials in a row whose training loss became NaN "
                    "or infinite: narrow it (e.g. lower the upper bound of `train.learning_rate`). The study keeps "
                    "them as failed trials; rerun to go on.")

    def reset(self) -> None:
        with self._lock:
            self._in_a_row = 0


class PruneOnEpochs:
    """Reports each epoch's validation score to Optuna, and says when Optuna prunes the trial.

    Args:
        trial: `optuna.Trial`.
        name: str. The objective; epochs whose logs lack `val_<name>` report nothing.
        epochs: int. The trial's epochs: its last is reported and never pruned (pruning it would save no
            training, and a pruned trial cannot be the study's best), nor is an epoch its run stops after anyway
            (`train.early_stopping_patience`).
    """

    def __init__(self, trial, name: str, epochs: int):
        self.trial, self.name, self.epochs = trial, name, epochs
        self.pruned_at: int | None = None
        self.why = ""  # the pruner's reason, for the trial's log line
        self.noted = False
        self.failed_as_dead = False  # by a stale check while the run goes on: nothing more is told to the study

    def on_epoch_end(self, epoch: int, logs: dict | None = None, stopping: bool = False) -> bool:
        """True when the trial is pruned after this epoch (counted from 0); `stopping`: its run ends there anyway."""
        value = (logs or {}).get(f"val_{self.name}")
        if value is None:
            if not self.noted:
                self.noted = True
                shown = ", ".join(sorted(k for k in logs or {} if k.startswith("val_"))) or "none"
                logger.info("No pruning: the epoch logs have no `val_%s` (their validation scores: %s); trials are "
                            "scored when they end.", self.name, shown)
            return False
        if not math.isfinite(value) or self.failed_as_dead:
            return False
        try:
            self._note_loss(epoch + 1, logs.get("val_loss"))
            self.trial.report(float(value), step=epoch + 1)
        except _optuna().exceptions.UpdateFinishedTrialError:  # the run trains on; its retry reports it
            self.failed_as_dead = True
            return False
        if epoch + 1 < self.epochs and not stopping and self.trial.should_prune():
            self.pruned_at, self.why = epoch + 1, self._why_pruned()
        return self.pruned_at is not None

    def _why_pruned(self) -> str:
        """Behind the finished trials' median, or tied with it and losing on the loss (`LossBreaksTies.lost_tie`)."""
        study, frozen = self.trial.study, _running_copy(self.trial)  # `study.pruner`: open_study's
        # frozen is None where another process failed the trial meanwhile, its heartbeat gone stale
        return (frozen and study.pruner.lost_tie(study, frozen)) or "behind the finished trials' median"

    def _note_loss(self, step: int, loss) -> None:
        """Keeps the epoch's validation loss on the trial: it breaks ties on the score (`tfft.trial_pruner`)."""
        from tfft.trial_pruner import LOSS_ATTR  # imports Optuna, which the trial came from

        if loss is not None and math.isfinite(loss):
            self.trial.set_user_attr(LOSS_ATTR, {**self.trial.user_attrs.get(LOSS_ATTR, {}), str(step): float(loss)})


def _log_trial(trial, config: Config, objective: Objective, score: float, pruning: PruneOnEpochs,
               seconds: float) -> None:
    best = _best(trial.study, objective)
    best_text = f"best {best.value:.4f} (trial {best.number})" if best is not None else "first finished"
    state = f"pruned after epoch {pruning.pruned_at} ({pruning.why})" if pruning.pruned_at is not None else "finished"
    logger.info("Trial %d (of %d) %s in %.1f s: %s=%.4f; %s | %s", trial.number, config.search.trials, state, seconds,
                objective.name, score, best_text, _values(trial.params))


def _values(values: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


# --- Phase 4: results ------------------------------------------------------


def finish(study, config: Config, space: list[Param], objective: Objective, output_dir: pathlib.Path,
           train_best: bool) -> SearchResult:
    """Writes the results table, `best_config.yaml` and the plots; with `train_best`, trains the winner."""
    if train_best:
        wait_for_other_processes(study, config.search.heartbeat_seconds)
    rows = results_table(study, space, objective)
    tables.write_csv(rows, output_dir / TRIALS_CSV)
    best = _best(study, objective)
    if best is None:
        raise ConfigError(f"Study {study.study_name!r} has no finished trial (every trial was pruned or failed). "
                          "Widen `search.space` or set `search.pruning=false`.")
    best_config = best_config_of(config, best.params)
    path = output_dir / BEST_CONFIG
    header = (f"# Best of {len(_finished(study))} trials of study {study.study_name!r}: {objective.name}="
              f"{best.value:.4f} (trial {best.number}). Train it: tfft train --config={path}\n")
    tables.write_text(path, header + best_config.to_yaml())
    write_plots(study, output_dir)
    print(tables.markdown(rows))
    print(f"Best: trial {best.number}, {objective.name}={best.value:.4f}: {_values(best.params)}\nWrote {path}")
    trained = train_winner(best_config, path) if train_best else None
    return SearchResult(study, best.value, dict(best.params), path, rows, trained)


def wait_for_other_processes(study, heartbeat_seconds: int) -> None:
    """Waits while other processes sharing the study still run trials, so that every `--train_best` picks the
    same winner. A trial whose process died stops being waited for once its heartbeat is stale: Optuna fails it
    (and queues it again, `_retry`). A trial no tfft process took up (asked outside tfft, or its process killed
    between asking and starting it) has no heartbeat to go stale; it is not waited for past the grace period."""
    optuna = _optuna()
    shown, orphans, grace = None, set(), grace_seconds(heartbeat_seconds)
    while True:
        with warnings.catch_warnings():  # experimental in Optuna 5
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        running = sorted(t.number for t in trials if _taken_up(t, grace))
        for number in sorted({t.number for t in trials} - set(running) - orphans):
            logger.warning("Trial %d has been running for over %d s without a tfft process behind it (no heartbeat: "
                           "asked outside tfft, or its process was killed before the trial began); not waiting for "
                           "it.", number, grace)
            orphans.add(number)
        if not running:
            return
        if running != shown:
            logger.info("Waiting for trial(s) %s, running in other processes, before choosing the winner to train.",
                        ", ".join(map(str, running)))
            shown = running
        time.sleep(min(5.0, heartbeat_seconds))


def grace_seconds(heartbeat_seconds: int) -> int:
    """How long a running trial may go without a heartbeat before it counts as dead (or, with none, as untaken)."""
    return 2 * heartbeat_seconds


def _taken_up(trial, grace: float) -> bool:
    """A running trial that a tfft process began (`run_trial` marks it once Optuna's heartbeat runs), or one asked
    too recently to tell."""
    if trial.user_attrs.get("began") == trial.number:
        return True
    return (datetime.datetime.now() - trial.datetime_start).total_seconds() < grace


def train_winner(best_config: Config, best_config_path: pathlib.Path):
    """`--train_best`: the winner trained and exported, unless another process sharing the study trains it now,
    or trained it before.

    Each process of a search shared over one disk reaches `finish`; the
    first trains `<output_dir>/best`, the others find its lock or its
    finished run. A finished run of another config there (the winner of
    the study before it was extended) is kept, and refused.
    """
    from tfft import train

    folder = pathlib.Path(best_config.output_dir)
    if run_dir.finished_metrics(folder) is not None:
        differences = run_dir.config_differences(best_config, folder / run_dir.CONFIG_FILE)
        if differences:
            raise OutputDirError(
                f"`{folder}` holds the finished run of another config, an earlier winner of this study "
                f"({'; '.join(differences[:5])}). The winner now is in {best_config_path}: train it with `tfft train "
                f"--config={best_config_path} --set output_dir=<a new folder>`.")
        logger.info("Not training the best config: it was trained in %s before.", folder)
        return None
    try:
        return train.run(best_config)
    except RunInUseError as err:
        logger.info("Not training the best config here: another process trains it (%s).", err)
        return None


def best_config_of(config: Config, values: dict) -> Config:
    """The base config with the best values, training into `<output_dir>/best`, its `search` section cleared.

    With `search.validation_fraction` it keeps its final weights, as its
    trials did: its run chooses no epoch on `data.validation`, the split of
    the final report.
    """
    if config.search.validation_fraction:
        values = {"train.restore_best": False, **values}
    return derived(config, pathlib.Path(config.output_dir) / "best", values)


def results_table(study, space: list[Param], objective: Objective) -> list[dict]:
    """One row per trial: number, state, score, seconds, values and run folder."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        value = t.value if t.value is not None else t.user_attrs.get("score")
        rows.append({"trial": t.number, "state": "diverged" if t.user_attrs.get("diverged") else t.state.name.lower(),
                     objective.name: "" if value is None else round(value, 6),
                     "seconds": t.user_attrs.get("seconds", ""),
                     **{p.key: t.params.get(p.key, "") for p in space},
                     "run": f"{TRIALS_DIR}/{t.user_attrs['folder']}" if "folder" in t.user_attrs else ""})
    return rows


def write_plots(study, output_dir: pathlib.Path) -> None:
    """Optuna's optimization history and parameter importances, as HTML (plotly); skipped, with a note, without it."""
    optuna = _optuna()
    try:
        history = optuna.visualization.plot_optimization_history(study)
    except ImportError:
        logger.warning("No plots: they need plotly (pip install 'tfft[search]').")
        return
    history.write_html(str(output_dir / PLOTS[0]))
    try:
        optuna.visualization.plot_param_importances(study).write_html(str(output_dir / PLOTS[1]))
    except (RuntimeError, ValueError) as err:  # too few finished trials, or one value per key
        logger.info("No parameter importances yet: %s", err)


# --- Helpers ---------------------------------------------------------------


class _QuietTrialFailures(logging.Filter):
    """Drops Optuna's record of a trial stopped by Ctrl-C or SIGTERM, or diverged (a "failed" warning with a
    traceback, then "Trial n failed with value None."): tfft logs those itself (the trial's backup and how to
    resume; the divergence and what follows). Keeps its record of a trial whose process failed, without the
    traceback of this process's stack: the run's own error is printed above it, and tfft's last line names the run."""

    def __init__(self):
        super().__init__()
        self._dropped: set[str] = set()  # "Trial n failed": the record whose "... with value" line follows

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        trial = " ".join(record.getMessage().split()[:3])  # "Trial 3 failed"
        if isinstance(error, (KeyboardInterrupt, TrialDiverged)):
            self._dropped.add(trial)
            return False
        if error is None and trial in self._dropped and "failed with value" in record.getMessage():
            self._dropped.discard(trial)
            return False
        if isinstance(error, child_run.ChildRunError):
            record.exc_info = None
        return True


_QUIET_FAILURES = _QuietTrialFailures()


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("`tfft search` needs Optuna: pip install 'tfft[search]'.") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # tfft logs each trial itself
    logging.getLogger("optuna.study._optimize").addFilter(_QUIET_FAILURES)  # added once: the same filter
    return optuna


def _retry(max_retry: int | None = None):
    """Optuna's callback that queues a failed trial again with its values (experimental in Optuna 5)."""
    optuna = _optuna()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)


def _finished(study) -> list:
    optuna = _optuna()
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                    optuna.trial.TrialState.PRUNED))


def _best(study, objective: Objective):
    optuna = _optuna()
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not done:
        return None
    pick = max if objective.direction == "maximize" else min
    return pick(done, key=lambda t: t.value)


def _validation_split(config: Config) -> str:
    if config.search.validation_fraction:
        return f"{config.search.validation_fraction:.0%} of data.train, held out"
    return "data.split's held-out part of data.train" if config.data.split.active else f"`{config.data.validation}`"


def _shown(storage) -> str:
    url = storage.url if hasattr(storage, "url") else str(storage)
    return url.split("@")[-1] if "@" in url else url  # no password in the log
