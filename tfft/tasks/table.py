"""The base of the tasks that read one example per table row: classification, regression, multi-label."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import ClassVar

import tensorflow as tf

from tfft import data
from tfft.tasks.base import Task, dense_head


@dataclasses.dataclass(frozen=True)
class StreamTargets:
    """How a task reads the targets of a streamed row, in the graph.

    Args:
        columns: list of str. The label columns a row needs.
        targets: callable. `{column: string scalar}` -> the targets `encode` gives that row.
        valid: callable. `{column: string scalar}` -> bool scalar: the row passes the
            pre-pass's checks (rows it skipped are dropped from the stream too).
    """

    columns: list[str]
    targets: Callable
    valid: Callable


class TableTask(Task):
    """A task whose examples are the rows of a table (`.csv`, `.tsv`, `.jsonl`, TFDS or streamed files).

    Reading a file, checking its texts, limiting the training split, the
    streamed pre-pass's chunks and the dense head on the pooled output are
    the same for every such task. A subclass says which columns hold its
    targets (`target_columns`), how their cells become targets
    (`read_targets`, failing with the rows it cannot read), how many
    logits its head has (`num_outputs`) and how a streamed row's cells
    become targets in the graph (`stream_targets`).
    """

    stream_unsupported: ClassVar[str | None] = None
    pseudo_labels_unsupported: ClassVar[str | None] = None  # each table task defines `pseudo_labels`

    def target_columns(self) -> list[tuple[str, str]]:
        """`(config key, column)` of each column the targets are read from; errors name the key."""
        return [("label_column", self.config.data.label_column)]

    @abc.abstractmethod
    def read_targets(self, frame, examples: data.Examples) -> list:
        """The targets of a frame's rows, one per row; a cell that cannot be read fails naming its row."""

    @property
    @abc.abstractmethod
    def num_outputs(self) -> int:
        """The head's logits per example."""

    def read(self, spec, split="train", labelled=True):
        dc = self.config.data
        columns = [column for _, column in self.target_columns()] if labelled else []
        frame = data.read_frame(spec, dc, split, columns)
        return data.limit_train_examples(self.examples_from_frame(frame, spec, labelled), dc, split)

    def examples_from_frame(self, frame, source: str, labelled: bool = True, first_line: int | None = None):
        """The checked examples of one table's rows (a whole file, or a streamed file's chunk).

        `first_line` is the file line of the frame's first row: errors then name lines, not rows.
        """
        dc = self.config.data
        for key, column in self.target_columns() if labelled else []:
            data.require_columns(frame, source, dc, {key: column})
        texts, pairs = data.text_columns(frame, source, dc, first_line)
        examples = data.Examples(source, texts, pairs, lines=data.line_numbers(len(texts), first_line))
        if labelled:
            examples.labels = self.read_targets(frame, examples)
        return examples

    @abc.abstractmethod
    def stream_targets(self) -> StreamTargets:
        """How streamed rows become targets, in the graph, read as `read_targets` reads them.

        Built eagerly, after the vocabulary: lookup tables live outside the dataset's functions.
        """

    def check_stream_rows(self, frame, examples: data.Examples) -> None:
        """Fails with a `DataError` naming the rows of a checked chunk that `stream_targets` cannot read.

        The pre-pass calls it after `examples_from_frame`, so such rows fail (or are skipped) before training.
        """
        del frame, examples

    def head(self, backbone_outputs, dropout, backbone):
        del backbone
        return dense_head(backbone_outputs["pooled_output"], self.num_outputs, dropout)


def id_table(keys: list[str]) -> tf.lookup.StaticHashTable:
    """Each of `keys` -> its position (int32), anything else -> -1: streamed label cells become ids by it.

    Built eagerly (in `Task.stream_targets`): a lookup table lives outside the dataset's functions.
    """
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(keys), tf.range(len(keys), dtype=tf.int32)), default_value=-1
    )
