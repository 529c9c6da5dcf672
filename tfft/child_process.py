"""The program of a run's child process (`python -m tfft.child_process`), which `tfft.child_run` starts.

It loads TensorFlow, Keras and keras-hub (seconds on a 2-core machine), reads
a config from its parent, trains it, reporting each epoch and following the
parent's answer (go on, or stop: pruning), then waits for the next config.
It ends with one of the exit statuses below where it does not finish.

The terminal's Ctrl-C reaches every process of a search. A process that holds
no run (still loading, or waiting for its config) ends at once, quietly, with
`INTERRUPTED`: it has nothing to back up. One that trains stops as `tfft
train` stops: a backup of its step, then out.

Example (what `tfft.child_run` runs; the numbers are the pipes' file
descriptors and the logging level):

```
python -m tfft.child_process 5 6 20
```
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable

from tfft.config import Config, from_dict  # no TensorFlow: the standard library and yaml
from tfft.errors import DivergedError

__all__ = ["DIVERGED", "INTERRUPTED", "ORPHANED", "serve"]

#: The exit status when its parent is gone.
ORPHANED = 75
#: The exit status when Ctrl-C or SIGTERM stopped it (after its run's backup, where it held one), as `tfft train`'s.
INTERRUPTED = 130
#: The exit status when its training loss became NaN or infinite (`tfft.errors.DivergedError`).
DIVERGED = 3


def serve(report_fd: int, answer_fd: int, level: int) -> None:
    """Trains each config the parent sends (one JSON line on `answer_fd`), reporting on `report_fd`.

    Args:
        report_fd: int. Where each epoch's logs go (one JSON line each),
            then `{"ended": true}` after each run.
        answer_fd: int. Where configs come from, and the parent's answer
            after each epoch ("go" or "stop").
        level: int. The logging level of the parent's logger.
    """
    for signum in (signal.SIGINT, signal.SIGTERM):  # no run yet: nothing to back up
        signal.signal(signum, _leave)
    import keras

    from tfft import cli, warm_runs
    from tfft.precision import LATER_RUN

    cli.setup_logging(level)
    answers_file = os.fdopen(answer_fd, encoding="utf-8")
    first = _waiting(answers_file.readline)
    answers: queue.Queue = queue.Queue()
    threading.Thread(target=_follow, args=(answers_file, answers), daemon=True).start()
    reports = os.fdopen(report_fd, "w", buffering=1, encoding="utf-8")

    class AskAfterEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            numbers = {name: float(value) for name, value in (logs or {}).items()}
            stopping = bool(self.model.stop_training)  # set by a callback before this one (early stopping)
            reports.write(json.dumps({"epoch": epoch, "logs": numbers, "stopping": stopping}) + "\n")
            if answers.get() == "stop":
                self.model.stop_training = True

    phases, line = warm_runs.WarmRuns(), first
    while True:
        _run_here(from_dict(json.loads(line)), AskAfterEpoch(), phases)
        os.environ[LATER_RUN] = "1"  # the runs after the first in this process are later runs too
        reports.write(json.dumps({"ended": True}) + "\n")
        line = _waiting(answers.get)  # the next config; the parent ends this process when it has none for it


def _leave(signum, frame):
    """Ctrl-C or SIGTERM in a process that holds no run: out at once, without a traceback."""
    os._exit(INTERRUPTED)


def _stop_once(signum, frame):
    """Ctrl-C or SIGTERM during a run: stop as `tfft train` does (a backup of the step, then out); a second one is
    ignored, so the parent's SIGTERM after the terminal's Ctrl-C cannot cut that backup short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


def _waiting(read: Callable[[], str]) -> str:
    """`read()`: the next config, in a process that holds no run (Ctrl-C or SIGTERM meanwhile: `_leave`). The end
    of the parent's pipe ends it too."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _leave)
    line = read()
    if not line:
        os._exit(ORPHANED)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop_once)
    return line


def _run_here(config: Config, callback, phases) -> None:
    """One run, ending the process as `tfft train` ends where it does not finish."""
    from tfft import train  # loaded already, by `serve`'s `warm_runs`

    try:
        train.run(config, callbacks=[callback], phases=phases)
    except KeyboardInterrupt:  # the run backed up its step; the parent says how to resume
        sys.exit(INTERRUPTED)
    except DivergedError as err:  # a fact about the run's values (a search goes on), not a failure of the process
        print(f"tfft: error: {err}", file=sys.stderr)
        sys.exit(DIVERGED)


def _follow(answers_file, answers: queue.Queue) -> None:
    for line in answers_file:
        answers.put(line.strip())
    os._exit(ORPHANED)  # the parent closed its end: it has exited or been killed


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
