"""`tfft.train.run(config)`: read data, build the model, fit, evaluate, export, for any task.

The CLI and notebooks call the same function:

```python
import tfft

config = tfft.config.load_config("configs/demo.yaml", ["train.epochs=2"])
result = tfft.train.run(config)
print(result.metrics["accuracy"], result.export_path)
```

Everything that differs between tasks (targets, head, loss, metrics, scores,
serving outputs) comes from `config.task`'s `tfft.tasks.Task`; everything
that differs between backbone sources from `tfft.backbones`. A run's
`output_dir` holds everything needed to repeat, resume or reuse it (see
`tfft.run_dir`). Starting the same command again after a crash resumes from
the last backup (`tfft.backup`), with the data order of a run never stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import pathlib
import shutil
import time

import keras
import tensorflow as tf

from tfft import backbones, data, distribute, evaluate, optimization, run_dir, streaming, tasks
from tfft.backup import TrainingBackup
from tfft.config import Config
from tfft.errors import OutputDirError
from tfft.freezing import count_parameters
from tfft.model import build_model
from tfft.run_dir import (
    BACKUP_DIR,
    BEST_WEIGHTS,
    COMPLETE_FILE,
    CONFIG_FILE,
    HISTORY_FILE,
    WEIGHTS_FILE,
    best_so_far,
    prepare_output_dir,
)

__all__ = ["run", "TrainResult", "OutputDirError", "prepare_output_dir", "CONFIG_FILE", "WEIGHTS_FILE",
           "BEST_WEIGHTS", "BACKUP_DIR", "HISTORY_FILE", "COMPLETE_FILE"]

logger = logging.getLogger(__name__)

@dataclasses.dataclass
class TrainResult:
    """What `run` returns.

    Args:
        model: `tfft.tasks.TaskModel`. The trained model (float32 logits),
            with its best weights.
        packer: `TextPacker`. Its in-graph tokenizer.
        task: `tfft.tasks.Task`. With its label or tag vocabulary.
        metrics: dict or None. Validation scores (None without validation).
        export_path: str or None. The SavedModel version folder, if exported.
        history: dict. Keras' per-epoch logs.
        output_dir: str. Where the run's files are.
    """

    model: keras.Model
    packer: backbones.TextPacker
    task: tasks.Task
    metrics: dict | None
    export_path: str | None
    history: dict
    output_dir: str

    @property
    def labels(self) -> data.LabelVocabulary | None:
        """The task's label or tag names, in id order (None for regression)."""
        names = self.task.label_names
        return data.LabelVocabulary(names, minimum=1) if names is not None else None


def run(
    config: Config,
    strategy: tf.distribute.Strategy | None = None,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> TrainResult:
    """Fine-tunes `config.model.backbone` on `config.data` and evaluates and exports it.

    Args:
        config: `tfft.config.Config`. Validated again here; the run writes it
            to `<output_dir>/config.yaml`.
        strategy: `tf.distribute.Strategy` or None. One made already (e.g. a
            notebook's `TPUStrategy`); None makes the one `train.strategy`
            names.
        callbacks: list of `keras.callbacks.Callback` or None. Added after
            tfft's own (backup, logs, best checkpoint, early stopping).

    Returns:
        A `TrainResult`.
    """
    config.validate()
    if strategy is None:
        strategy = distribute.create_strategy(config.train)  # First: multi-worker needs it before other ops.
    chief = distribute.is_chief(strategy)
    output_dir = pathlib.Path(distribute.worker_dir(config.output_dir, strategy))
    policy = keras.mixed_precision.global_policy()
    # Only the chief writes the run folder; other workers write to temporary folders of their own.
    if chief:
        run_dir.inspect(config, output_dir)  # a folder it refuses gets no lock file either
    lock = run_dir.locked(output_dir, "train") if chief else contextlib.nullcontext()
    try:
        with lock:
            return _run(config, strategy, chief, output_dir, callbacks or [])
    finally:
        keras.mixed_precision.set_global_policy(policy)  # A notebook's next cell gets its own back.
        distribute.remove_worker_dir(str(output_dir), strategy)


def _run(config: Config, strategy, chief: bool, output_dir: pathlib.Path, extra_callbacks: list) -> TrainResult:
    tc = config.train
    # Read only: a refusal, and every check below, fail before anything is written.
    state = run_dir.inspect(config, output_dir) if chief else "new"
    keras.utils.set_random_seed(tc.seed)
    set_mixed_precision(tc.mixed_precision)
    task = tasks.create(config)

    # Data: read and check everything before building anything.
    kept = output_dir if state in ("resume", "trained") else None
    train_files = streaming.training_files(config.data)
    if train_files is not None:  # streamed: one pre-pass checks every row and counts them; nothing is held
        streaming.check_streamable(task, config)
        scanned = streaming.scan(train_files, task, config.data, cache_dir=kept)
        train_examples = None
        task.fit_vocabulary(data.Examples(config.data.train, [], labels=scanned.labels))
        n_train, y_train = scanned.rows, None
    else:
        train_examples = task.read(config.data.train, split="train")
        task.fit_vocabulary(train_examples)
        n_train, y_train = len(train_examples), task.encode(train_examples)
    val_examples = streaming.read_all(task, config.data.validation, "validation") if config.data.validation else None
    y_val = task.encode(val_examples) if val_examples is not None else None
    logger.info(
        "Data: %d training examples%s, %s validation examples; task %s, %s",
        n_train,
        f" streamed from {len(train_files)} file(s)" if train_files is not None else "",
        len(val_examples) if val_examples is not None else "no",
        task.type,
        task.describe(),
    )

    source = backbones.resolve(config.model)
    source.prepare(
        train_examples.texts if train_examples is not None else streaming.sample_texts(train_files, config.data), kept
    )
    packer = source.packer()
    task.check_packer(packer)
    if config.export.enabled and "litert" in config.export.formats:
        from tfft import litert

        litert.check(task, packer)  # an unsupported task or tokenizer fails now, not after training
    truncation = {"train": task.truncation(train_examples, packer)} if train_examples is not None else {}
    if val_examples is not None:
        truncation["validation"] = task.truncation(val_examples, packer)
    for split, stats in truncation.items():
        (logger.warning if stats.truncated else logger.info)(stats.message(split))

    static_shapes = isinstance(strategy, tf.distribute.TPUStrategy)
    pad_to = "buckets" if static_shapes and tc.pad_to == "longest" else tc.pad_to
    if train_examples is not None:
        n_train = task.num_elements(packer, train_examples)  # QA: context windows, not questions
    steps = data.steps_per_epoch(n_train, tc.batch_size, drop_remainder=static_shapes)
    if train_files is not None:
        train_ds = streaming.stream_dataset(
            train_files, task, packer, config.data, batch_size=tc.batch_size, seed=tc.seed, epochs=tc.epochs,
            pad_to=pad_to, drop_remainder=static_shapes, workers=distribute.num_workers(strategy),
            group_by_length=tc.group_by_length,
        )
    else:
        train_ds = data.make_dataset(
            train_examples, y_train, packer, task=task, batch_size=tc.batch_size, training=True, seed=tc.seed,
            pad_to=pad_to, shuffle_buffer=config.data.shuffle_buffer, repeat=True, drop_remainder=static_shapes,
            epochs=tc.epochs, group_by_length=tc.group_by_length,
        )
    val_ds = (
        data.make_dataset(val_examples, y_val, packer, task=task, batch_size=tc.batch_size, pad_to=pad_to)
        if val_examples is not None
        else None
    )

    with strategy.scope():
        model = build_model(config, source, task)
        optimizer = optimization.create_optimizer(tc, steps * tc.epochs, model.trainable_variables)
        model.compile(
            optimizer=optimizer,
            loss=task.loss(),
            metrics=task.metrics(),
            weighted_metrics=task.weighted_metrics() or None,
            jit_compile=tc.jit_compile,
            steps_per_execution=tc.steps_per_execution,
        )
        # Built here, not lazily in the first trace: variables made while
        # tracing make tf.function trace the whole train step twice.
        optimizer.build(model.trainable_variables)
    # Every check passed: the run's first write.
    if chief:
        run_dir.start(config, output_dir, state)
    task.save_vocabulary(output_dir)
    source.save(output_dir)
    if train_files is not None and chief:
        streaming.save_scan(scanned, output_dir)
    trainable, total = count_parameters(model.trainable_weights), count_parameters(model.weights)
    logger.info(
        "Model: %s backbone `%s`, %s of %s parameters trainable (%.1f%%); %d steps/epoch x %d epochs, "
        "global batch %d over %d replica(s).",
        source.name, config.model.backbone, f"{trainable:,}", f"{total:,}", 100.0 * trainable / total,
        steps, tc.epochs, tc.batch_size, strategy.num_replicas_in_sync,
    )

    if state == "trained":  # Killed after training, during evaluation or export: train nothing again.
        model.load_weights(output_dir / WEIGHTS_FILE)
        history = run_dir.read_history(output_dir)
        train_seconds = run_dir.trained_info(output_dir)["train_seconds"]
    else:
        scorer = (
            ValidationScores(task, packer, val_examples, tc.batch_size)
            if val_examples is not None and not task.monitor_in_keras
            else None
        )
        # Every worker restores the chief's backup; only the chief writes one.
        backup = TrainingBackup(
            pathlib.Path(config.output_dir) / BACKUP_DIR, steps, every_steps=tc.backup_every_steps, write=chief
        )
        start_step = backup.restore(model) if state == "resume" or (not chief and not tc.overwrite_output_dir) else 0
        if chief and state == "resume":
            run_dir.trim_history(output_dir, start_step // steps)  # epochs the backup does not hold are redone
            logger.info("Resuming at epoch %d, step %d of %d.", start_step // steps + 1, start_step % steps, steps)
        started = time.time()
        history: dict[str, list] = {}
        try:
            for initial_epoch, epochs, epoch_steps in fit_plan(start_step, steps, tc.epochs):
                fitted = model.fit(
                    train_ds.skip(int(model.optimizer.iterations.numpy())),  # the data order of a run never stopped
                    initial_epoch=initial_epoch,
                    epochs=epochs,
                    steps_per_epoch=epoch_steps,
                    validation_data=val_ds,
                    callbacks=[
                        *_callbacks(config, task, output_dir, has_validation=val_ds is not None,
                                    resuming=state == "resume" or bool(history), scorer=scorer),
                        backup,
                        *extra_callbacks,
                    ],
                    class_weight=task.class_weight(y_train) if y_train is not None else None,
                    shuffle=False,  # The pipeline shuffles.
                    verbose=_verbosity(),
                ).history
                for key, values in fitted.items():
                    history.setdefault(key, []).extend(values)
        except KeyboardInterrupt:
            backup.save_on_interrupt()
            raise
        if not history:  # killed after its last step's backup: nothing was left to train
            history = run_dir.read_history(output_dir)
        train_seconds = time.time() - started

        best = output_dir / BEST_WEIGHTS
        if val_ds is not None and best.is_file():
            model.load_weights(best)
            logger.info("Restored the best validation checkpoint %s", best)
        model.save_weights(output_dir / WEIGHTS_FILE)
        if chief:
            run_dir.mark_trained(output_dir, tc.epochs, train_seconds)
            shutil.rmtree(output_dir / BACKUP_DIR, ignore_errors=True)  # after: a kill between them resumes

    metrics = None
    if val_examples is not None:
        outputs = evaluate.predict_outputs(task, model, packer, val_examples, tc.batch_size)
        task.calibrate(val_examples, outputs)
        if chief:
            task.save_vocabulary(output_dir)  # with what `calibrate` chose, for `tfft export` and `evaluate`
        metrics = task.score(val_examples, outputs)
        metrics["truncation"] = {split: dataclasses.asdict(s) for split, s in truncation.items()}
        metrics["train_seconds"] = round(train_seconds, 2)
        if train_files is not None:
            metrics["training_data"] = {"files": len(train_files), "rows": scanned.rows, "skipped_rows": scanned.skipped}
        if chief:
            print(task.report(metrics), flush=True)
            evaluate.write_metrics(metrics, output_dir)

    export_path = None
    if config.export.enabled and chief:
        from tfft import export

        export_path = str(export.export_model(model, packer, task, config))
    if chief:
        (output_dir / COMPLETE_FILE).write_text(
            json.dumps({"epochs": tc.epochs, "train_seconds": round(train_seconds, 2), "export": export_path}) + "\n"
        )
    return TrainResult(model, packer, task, metrics, export_path, dict(history), str(output_dir))


class ValidationScores(keras.callbacks.Callback):
    """Scores the validation split with the task's own scoring at each epoch's end.

    Puts `val_<score>` (e.g. `val_f1`, `val_pearson`) into the epoch's logs,
    before the checkpoint, early stopping and the CSV log read them: tasks
    whose monitored score is no Keras metric (entity F1, correlations) pick
    their best epoch by it.
    """

    def __init__(self, task, packer, examples: data.Examples, batch_size: int):
        super().__init__()
        self.task, self.packer, self.examples, self.batch_size = task, packer, examples, batch_size

    def on_epoch_end(self, epoch, logs=None):
        outputs = evaluate.predict_outputs(self.task, self.model, self.packer, self.examples, self.batch_size)
        scores = self.task.logged_scores(self.task.score(self.examples, outputs))
        if logs is not None:
            logs.update({f"val_{name}": value for name, value in scores.items()})


def fit_plan(start_step: int, steps_per_epoch: int, epochs: int) -> list[tuple[int, int, int]]:
    """The `fit` calls that train from global step `start_step` to the end: `(initial_epoch, epochs, steps)` each.

    A run resumed inside an epoch first finishes that epoch with one shorter `fit`, then runs the rest.

    >>> fit_plan(0, 10, 3), fit_plan(20, 10, 3), fit_plan(25, 10, 3)
    ([(0, 3, 10)], [(2, 3, 10)], [(2, 3, 5)])
    """
    epoch, batch = divmod(start_step, steps_per_epoch)
    plan = []
    if batch:
        plan.append((epoch, epoch + 1, steps_per_epoch - batch))
        epoch += 1
    if epoch < epochs:
        plan.append((epoch, epochs, steps_per_epoch))
    return plan


def set_mixed_precision(policy: str) -> None:
    keras.mixed_precision.set_global_policy("float32" if policy == "none" else policy)


def _verbosity() -> int | str:
    # A live progress bar on a terminal; one line per epoch in logs and CI.
    return "auto" if os.isatty(1) else 2


def _callbacks(
    config: Config, task, output_dir: pathlib.Path, has_validation: bool, resuming: bool, scorer=None
) -> list:
    monitor, mode = f"val_{task.monitor[0]}", task.monitor[1]
    callbacks: list[keras.callbacks.Callback] = [
        # First, so the CSV log, checkpoint and early stopping see the task's scores.
        *([scorer] if scorer is not None else []),
        keras.callbacks.CSVLogger(str(output_dir / HISTORY_FILE), append=resuming),
        keras.callbacks.TensorBoard(log_dir=str(output_dir / "logs")),
    ]
    if has_validation:
        (output_dir / BEST_WEIGHTS).parent.mkdir(parents=True, exist_ok=True)
        callbacks.append(
            keras.callbacks.ModelCheckpoint(
                str(output_dir / BEST_WEIGHTS),
                monitor=monitor,
                mode=mode,
                save_best_only=True,
                save_weights_only=True,
                initial_value_threshold=best_so_far(output_dir, monitor, mode) if resuming else None,
            )
        )
        if config.train.early_stopping_patience:
            callbacks.append(
                keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=config.train.early_stopping_patience)
            )
    return callbacks
