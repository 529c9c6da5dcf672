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

import json
import logging
import pathlib

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

    Args:
        task: `tfft.tasks.Task`.
        model: keras.Model. The task model (its weights as they are at each call).
        packer: `TextPacker`.
        batch_size: int. Examples per call.
    """

    def __init__(self, task, model, packer, batch_size: int):
        self.task, self.model, self.packer, self.batch_size = task, model, packer, batch_size
        self._forward, self._spec = None, None

    def __call__(self, examples: data.Examples) -> dict:
        """`task.collect` of the outputs for every example of `examples`, in order, as numpy.

        The examples are batched shortest first (`data.length_order`), so a
        batch pads little, and their outputs put back in their own order.
        """
        order = data.length_order(examples.texts, examples.pairs)
        ds = data.batched_inputs(self.task.inputs(examples.take(order)), self.batch_size)
        if self._forward is None or ds.element_spec != self._spec:
            self._spec = ds.element_spec
            self._forward = tf.function(lambda inputs: self.task.outputs(self.model, self.packer, inputs),
                                        input_signature=[self._spec])
        outputs = self.task.collect([tf.nest.map_structure(lambda t: t.numpy(), self._forward(batch)) for batch in ds])
        return data.restore_order(outputs, order)


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
