"""An export as the teacher of `tfft distill` (`distill.teacher: saved_models/name/3`).

A SavedModel version folder that `tfft export` (or `tfft cv --ensemble`)
wrote holds no Keras model to build, only its signature: raw text in, the
task's outputs out (`tfft.export`). It teaches through those outputs:

- **Computed once.** Before training the export answers every training row,
  in batches of `BATCH_SIZE` sorted by length, and the task turns its outputs back into logits
  (`Task.logits_from_outputs`: a classifier's log-probabilities, which a
  softmax at any temperature reads as its logits). They ride with each
  element (`tfft.teacher_cache.attach_logits`): the training step never runs
  the export. A streamed training split is refused, before any work.
- **Tasks** with one output per row: classification, multi-label,
  regression. NER's and QA's soft targets are per token of the student's own
  packing; distil those from the run folder.
- **Any tokenizer.** The export tokenizes the texts itself, so the student
  may be any backbone; it starts from its own pretrained weights (an export
  has no Keras layers to copy).
- **Checked** from `assets/tfft_task.json` before any work: the task type,
  the inputs (a pair model for pair data), then the labels.

```python
teacher = ExportTeacher(config)  # config.distill.teacher: the version folder
outputs = teacher.outputs(packer, rows)  # the task's outputs, as `tfft predict` gets them
```
"""

from __future__ import annotations

import logging
import pathlib
import time

import numpy as np

from tfft import data, predict, progress, streaming, tasks, teacher_cache
from tfft.config import Config, check
from tfft.predict import SAVED_MODEL_FILE

__all__ = ["BATCH_SIZE", "is_export", "ExportTeacher"]

logger = logging.getLogger(__name__)

#: Rows per call of the export.
BATCH_SIZE = 64


def is_export(spec: str) -> bool:
    """Whether `spec` is a SavedModel folder (a `tfft export` version folder) rather than a run folder."""
    return bool(spec) and (pathlib.Path(spec) / SAVED_MODEL_FILE).is_file()


class ExportTeacher:
    """The export `distill.teacher` names, checked against the student's config.

    Args:
        config: `tfft.config.Config`. The student's.

    Raises:
        ConfigError: another task type, a task with outputs per token,
            inputs that are not the student's (pairs), or a streamed
            training split.
    """

    #: A SavedModel: no Keras layers whose hidden states a student could match (`distill.hidden_weight`).
    has_layers = False

    def __init__(self, config: Config):
        self.folder = config.distill.teacher
        self.metadata = predict.load_metadata(self.folder)
        self.task = None  # the student's task, once its labels are known: the teacher's own type and labels
        self._serve = None
        spec, kind = self.folder, self.metadata["type"]
        check(kind == config.task.type, "distill.teacher", spec,
              f"must be an export of this config's task type, `{config.task.type}`; it is a `{kind}` model")
        reason = tasks.TASKS[kind].pseudo_labels_unsupported
        check(reason is None, "distill.teacher", spec,
              f"must be a run folder for a `{kind}` task: an export teaches only tasks with one output per row "
              f"(classification, multi-label, regression), and {reason}")
        pairs, student_pairs = "text_pair" in self.metadata["inputs"], bool(config.data.text_pair_column)
        check(pairs == student_pairs, "distill.teacher", spec,
              f"must take the inputs this run's data have: it was trained on {'pairs' if pairs else 'single texts'}, "
              f"and `data.text_pair_column` is {config.data.text_pair_column or 'empty'}")
        check(streaming.training_files(config.data) is None, "distill.teacher", spec,
              "is an export, whose outputs are computed once before training for a training split held in memory, "
              "and this one is streamed: set `data.streaming=false`, or name the teacher's run folder")

    def check_student(self, config: Config, task: tasks.Task, packer) -> None:
        """Refuses an export with other labels than the student's data."""
        del packer  # the export tokenizes the texts itself
        labels = self.metadata.get("labels")
        check(list(labels or []) == list(task.label_names or []), "distill.teacher", self.folder,
              f"must be an export with this run's labels: its labels are {labels}; this run's data have "
              f"{task.label_names}")
        self.task = task

    def caches(self, config: Config, train_data) -> bool:
        """Always: the training step cannot run an export on packed token ids."""
        del config, train_data
        return True

    def attach(self, config: Config, ds, train_data, known=None):
        """The packed training elements `ds` with the export's logits on their rows, computed now.

        `known`: the logits of the last rows, computed already (the labelled
        `distill.unlabeled` rows), or None.
        """
        del config
        rows = train_data.labelled
        if train_data.elements != len(rows):
            raise ValueError(f"{train_data.elements} training elements for {len(rows)} rows: an export's outputs "
                             "are per row, and this task packs rows into other elements")
        started = time.time()
        fresh = rows.head(len(rows) - (len(known) if known is not None else 0))
        logits = self.task.logits_from_outputs(self.outputs(None, fresh))[:, np.newaxis, :]
        if known is not None:
            logits = np.concatenate([logits, known])
        logger.info("The export's outputs on the %d training rows were computed once (%.1f s); the training steps "
                    "read them.", len(fresh), time.time() - started)
        return teacher_cache.attach_logits(ds, logits)

    def outputs(self, packer, rows: data.Examples) -> dict:
        """The export's outputs on `rows`, in their order, as `tfft predict` reads them.

        The rows go to the export shortest first (`data.length_order`), so
        that each batch, which it pads to its longest, pads little. `packer` is unused:
        the export tokenizes for itself.
        """
        del packer
        columns = self.task.inputs(rows)
        inputs = {name: columns[name] for name in self.metadata["inputs"]}
        order = data.length_order(*inputs.values())
        serve = self.serving()
        bar, batches = progress.progress_bar(len(rows), "example"), []
        for start in range(0, len(rows), BATCH_SIZE):
            chosen = order[start : start + BATCH_SIZE]
            batches.append(serve({name: [values[i] for i in chosen] for name, values in inputs.items()}))
            if bar is not None:
                bar.add(len(chosen))
        outputs = self.task.collect(batches)
        return data.restore_order(outputs, order)

    def serving(self):
        if self._serve is None:
            self._serve = predict.serving_function(pathlib.Path(self.folder), litert_file=False)
        return self._serve

    def built(self, config: Config, student) -> None:
        """The student keeps its own start: returns None, as the training step runs no teacher."""
        del student
        logger.info("The student (`%s`) starts from its own pretrained weights: the teacher is an export, `%s`.",
                    config.model.backbone, self.folder)
