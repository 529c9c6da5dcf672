"""Building a task model on a backbone, and rebuilding a trained one from its run folder.

Kept apart from `train` so that `evaluate` and `export` reload a run
without importing the training loop.

```python
trained = tfft.model.load_trained(config)       # model, packer, task
outputs = trained.task.outputs(trained.model, trained.packer, {"text": tf.constant(["a fine film"])})
```
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib

from tfft import backbones, lora, run_dir, tasks
from tfft.backbones import fast_layers, first_token
from tfft.config import Config
from tfft.errors import OutputDirError
from tfft.freezing import freeze

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Trained:
    """A model rebuilt from a run folder.

    Args:
        model: `tfft.tasks.TaskModel`. With the run's final (best) weights.
        packer: `TextPacker`. The in-graph tokenizer it was trained with.
        task: `tfft.tasks.Task`. With the run's label or tag vocabulary.
    """

    model: tasks.TaskModel
    packer: backbones.TextPacker
    task: tasks.Task


def build_model(config: Config, source: backbones.BackboneSource, task: tasks.Task) -> tasks.TaskModel:
    """The backbone from `source` (with `model.keep_layers` only) and the task's head, frozen, with LoRA where asked.

    Its LayerNorms compute through `fast_layers.layer_norm`: the same values, a faster backward pass. Where the head
    reads `pooled_output` alone, the top encoder block computes the first token only (`first_token`): the same
    logits, less work.
    """
    backbone = source.backbone()
    if config.model.keep_layers is not None:
        backbone = source.keep_layers(backbone, config.model.keep_layers)
    model = tasks.TaskModel(backbone, task, dropout=config.model.dropout, pooling=config.model.pooling)
    task.load_head(model, source)
    fast_layers.use_fast_layers(model)
    groups = source.layer_groups(backbone)
    freeze(
        backbone, groups, config.model.freeze_layers, config.model.freeze_embeddings,
        freeze_pooler=not reads_pooler(config, task),
    )
    if config.model.lora_rank:
        lora.enable(backbone, groups, config.model)
    if reads_pooler(config, task) and first_token.compute_first_token_only(groups):
        logger.info("The top encoder block computes the first token only: the head reads `pooled_output` alone.")
    return model


def reads_pooler(config: Config, task: tasks.Task) -> bool:
    """Whether the task's head reads the backbone's pooler (else the pooler stays frozen)."""
    return task.uses_pooled_output and config.model.pooling != "mean"


def load_trained(config: Config) -> Trained:
    """Rebuilds the model a run trained, from `config.output_dir`."""
    output_dir = pathlib.Path(config.output_dir)
    weights = output_dir / run_dir.WEIGHTS_FILE
    if not weights.is_file():
        raise OutputDirError(f"`{weights}` does not exist: train first (`tfft train --config=...`).")
    task = tasks.create(config)
    task.load_vocabulary(output_dir)
    source = backbones.resolve(config.model)
    source.prepare(None, output_dir)
    packer = source.packer()
    model = build_model(config, source, task)
    model.load_weights(weights)
    return Trained(model, packer, task)
