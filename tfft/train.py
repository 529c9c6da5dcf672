"""`tfft.train.run(config)`: read data, build the model, fit, evaluate, export, for any task.

A run is four named phases, each a function below:

1. `prepare_data`: read and check the training and validation splits, resolve
   the backbone and its packer, count what truncation cuts, build the
   pipelines. Nothing is written.
2. `build`: the task model and its optimizer, under the strategy.
3. `fit`: `model.fit`, resumed from the last backup where a run was cut.
4. `finish`: score the validation split, export, mark the run complete.

The run folder is written by the chief alone, through `tfft.run_writer`.
`Phases` says where the strategy, task, data and model come from: made for
the run, or kept from the run before in one process (`tfft.warm_runs`, a
search's trials).

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

import dataclasses
import logging
import os
import pathlib
import time

import keras
import tensorflow as tf

from tfft import (
    backbones,
    data,
    distribute,
    evaluate,
    folds,
    layerwise,
    optimization,
    precision,
    run_dir,
    tasks,
)
from tfft.backup import TrainingBackup
from tfft.callbacks import keras_validates, training_callbacks
from tfft.config import Config
from tfft.errors import OutputDirError
from tfft.freezing import count_parameters
from tfft.model import build_model, reads_pooler
from tfft.optimization import batches_seen
from tfft.run_dir import (
    BACKUP_DIR,
    BEST_WEIGHTS,
    COMPLETE_FILE,
    CONFIG_FILE,
    HISTORY_FILE,
    WEIGHTS_FILE,
    prepare_output_dir,
)
from tfft.run_writer import RunWriter
from tfft.training_data import TrainingData, read_training_data

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
        chief: bool. Whether this process wrote the run folder (the chief of
            a multi-worker run; the others' `output_dir` is a temporary
            folder, removed): only the chief writes what follows a run.
    """

    model: keras.Model
    packer: backbones.TextPacker
    task: tasks.Task
    metrics: dict | None
    export_path: str | None
    history: dict
    output_dir: str
    chief: bool = True

    @property
    def labels(self) -> data.LabelVocabulary | None:
        """The task's label or tag names, in id order (None for regression)."""
        names = self.task.label_names
        return data.LabelVocabulary(names, minimum=1) if names is not None else None


@dataclasses.dataclass
class Inputs:
    """What `prepare_data` read and built: everything `build`, `fit` and `finish` need of the data.

    Args:
        train: `TrainingData`. In memory or streamed.
        validation: `tfft.data.Examples` or None.
        source: `tfft.backbones.BackboneSource`. Prepared.
        packer: `TextPacker`.
        truncation: dict. Split -> its truncation stats (where counted).
        train_ds: `tf.data.Dataset` or None. Training batches, repeated; None
            when the run trains nothing (its training finished before).
        val_ds: `tf.data.Dataset` or None. Keras' validation batches, where
            Keras validates (`callbacks.keras_validates`); else None.
        steps: int. Steps per epoch.
        validation_elements: int or None. What the task packs each
            validation example into (`Task.prepare`), for Keras' pipeline.
    """

    train: TrainingData
    validation: data.Examples | None
    source: backbones.BackboneSource
    packer: backbones.TextPacker
    truncation: dict
    train_ds: tf.data.Dataset | None
    val_ds: tf.data.Dataset | None
    steps: int
    validation_elements: int | None = None


class RunHooks:
    """What a training feature adds to `run` at fixed points, composed in, not branched on (`tfft.distill`, `tfft.adapt`).

    Every hook does nothing here; a subclass overrides the ones it needs.
    `check` and `built` run before the run's first write, so what they
    refuse loses nothing.
    """

    def check(self, config: Config, task: tasks.Task) -> None:
        """Before anything is read or written: refuses a config the feature cannot run."""

    def prepare(self, config: Config, task: tasks.Task, train: TrainingData | None, packer) -> None:
        """In `prepare_data`, once the training split is read and the packer made, before the pipelines: may add rows.

        `train` is None for a run whose training finished before (it
        evaluates and exports only): there is nothing to add rows to.
        """

    def built(self, config: Config, model: tasks.TaskModel, inputs: Inputs) -> None:
        """Inside the strategy's scope, after the model is built and before its layer recipes and `compile`."""

    def scores(self, task: tasks.Task, inputs: Inputs, metrics: dict) -> dict:
        """Scores to add to the run's validation `metrics`."""
        del task, inputs, metrics
        return {}

    def callbacks(self, config: Config, task: tasks.Task, inputs: Inputs, output_dir: pathlib.Path) -> list:
        """Keras callbacks for `fit`, after tfft's own and the caller's; `output_dir` is this worker's run folder."""
        del config, task, inputs, output_dir
        return []

    def finished(self, config: Config, result: TrainResult) -> None:
        """What the feature writes after a run, on the chief alone, before the run is marked complete.

        A kill inside leaves the run `trained`: the same command scores,
        exports and calls this again, without training again.
        """


class Phases:
    """Where a run's strategy, task, inputs and model come from: made for the run, here.

    `run` calls each method once a run, in this order (`strategy` only when
    it is given none). `tfft.warm_runs.WarmRuns` keeps what they make from
    one run to the next in one process (a search's trials): a run that
    differs from the one before only in what a traced train step can take as
    values reuses its data, model and traced functions.
    """

    def strategy(self, config: Config) -> tf.distribute.Strategy:
        return distribute.create_strategy(config.train)

    def task(self, config: Config) -> tasks.Task:
        return tasks.create(config)  # checks the task's own keys

    def inputs(self, config: Config, task: tasks.Task, strategy, kept: pathlib.Path | None, hooks: RunHooks,
               trains: bool) -> Inputs:
        return prepare_data(config, task, strategy, kept, hooks, trains)

    def model(self, config: Config, task: tasks.Task, inputs: Inputs, strategy, hooks: RunHooks) -> tasks.TaskModel:
        return build(config, task, inputs, strategy, hooks)

    def predictor(self, config: Config, task: tasks.Task, model, inputs: Inputs) -> evaluate.OutputPredictor:
        """The validation scorer `fit` and `finish` share: traced once, it keeps each epoch's outputs."""
        return evaluate.OutputPredictor(task, model, inputs.packer, config.train.batch_size, remember=True)


@dataclasses.dataclass
class Fitted:
    """What `fit` leaves: Keras' per-epoch logs, the seconds training took, and the forward pass it traced, if any.

    `predictor` scored the validation split each epoch (`ValidationScores`);
    the final scoring calls it again rather than trace the model once more,
    and gets the outputs it made of the epoch whose weights the run kept (the
    best checkpoint's, or the last epoch's) without a pass over the split.
    """

    history: dict
    train_seconds: float
    predictor: evaluate.OutputPredictor | None = None


def run(
    config: Config,
    strategy: tf.distribute.Strategy | None = None,
    callbacks: list[keras.callbacks.Callback] | None = None,
    hooks: RunHooks | None = None,
    phases: Phases | None = None,
) -> TrainResult:
    """Fine-tunes `config.model.backbone` on `config.data` and evaluates and exports it.

    Args:
        config: `tfft.config.Config`. Validated again here, with the task's
            own keys; the run writes it to `<output_dir>/config.yaml`.
        strategy: `tf.distribute.Strategy` or None. One made already (e.g. a
            notebook's `TPUStrategy`); None makes the one `train.strategy`
            names.
        callbacks: list of `keras.callbacks.Callback` or None. Added after
            tfft's own (backup, logs, best checkpoint, early stopping).
        hooks: `RunHooks` or None. A feature composed into the run
            (`tfft.distill`, `tfft.adapt`).
        phases: `Phases` or None. Where the strategy, task, inputs and model
            come from; None makes them for this run (`tfft.warm_runs` keeps
            them across runs).

    Returns:
        A `TrainResult`.
    """
    config.validate()
    phases = phases or Phases()
    if strategy is None:
        strategy = phases.strategy(config)  # First: multi-worker needs it before other ops.
    task = phases.task(config)
    hooks = hooks or RunHooks()
    hooks.check(config, task)
    writer = RunWriter(pathlib.Path(distribute.worker_dir(config.output_dir, strategy)), distribute.is_chief(strategy))
    policy = keras.mixed_precision.global_policy()
    writer.inspect(config)  # a folder it refuses gets no lock file either
    try:
        with writer.locked("train"):
            state = writer.inspect(config)  # again, under the lock; reads only, so every check fails before a write
            keras.utils.set_random_seed(config.train.seed)
            precision.set_policy(config.train.mixed_precision)  # logs the bfloat16 hint on a CPU with AMX
            kept = writer.path if state in ("resume", "trained") else None
            inputs = phases.inputs(config, task, strategy, kept, hooks, trains=state != "trained")
            model = phases.model(config, task, inputs, strategy, hooks)
            writer.start(config, state, task, inputs.source, inputs.train)  # every check passed: the first write
            if state == "trained":  # killed after training, during evaluation or export: train nothing again
                fitted = load_fitted(model, writer.path)
            else:
                fitted = fit(config, task, model, inputs, writer, resume=state == "resume",
                             callbacks=[*(callbacks or []), *hooks.callbacks(config, task, inputs, writer.path)],
                             predictor=phases.predictor(config, task, model, inputs))
            return finish(config, task, model, inputs, fitted, writer, hooks)
    finally:
        keras.mixed_precision.set_global_policy(policy)  # A notebook's next cell gets its own back.
        distribute.remove_worker_dir(str(writer.path), strategy)


def prepare_data(
    config: Config, task: tasks.Task, strategy, kept: pathlib.Path | None, hooks: RunHooks | None = None,
    trains: bool = True,
) -> Inputs:
    """Phase 1: reads and checks both splits, prepares the backbone and builds the pipelines. Writes nothing.

    Args:
        kept: the run folder when an unfinished run is resumed (its backbone
            files and cached pre-pass are reused), else None.
        hooks: `RunHooks` or None. Their `prepare` runs once the packer is made.
        trains: bool. False for a run whose training finished before (it
            evaluates and exports only): no training pipeline is built, and
            the hooks add nothing to the split (no teacher labels rows or
            caches outputs for a training that will not run).
    """
    read = read_data(config, task, kept, hooks, trains)
    return with_pipelines(config, task, read, strategy, trains)


def read_data(
    config: Config, task: tasks.Task, kept: pathlib.Path | None, hooks: RunHooks | None = None, trains: bool = True,
) -> Inputs:
    """`prepare_data`'s reading: both splits read, checked and tokenized, the backbone prepared; no pipeline yet."""
    train_data = read_training_data(task, config, cache_dir=kept)
    task.fit_vocabulary(train_data.labelled)
    validation = folds.read_validation(task, config)
    if validation is not None:
        task.encode(validation)  # a label train lacks fails now, its row named in the file's order
    logger.info(
        "Data: %s, %s validation examples; task %s, %s", train_data.describe(),
        len(validation) if validation is not None else "no", task.type, task.describe(),
    )
    source = backbones.resolve(config.model)
    source.prepare(train_data.sample_texts(), kept)
    packer = source.packer()
    check_outputs(config, task, packer)
    (hooks or RunHooks()).prepare(config, task, train_data if trains else None, packer)
    truncation = {"train": train_data.prepare(packer)}
    prepared = task.prepare(validation, packer) if validation is not None else None
    if prepared is not None:
        truncation["validation"] = prepared.truncation
    truncation = {split: stats for split, stats in truncation.items() if stats is not None}
    for split, stats in truncation.items():
        (logger.warning if stats.truncated else logger.info)(stats.message(split))
    return Inputs(train_data, validation, source, packer, truncation, None, None, 0,
                  prepared.elements if prepared is not None else None)


def with_pipelines(config: Config, task: tasks.Task, read: Inputs, strategy, trains: bool = True) -> Inputs:
    """`prepare_data`'s pipelines for `read`'s data, batched as `config.train` says, for `strategy`."""
    static_shapes = isinstance(strategy, tf.distribute.TPUStrategy)
    tc, train_data, validation = config.train, read.train, read.validation
    batching = data.Batching(
        tc.batch_size, "buckets" if static_shapes and tc.pad_to == "longest" else tc.pad_to,
        drop_remainder=static_shapes, group_by_length=tc.group_by_length, megabatch=tc.megabatch,
    )
    train_ds = train_data.dataset(read.packer, batching, seed=tc.seed, epochs=tc.epochs,
                                  workers=distribute.num_workers(strategy)) if trains else None
    val_ds = None
    if validation is not None and keras_validates(task, strategy):  # else `ValidationScores` reads the examples
        val_batching = dataclasses.replace(batching, drop_remainder=False)
        # Shortest first: its batches pad less, and no score depends on the order.
        shortest_first = validation.take(data.length_order(validation.texts, validation.pairs))
        val_ds = data.make_dataset(shortest_first, task.encode(shortest_first), read.packer, task=task,
                                   elements=read.validation_elements, batching=val_batching)
    steps = data.steps_per_epoch(train_data.elements, tc.batch_size, drop_remainder=static_shapes)
    return dataclasses.replace(read, train_ds=train_ds, val_ds=val_ds, steps=steps)


def check_outputs(config: Config, task: tasks.Task, packer) -> None:
    """Fails before training when the tokenizer cannot serve the task or its exports, or the export folder is unfit."""
    task.check_packer(packer)
    if not config.export.enabled:
        return
    from tfft import export

    export.check_destination(config.export.base_dir)
    if "litert" in config.export.formats:
        from tfft import litert

        litert.check(task, packer)


def build(config: Config, task: tasks.Task, inputs: Inputs, strategy, hooks: RunHooks | None = None) -> tasks.TaskModel:
    """Phase 2: the task model and its layer recipes (`tfft.layerwise`), compiled with tfft's AdamW, under `strategy`."""
    tc = config.train
    with strategy.scope():
        model = build_model(config, inputs.source, task)
        (hooks or RunHooks()).built(config, model, inputs)
        updates_per_epoch = max(inputs.steps // tc.gradient_accumulation_steps, 1)
        rates = layerwise.prepare(model, inputs.source, config, reads_pooler(config, task), updates_per_epoch)
        optimizer = optimization.create_optimizer(tc, inputs.steps * tc.epochs, model.trainable_variables, rates)
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
    trainable = count_parameters(model.trainable_weights)  # with the objective's own (a distillation's projection)
    total = count_parameters(model.weights + model.objective_weights())
    logger.info(
        "Model: %s backbone `%s`, %s of %s parameters trainable (%.1f%%); %d steps/epoch x %d epochs, "
        "global batch %d over %d replica(s)%s.",
        inputs.source.name, config.model.backbone, f"{trainable:,}", f"{total:,}", 100.0 * trainable / total,
        inputs.steps, tc.epochs, tc.batch_size, strategy.num_replicas_in_sync,
        f", {tc.gradient_accumulation_steps} batches per update (effective batch "
        f"{tc.batch_size * tc.gradient_accumulation_steps})" if tc.gradient_accumulation_steps > 1 else "",
    )
    return model


def fit(
    config: Config, task: tasks.Task, model, inputs: Inputs, writer: RunWriter, resume: bool, callbacks: list,
    predictor: evaluate.OutputPredictor,
) -> Fitted:
    """Phase 3: `model.fit` from the last backup (or the start), then the best validation weights (`restore_best`).

    The chief backs up as it goes (`tfft.backup`); every worker restores its
    backup, so a resumed run sees the data order of a run never stopped.
    `predictor` (`Phases.predictor`) scores each epoch, and the final
    scoring calls it again.
    """
    tc, steps, output_dir = config.train, inputs.steps, writer.path
    backup = TrainingBackup(
        pathlib.Path(config.output_dir) / BACKUP_DIR, steps, every_steps=tc.backup_every_steps, write=writer.chief
    )
    start_step = backup.restore(model) if resume or (not writer.chief and not tc.overwrite_output_dir) else 0
    if resume:
        writer.resume(start_step // steps)
        logger.info(resume_message(start_step, steps, tc.epochs))
    started = time.time()
    history: dict[str, list] = {}
    try:
        for initial_epoch, epochs, epoch_steps in fit_plan(start_step, steps, tc.epochs):
            own = training_callbacks(config, task, output_dir, inputs.validation, predictor,
                                     resuming=resume or bool(history), keras_validation=inputs.val_ds is not None)
            fitted = model.fit(
                inputs.train_ds.skip(batches_seen(model.optimizer)),  # the order of a run never stopped
                initial_epoch=initial_epoch, epochs=epochs, steps_per_epoch=epoch_steps,
                validation_data=inputs.val_ds,  # built where Keras validates; else `ValidationScores` scores
                callbacks=[*own, backup, *callbacks],
                class_weight=inputs.train.class_weight(),
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
    if inputs.validation is not None and tc.restore_best and best.is_file():
        model.load_weights(best)
        logger.info("Restored the best validation checkpoint %s", best)
    elif inputs.validation is not None and not tc.restore_best:
        logger.info("Kept the final weights (train.restore_best=false)")
    writer.finish_training(model, tc.epochs, train_seconds)
    return Fitted(history, train_seconds, predictor)


def load_fitted(model, output_dir: pathlib.Path) -> Fitted:
    """Phase 3 of a run whose training finished before: its final weights and logs, read back."""
    model.load_weights(output_dir / WEIGHTS_FILE)
    return Fitted(run_dir.read_history(output_dir), run_dir.trained_info(output_dir)["train_seconds"])


def finish(
    config: Config, task: tasks.Task, model, inputs: Inputs, fitted: Fitted, writer: RunWriter,
    hooks: RunHooks | None = None,
) -> TrainResult:
    """Phase 4: scores the validation split, exports, calls `RunHooks.finished`, and marks the run complete."""
    hooks = hooks or RunHooks()
    metrics = None
    if inputs.validation is not None:
        predict = fitted.predictor or evaluate.OutputPredictor(task, model, inputs.packer, config.train.batch_size)
        outputs = predict(inputs.validation)  # no pass where an epoch with these weights was scored
        task.calibrate(inputs.validation, outputs)
        metrics = task.score(inputs.validation, outputs)
        metrics["truncation"] = {split: dataclasses.asdict(s) for split, s in inputs.truncation.items()}
        metrics["train_seconds"] = round(fitted.train_seconds, 2)
        metrics.update(inputs.train.scores())
        metrics.update(hooks.scores(task, inputs, metrics))
        writer.write_scores(task, metrics)
    export_path = writer.export(model, inputs.packer, task, config)
    result = TrainResult(model, inputs.packer, task, metrics, export_path, dict(fitted.history), str(writer.path),
                         writer.chief)
    if writer.chief:  # the other workers' run folders are temporary
        hooks.finished(config, result)
    writer.complete(config.train.epochs, fitted.train_seconds, export_path)
    return result


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


def resume_message(start_step: int, steps_per_epoch: int, epochs: int) -> str:
    """What a resumed run logs: where in its epochs it goes on, counted as Keras' progress lines count them.

    >>> resume_message(25, 10, 3), resume_message(30, 10, 3)
    ('Resuming in epoch 3 of 3, after step 5 of 10.', 'Training had run all 3 epochs: nothing is left to train.')
    """
    if start_step >= steps_per_epoch * epochs:
        return f"Training had run all {epochs} epochs: nothing is left to train."
    epoch, step = divmod(start_step, steps_per_epoch)
    return f"Resuming in epoch {epoch + 1} of {epochs}, after step {step} of {steps_per_epoch}."


def _verbosity() -> int | str:
    # A live progress bar on a terminal; one line per epoch in logs and CI.
    return "auto" if os.isatty(1) else 2
