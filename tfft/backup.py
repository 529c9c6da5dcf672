"""Backups of the training state, so a killed run resumes at the step it reached.

A backup holds the model's and the optimizer's variables (`optimizer.iterations`
among them: the learning-rate schedule goes on where it was), and what Keras'
`save_weights` leaves out: the state of every dropout seed generator, LoRA's
factors, and the weights the model's training objective trains beside the
model's own (`TaskModel.objective_weights`: a distillation's projection). The
training data's position needs no state of its own: the pipeline lays out
every epoch's order from the seed (`tfft.data.make_dataset`), so a run that
resumes at global step `s` skips the first `s` batches and sees the same
batches, in the same order, as a run that never stopped.

Backups are taken at each epoch's end, every `train.backup_every_steps` steps
when set, and when the run is stopped by Ctrl-C or SIGTERM (a preemptible
machine going away) between two steps. Each is written in full before
`state.json` points at it, so a kill in the middle of writing one leaves the
previous one in use.

Example:

```python
backup = TrainingBackup("runs/demo/backup", steps_per_epoch=100, every_steps=50)
step = backup.restore(model)  # 0 when there is none
model.fit(dataset.skip(step), callbacks=[backup], ...)
```
"""

from __future__ import annotations

import json
import logging
import os
import pathlib

import keras
import numpy as np

from tfft import lora
from tfft.optimization import batches_seen

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"

__all__ = ["TrainingBackup", "STATE_FILE"]


class TrainingBackup(keras.callbacks.Callback):
    """Saves and restores the training state under `backup_dir`.

    Put it after the callbacks that write an epoch's results (the CSV log,
    the best checkpoint): the epoch's backup then comes last, and a kill
    between them makes the rerun train that epoch again rather than lose its
    results.

    Args:
        backup_dir: str or path. The folder; created at the first backup.
        steps_per_epoch: int. Steps in one epoch, to place a step in its epoch.
        every_steps: int or None. Also back up every this many steps inside
            an epoch. None: at epoch ends (and on Ctrl-C / SIGTERM) only.
        write: bool. False on the workers of a multi-worker run other than
            the chief: they restore, but never write.
    """

    def __init__(self, backup_dir, steps_per_epoch: int, every_steps: int | None = None, write: bool = True):
        super().__init__()
        self.backup_dir = pathlib.Path(backup_dir)
        self.steps_per_epoch = steps_per_epoch
        self.every_steps = every_steps
        self.write = write
        self._epoch_start_step = 0
        self._last_saved_step = -1

    # --- Restoring ------------------------------------------------------

    def saved_step(self) -> int | None:
        """The global step of the backup on disk, or None if there is none."""
        state = self._read_state()
        return None if state is None else int(state["step"])

    def restore(self, model: keras.Model) -> int:
        """Loads the last backup into `model` (built, with its optimizer built); returns its global step.

        Returns 0 and changes nothing when there is no backup.
        """
        state = self._read_state()
        if state is None:
            return 0
        model.load_weights(self.backup_dir / state["weights"], with_optimizer=True)
        with np.load(self.backup_dir / state["seeds"]) as seeds:
            saved = [seeds[f"seed_{i}"] for i in range(sum(name.startswith("seed_") for name in seeds.files))]
            lora.restore_factors(model, {name: seeds[name] for name in seeds.files if name.startswith("lora_")})
            for i, variable in enumerate(_objective_weights(model)):
                variable.assign(seeds[f"objective_{i}"])
        variables = _seed_states(model)
        if len(saved) != len(variables):
            raise RuntimeError(
                f"Backup {self.backup_dir} holds {len(saved)} dropout seed states, the model has {len(variables)}."
            )
        for variable, value in zip(variables, saved, strict=True):
            variable.assign(value)
        step = batches_seen(model.optimizer)
        if step != int(state["step"]):
            raise RuntimeError(f"Backup {self.backup_dir} says step {state['step']} but holds step {step}.")
        self._last_saved_step = step
        return step

    def _read_state(self) -> dict | None:
        path = self.backup_dir / STATE_FILE
        if not path.is_file():
            return None
        return json.loads(path.read_text())

    # --- Saving ---------------------------------------------------------

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start_step = batches_seen(self.model.optimizer)

    def on_train_batch_end(self, batch, logs=None):
        if not self.every_steps:
            return
        step = self._epoch_start_step + batch + 1
        # An epoch's last step is backed up at the epoch's end, after its validation: a backup before it would
        # make a run killed during validation resume past an epoch that has no results.
        if step // self.every_steps > self._last_saved_step // self.every_steps and step % self.steps_per_epoch:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        self.save()

    def save_on_interrupt(self) -> None:
        """Backs up a run stopped between two steps (Ctrl-C, SIGTERM), unless it stopped in an epoch's validation."""
        if self.model is None or not self.write:
            return
        step = batches_seen(self.model.optimizer)
        if step % self.steps_per_epoch == 0:
            return  # the epoch's results are not all written: resume from the epoch's start instead
        self.save()

    def save(self) -> None:
        """Writes a backup of the current step, then points `state.json` at it and removes the older one."""
        step = batches_seen(self.model.optimizer)
        if not self.write or step == self._last_saved_step:
            return
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        weights, seeds = f"step-{step}.weights.h5", f"step-{step}.seeds.npz"
        self.model.save_weights(self.backup_dir / weights, overwrite=True, with_optimizer=True)
        with open(self.backup_dir / seeds, "wb") as f:
            # Beside the weights file: the dropout seeds' state, LoRA factors, which Keras merges into the
            # kernels when it saves weights, and the objective's own weights, which it does not save.
            np.savez(f, **{f"seed_{i}": v.numpy() for i, v in enumerate(_seed_states(self.model))},
                     **lora.factor_arrays(self.model),
                     **{f"objective_{i}": v.numpy() for i, v in enumerate(_objective_weights(self.model))})
        epoch, batch = divmod(step, self.steps_per_epoch)
        state = {"step": step, "epoch": epoch, "batch": batch, "weights": weights, "seeds": seeds}
        tmp = self.backup_dir / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state) + "\n")
        os.replace(tmp, self.backup_dir / STATE_FILE)  # the switch to the new backup, atomic
        for old in self.backup_dir.iterdir():
            if old.name.startswith("step-") and old.name not in (weights, seeds):
                old.unlink()
        self._last_saved_step = step
        logger.debug("Backed up step %d (epoch %d, batch %d) to %s", step, epoch + 1, batch, self.backup_dir)


def _objective_weights(model: keras.Model) -> list:
    """`TaskModel.objective_weights()`, or [] for a model without an objective."""
    return model.objective_weights() if hasattr(model, "objective_weights") else []


def _seed_states(model: keras.Model) -> list:
    """The dropout seed generators' state variables, in the model's layer order.

    Matched by position, not by path: a path holds a process-wide counter
    (`seed_generator_7/...`) that differs between the run that saved and the
    one that restores.
    """
    return [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]
