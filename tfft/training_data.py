"""The training split as one object, whether read into memory or streamed from files.

`train` reads the training data through `read_training_data` and never asks
which kind it has: both kinds give the task its labels, the backbone its
sample of texts, the run its epoch length and its `tf.data` pipeline.

| | `InMemory` | `Streamed` (`tfft.streaming`) |
|---|---|---|
| read | every row, by `Task.read` | one checked pre-pass (`streaming.scan`), cached in the run folder |
| epoch length | `Task.prepare` (QA: context windows) | the pre-pass's row count |
| truncation | counted and logged | not counted (the rows are not held) |
| pipeline | `tfft.data.make_dataset` | `tfft.streaming.stream_dataset` |
| `distill.unlabeled` (`add_unlabeled`) | read, labelled by the teacher, joined | streamed beside, labelled in the step |

Example:

```python
train_data = read_training_data(task, config)
task.fit_vocabulary(train_data.labelled)
train_data.prepare(packer)
ds = train_data.dataset(packer, tfft.data.Batching(32), seed=0, epochs=3)
```
"""

from __future__ import annotations

import abc
import functools
import pathlib

import tensorflow as tf

from tfft import data, folds, streaming
from tfft.config import Config
from tfft.errors import ConfigError

__all__ = ["TrainingData", "InMemory", "Streamed", "read_training_data"]


class TrainingData(abc.ABC):
    """The training split of a run. See the module docstring.

    Args:
        task: `tfft.tasks.Task`. Reads, checks and packs the rows.
        config: `tfft.config.Config`.
    """

    def __init__(self, task, config: Config):
        self.task, self.config = task, config

    @property
    @abc.abstractmethod
    def labelled(self) -> data.Examples:
        """What `Task.fit_vocabulary` learns the labels from."""

    @abc.abstractmethod
    def sample_texts(self) -> list[str]:
        """Every text field the task reads (pairs and QA contexts too), for a backbone that learns its vocabulary."""

    @abc.abstractmethod
    def prepare(self, packer):
        """Makes the split ready for `packer`; returns its truncation stats, or None where they are not counted."""

    @property
    @abc.abstractmethod
    def elements(self) -> int:
        """Model inputs per epoch (after `prepare`)."""

    @abc.abstractmethod
    def dataset(self, packer, batching: data.Batching, *, seed: int, epochs: int, workers: int = 1) -> tf.data.Dataset:
        """The training batches of `epochs` epochs, each in the order its seed gives, repeated."""

    @abc.abstractmethod
    def describe(self) -> str:
        """How many examples, from where: for the log."""

    @abc.abstractmethod
    def add_unlabeled(self, spec: str, label_rows) -> None:
        """Adds the rows of the files `spec` names (`distill.unlabeled`: texts without labels), before `prepare`.

        A split held in memory reads them and adds `label_rows(rows)`, the
        rows with a teacher's labels. A streamed split streams them beside
        its own, each marked (`streaming.UNLABELED`), for the teacher to
        label in the training step; it never calls `label_rows`.
        """

    #: Whether `attach` can add features to every element (the elements are held in memory).
    can_attach = False

    def attach(self, transform) -> None:
        """Adds features to every packed element before shuffling, where `can_attach` (see `data.make_dataset`).

        `transform` maps the dataset of packed elements, in row order, to the
        same elements with more features (a teacher's outputs, computed once).
        """
        del transform
        raise NotImplementedError(f"{type(self).__name__} holds no elements to attach features to")

    def class_weight(self) -> dict[int, float] | None:
        """Keras' `class_weight` (`train.class_weight`), where the data are held."""
        return None

    def save(self, output_dir: pathlib.Path) -> None:
        """Writes what a resumed run reuses (the chief's `RunFolder.start` calls it)."""
        del output_dir

    def scores(self) -> dict:
        """Entries for `metrics.json`."""
        return {}


class InMemory(TrainingData):
    """Every training row read into memory by `Task.read`."""

    def __init__(self, task, config: Config):
        super().__init__(task, config)
        self.examples = folds.train_part(task, task.read(config.data.train, split="train"), config.data.split)
        self.split: data.PreparedSplit | None = None
        self._targets = None
        self._transform = None

    @property
    def labelled(self):
        return self.examples

    @property
    def targets(self):
        """The task's encoded targets, once the vocabulary is fitted."""
        if self._targets is None:
            self._targets = self.task.encode(self.examples)
        return self._targets

    def sample_texts(self):
        return self.examples.texts + (self.examples.pairs or [])  # pairs: the second sentence, QA's contexts

    def prepare(self, packer):
        self.split = self.task.prepare(self.examples, packer)
        return self.split.truncation

    @property
    def elements(self):
        return self.split.elements

    def dataset(self, packer, batching, *, seed, epochs, workers=1):
        del workers  # in memory: tf.distribute shards by element
        return data.make_dataset(
            self.examples, self.targets, packer, task=self.task, elements=self.elements, batching=batching,
            training=True, seed=seed, shuffle_buffer=self.config.data.shuffle_buffer, repeat=True, epochs=epochs,
            transform=self._transform,
        )

    can_attach = True

    def attach(self, transform) -> None:
        self._transform = transform

    def describe(self):
        return f"{len(self.examples)} training examples"

    def add_unlabeled(self, spec, label_rows):
        files = streaming.expand_files(spec, key="distill.unlabeled")
        rows = functools.reduce(data.Examples.plus, (self.task.read(f, split="unlabeled", labelled=False) for f in files))
        self.examples = self.examples.plus(label_rows(rows))
        self._targets = None

    def class_weight(self):
        return self.task.class_weight(self.targets)


class Streamed(TrainingData):
    """Training files streamed through `tf.data`, after one checked pre-pass (`tfft.streaming`).

    Args:
        files: list of str. The training files.
        cache_dir: path or None. The run folder of an unfinished run, whose cached pre-pass is reused.
    """

    def __init__(self, task, config: Config, files: list[str], cache_dir: pathlib.Path | None = None):
        super().__init__(task, config)
        streaming.check_streamable(task, config)
        self.cache_dir = cache_dir
        self.scanned = streaming.scan(files, task, config.data, cache_dir=cache_dir)
        self.files = [f for f in files if self.scanned.files.get(f)]  # files with no rows are skipped (logged)
        self.unlabeled, self.unlabeled_files = None, []

    @property
    def labelled(self):
        return data.Examples(self.config.data.train, [], labels=self.scanned.labels)

    def sample_texts(self):
        return streaming.sample_texts(self.files, self.config.data)

    def prepare(self, packer):
        del packer
        return None

    @property
    def elements(self):
        return self.scanned.rows + (self.unlabeled.rows if self.unlabeled else 0)

    def dataset(self, packer, batching, *, seed, epochs, workers=1):
        share = self.unlabeled.rows / self.elements if self.unlabeled else 0.0
        return streaming.stream_dataset(
            self.files, self.task, packer, self.config.data, batching, seed=seed, epochs=epochs, workers=workers,
            unlabeled=self.unlabeled_files, unlabeled_share=share,
        )

    def add_unlabeled(self, spec, label_rows):
        del label_rows  # the teacher labels these rows in the training step
        files = streaming.expand_files(spec, key="distill.unlabeled")
        self.unlabeled = streaming.scan(files, self.task, self.config.data, cache_dir=self.cache_dir, labelled=False)
        self.unlabeled_files = [f for f in files if self.unlabeled.files.get(f)]

    def describe(self):
        extra = f" and {self.unlabeled.rows} unlabeled from {len(self.unlabeled_files)}" if self.unlabeled else ""
        return f"{self.scanned.rows} training examples streamed from {len(self.files)} file(s){extra}"

    def save(self, output_dir):
        streaming.save_scan(self.scanned, output_dir)
        if self.unlabeled:
            streaming.save_scan(self.unlabeled, output_dir, streaming.UNLABELED_SCAN_FILE)

    def scores(self):
        s = self.scanned
        scores = {"files": len(self.files), "rows": s.rows, "skipped_rows": s.skipped}
        if self.unlabeled:
            scores.update(unlabeled_rows=self.unlabeled.rows, skipped_unlabeled_rows=self.unlabeled.skipped)
        return {"training_data": scores}


def read_training_data(task, config: Config, cache_dir: pathlib.Path | None = None) -> TrainingData:
    """The training split of `config.data.train`: streamed when `data.streaming` says so, else read into memory.

    Args:
        task: `tfft.tasks.Task`.
        config: `tfft.config.Config`.
        cache_dir: path or None. An unfinished run's folder: a streamed pre-pass cached there is reused.
    """
    files = streaming.training_files(config.data)
    if files is None:
        return InMemory(task, config)
    if config.data.split.active:
        raise ConfigError(f"Argument `data.split` holds out rows of the training split, which needs it in memory; "
                          f"set `data.streaming=false`. Received: data.streaming={config.data.streaming!r}")
    return Streamed(task, config, files, cache_dir)
