"""Several trained runs of one task served as one model: raw text in, the task's usual outputs out.

`tfft cv --ensemble` builds one from its fold runs. The members run side by
side on the same packed inputs and `Task.combine_logits` merges their logits,
so that the task's own `postprocess` gives the mean of the members' outputs
(probabilities for classification, multi-label, NER and masked-LM; scores for
regression; start and end logits for extractive QA). The export is a
SavedModel like any run's (`tfft.export`), with a LiteRT file where the task
has one: `tfft predict` and TF Serving use it as they use any export.

```python
trained = ensemble.load([fold_config_0, fold_config_1, fold_config_2])
ensemble.export(trained, base_config)  # <export.base_dir>/<name>_ensemble/<version>
```
"""

from __future__ import annotations

import copy
import logging

import keras
import tensorflow as tf

from tfft.config import Config
from tfft.errors import ConfigError
from tfft.model import Trained, load_trained

logger = logging.getLogger(__name__)

__all__ = ["Ensemble", "load", "join", "export", "PROBE_TEXTS"]

#: Texts every member's packer must turn into the same ids: members share the ensemble's one tokenizer.
PROBE_TEXTS = ["The film was fine, if a little long.", "Ünïcödé, CJK 漢字 and emoji 🙂", "a " * 300, ""]


class Ensemble(keras.Model):
    """The members' logits, combined by the task (`Task.combine_logits`), from one set of packed inputs.

    Args:
        members: list of `tfft.tasks.TaskModel`. Trained for the same task, with the same tokenizer.
        task: `tfft.tasks.Task`. Combines the logits.
    """

    def __init__(self, members: list[keras.Model], task, **kwargs):
        super().__init__(**kwargs)
        self.members = members
        self.task = task

    def call(self, features, training=False):
        del training  # an ensemble only predicts
        return self.task.combine_logits([tf.cast(m(features, training=False), tf.float32) for m in self.members])


def load(configs: list[Config]) -> Trained:
    """The runs of `configs` rebuilt and joined (`join`)."""
    return join([load_trained(config) for config in configs], [config.output_dir for config in configs])


def join(runs: list[Trained], names: list[str]) -> Trained:
    """Trained runs as one ensemble; runs that disagree on labels or tokenizer are refused, naming them (`names`)."""
    first = runs[0]
    for name, run in zip(names[1:], runs[1:], strict=True):
        if run.task.label_names != first.task.label_names:
            raise ConfigError(f"Run `{name}` has other labels than `{names[0]}` ({run.task.label_names} against "
                              f"{first.task.label_names}): an ensemble needs one label set. Use more rows per "
                              "fold, or fewer folds.")
        if not _same_ids(run.packer, first.packer):
            raise ConfigError(f"Run `{name}` tokenizes differently from `{names[0]}` (a vocabulary learned per "
                              "run, as `tiny-bert` learns one): an ensemble serves one tokenizer. Use a pretrained "
                              "backbone (a preset or a checkpoint folder).")
    return Trained(Ensemble([run.model for run in runs], first.task), first.packer, first.task)


def _same_ids(packer, other) -> bool:
    texts = tf.constant(PROBE_TEXTS)
    mine, theirs = packer(texts), other(texts)
    return all(bool(tf.reduce_all(mine[name] == theirs[name])) for name in mine)


def export(trained: Trained, config: Config) -> str:
    """Exports the ensemble as `<export.base_dir>/<name>_ensemble/<next version>` (and LiteRT where asked)."""
    from tfft import export as export_lib

    named = copy.deepcopy(config)
    named.name = f"{config.name}_ensemble"
    path = export_lib.export_model(trained.model, trained.packer, trained.task, named)
    logger.info("Exported the ensemble of %d runs: %s", len(trained.model.members), path)
    return str(path)
