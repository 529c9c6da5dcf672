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
        self._forward, self._spec = None, None
        self._scored, self._outputs = None, {}  # the examples last scored; weights digest -> their outputs
        self._scoring, self._scoring_spec, self._metrics = None, None, None  # `scored`'s step, its spec, metrics

    def __call__(self, examples: data.Examples) -> dict:
        """`task.collect` of the outputs for every example of `examples`, in order, as numpy.

        The examples are batched shortest first (`data.length_order`), so a
        batch pads little, and their outputs put back in their own order.
        Weights it has scored these examples with give the outputs made then,
        if it remembers them.
        """
        if not self.remember:
            return self._predict(examples)
        if examples is not self._scored:
            self._scored, self._outputs = examples, {}
        digest = weights_digest(self.model)
        if digest not in self._outputs:
            self._outputs[digest] = self._predict(examples)
        return self._outputs[digest]

    def scored(self, examples: data.Examples) -> tuple[dict, dict[str, float]]:
        """The outputs, as a call gives them, and Keras' validation logs (`loss` and the task's Keras metrics).

        One forward pass over `examples` (`Task.labelled_outputs`) gives both,
        where Keras' validation pass and a call made two: the loss is the
        mean of each batch's loss weighted by its size, as Keras' own, on
        one device. The batches are a call's (shortest first), which are
        those of the run's validation pipeline (`train.prepare_data`).
        """
        if not self.remember or examples is not self._scored:
            self._scored, self._outputs = examples, {}
        order = data.length_order(examples.texts, examples.pairs)
        ordered = examples.take(order)
        ds = data.batched_inputs(self.task.inputs(ordered), self.batch_size, targets=self.task.encode(ordered))
        if self._scoring is None or ds.element_spec != self._scoring_spec:
            self._scoring_spec = ds.element_spec
            self._scoring = tf.function(self._score_batch, input_signature=list(self._scoring_spec))
        metrics = self._keras_metrics()
        for metric in metrics:
            metric.reset_state()
        batches, loss, count = [], 0.0, 0
        for inputs, targets in ds:
            outputs, batch_loss, size = self._scoring(inputs, targets)
            batches.append(tf.nest.map_structure(lambda t: t.numpy(), outputs))
            loss, count = loss + float(batch_loss) * int(size), count + int(size)
        outputs = data.restore_order(self.task.collect(batches), order)
        if self.remember:
            self._outputs[weights_digest(self.model)] = outputs
        logs = {"loss": loss / max(count, 1), **{m.name: float(m.result()) for m in metrics}}
        return outputs, logs

    def _score_batch(self, inputs, targets):
        outputs, batch = self.task.labelled_outputs(self.model, self.packer, inputs, targets)
        loss = self.model.compute_loss(x=batch.features, y=batch.targets, y_pred=batch.logits,
                                       sample_weight=batch.sample_weight, training=False)
        for metric in self._metrics[0]:
            metric.update_state(batch.targets, batch.logits)
        for metric in self._metrics[1]:
            metric.update_state(batch.targets, batch.logits, sample_weight=batch.sample_weight)
        return outputs, loss, tf.shape(batch.logits)[0]

    def _keras_metrics(self) -> list:
        """The task's Keras metrics (unweighted, weighted), made once, outside the traced step."""
        if self._metrics is None:
            self._metrics = (self.task.metrics(), self.task.weighted_metrics())
        return [*self._metrics[0], *self._metrics[1]]

    def _predict(self, examples: data.Examples) -> dict:
        order = data.length_order(examples.texts, examples.pairs)
        ds = data.batched_inputs(self.task.inputs(examples.take(order)), self.batch_size)
        if self._forward is None or ds.element_spec != self._spec:
            self._spec = ds.element_spec
            self._forward = tf.function(lambda inputs: self.task.outputs(self.model, self.packer, inputs),
                                        input_signature=[self._spec])
        outputs = self.task.collect([tf.nest.map_structure(lambda t: t.numpy(), self._forward(batch)) for batch in ds])
        return data.restore_order(outputs, order)


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
