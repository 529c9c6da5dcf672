"""Scoring a model on a labelled split, for any task; `run(config)` is `tfft evaluate`.

`predict_outputs` runs the task's in-graph `outputs` (the same function the
export serves) over a split, and `task.score` turns them into the dict that
`metrics.json` holds.

```python
trained = tfft.model.load_trained(config)
examples = trained.task.read("dev.csv", split="validation")
outputs = predict_outputs(trained.task, trained.model, trained.packer, examples, batch_size=64)
print(trained.task.report(trained.task.score(examples, outputs)))
```
"""

from __future__ import annotations

import hashlib
import json
import logging
import pathlib

import keras
import numpy as np
import tensorflow as tf

from tfft import data, folds
from tfft.metrics import classification_metrics, format_metrics  # noqa: F401  (tfft.evaluate's public names)

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


def predict_outputs(task, model, packer, examples: data.Examples, batch_size: int) -> dict:
    """The task's outputs for every example, in order, computed on this process.

    Args:
        task: `tfft.tasks.Task`.
        model: keras.Model. The task model.
        packer: `TextPacker`.
        examples: `Examples`. Their `task.inputs` are batched in row order.
        batch_size: int. Examples per call.

    Returns:
        `task.collect` of the per-batch outputs, as numpy.
    """
    return OutputPredictor(task, model, packer, batch_size)(examples)


class OutputPredictor:
    """`predict_outputs` for one model, its forward pass traced once for all its calls.

    Traced once for any batch size and length: traced per shape, the model's
    forward pass was traced two to four times a call (2.7 of 3.4 s for 60
    MRPC pairs). A callback that scores every epoch keeps one, and traces once
    a run instead of once an epoch.

    With `remember=True` it keeps its outputs for the `examples` object it
    last scored, by the model's weights (`weights_digest`): called again with
    weights it has scored them with (a run's final scoring, once the best
    epoch's checkpoint is restored, or on the last epoch's weights), it
    returns those outputs instead of passing over the split again. It holds
    one set of outputs per distinct weights it scored (a run's epochs).

    Args:
        task: `tfft.tasks.Task`.
        model: keras.Model. The task model (its weights as they are at each call).
        packer: `TextPacker`.
        batch_size: int. Examples per call.
        remember: bool. Keep the outputs of each call, by weights, as above.
    """

    def __init__(self, task, model, packer, batch_size: int, remember: bool = False):
        self.task, self.model, self.packer, self.batch_size = task, model, packer, batch_size
        self.remember = remember
        self._steps = {}  # labelled or not -> (the batches' spec, the step traced for it)
        self._scored, self._outputs = None, {}  # the examples last scored; weights digest -> their outputs
        self._metrics = None  # the task's Keras metrics, unweighted and weighted, for `scored`

    def __call__(self, examples: data.Examples) -> dict:
        """`task.collect` of the outputs for every example of `examples`, in order, as numpy.

        The examples are batched shortest first (`data.length_order`), so a
        batch pads little, and their outputs put back in their own order.
        Weights it has scored these examples with give the outputs made then,
        if it remembers them.
        """
        if not self.remember:
            return self._pass(examples, labelled=False)[0]
        known, digest = self._known(examples), weights_digest(self.model)
        if digest not in known:
            known[digest] = self._pass(examples, labelled=False)[0]
        return known[digest]

    def scored(self, examples: data.Examples) -> tuple[dict, dict[str, float]]:
        """The outputs, as a call gives them, and Keras' validation logs (`loss` and the task's Keras metrics).

        One forward pass over `examples` (`Task.labelled_outputs`) gives both,
        where Keras' validation pass and a call made two: the loss is the
        mean of each batch's loss weighted by its size, as Keras' own, on
        one device. The batches are a call's (shortest first), which are
        those of the run's validation pipeline (`train.prepare_data`).
        """
        if self._metrics is None:  # made once, outside the traced step
            self._metrics = (self.task.metrics(), self.task.weighted_metrics())
        metrics = [*self._metrics[0], *self._metrics[1]]
        for metric in metrics:
            metric.reset_state()
        outputs, losses = self._pass(examples, labelled=True)
        if self.remember:
            self._known(examples)[weights_digest(self.model)] = outputs
        total, count = sum(float(loss) * int(size) for loss, size in losses), sum(int(size) for _, size in losses)
        return outputs, {"loss": total / max(count, 1), **{m.name: float(m.result()) for m in metrics}}

    def forget(self) -> None:
        """Drops the outputs it keeps (a new run reusing it: `tfft.warm_runs`); its traced steps stay."""
        self._scored, self._outputs = None, {}

    def _known(self, examples: data.Examples) -> dict:
        """Weights digest -> outputs, for `examples`; another split forgets the last one's."""
        if examples is not self._scored:
            self._scored, self._outputs = examples, {}
        return self._outputs

    def _pass(self, examples: data.Examples, labelled: bool) -> tuple[dict, list]:
        """One pass, shortest first: the outputs in row order, and each batch's `(loss, size)` when `labelled`."""
        order = data.length_order(examples.texts, examples.pairs)
        ordered = examples.take(order)
        ds = data.batched_inputs(self.task.inputs(ordered), self.batch_size,
                                 targets=self.task.encode(ordered) if labelled else None)
        spec, step = self._steps.get(labelled, (None, None))
        if step is None or ds.element_spec != spec:
            function = self._labelled_batch if labelled else self._batch
            spec = ds.element_spec
            step = tf.function(function, input_signature=list(spec) if labelled else [spec])
            self._steps[labelled] = spec, step
        batches, losses = [], []
        for element in ds:
            outputs, loss = step(*element) if labelled else (step(element), None)
            batches.append(tf.nest.map_structure(lambda t: t.numpy(), outputs))
            losses.append(loss)
        return data.restore_order(self.task.collect(batches), order), losses

    def _batch(self, inputs):
        return self.task.outputs(self.model, self.packer, inputs)

    def _labelled_batch(self, inputs, targets):
        outputs, batch = self.task.labelled_outputs(self.model, self.packer, inputs, targets)
        loss = self.model.compute_loss(x=batch.features, y=batch.targets, y_pred=batch.logits,
                                       sample_weight=batch.sample_weight, training=False)
        for metric in self._metrics[0]:
            metric.update_state(batch.targets, batch.logits)
        for metric in self._metrics[1]:
            metric.update_state(batch.targets, batch.logits, sample_weight=batch.sample_weight)
        return outputs, (loss, tf.shape(batch.logits)[0])


def weights_digest(model) -> bytes:
    """A digest of every weight's value: equal for the same weights (a checkpoint restored), else different.

    About 0.1 s for MiniLM's 22.7M weights on a CPU, against seconds to
    minutes for a pass over a validation split.
    """
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.digest()


def write_metrics(metrics: dict, output_dir: str | pathlib.Path, name: str = METRICS_FILE) -> pathlib.Path:
    path = pathlib.Path(output_dir) / name
    path.write_text(json.dumps(metrics, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return path


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def run(config, split_file: str | None = None) -> dict:
    """`tfft evaluate`: scores the model trained in `config.output_dir`.

    Args:
        config: `tfft.config.Config`. The run's config (its `output_dir` holds
            the trained weights).
        split_file: str or None. A labelled file to score instead of
            `data.validation`.

    Returns:
        The scores, also written to `<output_dir>/metrics.json` (or to
        `metrics_<file stem>.json` for `split_file`). Fields that training
        wrote there and scoring does not make (`truncation`,
        `train_seconds`) are kept.
    """
    from tfft.model import load_trained

    trained = load_trained(config)
    examples = (trained.task.read(split_file, split="validation") if split_file
                else folds.read_validation(trained.task, config))
    if examples is None:
        raise data.DataError("Nothing to evaluate: set `data.validation` or pass `--input`.")
    outputs = predict_outputs(trained.task, trained.model, trained.packer, examples, config.train.batch_size)
    metrics = trained.task.score(examples, outputs)
    print(trained.task.report(metrics))
    name = METRICS_FILE if split_file is None else f"metrics_{pathlib.Path(split_file).stem}.json"
    path = pathlib.Path(config.output_dir) / name
    if path.is_file():
        earlier = json.loads(path.read_text(encoding="utf-8"))
        metrics = {**{k: v for k, v in earlier.items() if k not in metrics}, **metrics}
    write_metrics(metrics, config.output_dir, name)
    logger.info("Wrote %s", path)
    return metrics
