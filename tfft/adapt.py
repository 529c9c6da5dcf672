"""`tfft.adapt.run(config)` (`tfft adapt`): domain-adaptive masked-LM pretraining that writes a new backbone folder.

It trains `task.type: masked_lm` (`tfft.tasks.masked_lm`) on the unlabelled
text in `data.train` with the same loop as `tfft train` (schedule, clipping,
backups and resume), measures the perplexity of `data.validation` before the
first step and after the last on the same masks, and writes the adapted
backbone as a keras-hub preset folder, `<output_dir>/backbone`, with its
tokenizer and masked-LM head. Fine-tune on it by setting `model.backbone` to
that folder.

```python
config = tfft.config.load_config("configs/sst2_adapt.yaml")
result = tfft.adapt.run(config)
print(result.perplexity_before, result.perplexity_after, result.backbone_dir)
```
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib

import keras

from tfft import backbones, distribute, evaluate, train
from tfft.config import Config, ConfigError
from tfft.run_dir import BACKBONE_DIR

logger = logging.getLogger(__name__)

#: Perplexity before and after, under `output_dir`.
ADAPT_FILE = "adapt.json"


@dataclasses.dataclass
class AdaptResult:
    """What `run` returns.

    Args:
        backbone_dir: str. The adapted backbone's preset folder.
        perplexity_before: float or None. Held-out perplexity of the starting
            backbone (None without `data.validation`).
        perplexity_after: float or None. The same after adaptation.
        train: `tfft.train.TrainResult`. The masked-LM run.
    """

    backbone_dir: str
    perplexity_before: float | None
    perplexity_after: float | None
    train: train.TrainResult


class PerplexityBefore(keras.callbacks.Callback):
    """Scores the held-out split before the first training step (not on a resumed run)."""

    def __init__(self, config: Config, task, examples, output_dir: pathlib.Path):
        super().__init__()
        self.config, self.task, self.examples, self.path = config, task, examples, output_dir / ADAPT_FILE

    def on_train_begin(self, logs=None):
        if self.path.is_file() or int(self.model.optimizer.iterations.numpy()) > 0:
            return
        source = backbones.resolve(self.config.model)  # the run's packer, rebuilt from its saved state
        source.prepare(None, self.path.parent)
        outputs = evaluate.predict_outputs(self.task, self.model, source.packer(), self.examples,
                                           self.config.train.batch_size)
        scores = self.task.score(self.examples, outputs)
        logger.info("Held-out perplexity before adaptation: %.3f (masked accuracy %.4f)", scores["perplexity"],
                    scores["masked_accuracy"])
        if distribute.is_chief(self.model.distribute_strategy):  # the run folder is the chief's
            self.path.write_text(json.dumps({"perplexity_before": scores["perplexity"],
                                             "masked_accuracy_before": scores["masked_accuracy"]}) + "\n")


def run(config: Config) -> AdaptResult:
    """Adapts `config.model.backbone` to the text in `config.data.train` (`task.type: masked_lm`).

    Args:
        config: `tfft.config.Config` with `task.type: masked_lm`.

    Returns:
        An `AdaptResult`.
    """
    if config.task.type != "masked_lm":
        raise ConfigError(
            f"Argument `task.type` must be `masked_lm` for `tfft adapt`. Received: type={config.task.type!r}"
        )
    config.validate()
    from tfft import tasks

    output_dir = pathlib.Path(config.output_dir)
    callbacks = []
    if config.data.validation:
        task = tasks.create(config)
        callbacks.append(PerplexityBefore(config, task, task.read(config.data.validation, split="validation"),
                                          output_dir))
    else:
        logger.warning("No `data.validation`: held-out perplexity is not measured before and after adaptation.")
    result = train.run(config, callbacks=callbacks)

    folder = output_dir / BACKBONE_DIR
    if not result.chief:  # a multi-worker run's other workers: the chief writes the folder and the summary
        return AdaptResult(str(folder), None, None, result)
    backbones.save_preset(result.model.backbone, result.packer, folder,
                          head_weights=tasks.MaskedLM.head_weights(result.model))
    before = after = None
    summary = json.loads((output_dir / ADAPT_FILE).read_text()) if (output_dir / ADAPT_FILE).is_file() else {}
    if result.metrics is not None:
        before, after = summary.get("perplexity_before"), result.metrics["perplexity"]
        summary.update(perplexity_after=after, masked_accuracy_after=result.metrics["masked_accuracy"])
        result.metrics.update(perplexity_before=before)
        evaluate.write_metrics(result.metrics, output_dir)
    summary["backbone"] = str(folder)
    (output_dir / ADAPT_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    logger.info("Adapted backbone written to %s. Fine-tune it with `model.backbone: %s`.", folder, folder)
    return AdaptResult(str(folder), before, after, result)

