"""Fine-tuning recipes that treat the encoder layer by layer.

- `train.layer_decay` (layer-wise learning-rate decay, as ELECTRA and
  BEiT fine-tune): encoder layer i of L trains at `lr * decay**(L - i)`,
  the embeddings at `lr * decay**(L + 1)`, the head and pooler at `lr`.
- `train.unfreeze` (gradual unfreezing, as ULMFiT): the head first, then one
  more encoder layer every `every` epochs or steps, from the top down.
- `model.reinit_layers`: the top N encoder layers (and the pooler, when the
  head reads it) start again from the backbone's own initializers.

Decay and unfreezing become each variable's learning-rate multiplier and
first update in tfft's `AdamW` (`AdamW.set_variable_rates`). What trains is
fixed from the first step, so the train step is traced once, a later stage
loses no optimizer state, and a resumed run is in the right stage by its
step count alone. Layers waiting to be unfrozen still get their gradients
computed: unfreezing changes what is learnt, not the step's cost.

```python
rates = prepare(model, source, config, pooler=True, updates_per_epoch=100)  # re-initializes, logs the groups
optimizer = tfft.optimization.create_optimizer(config.train, total_batches, model.trainable_variables, rates)
```
"""

from __future__ import annotations

import dataclasses
import logging

from tfft.config import Config, TrainConfig, check

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class GroupRate:
    """One group of trainable variables and how it trains.

    Args:
        name: str. `embeddings`, `encoder layer <i>`, `head and pooler`, or
            `the loss's own` (`TaskModel.objective_weights`: a distillation's
            hidden-state projection).
        multiplier: float. Its learning rate over the schedule's.
        start_step: int. The optimizer update it first takes part in.
        variables: list of variables. Its trainable variables.
    """

    name: str
    multiplier: float
    start_step: int
    variables: list


def prepare(model, source, config: Config, pooler: bool, updates_per_epoch: int) -> list[tuple[float, int]] | None:
    """Applies the layer recipes to a freshly built task model; returns its variables' rates for the optimizer.

    Checks the layer counts against the backbone, re-initializes the top
    `model.reinit_layers` layers, and logs each group's rate once.

    Args:
        model: `tfft.tasks.TaskModel`. Built and frozen, not yet trained.
        source: `BackboneSource`. Its layer groups and initializers.
        config: `Config`.
        pooler: bool. Whether the task's head reads the pooler.
        updates_per_epoch: int. Optimizer updates per epoch.

    Returns:
        `(multiplier, start_step)` for each of `model.trainable_variables`,
        or None when every variable trains at the schedule's rate from the start.
    """
    groups = source.layer_groups(model.backbone)
    check_layers(config, len(groups.encoder))
    reinitialize_top(source, groups, config.model.reinit_layers, config.train.seed, pooler)
    if is_plain(config.train):
        return None
    rates = layer_rates(model, groups, config.train, updates_per_epoch)
    logger.info(describe(rates, config.train.learning_rate))
    return variable_rates(rates, model.trainable_variables)


def layer_rates(model, groups, train: TrainConfig, updates_per_epoch: int) -> list[GroupRate]:
    """Each trainable group's multiplier and first update, embeddings first and the head last.

    Args:
        model: `tfft.tasks.TaskModel`. Its trainable variables that are in
            no backbone group (head, pooler) train at the full rate, and so
            do its objective's (`objective_weights`), a group of their own.
        groups: `tfft.backbones.LayerGroups` of its backbone.
        train: `TrainConfig`. `layer_decay` and `unfreeze`.
        updates_per_epoch: int. Optimizer updates per epoch, for
            `unfreeze.unit: epochs`.
    """
    depth = len(groups.encoder)
    decay, unfreeze = train.layer_decay, train.unfreeze
    every = unfreeze.every * (updates_per_epoch if unfreeze.unit == "epochs" else 1)

    def start(from_top: int) -> int:  # from_top: 0 for the top encoder layer, `depth` for the embeddings
        return max(0, from_top - unfreeze.start + 1) * every

    rows = [GroupRate("embeddings", decay ** (depth + 1), start(depth), _trainable(groups.embeddings))]
    for i, layer in enumerate(groups.encoder):
        rows.append(GroupRate(f"encoder layer {i}", decay ** (depth - i), start(depth - 1 - i), _trainable([layer])))
    objective = model.objective_weights()
    grouped = {id(v) for row in rows for v in row.variables} | {id(v) for v in objective}
    rows.append(GroupRate("head and pooler", 1.0, 0, [v for v in model.trainable_variables if id(v) not in grouped]))
    rows.append(GroupRate("the loss's own", 1.0, 0, objective))
    return [row for row in rows if row.variables]


def variable_rates(rates: list[GroupRate], variables) -> list[tuple[float, int]]:
    """`(multiplier, start_step)` for each of `variables`, in their order (`AdamW.set_variable_rates`)."""
    by_id = {id(v): (row.multiplier, row.start_step) for row in rates for v in row.variables}
    return [by_id.get(id(v), (1.0, 0)) for v in variables]


def is_plain(train: TrainConfig) -> bool:
    """Whether every variable trains at the schedule's rate from the first step."""
    return train.layer_decay == 1.0 and not train.unfreeze.every


def describe(rates: list[GroupRate], learning_rate: float) -> str:
    """One log line per group: its peak learning rate and, when later than the start, its first update."""
    lines = ["Learning rates by layer group (peak):"]
    for row in rates:
        when = f", from update {row.start_step}" if row.start_step else ""
        lines.append(f"  {row.name}: {learning_rate * row.multiplier:.3g}{when}")
    return "\n".join(lines)


def check_layers(config: Config, num_layers: int) -> None:
    """Fails, naming the key, when a layer count in the config is more than the backbone has."""
    check(config.model.reinit_layers <= num_layers, "model.reinit_layers", config.model.reinit_layers,
          f"must be at most {num_layers}, the backbone's number of encoder layers")
    check(config.train.unfreeze.start <= num_layers, "train.unfreeze.start", config.train.unfreeze.start,
          f"must be at most {num_layers}, the backbone's number of encoder layers")


def reinitialize_top(source, groups, count: int, seed: int, pooler: bool) -> None:
    """Re-initializes the top `count` encoder layers (and the pooler, if `pooler`) with the backbone's initializers.

    Args:
        source: `BackboneSource`. Knows its layers' initializers.
        groups: the `LayerGroups` of a backbone `source` made.
        count: int. Encoder layers, from the top.
        seed: int. Each re-drawn weight gets its own seed from it.
        pooler: bool. Also the pooler (when the task's head reads it).
    """
    if not count:
        return
    layers = groups.encoder[len(groups.encoder) - count:] + (groups.pooler if pooler else [])
    source.reinitialize(layers, seed)


def _trainable(layers) -> list:
    return [v for layer in layers for v in layer.trainable_weights]
