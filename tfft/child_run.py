"""A training run in a process of its own, for `tfft search`'s trials and `tfft cv`'s runs.

TensorFlow keeps memory from every `model.fit` in a process (tensorflow#61791,
keras#21090; about 200 MB a small MRPC trial on this project's machine), so a
long search in one process grows until it is killed. `run_in_child` trains one
config in a child process (`tfft.child_process`, its program), which gives it
all back when it ends. The parent waits, and after each epoch answers whether
the run goes on (pruning).

The child dies with its parent: a thread reads the parent's end of a pipe and
ends the child when that closes, as the kernel closes it when the parent
exits, even by SIGKILL. A resumed search never meets an orphan still training
in the folder it resumes. Ctrl-C or SIGTERM stops the child as it stops
`tfft train`: it backs up its step, then ends.

Runs one after another (a search's trials, `tfft cv`'s folds) go through
`Children`. A run whose config differs from the last one's only in what
`tfft.warm_runs.reusable` allows (a search's learning rate, warmup, epochs,
batch size, weight decay) goes to the process that trained the last one,
which keeps its data, model and traced steps (`tfft.warm_runs.WarmRuns`:
about 5 s of a 27 s MRPC trial), up to `RUNS_PER_PROCESS` runs (then it is
ended, and gives back its memory). Any other run goes to a fresh process,
which `Children` starts while the run before trains, so its imports
(TensorFlow, Keras, keras-hub: about 5 s on a 2-core machine) are done when
its config comes. `run_parallel` runs several such sequences at once, one
per thread (`search.parallel_trials`), each run's process given
its share of the CPU's cores as TensorFlow threads.

Example:

```python
metrics = run_in_child(config, on_epoch=lambda epoch, logs, stopping: logs["val_loss"] > 1.0)
with Children() as children:
    scores = [children.run(c) for c in configs]
run_parallel(lambda children: [children.run(c) for c in configs[::2]], jobs=2)
```
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from tfft import run_dir, warm_runs
from tfft.child_process import DIVERGED, INTERRUPTED
from tfft.config import Config
from tfft.errors import ChildRunError, DivergedError
from tfft.precision import LATER_RUN

__all__ = ["ChildRunError", "Children", "RunDiverged", "RunInterrupted", "run_in_child", "run_parallel", "threads_per_run"]

logger = logging.getLogger(__name__)

#: How long a stopping search waits for its trial to back up and stop before killing it.
STOP_SECONDS = 120
#: Runs a process trains before `Children` ends it and a fresh one takes over: a bound. Its memory after a run rose
#: over the first three runs and then stayed, in eight small MRPC runs (the C allocator keeping freed buffers for
#: later runs; docs/performance.md), and a fresh process costs a run its 5 s of reading, building and tracing.
RUNS_PER_PROCESS = 16


class RunInterrupted(ChildRunError):
    """A run's process stopped as Ctrl-C or SIGTERM stops `tfft train`: it backed up its step, and resumes."""


class RunDiverged(ChildRunError, DivergedError):
    """A run's training loss became NaN or infinite (`tfft.errors.DivergedError`): resuming it would not help."""


def run_in_child(config: Config, on_epoch: Callable[[int, dict, bool], bool] | None = None) -> dict:
    """Trains `config` with `tfft.train.run` in a child process.

    Args:
        config: `tfft.config.Config`. A validated run.
        on_epoch: callable or None. Called here after each of the child's
            epochs with its number (from 0), its logs, and whether the run
            stops there anyway (`train.early_stopping_patience`); True stops
            the run there, as `model.stop_training` does.

    Returns:
        The run's validation scores (`metrics.json`), as `train.run` gives them.

    Raises:
        ChildRunError: the child exited without finishing the run.
    """
    process = _Process()
    try:
        return process.run(config, on_epoch)
    finally:
        process.discard()  # a process that could take another run is not kept


class Children:
    """Runs configs one after another in child processes: the last run's, where it can take the config
    (`tfft.warm_runs.reusable`), else one started while the run before it trained.

    A context manager: on exit the processes kept for a next run are
    stopped. They hold no run in progress, so they are killed.

    Args:
        threads: int or None. TensorFlow's intra- and inter-op threads in
            each run's process (`TF_NUM_INTRAOP_THREADS`,
            `TF_NUM_INTEROP_THREADS`, unless this process's environment sets
            them); None: TensorFlow's default, every core.
        later_runs: bool. Every run is a later one (`LATER_RUN`): for all but
            the first of sequences run side by side.
    """

    def __init__(self, threads: int | None = None, later_runs: bool = False):
        self.threads, self.later_runs = threads, later_runs
        self._next: _Process | None = None  # started ahead, given no config yet
        self._last: _Process | None = None  # the last run's, waiting for another
        self._current: _Process | None = None
        self._stopping = False
        self._lock = threading.Lock()  # `stop` from another thread sees the run `run` begins, or stops it beginning

    def run(self, config: Config, on_epoch: Callable[[int, dict, bool], bool] | None = None,
            more: bool = True) -> dict:
        """As `run_in_child`. With `more` (another run follows), the next run's process starts once this one has
        its config. After `stop`, raises `RunInterrupted` instead of starting the run, or as the run ends."""
        with self._lock:
            if self._stopping:
                raise RunInterrupted(f"Not started: the run in {config.output_dir} was stopped before its process "
                                     "began.")
            process = self._warm_process(config)
            fresh = process is None
            if fresh:
                process, self._next = self._next or self._process(self.later_runs), None
            self._current = process
        try:
            metrics = process.run(config, on_epoch, started=self._start_next if more and fresh else None)
            self._last = process if process.waiting else None
            return metrics
        except ChildRunError as err:
            if self._stopping and not isinstance(err, (RunInterrupted, RunDiverged)):  # stopped before it backed up
                raise RunInterrupted(f"The run in {config.output_dir} was stopped: {err}") from err
            raise
        finally:
            self._current = None

    @property
    def stopping(self) -> bool:
        """`stop` was called: no later run starts."""
        return self._stopping

    def stop(self) -> None:
        """Stops the run in progress as Ctrl-C stops `tfft train` (it backs up its step; `run` then raises
        `RunInterrupted`), and every later run before it starts. Safe from another thread."""
        with self._lock:
            self._stopping = True
            current = self._current
        if current is not None and current.child.poll() is None:
            current.child.send_signal(signal.SIGTERM)

    def _warm_process(self, config: Config) -> _Process | None:
        """The last run's process, if it waits and can reuse what it built for `config`; else None (it is ended)."""
        last, self._last = self._last, None
        if last is not None and last.takes(config):
            return last
        if last is not None:
            last.discard()
        return None

    def _start_next(self) -> None:
        if self._next is None:
            self._next = self._process(later_run=True)

    def _process(self, later_run: bool) -> _Process:
        return _Process(later_run=later_run, threads=self.threads)

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc) -> None:
        for process in (self._next, self._last):
            if process is not None:
                process.discard()
        self._next = self._last = None


def threads_per_run(jobs: int) -> int:
    """TensorFlow threads for each of `jobs` runs side by side: this process's cores, shared out (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // jobs)


def run_parallel(work: Callable[[Children], None], jobs: int) -> None:
    """Calls `work(children)` in `jobs` threads at once, each with its own `Children`.

    With one job, `work` runs here, its processes on every core. With more,
    each run's process gets `threads_per_run(jobs)` TensorFlow threads, so
    that the runs share the cores instead of contending for all of them. It
    pays where one run's steps cannot use every core; on a 2-core machine,
    whose two cores a MiniLM step already uses, a 10-trial search took 0.96x
    the time (docs/performance.md). Ctrl-C or SIGTERM here stops every run in
    progress (each backs up its step) and starts no other; then the interrupt
    is raised again. A second one while the runs back up is logged and
    waited through (each run is killed `STOP_SECONDS` after the first). An
    error in one thread stops the others' runs the same way, and is raised
    once every thread has ended.

    Args:
        work: callable. Runs configs through the `Children` it is given,
            until it has none left (it draws them from a shared source).
        jobs: int. Threads, each running one config at a time.
    """
    if jobs == 1:
        with Children() as children:
            work(children)
        return
    pool = [Children(threads_per_run(jobs), later_runs=i > 0) for i in range(jobs)]
    errors: list[BaseException] = []
    ended = [threading.Event() for _ in pool]

    def in_thread(children: Children, done: threading.Event) -> None:
        try:
            work(children)
        except BaseException as err:  # noqa: BLE001 (raised again by the main thread, after every thread ends)
            errors.append(err)
            for other in pool:  # as in one thread, an error (or a run stopped on its own) ends the whole job
                other.stop()
        finally:
            done.set()

    threads = [threading.Thread(target=in_thread, args=(c, e), name=f"tfft-run-{i}", daemon=True)
               for i, (c, e) in enumerate(zip(pool, ended, strict=True))]
    with contextlib.ExitStack() as stack:  # on the way out, each ends the process it kept for a next run
        for children in pool:
            stack.enter_context(children)
        try:
            for thread in threads:
                thread.start()
            _wait(threads, ended)
        except KeyboardInterrupt:
            for children in pool:
                children.stop()
            _through_interrupts(lambda: _wait(threads, ended),  # each thread tells its caller (Optuna) how it ended
                                "Still stopping the runs: each backs up its step, or is killed %d s after the first "
                                "stop.", STOP_SECONDS)
            raise
    if errors:
        raise errors[0]


def _wait(threads: list[threading.Thread], ended: list[threading.Event]) -> None:
    """Waits for every started thread's end, in short waits that let Ctrl-C and SIGTERM's handler in.

    Not `Thread.join`: on Python 3.11, an exception raised in `join` by a
    signal handler marks the thread ended while it still runs (bpo-45274's
    fix), so a second join would return at once, and the process could exit
    before that thread told Optuna its trial was stopped. A thread that an
    interrupt kept from starting sets no event: it is not waited for.
    """
    events = [event for thread, event in zip(threads, ended, strict=True) if thread.ident is not None]
    for event in events:
        while not event.wait(0.2):
            pass


def _through_interrupts(wait: Callable[[], object], message: str, *args) -> object:
    """`wait()`, called again after each Ctrl-C or SIGTERM that cuts it short (logging `message % args`): runs are
    backing up their step, and this process's end would end them mid-backup. What bounds the wait is `wait`'s."""
    while True:
        try:
            return wait()
        except KeyboardInterrupt:
            logger.warning(message, *args)


class _Process:
    """A child process, started at once: it imports what a run needs, then waits for a config.

    After a run it waits for another (`waiting`), until it is discarded.
    """

    def __init__(self, later_run: bool = False, threads: int | None = None):
        report_read, report_write = os.pipe()
        answer_read, answer_write = os.pipe()
        command = [sys.executable, "-m", "tfft.child_process", str(report_write), str(answer_read),
                   str(logging.getLogger().getEffectiveLevel())]
        try:
            env = _environment(later_run, threads)
            self.child = subprocess.Popen(command, pass_fds=(report_write, answer_read), env=env)
        finally:
            os.close(report_write)
            os.close(answer_read)
        self.reports = os.fdopen(report_read, encoding="utf-8")
        self.answers = os.fdopen(answer_write, "w", buffering=1, encoding="utf-8")
        self.last_config: Config | None = None  # the config of the run it finished and waits after
        self.runs = 0  # runs given to it

    @property
    def waiting(self) -> bool:
        """It finished a run and waits for another."""
        return self.last_config is not None and self.child.poll() is None

    def takes(self, config: Config) -> bool:
        """It waits, has trained fewer than `RUNS_PER_PROCESS` runs, and can reuse what its last run built for
        `config` (`tfft.warm_runs.reusable`)."""
        return self.waiting and self.runs < RUNS_PER_PROCESS and warm_runs.reusable(self.last_config, config)

    def run(self, config: Config, on_epoch, started: Callable[[], None] | None = None) -> dict:
        """Trains `config` there (see `run_in_child`); calls `started` once the config is sent."""
        self.last_config, ended = None, False
        self.runs += 1
        try:
            ended = _converse(self.reports, self.answers, config, on_epoch, started)
            code = 0 if ended else self.child.wait()
        finally:
            if not ended:  # before `answers` closes, which the child takes for this process's end and leaves at once
                if self.child.poll() is None:  # this process is stopping (Ctrl-C, SIGTERM, an error in `on_epoch`)
                    _stop(self.child, config.output_dir)
                self._close_pipes()
        metrics = run_dir.finished_metrics(pathlib.Path(config.output_dir))
        if ended and metrics is not None:
            self.last_config = config
        elif ended:  # it says it finished a run whose folder says otherwise: not one to give another run
            self.discard()
        if code == INTERRUPTED:  # stopped by `Children.stop`, or by a signal of its own
            logger.info("Stopped the run in %s (it backed up its step).", config.output_dir)
            raise RunInterrupted(f"The run in {config.output_dir} was stopped (it backed up its step). Rerun to "
                                 "resume it.")
        if code == DIVERGED:
            raise RunDiverged(f"The run in {config.output_dir} diverged: its training loss became NaN or infinite "
                              "(its error is in the output above).")
        if code != 0 or metrics is None:
            raise ChildRunError(f"The run in {config.output_dir} ended in its process {_exit_text(code)} before "
                                "finishing; its error is in the output above. Rerun to resume it.")
        return metrics

    def discard(self) -> None:
        """Ends a process that holds no run: one given no config, or waiting after one."""
        if self.child.poll() is None:  # (`poll` reaps one that has exited)
            self.child.kill()
            self.child.wait()
        self._close_pipes()
        self.last_config = None

    def _close_pipes(self) -> None:
        self.reports.close()
        with contextlib.suppress(BrokenPipeError):
            self.answers.close()


def _exit_text(code: int) -> str:
    """How a process ended, from its exit status (negative: the signal that killed it), for an error message."""
    if code >= 0:
        return f"with exit status {code}"
    name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
    if -code == signal.SIGKILL:  # what the kernel's out-of-memory killer sends
        return (f"killed by {name} (the kernel sends it when memory runs out: try a smaller `train.batch_size` or "
                "`model.sequence_length`)")
    return f"killed by {name}"


def _environment(later_run: bool, threads: int | None) -> dict | None:
    """The child's environment: this process's, with `LATER_RUN` and TensorFlow's thread counts where asked."""
    extra = {LATER_RUN: "1"} if later_run else {}
    if threads is not None:
        extra.update({name: str(threads) for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
                      if name not in os.environ})
    return {**os.environ, **extra} if extra else None


def _converse(reports, answers, config: Config, on_epoch, started=None) -> bool:
    """Sends the config, then answers each epoch's report, until the child says the run ended (True: it waits
    for another) or closes its end (False: it has ended)."""
    try:
        answers.write(json.dumps(config.to_dict()) + "\n")
        if started is not None:
            started()
        for line in reports:
            message = json.loads(line)
            if message.get("ended"):
                return True
            stop = bool(on_epoch and on_epoch(message["epoch"], message["logs"], message["stopping"]))
            answers.write("stop\n" if stop else "go\n")
    except BrokenPipeError:  # the child died: its exit status says how
        pass
    return False


def _stop(child: subprocess.Popen, folder: str) -> None:
    """Stops the child as Ctrl-C stops a run (it backs up its step), or kills it after `STOP_SECONDS`. A second
    Ctrl-C or SIGTERM meanwhile does not cut the wait short: this process's end would end the child mid-backup."""
    child.send_signal(signal.SIGTERM)  # ignored by a child already stopping on the terminal's Ctrl-C
    deadline = time.monotonic() + STOP_SECONDS
    try:
        code = _through_interrupts(lambda: child.wait(timeout=max(0.0, deadline - time.monotonic())),
                                   "Still stopping the run in %s: it backs up its step, or is killed %d s after the "
                                   "first stop.", folder, STOP_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        code = child.wait()
    stopped = "it backed up its step" if code == INTERRUPTED else f"exit status {code}"
    logger.info("Stopped the run in %s (%s).", folder, stopped)
