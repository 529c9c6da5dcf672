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

from tfft import backbones, distribute, evaluate, tasks, train
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
    """Scores the held-out split before the first training step (not on a resumed run), with the run's own packer.

    Args:
        task: `tfft.tasks.MaskedLM`.
        examples: `tfft.data.Examples`. The held-out split.
        packer: `TextPacker`. The run's.
        batch_size: int.
        path: `pathlib.Path`. `ADAPT_FILE` in this worker's run folder: the
            chief writes the scores there.
    """

    def __init__(self, task, examples, packer, batch_size: int, path: pathlib.Path):
        super().__init__()
        self.task, self.examples, self.packer, self.batch_size, self.path = task, examples, packer, batch_size, path

    def on_train_begin(self, logs=None):
        if int(self.model.optimizer.iterations.numpy()) > 0:
            return
        outputs = evaluate.predict_outputs(self.task, self.model, self.packer, self.examples, self.batch_size)
        scores = self.task.score(self.examples, outputs)
        logger.info("Held-out perplexity before adaptation: %.3f (masked accuracy %.4f)", scores["perplexity"],
                    scores["masked_accuracy"])
        if distribute.is_chief(self.model.distribute_strategy):  # the run folder is the chief's
            self.path.write_text(json.dumps({"perplexity_before": scores["perplexity"],
                                             "masked_accuracy_before": scores["masked_accuracy"]}) + "\n")


class Adaptation(train.RunHooks):
    """The `RunHooks` of `tfft adapt`: perplexity before the first step, and the backbone folder after the last."""

    #: Held-out perplexity before and after, once the run is finished (None without `data.validation`).
    before = after = None

    def callbacks(self, config: Config, task, inputs: train.Inputs, output_dir: pathlib.Path) -> list:
        if inputs.validation is None:
            return []
        return [PerplexityBefore(task, inputs.validation, inputs.packer, config.train.batch_size,
                                 output_dir / ADAPT_FILE)]

    def finished(self, config: Config, result: train.TrainResult) -> None:
        """Writes the backbone folder and `ADAPT_FILE`, before the run is marked complete."""
        output_dir = pathlib.Path(result.output_dir)
        folder = output_dir / BACKBONE_DIR
        backbones.save_preset(result.model.backbone, result.packer, folder,
                              head_weights=tasks.MaskedLM.head_weights(result.model))
        summary = json.loads((output_dir / ADAPT_FILE).read_text()) if (output_dir / ADAPT_FILE).is_file() else {}
        if result.metrics is not None:
            self.before, self.after = summary.get("perplexity_before"), result.metrics["perplexity"]
            summary.update(perplexity_after=self.after, masked_accuracy_after=result.metrics["masked_accuracy"])
            result.metrics.update(perplexity_before=self.before)
            evaluate.write_metrics(result.metrics, output_dir)
        summary["backbone"] = str(folder)
        (output_dir / ADAPT_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        logger.info("Adapted backbone written to %s. Fine-tune it with `model.backbone: %s`.", folder, folder)


def run(config: Config) -> AdaptResult:
    """Adapts `config.model.backbone` to the text in `config.data.train` (`task.type: masked_lm`).

    Args:
        config: `tfft.config.Config` with `task.type: masked_lm`.

    Returns:
        An `AdaptResult`. On a multi-worker run's other workers, its
        perplexities are None and `backbone_dir` is the chief's folder.
    """
    if config.task.type != "masked_lm":
        raise ConfigError(
            f"Argument `task.type` must be `masked_lm` for `tfft adapt`. Received: type={config.task.type!r}"
        )
    config.validate()
    if not config.data.validation:
        logger.warning("No `data.validation`: held-out perplexity is not measured before and after adaptation.")
    hooks = Adaptation()
    result = train.run(config, hooks=hooks)
    return AdaptResult(str(pathlib.Path(config.output_dir) / BACKBONE_DIR), hooks.before, hooks.after, result)
