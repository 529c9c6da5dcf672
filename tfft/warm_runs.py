"""Runs one after another in one process, each reusing the data, model and traced steps of the run before.

A search's trials differ in a few numbers of `train` (the learning rate, the
warmup, the epochs, the batch size, the weight decay), which a traced train
step can read as values. In a process of its own, each trial read and
tokenized the data again, built the model and loaded its weights, and traced
the train step and the scoring pass again: about 5-6 s of a 27 s MRPC trial
(docs/performance.md).
`WarmRuns` keeps them from a run to the next whose config differs only in
`REUSABLE` keys, and resets what a new run starts from:

- every model variable to its value after the build: the pretrained
  backbone, the head initialized from `train.seed`, the re-initialized layers
  and the dropout layers' seed generators;
- every optimizer variable to its value after the build (moments, step);
- the learning-rate schedule and weight decay to the run's own
  (`AdamW.retarget`);
- the task's calibration (`Task.uncalibrated`), and the scorer's kept outputs.

The training pipeline is built again for the run's batch size. A run so
started trains as the same run in a new process would, up to the order of
floating-point sums in kernels traced for other shapes (tested). A run with
other keys, a feature's hooks (distillation) or nothing to train builds
everything anew, as `train.Phases` does.

Example:

```python
warm = WarmRuns()
for config in trial_configs:  # differing in train.learning_rate, say
    train.run(config, phases=warm)
```
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib

import numpy as np

from tfft import evaluate, tasks, train
from tfft.config import Config

__all__ = ["REUSABLE", "WarmRuns", "reusable", "reusable_keys"]

logger = logging.getLogger(__name__)

#: Keys a run may change and still reuse the run before's data, model and traced steps.
REUSABLE = ("name", "output_dir", "train.learning_rate", "train.warmup_ratio", "train.epochs", "train.batch_size",
            "train.weight_decay")


def reusable(before: Config, after: Config) -> bool:
    """Whether a run of `after` may reuse what a run of `before` built: they differ in `reusable_keys` alone."""
    return _key(before) == _key(after)


def reusable_keys(config: Config) -> set[str]:
    """`REUSABLE`, less the batch size under gradual unfreezing by epochs (the optimizer's per-variable start
    steps, traced into the step, count the updates an epoch makes)."""
    by_epochs = config.train.unfreeze.every and config.train.unfreeze.unit == "epochs"
    return set(REUSABLE) - ({"train.batch_size"} if by_epochs else set())


def _key(config: Config) -> str:
    """`config` without its `reusable_keys`, as text; whether it decays weights at all stays in it (a step traced
    without weight decay has none to change)."""
    values = config.to_dict()
    for key in reusable_keys(config):
        section, _, name = key.rpartition(".")
        (values.get(section, {}) if section else values).pop(name, None)
    values["decays"] = config.train.weight_decay > 0
    return json.dumps(values, sort_keys=True, default=str)


@dataclasses.dataclass
class _Kept:
    """What a run built, and the values its variables started from."""

    config: Config
    strategy: object
    task: tasks.Task
    read: train.Inputs  # `train.read_data`'s: no pipelines
    model: tasks.TaskModel
    start: list  # `_values(model)`: (variable, its value after the build)
    predictor: evaluate.OutputPredictor | None = None


class WarmRuns(train.Phases):
    """`train.Phases` that keeps a run's strategy, task, data, model and scorer for the next run that can reuse them.

    Pass one to `train.run(config, phases=...)` for each run, in one process.
    """

    def __init__(self):
        self._kept: _Kept | None = None
        self._warm = False  # this run reuses `_kept`
        self._read: train.Inputs | None = None  # this run's data, read anew

    def strategy(self, config: Config):
        return self._kept.strategy if self._reuses(config) else super().strategy(config)

    def task(self, config: Config) -> tasks.Task:
        self._warm = self._reuses(config)
        if not self._warm:
            self._kept = None  # its model goes before the next is built
            return super().task(config)
        self._kept.task.uncalibrated()
        return self._kept.task

    def inputs(self, config, task, strategy, kept, hooks, trains):
        self._warm = self._warm and trains and type(hooks) is train.RunHooks and strategy is self._kept.strategy
        if self._warm:
            return train.with_pipelines(config, task, self._kept.read, strategy, trains)
        self._kept = None
        self._read = train.read_data(config, task, kept, hooks, trains)
        return train.with_pipelines(config, task, self._read, strategy, trains)

    def model(self, config, task, inputs, strategy, hooks):
        if self._warm:
            return self._restart(config, inputs)
        model = super().model(config, task, inputs, strategy, hooks)
        if inputs.train_ds is not None and type(hooks) is train.RunHooks:
            self._kept = _Kept(config, strategy, task, self._read, model, _values(model))
        self._read = None
        return model

    def predictor(self, config, task, model, inputs):
        kept = self._kept
        if kept is None or kept.model is not model:
            return super().predictor(config, task, model, inputs)
        if kept.predictor is None:
            kept.predictor = super().predictor(config, task, model, inputs)
        kept.predictor.forget()
        kept.predictor.batch_size = config.train.batch_size
        return kept.predictor

    def _reuses(self, config: Config) -> bool:
        return self._kept is not None and reusable(self._kept.config, config)

    def _restart(self, config: Config, inputs: train.Inputs) -> tasks.TaskModel:
        """The kept model and optimizer as the build left them, on `config`'s schedule."""
        kept = self._kept
        for variable, value in kept.start:  # those a run makes later (Keras' metrics') start anew in `fit`
            variable.assign(np.zeros(variable.shape, variable.dtype) if value is None else value)
        tc = config.train
        _optimizer(kept.model).retarget(tc, inputs.steps * tc.epochs)
        logger.info("Reusing the model, data and traced steps of the run before (%s): %d steps/epoch x %d epochs, "
                    "global batch %d, peak learning rate %g.", pathlib.Path(kept.config.output_dir).name,
                    inputs.steps, tc.epochs, tc.batch_size, tc.learning_rate)
        kept.config = config
        return kept.model


def _optimizer(model):
    """The model's AdamW (inside a `LossScaleOptimizer`, where mixed float16 wraps it)."""
    return getattr(model.optimizer, "inner_optimizer", model.optimizer)


def _values(model) -> list:
    """`(variable, value)` for each of `_variables(model)`, the value as numpy, or None where it is all zeros
    (Adam's moments after the build: half the memory kept for MiniLM with its six layers training)."""
    pairs = [(variable, variable.numpy()) for variable in _variables(model)]
    return [(variable, value if value.any() else None) for variable, value in pairs]


def _variables(model) -> list:
    """Every variable a run changes: the model's (seed generators included) and its optimizer's."""
    return [*model.variables, *model.optimizer.variables]
