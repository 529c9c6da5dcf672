"""`tfft.train.run(config)`: read data, build the model, fit, evaluate, export.

The CLI and notebooks call the same function:

```python
import tfft

config = tfft.config.load_config("configs/demo.yaml", ["train.epochs=2"])
result = tfft.train.run(config)
print(result.metrics["accuracy"], result.export_path)
```

A run's `output_dir` holds everything needed to repeat, resume or reuse it:
`config.yaml`, `labels.txt`, `checkpoints/best.weights.h5`,
`model.weights.h5`, `history.csv`, `logs/` (TensorBoard), `metrics.json`,
and `backup/` while training is unfinished. Starting the same command again
after a crash resumes from the last completed epoch.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import pathlib
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from tfft import backbones, data, distribute, evaluate, optimization
from tfft.config import Config, ConfigError, from_dict
from tfft.tasks import TextClassifier, count_parameters, freeze

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.weights.h5"
BEST_WEIGHTS = "checkpoints/best.weights.h5"
BACKUP_DIR = "backup"
HISTORY_FILE = "history.csv"
COMPLETE_FILE = "run_complete.json"
# Keys that may change between a run and its resumption.
_RESUMABLE_CHANGES = {"train.overwrite_output_dir", "export.enabled", "export.base_dir"}


class OutputDirError(RuntimeError):
    """`output_dir` holds an earlier run that tfft will not silently overwrite."""


@dataclasses.dataclass
class TrainResult:
    """What `run` returns.

    Args:
        model: `TextClassifier`. The trained model, with its best weights.
        packer: `TextPacker`. Its in-graph tokenizer.
        labels: `LabelVocabulary`. Label names in id order.
        metrics: dict or None. Validation metrics (None without validation).
        export_path: str or None. The SavedModel version folder, if exported.
        history: dict. Keras' per-epoch logs.
        output_dir: str. Where the run's files are.
    """

    model: keras.Model
    packer: backbones.TextPacker
    labels: data.LabelVocabulary
    metrics: dict | None
    export_path: str | None
    history: dict
    output_dir: str


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
    try:
        return _run(config, strategy, chief, output_dir, callbacks or [])
    finally:
        keras.mixed_precision.set_global_policy(policy)  # A notebook's next cell gets its own back.
        distribute.remove_worker_dir(str(output_dir), strategy)


def _run(config: Config, strategy, chief: bool, output_dir: pathlib.Path, extra_callbacks: list) -> TrainResult:
    tc = config.train
    resuming = prepare_output_dir(config, output_dir) if chief else False
    keras.utils.set_random_seed(tc.seed)
    set_mixed_precision(tc.mixed_precision)

    # Data: read and check everything before building anything.
    train_examples = data.read_split(config.data.train, config.data, split="train")
    val_examples = (
        data.read_split(config.data.validation, config.data, split="validation") if config.data.validation else None
    )
    labels = data.LabelVocabulary.from_labels(train_examples.labels)
    y_train = labels.encode(train_examples)
    y_val = labels.encode(val_examples) if val_examples is not None else None
    labels.save(output_dir)
    logger.info(
        "Data: %d training examples, %s validation examples, %d labels: %s",
        len(train_examples),
        len(val_examples) if val_examples is not None else "no",
        len(labels),
        ", ".join(labels.names),
    )

    source = backbones.resolve(config.model)
    source.prepare(train_examples.texts, output_dir)
    packer = source.packer()
    truncation = {"train": data.truncation_stats(train_examples, packer)}
    if val_examples is not None:
        truncation["validation"] = data.truncation_stats(val_examples, packer)
    for split, stats in truncation.items():
        (logger.warning if stats.truncated else logger.info)(stats.message(split))

    static_shapes = isinstance(strategy, tf.distribute.TPUStrategy)
    pad_to = "buckets" if static_shapes and tc.pad_to == "longest" else tc.pad_to
    steps = data.steps_per_epoch(len(train_examples), tc.batch_size, drop_remainder=static_shapes)
    train_ds = data.make_dataset(
        train_examples, y_train, packer, batch_size=tc.batch_size, training=True, seed=tc.seed,
        pad_to=pad_to, shuffle_buffer=config.data.shuffle_buffer, repeat=True, drop_remainder=static_shapes,
        epochs=tc.epochs,
    )
    val_ds = (
        data.make_dataset(val_examples, y_val, packer, batch_size=tc.batch_size, pad_to=pad_to)
        if val_examples is not None
        else None
    )

    with strategy.scope():
        model = build_model(config, source, len(labels))
        optimizer = optimization.create_optimizer(tc, steps * tc.epochs, model.trainable_variables)
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            jit_compile=tc.jit_compile,
            steps_per_execution=tc.steps_per_execution,
        )
        # Built here, not lazily in the first trace: variables made while
        # tracing make tf.function trace the whole train step twice.
        optimizer.build(model.trainable_variables)
    trainable, total = count_parameters(model.trainable_weights), count_parameters(model.weights)
    logger.info(
        "Model: %s backbone `%s`, %s of %s parameters trainable (%.1f%%); %d steps/epoch x %d epochs, "
        "global batch %d over %d replica(s).",
        source.name, config.model.backbone, f"{trainable:,}", f"{total:,}", 100.0 * trainable / total,
        steps, tc.epochs, tc.batch_size, strategy.num_replicas_in_sync,
    )

    class_weight = labels.class_weights(y_train) if tc.class_weight == "balanced" else None
    started = time.time()
    history = model.fit(
        train_ds,
        epochs=tc.epochs,
        steps_per_epoch=steps,
        validation_data=val_ds,
        callbacks=[
            *_callbacks(config, output_dir, has_validation=val_ds is not None, resuming=resuming),
            *extra_callbacks,
        ],
        class_weight=class_weight,
        shuffle=False,  # The pipeline shuffles.
        verbose=_verbosity(),
    )
    train_seconds = time.time() - started

    best = output_dir / BEST_WEIGHTS
    if val_ds is not None and best.is_file():
        model.load_weights(best)
        logger.info("Restored the best validation checkpoint %s", best)
    model.save_weights(output_dir / WEIGHTS_FILE)

    metrics = None
    if val_examples is not None:
        val_features = data.make_dataset(val_examples, None, packer, batch_size=tc.batch_size, pad_to=pad_to)
        y_pred = predict_probabilities(model, val_features, strategy).argmax(axis=-1)
        metrics = evaluate.classification_metrics(y_val, y_pred, labels.names)
        metrics["truncation"] = {split: dataclasses.asdict(s) for split, s in truncation.items()}
        metrics["train_seconds"] = round(train_seconds, 2)
        if chief:
            print(evaluate.format_metrics(metrics), flush=True)
            evaluate.write_metrics(metrics, output_dir)

    export_path = None
    if config.export.enabled and chief:
        from tfft import export

        export_path = str(export.export_model(model, packer, labels.names, config))
    if chief:
        (output_dir / COMPLETE_FILE).write_text(
            json.dumps({"epochs": tc.epochs, "train_seconds": round(train_seconds, 2), "export": export_path}) + "\n"
        )
    return TrainResult(model, packer, labels, metrics, export_path, dict(history.history), str(output_dir))


def build_model(config: Config, source: backbones.BackboneSource, num_classes: int) -> TextClassifier:
    """The backbone from `source` with the head, frozen as the config says."""
    backbone = source.backbone()
    model = TextClassifier(backbone, num_classes=num_classes, dropout=config.model.dropout)
    freeze(backbone, source.layer_groups(backbone), config.model.freeze_layers, config.model.freeze_embeddings)
    return model


def predict_probabilities(model: keras.Model, dataset: tf.data.Dataset, strategy=None) -> np.ndarray:
    """Probabilities for every example of `dataset`, in order, on this process alone.

    Runs the model locally instead of `model.predict`, whose multi-worker
    gather does not keep the dataset's order; TPUs go through `predict`.
    """
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return evaluate.predict_probabilities(model, dataset)
    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return np.concatenate([forward(batch).numpy() for batch in dataset], axis=0)


def set_mixed_precision(policy: str) -> None:
    keras.mixed_precision.set_global_policy("float32" if policy == "none" else policy)


def _verbosity() -> int | str:
    # A live progress bar on a terminal; one line per epoch in logs and CI.
    return "auto" if os.isatty(1) else 2


def _callbacks(config: Config, output_dir: pathlib.Path, has_validation: bool, resuming: bool) -> list:
    callbacks: list[keras.callbacks.Callback] = [
        # First, so the others see the restored epoch.
        # Saves model and optimizer state each epoch; restores both on resume.
        keras.callbacks.BackupAndRestore(backup_dir=str(output_dir / BACKUP_DIR)),
        keras.callbacks.CSVLogger(str(output_dir / HISTORY_FILE), append=resuming),
        keras.callbacks.TensorBoard(log_dir=str(output_dir / "logs")),
    ]
    if has_validation:
        (output_dir / BEST_WEIGHTS).parent.mkdir(parents=True, exist_ok=True)
        callbacks.append(
            keras.callbacks.ModelCheckpoint(
                str(output_dir / BEST_WEIGHTS),
                monitor="val_accuracy",
                mode="max",
                save_best_only=True,
                save_weights_only=True,
                initial_value_threshold=_best_so_far(output_dir) if resuming else None,
            )
        )
        if config.train.early_stopping_patience:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_accuracy", mode="max", patience=config.train.early_stopping_patience
                )
            )
    return callbacks


def _best_so_far(output_dir: pathlib.Path) -> float | None:
    """The best `val_accuracy` an interrupted run logged, so resuming keeps its best checkpoint."""
    path = output_dir / HISTORY_FILE
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        scores = [float(row["val_accuracy"]) for row in csv.DictReader(f) if row.get("val_accuracy")]
    return max(scores) if scores else None


# --- output_dir -------------------------------------------------------------


def prepare_output_dir(config: Config, output_dir: pathlib.Path) -> bool:
    """Makes `output_dir` ready; returns whether an interrupted run is resumed.

    - empty or missing: a new run;
    - an unfinished run with the same config: resumed from its last epoch;
    - a finished run, or an unfinished one with another config: refused,
      unless `train.overwrite_output_dir` is true;
    - a non-empty folder that is not a tfft run: refused.
    """
    saved_config = output_dir / CONFIG_FILE
    resuming = False
    if output_dir.is_dir() and any(output_dir.iterdir()):
        if config.train.overwrite_output_dir:
            logger.warning("Overwriting %s (train.overwrite_output_dir=true).", output_dir)
            shutil.rmtree(output_dir)
        elif not saved_config.is_file():
            raise OutputDirError(
                f"output_dir `{output_dir}` exists, is not empty and holds no tfft run ({CONFIG_FILE} is "
                "missing). Choose another `output_dir`."
            )
        elif (output_dir / COMPLETE_FILE).is_file():
            raise OutputDirError(
                f"output_dir `{output_dir}` holds a finished run. Set a new `output_dir`, or "
                "`--set train.overwrite_output_dir=true` to replace it."
            )
        else:
            differences = _config_differences(config, saved_config)
            if differences:
                raise OutputDirError(
                    f"output_dir `{output_dir}` holds an unfinished run with another config ("
                    + "; ".join(differences[:5])
                    + "). Run the same config to resume it, set a new `output_dir`, or "
                    "`--set train.overwrite_output_dir=true` to start over."
                )
            resuming = True
            logger.info("Resuming the unfinished run in %s from its last completed epoch.", output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    config.save(saved_config)
    return resuming


def _config_differences(config: Config, saved_path: pathlib.Path) -> list[str]:
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
            if name not in _RESUMABLE_CHANGES and old_values.get(key) != value:
                differences.append(f"{name}: {old_values.get(key)!r} there, {value!r} now")
    return differences


# --- Reloading a finished run -----------------------------------------------


def load_trained(config: Config):
    """Rebuilds the model a run trained, from its `output_dir`.

    Returns:
        `(model, packer, labels)`, with the run's final (best) weights.
    """
    output_dir = pathlib.Path(config.output_dir)
    weights = output_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise OutputDirError(f"`{weights}` does not exist: train first (`tfft train --config=...`).")
    labels = data.LabelVocabulary.load(output_dir)
    source = backbones.resolve(config.model)
    source.prepare(None, output_dir)
    packer = source.packer()
    model = build_model(config, source, len(labels))
    model.load_weights(weights)
    return model, packer, labels
