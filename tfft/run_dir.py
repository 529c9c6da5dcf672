"""A run's folder: the files in it, and starting, resuming or refusing a run there.

`<output_dir>/` holds `.tfft_run` (the marker that makes a folder a tfft
run), `config.yaml`, the label or tag vocabulary (`labels.txt`),
`checkpoints/best.weights.h5`, `model.weights.h5`, `history.csv`, `logs/`
(TensorBoard), `metrics.json`, `backup/` while training is unfinished,
`training_complete.json` once training finished (before evaluation and
export), `run_complete.json` once everything finished, and `.tfft.lock`, the
lock a live run holds. tfft deletes nothing else (`OWN_ENTRIES`), and never
touches a folder without the marker.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import logging
import os
import pathlib
import shutil
import socket
import time
from typing import Literal

from tfft.config import Config, ConfigError, from_dict
from tfft.errors import OutputDirError, RunInUseError

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.weights.h5"
BEST_WEIGHTS = "checkpoints/best.weights.h5"
BACKUP_DIR = "backup"
HISTORY_FILE = "history.csv"
COMPLETE_FILE = "run_complete.json"
TRAINED_FILE = "training_complete.json"
LOCK_FILE = ".tfft.lock"
#: A backbone preset folder a run writes for later runs to start from (`tfft adapt`, `distill.hidden_only`).
BACKBONE_DIR = "backbone"
#: Written first when a run starts, and by nothing but tfft: a folder is a tfft run only if it holds this file.
RUN_MARKER = ".tfft_run"
#: Every entry tfft writes in a run folder (with `metrics_<split>.json`): starting over or overwriting a run
#: removes these, and nothing else. tests/test_task_contract.py checks that every task's run writes no other.
OWN_ENTRIES = frozenset({
    RUN_MARKER, LOCK_FILE, CONFIG_FILE, WEIGHTS_FILE, BEST_WEIGHTS.split("/")[0], BACKUP_DIR, HISTORY_FILE, "logs",
    COMPLETE_FILE, TRAINED_FILE, "metrics.json", "labels.txt", "vocab.txt", "qa.json", "data_scan.json",
    "unlabeled_scan.json", "adapt.json", BACKBONE_DIR,
})
# Keys that may change between a run and its resumption.
_RESUMABLE_CHANGES = {
    "train.overwrite_output_dir", "train.backup_every_steps", "export.enabled", "export.base_dir", "export.formats",
    "export.quantize", "export.warmup_requests",
}

__all__ = ["OutputDirError", "RunState", "inspect", "start", "locked", "holder", "prepare_output_dir", "best_so_far",
           "config_differences", "finished_metrics", "RUN_MARKER", "OWN_ENTRIES", "is_own_entry"]


RunState = Literal["new", "resume", "trained", "overwrite"]
"""What `inspect` found: `new` (nothing to keep), `resume` (epochs done, training unfinished), `trained`
(training finished, evaluation or export did not), `overwrite` (a run to replace)."""


def inspect(config: Config, output_dir: pathlib.Path) -> RunState:
    """Decides what a run does with `output_dir`, reading only: nothing is written, so a refusal loses nothing.

    - missing or empty: `new`;
    - a non-empty folder that is not a tfft run (no `RUN_MARKER`): refused,
      naming what it holds, `train.overwrite_output_dir` or not: tfft
      deletes only what it wrote;
    - a run that never completed an epoch: `new` (a run killed in its first
      epoch, or stopped by a check, may be started again with a corrected
      config);
    - an unfinished run with the same config: `resume` from its last epoch,
      or `trained` when training finished and only evaluation and export
      remain;
    - a finished run, or an unfinished one with another config: refused,
      unless `train.overwrite_output_dir` is true (`overwrite`).
    """
    if not output_dir.is_dir() or not _entries(output_dir):
        return "new"
    if not (output_dir / RUN_MARKER).is_file():
        names = sorted(e.name + ("/" if e.is_dir() else "") for e in _entries(output_dir))
        raise OutputDirError(
            f"output_dir `{output_dir}` is not empty and is not a tfft run (it has no {RUN_MARKER}): it holds "
            f"{', '.join(names[:8])}{f' and {len(names) - 8} more' if len(names) > 8 else ''}. tfft never deletes "
            "files it did not write, `train.overwrite_output_dir` or not: set `output_dir` to a new or empty folder."
        )
    if config.train.overwrite_output_dir:
        return "overwrite"
    if (output_dir / COMPLETE_FILE).is_file():
        raise OutputDirError(
            f"output_dir `{output_dir}` holds a finished run. Set a new `output_dir`, or "
            "`--set train.overwrite_output_dir=true` to replace it."
        )
    if not (output_dir / CONFIG_FILE).is_file() or not _completed_an_epoch(output_dir):
        return "new"
    differences = config_differences(config, output_dir / CONFIG_FILE)
    if differences:
        raise OutputDirError(
            f"output_dir `{output_dir}` holds an unfinished run with another config ("
            + "; ".join(differences[:5])
            + "). Run the same config to resume it, set a new `output_dir`, or "
            "`--set train.overwrite_output_dir=true` to start over."
        )
    return "trained" if (output_dir / TRAINED_FILE).is_file() else "resume"


def start(config: Config, output_dir: pathlib.Path, state: RunState) -> None:
    """The run's first write, once every check has passed: clears what a new run replaces, saves the config.

    Starting over (or overwriting) removes the entries tfft wrote (`OWN_ENTRIES`) and keeps any other.
    """
    if state in ("new", "overwrite") and output_dir.is_dir() and _entries(output_dir):
        if state == "overwrite":
            logger.warning("Overwriting the run in %s (train.overwrite_output_dir=true).", output_dir)
        else:
            logger.info("Starting over in %s: its run never completed an epoch.", output_dir)
        for entry in _entries(output_dir):
            if is_own_entry(entry.name):
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        kept = sorted(entry.name for entry in _entries(output_dir))
        if kept:
            logger.warning("Kept %s in %s: tfft did not write them.", ", ".join(kept), output_dir)
    elif state == "resume":
        logger.info("Resuming the unfinished run in %s from its last backup.", output_dir)
    elif state == "trained":
        logger.info("Training in %s finished before; evaluating and exporting only.", output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / RUN_MARKER).write_text(json.dumps({"tfft_run": 1}) + "\n")  # first: the folder is a run from now
    config.save(output_dir / CONFIG_FILE)


def is_own_entry(name: str) -> bool:
    """Whether tfft writes an entry of this name in a run folder (`OWN_ENTRIES`, `metrics_<split>.json`)."""
    return name in OWN_ENTRIES or (name.startswith("metrics_") and name.endswith(".json"))


def prepare_output_dir(config: Config, output_dir: pathlib.Path) -> bool:
    """`inspect`, then `start`; returns whether an interrupted run is resumed (its epochs kept)."""
    state = inspect(config, output_dir)
    start(config, output_dir, state)
    return state in ("resume", "trained")


def _entries(output_dir: pathlib.Path) -> list[pathlib.Path]:
    """The folder's entries, less the lock file (which a waiting or refused process may have made)."""
    return [entry for entry in output_dir.iterdir() if entry.name != LOCK_FILE]


def _completed_an_epoch(output_dir: pathlib.Path) -> bool:
    if (output_dir / BACKUP_DIR).is_dir() or (output_dir / TRAINED_FILE).is_file():
        return True
    history = output_dir / HISTORY_FILE
    return history.is_file() and len(history.read_text(encoding="utf-8").strip().splitlines()) > 1


def mark_trained(output_dir: pathlib.Path, epochs: int, train_seconds: float) -> None:
    """Records that training finished, before evaluation and export start: a rerun then skips training."""
    (output_dir / TRAINED_FILE).write_text(json.dumps({"epochs": epochs, "train_seconds": round(train_seconds, 2)}) + "\n")


def refuse_foreign_entries(output_dir: pathlib.Path, is_own, command: str) -> None:
    """Refuses a folder of many runs (`tfft search`, `tfft cv`) that holds entries `is_own(name)` does not accept.

    Such a command writes only its own entries there and deletes nothing; it may continue in its own folder.
    """
    if not output_dir.is_dir():
        return
    foreign = sorted(e.name for e in output_dir.iterdir() if not is_own(e.name))
    if foreign:
        raise OutputDirError(
            f"output_dir `{output_dir}` holds files tfft {command} did not write: {', '.join(foreign[:8])}. Set "
            f"`output_dir` to a new or empty folder, or to a {command}'s own folder to continue it."
        )


def finished_metrics(output_dir: pathlib.Path) -> dict | None:
    """The validation scores of a finished run (`metrics.json`), or None when the run has not finished.

    `tfft search` and `tfft cv` rerun a trial or fold only when this is None.
    """
    if not (output_dir / COMPLETE_FILE).is_file():
        return None
    path = output_dir / "metrics.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def trained_info(output_dir: pathlib.Path) -> dict:
    return json.loads((output_dir / TRAINED_FILE).read_text())


def read_history(output_dir: pathlib.Path) -> dict[str, list[float]]:
    """`history.csv` as Keras' `History.history`: key -> one value per epoch."""
    path = output_dir / HISTORY_FILE
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {key: [float(row[key]) for row in rows if row.get(key)] for key in (rows[0] if rows else {}) if key != "epoch"}


@contextlib.contextmanager
def locked(output_dir: pathlib.Path, command: str = "train", create: bool = True):
    """Holds an exclusive lock on `output_dir` for a whole run (or export).

    A second process is refused at once, with a message that names the
    process holding the lock. The lock is an `flock` on
    `<output_dir>/.tfft.lock`: the kernel releases it when its process
    dies, so a lock left behind by a killed run is taken over.

    Args:
        output_dir: pathlib.Path. The run folder.
        command: str. Named in the lock, for the refusal message.
        create: bool. Make a missing folder; if false, a missing folder is
            not locked (there is nothing in it to protect).

    Raises:
        RunInUseError: another live process holds the lock.
    """
    if not create and not output_dir.is_dir():
        yield
        return
    made_dir = not output_dir.is_dir()
    made_lock = not (output_dir / LOCK_FILE).exists()
    fd = _take_lock(output_dir)  # makes the folder
    try:
        previous = _lock_text(fd)
        if previous:
            logger.warning("Took over the lock on %s left by %s, which is no longer running.", output_dir, previous)
        holder = f"process {os.getpid()} on {socket.gethostname()} (tfft {command}, since {time.strftime('%H:%M:%S')})"
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode("utf-8"), 0)
        yield
    finally:
        os.ftruncate(fd, 0)  # an empty lock file: released cleanly
        if made_lock and not _entries(output_dir):  # nothing written (a refused run): leave no trace
            # A file that appears meanwhile stays: rmdir removes only an empty folder, and its failure must not hide
            # the run's own error or keep the lock.
            with contextlib.suppress(OSError):
                (output_dir / LOCK_FILE).unlink()  # while still held, so a waiting process sees a stale inode
                if made_dir:
                    output_dir.rmdir()
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def holder(output_dir: pathlib.Path) -> str | None:
    """The live process holding `output_dir`'s lock (`locked`), as its lock file names it, or None if none does.

    Takes the lock for an instant to find out, and never makes a file or a folder.
    """
    try:
        fd = os.open(output_dir / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return _lock_text(fd) or "another process"
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _lock_text(fd: int) -> str:
    """What the lock file open at `fd` says of its holder (`locked` writes it), or "" when released cleanly."""
    return os.pread(fd, 4096, 0).decode("utf-8", errors="replace").strip()


def _take_lock(output_dir: pathlib.Path) -> int:
    """An open descriptor of `<output_dir>/.tfft.lock` holding its `flock`; refused at once if another holds it.

    A lock file unlinked by its holder (see `locked`) while this process waited for it is opened again, so that two
    processes never hold locks on different files of one folder.
    """
    path = output_dir / LOCK_FILE
    while True:
        output_dir.mkdir(parents=True, exist_ok=True)  # its holder may have removed it with the lock file
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_text(fd) or "another process"
            os.close(fd)
            raise RunInUseError(
                f"output_dir `{output_dir}` is in use by {holder}. Wait for that run to finish, or set another "
                "`output_dir`."
            ) from None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def config_differences(config: Config, saved_path: pathlib.Path) -> list[str]:
    """What differs between `config` and the run config saved at `saved_path`, one line per key, keys that a
    resumed run may change (`_RESUMABLE_CHANGES`, the `search` section) left out; empty when they are the same."""
    import yaml

    try:
        saved = from_dict(yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {})
    except (ConfigError, yaml.YAMLError) as err:
        return [f"its {CONFIG_FILE} does not load: {err}"]
    differences = []
    for section, values in config.to_dict().items():
        old_values = saved.to_dict()[section]
        if not isinstance(values, dict):
            values, old_values = {"": values}, {"": old_values}
        for key, value in values.items():
            name = f"{section}.{key}".rstrip(".")
            resumable = name in _RESUMABLE_CHANGES or section == "search"  # `tfft search` reads it, training does not
            if not resumable and old_values.get(key) != value:
                differences.append(f"{name}: {old_values.get(key)!r} there, {value!r} now")
    return differences




def trim_history(output_dir: pathlib.Path, epochs: int) -> None:
    """Keeps the first `epochs` rows of `history.csv`: those a resumed run's backup holds.

    A run killed after logging an epoch but before backing it up trains that epoch again; without the cut its
    row would be there twice.
    """
    path = output_dir / HISTORY_FILE
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    kept = rows[: 1 + epochs] if rows else rows
    if len(kept) < len(rows):
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(kept)


def best_so_far(output_dir: pathlib.Path, key: str, mode: str) -> float | None:
    """The best `key` (e.g. `val_accuracy`) an interrupted run logged, so resuming keeps its best checkpoint."""
    path = output_dir / HISTORY_FILE
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        scores = [float(row[key]) for row in csv.DictReader(f) if row.get(key)]
    if not scores:
        return None
    return max(scores) if mode == "max" else min(scores)
