"""Every write a training run makes to its folder, in one place: the chief's.

Under `multi_worker` only the chief writes the run folder (`tfft.run_dir`);
the other workers train in a temporary folder of their own
(`tfft.distribute.worker_dir`), where Keras' callbacks write, and every
method here does nothing on them. Off multi-worker the one process is the
chief.

Example:

```python
writer = RunWriter(pathlib.Path(config.output_dir), chief=True)
state = writer.inspect(config)          # reads only
with writer.locked("train"):
    writer.start(config, state, task, source, train_data)
    ...
    writer.finish_training(model, epochs=3, train_seconds=61.0)
```
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import shutil

from tfft import evaluate, run_dir
from tfft.config import Config

__all__ = ["RunWriter"]


class RunWriter:
    """A worker's view of the run folder: the chief reads and writes it, other workers only train in it.

    Args:
        path: pathlib.Path. The run folder (`config.output_dir`), or a
            non-chief worker's temporary folder.
        chief: bool. Whether this process writes the run's files.
    """

    def __init__(self, path: pathlib.Path, chief: bool):
        self.path, self.chief = path, chief

    def inspect(self, config: Config) -> run_dir.RunState:
        """What the run does with its folder (`run_dir.inspect`), reading only; `new` on other workers."""
        return run_dir.inspect(config, self.path) if self.chief else "new"

    def locked(self, command: str):
        """The folder's lock for the whole run (`run_dir.locked`); other workers take none."""
        return run_dir.locked(self.path, command) if self.chief else contextlib.nullcontext()

    def start(self, config: Config, state: run_dir.RunState, task, source, train_data) -> None:
        """The run's first write, once every check passed: the config, the vocabulary, the backbone's files."""
        if not self.chief:
            return
        run_dir.start(config, self.path, state)
        task.save_vocabulary(self.path)
        source.save(self.path)
        train_data.save(self.path)

    def resume(self, epochs_done: int) -> None:
        """Keeps the logged epochs that the backup holds: those after it are trained again (`run_dir.trim_history`)."""
        if self.chief:
            run_dir.trim_history(self.path, epochs_done)

    def finish_training(self, model, epochs: int, train_seconds: float) -> None:
        """Saves the final weights and marks training finished; the backup goes after, so a kill between resumes."""
        if not self.chief:
            return
        model.save_weights(self.path / run_dir.WEIGHTS_FILE)
        run_dir.mark_trained(self.path, epochs, train_seconds)
        shutil.rmtree(self.path / run_dir.BACKUP_DIR, ignore_errors=True)

    def write_scores(self, task, metrics: dict) -> None:
        """The vocabulary with what `calibrate` chose, the printed report and `metrics.json`."""
        if not self.chief:
            return
        task.save_vocabulary(self.path)  # for `tfft export` and `tfft evaluate`
        print(task.report(metrics), flush=True)
        evaluate.write_metrics(metrics, self.path)

    def export(self, model, packer, task, config: Config) -> str | None:
        """The SavedModel version folder, when `export.enabled`."""
        if not (self.chief and config.export.enabled):
            return None
        from tfft import export

        return str(export.export_model(model, packer, task, config))

    def complete(self, epochs: int, train_seconds: float, export_path: str | None) -> None:
        """Marks the run finished: a rerun of the same command is refused from now on."""
        if not self.chief:
            return
        (self.path / run_dir.COMPLETE_FILE).write_text(
            json.dumps({"epochs": epochs, "train_seconds": round(train_seconds, 2), "export": export_path}) + "\n"
        )
