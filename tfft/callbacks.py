"""tfft's own Keras callbacks for `fit`: the task's validation scores, the CSV log, TensorBoard, the best checkpoint.

Example:

```python
predictor = evaluate.OutputPredictor(task, model, packer, batch_size=32)
callbacks = training_callbacks(config, task, output_dir, validation, predictor, resuming=False)
model.fit(train_ds, callbacks=callbacks, ...)
```
"""

from __future__ import annotations

import math
import pathlib

import keras
import tensorflow as tf

from tfft import data, evaluate
from tfft.config import Config
from tfft.errors import DivergedError
from tfft.optimization import batches_seen
from tfft.run_dir import BEST_WEIGHTS, HISTORY_FILE, best_so_far

__all__ = ["StopOnNonFiniteLoss", "ValidationScores", "keras_validates", "training_callbacks"]


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first step whose loss is NaN or infinite, with an error naming the step.

    Keras' `TerminateOnNaN` only stops `fit`, and the run would go on to
    evaluate and export a NaN model; this raises `DivergedError`, so
    nothing is exported and the command fails. The run's last backup stays.
    """

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            step = batches_seen(self.model.optimizer)
            raise DivergedError(
                f"The training loss became {float(loss)} at step {step}: training stopped and nothing was exported. "
                "Lower `train.learning_rate`, keep `train.clipnorm` on, and check the targets (a regression target "
                "must be a finite number float32 holds)."
            )


class ValidationScores(keras.callbacks.Callback):
    """Scores the validation split with the task's own scoring at each epoch's end.

    Puts `val_<score>` (e.g. `val_f1`, `val_pearson`) into the epoch's logs,
    before the checkpoint, early stopping and the CSV log read them: tasks
    whose monitored score is no Keras metric (entity F1, correlations) pick
    their best epoch by it. Where `fit` has no validation pass of its own
    (`keras_validates`), the same forward pass also gives what Keras' would
    have logged: `val_loss` and the task's Keras metrics.

    Args:
        predictor: `tfft.evaluate.OutputPredictor` of the model being
            trained: traced at the first epoch's end, once for the run (the
            run's final scoring calls it too).
        examples: `tfft.data.Examples`. The validation split.
        with_loss: bool. Log `val_loss` and the Keras metrics too
            (`OutputPredictor.scored`).
    """

    def __init__(self, predictor: evaluate.OutputPredictor, examples: data.Examples, with_loss: bool = False):
        super().__init__()
        self.predictor, self.examples, self.with_loss = predictor, examples, with_loss

    def on_epoch_end(self, epoch, logs=None):
        task = self.predictor.task
        outputs, keras_logs = self.predictor.scored(self.examples) if self.with_loss else (
            self.predictor(self.examples), {})
        scores = {**keras_logs, **task.logged_scores(task.score(self.examples, outputs))}
        if logs is not None:
            logs.update({f"val_{name}": value for name, value in scores.items()})


def keras_validates(task, strategy: tf.distribute.Strategy) -> bool:
    """Whether `fit` runs Keras' validation pass; if not, `ValidationScores` logs it all from one pass of its own.

    Keras' pass runs where the task cannot score a validation batch in one
    forward pass (`Task.one_validation_pass`: masked LM), and on TPUs,
    where it runs on the TPU and `ValidationScores`' would not.
    """
    return not task.one_validation_pass or isinstance(strategy, tf.distribute.TPUStrategy)


def training_callbacks(
    config: Config,
    task,
    output_dir: pathlib.Path,
    validation: data.Examples | None,
    predictor: evaluate.OutputPredictor,
    resuming: bool,
    keras_validation: bool = True,
) -> list[keras.callbacks.Callback]:
    """The callbacks of one `fit` call, in the order they must run.

    Args:
        config: `tfft.config.Config`. `train.early_stopping_patience`,
            `train.restore_best`.
        task: `tfft.tasks.Task`. Its `monitor` picks the best checkpoint.
        output_dir: pathlib.Path. Where the logs and the checkpoint go.
        validation: `tfft.data.Examples` or None. Without it, no checkpoint
            and no early stopping; with it, the best checkpoint unless
            `train.restore_best` is false.
        predictor: `tfft.evaluate.OutputPredictor` of the model. Scores the
            validation split each epoch, unless Keras' pass gives every
            score logged (a TPU run whose monitored score is a Keras metric).
        resuming: bool. Appends to the CSV log, and keeps the best score the
            interrupted run logged.
        keras_validation: bool. Whether `fit` runs Keras' validation pass
            (`keras_validates`); if not, `ValidationScores` logs `val_loss`
            and the Keras metrics too.
    """
    monitor, mode = f"val_{task.monitor[0]}", task.monitor[1]
    callbacks: list[keras.callbacks.Callback] = [StopOnNonFiniteLoss()]
    if validation is not None and not (keras_validation and task.monitor_in_keras):
        # First, so the CSV log, checkpoint and early stopping see the task's scores.
        callbacks.append(ValidationScores(predictor, validation, with_loss=not keras_validation))
    callbacks += [
        keras.callbacks.CSVLogger(str(output_dir / HISTORY_FILE), append=resuming),
        keras.callbacks.TensorBoard(log_dir=str(output_dir / "logs")),
    ]
    if validation is None:
        return callbacks
    if config.train.restore_best:
        (output_dir / BEST_WEIGHTS).parent.mkdir(parents=True, exist_ok=True)
        callbacks.append(
            keras.callbacks.ModelCheckpoint(
                str(output_dir / BEST_WEIGHTS), monitor=monitor, mode=mode, save_best_only=True,
                save_weights_only=True,
                initial_value_threshold=best_so_far(output_dir, monitor, mode) if resuming else None,
            )
        )
    if config.train.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=config.train.early_stopping_patience)
        )
    return callbacks
