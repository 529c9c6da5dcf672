"""Labelled text: reading, checking, label vocabularies and `tf.data` pipelines.

Files are read with pandas (`.csv`, `.tsv`, `.jsonl`), TFDS data sets by name
(`tfds:glue/sst2:train`). Every row is checked before training starts: a bad
row fails with the file, the row number and the fix, instead of failing an
hour into `fit`.

The pipeline tokenizes in the TF graph with the backbone's packer, caches the
packed examples, shuffles, groups examples of similar length into batches and
cuts each batch's padding to its longest sequence.

Example:

```python
train = read_split(config.data.train, config.data, split="train")
labels = LabelVocabulary.from_labels(train.labels)
ds = make_dataset(train, labels.encode(train), packer, batch_size=32, training=True)
```
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import logging
import math
import pathlib

import numpy as np
import pandas as pd
import tensorflow as tf

from tfft.config import DataConfig

logger = logging.getLogger(__name__)

TFDS_PREFIX = "tfds:"
_MAX_ROWS_IN_ERROR = 5


class DataError(ValueError):
    """A data file or row is unusable. The message names the file, row and fix."""


@dataclasses.dataclass
class Examples:
    """The texts and labels of one split.

    Args:
        source: str. The file or TFDS spec the examples came from.
        texts: list of str. The first (or only) text of each example.
        pairs: list of str or None. The second text, for sentence-pair tasks.
        labels: list of str or None. Labels as strings; None when unlabelled.
    """

    source: str
    texts: list[str]
    pairs: list[str] | None = None
    labels: list[str] | None = None

    def __len__(self) -> int:
        return len(self.texts)


# --- Reading ----------------------------------------------------------------


def read_split(spec: str, data: DataConfig, split: str = "train", labelled: bool = True) -> Examples:
    """Reads and checks one split.

    Args:
        spec: str. A `.csv`, `.tsv`, `.jsonl`/`.json` path or `tfds:NAME[:SPLIT]`.
        data: `DataConfig`. Column names and reading options.
        split: str. The TFDS split when `spec` names none; also used in logs.
        labelled: bool. Whether the label column is required.

    Returns:
        `Examples`, with every text non-empty and every label present.
    """
    if spec.startswith(TFDS_PREFIX):
        examples = _read_tfds(spec, data, split, labelled)
    else:
        frame = read_table(spec, has_header=data.has_header)
        examples = _examples_from_frame(frame, spec, data, labelled)
    if split == "train" and data.max_train_examples and len(examples) > data.max_train_examples:
        n = data.max_train_examples
        logger.info("Using the first %d of %d training examples (data.max_train_examples).", n, len(examples))
        examples = Examples(
            examples.source,
            examples.texts[:n],
            examples.pairs[:n] if examples.pairs is not None else None,
            examples.labels[:n] if examples.labels is not None else None,
        )
    return examples


def read_table(path: str | pathlib.Path, has_header: bool = True) -> pd.DataFrame:
    """Reads a `.csv`, `.tsv` or `.jsonl` file into a frame of strings.

    Every cell stays a string (no `NA` guessing), a UTF-8 byte-order mark is
    accepted, and bytes that are not UTF-8 fail with the line that holds them.
    Without a header, columns are named by position: `"0"`, `"1"`, ...
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(f"Data file `{path}` does not exist. Check the path in `data.train` / `data.validation`.")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".jsonl", ".json"):
        raise DataError(
            f"Data file `{path}` has an unsupported extension `{suffix}`. "
            "Use .csv, .tsv, .jsonl, or `tfds:NAME[:SPLIT]` for a TFDS data set."
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        bad = raw[err.start : err.end + 2]
        raise DataError(
            f"Data file `{path}` is not valid UTF-8: line {line}, column {column} holds the bytes {bad!r}. "
            "Re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`)."
        ) from None
    if not text.strip():
        raise DataError(f"Data file `{path}` is empty: it has no rows.")
    if suffix in (".jsonl", ".json"):
        frame = _read_jsonl(text, path)
    else:
        frame = pd.read_csv(
            io.StringIO(text),
            sep="\t" if suffix == ".tsv" else ",",
            header=0 if has_header else None,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            # GLUE tsvs hold stray `"` that are part of the text.
            quoting=csv.QUOTE_NONE if suffix == ".tsv" else csv.QUOTE_MINIMAL,
        )
        frame.columns = [str(c) for c in frame.columns]
    if frame.empty:
        raise DataError(f"Data file `{path}` has a header but no rows.")
    return frame


def _read_jsonl(text: str, path: pathlib.Path) -> pd.DataFrame:
    records = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"Data file `{path}`, line {line_number}: not a JSON object ({err.msg}).") from None
        if not isinstance(record, dict):
            raise DataError(f"Data file `{path}`, line {line_number}: expected a JSON object, got {type(record).__name__}.")
        records.append({k: "" if v is None else str(v) for k, v in record.items()})
    return pd.DataFrame.from_records(records).fillna("")


def _examples_from_frame(frame: pd.DataFrame, source: str, data: DataConfig, labelled: bool) -> Examples:
    columns = {"text_column": data.text_column}
    if data.text_pair_column:
        columns["text_pair_column"] = data.text_pair_column
    if labelled:
        columns["label_column"] = data.label_column
    for key, column in columns.items():
        if column not in frame.columns:
            raise DataError(
                f"Data file `{source}` has no column `{column}`. Its columns are: "
                f"{', '.join(frame.columns)}. Set `data.{key}` to one of them"
                + ("" if data.has_header else " (header-less files name columns by position)")
                + "."
            )
    texts = _checked_column(frame, data.text_column, source, "text")
    pairs = _checked_column(frame, data.text_pair_column, source, "text") if data.text_pair_column else None
    labels = _checked_column(frame, data.label_column, source, "label") if labelled else None
    return Examples(source, texts, pairs, labels)


def _checked_column(frame: pd.DataFrame, column: str, source: str, what: str) -> list[str]:
    values = [str(v) for v in frame[column].tolist()]
    if what == "label":
        values = [v.strip() for v in values]
    empty = [i for i, v in enumerate(values) if not v.strip()]
    if empty:
        rows = ", ".join(str(i + 1) for i in empty[:_MAX_ROWS_IN_ERROR])
        more = f" and {len(empty) - _MAX_ROWS_IN_ERROR} more" if len(empty) > _MAX_ROWS_IN_ERROR else ""
        raise DataError(
            f"Data file `{source}`: the {what} column `{column}` is empty in row(s) {rows}{more} "
            f"(rows count from 1, the header not counted). Fill or remove those rows."
        )
    return values


def _read_tfds(spec: str, data: DataConfig, split: str, labelled: bool) -> Examples:
    name, _, tfds_split = spec[len(TFDS_PREFIX) :].partition(":")
    tfds_split = tfds_split or split
    import tensorflow_datasets as tfds

    try:
        ds, info = tfds.load(name, split=tfds_split, data_dir=data.tfds_data_dir, with_info=True)
    except Exception as err:  # TFDS raises many types: not found, no network, bad split.
        raise DataError(
            f"Could not load TFDS data set `{name}` split `{tfds_split}` (data_dir={data.tfds_data_dir!r}): "
            f"{type(err).__name__}: {err}. Check the name and split, or set `data.tfds_data_dir` "
            "to a folder where it is already prepared."
        ) from None
    features = info.features
    needed = [data.text_column] + ([data.text_pair_column] if data.text_pair_column else [])
    needed += [data.label_column] if labelled else []
    for column in needed:
        if column not in features:
            raise DataError(
                f"TFDS data set `{name}` has no feature `{column}`. Its features are: {', '.join(features)}."
            )
    label_names = getattr(features[data.label_column], "names", None) if labelled else None
    columns: dict[str, list[str]] = {c: [] for c in needed}
    for example in tfds.as_numpy(ds):
        for column in needed:
            value = example[column]
            if column == data.label_column:
                value = label_names[int(value)] if label_names else str(value)
            elif isinstance(value, bytes):
                value = value.decode("utf-8")
            columns[column].append(str(value))
    frame = pd.DataFrame(columns)
    if frame.empty:
        raise DataError(f"TFDS data set `{name}` split `{tfds_split}` has no rows.")
    return _examples_from_frame(frame, spec, data, labelled)


# --- Labels -----------------------------------------------------------------


class LabelVocabulary:
    """The label names of a task, in id order, taken from the training split.

    Integer labels keep numeric order (`"0", "1", "2"`), string labels sort
    alphabetically, so the same data always gives the same ids.
    """

    FILENAME = "labels.txt"

    def __init__(self, names: list[str]):
        if len(names) < 2:
            raise DataError(
                f"A classifier needs at least 2 labels; the training split has {len(names)}: {names}."
            )
        self.names = list(names)
        self._ids = {name: i for i, name in enumerate(self.names)}

    @classmethod
    def from_labels(cls, labels: list[str]) -> LabelVocabulary:
        unique = set(labels)
        try:
            names = sorted(unique, key=int)
        except ValueError:
            names = sorted(unique)
        return cls(names)

    def __len__(self) -> int:
        return len(self.names)

    def encode(self, examples: Examples) -> np.ndarray:
        """Label ids of `examples`; a label the training split lacks is an error."""
        if examples.labels is None:
            raise DataError(f"`{examples.source}` has no labels to encode.")
        unknown = [(i, label) for i, label in enumerate(examples.labels) if label not in self._ids]
        if unknown:
            shown = ", ".join(f"row {i + 1}: {label!r}" for i, label in unknown[:_MAX_ROWS_IN_ERROR])
            raise DataError(
                f"Data file `{examples.source}` has labels that the training split never had ({shown}"
                f"{', ...' if len(unknown) > _MAX_ROWS_IN_ERROR else ''}). Known labels: {self.names}. "
                "Fix those rows or add examples of the label to the training data."
            )
        return np.asarray([self._ids[label] for label in examples.labels], dtype=np.int32)

    def class_weights(self, label_ids: np.ndarray) -> dict[int, float]:
        """`balanced` weights: n_examples / (n_classes * n_examples_of_class)."""
        counts = np.bincount(label_ids, minlength=len(self))
        return {i: float(len(label_ids) / (len(self) * c)) if c else 0.0 for i, c in enumerate(counts)}

    def save(self, directory: str | pathlib.Path) -> pathlib.Path:
        path = pathlib.Path(directory) / self.FILENAME
        path.write_text("".join(name + "\n" for name in self.names), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | pathlib.Path) -> LabelVocabulary:
        path = pathlib.Path(directory) / cls.FILENAME
        if not path.is_file():
            raise DataError(f"`{path}` does not exist: is `{directory}` the output_dir of a tfft run?")
        return cls(path.read_text(encoding="utf-8").splitlines())


# --- tf.data ----------------------------------------------------------------

_TOKENIZE_BATCH = 1024


def _columns(examples: Examples) -> dict[str, list[str]]:
    columns = {"text": examples.texts}
    if examples.pairs is not None:
        columns["text_pair"] = examples.pairs
    return columns


# Training batches come from "megabatches" of this many batches: sorted by
# length, cut into batches, batch order shuffled. On SST-2 (batch 32), 16
# leaves 13% of the tokens padding (random batches: 67%); Hugging Face's
# `group_by_length` uses 50 (5% padding), which in three seeds here scored
# 0.7 points lower: the more alike a batch's lengths, the less random it is.
MEGABATCH_BATCHES = 16


def bucket_lengths(sequence_length: int) -> list[int]:
    """The padded lengths of `pad_to="buckets"`: powers of two from 16, then `sequence_length`."""
    lengths, length = [], 16
    while length < sequence_length:
        lengths.append(length)
        length *= 2
    return lengths + [sequence_length]


def make_dataset(
    examples: Examples,
    label_ids: np.ndarray | None,
    packer,
    *,
    batch_size: int,
    training: bool = False,
    seed: int = 0,
    pad_to: str = "longest",
    shuffle_buffer: int = 0,
    repeat: bool = False,
    drop_remainder: bool = False,
    epochs: int = 1,
) -> tf.data.Dataset:
    """Builds the `tf.data` pipeline of one split.

    Training batches group examples of similar length: each epoch is
    shuffled, cut into megabatches of `MEGABATCH_BATCHES` batches, each
    megabatch sorted by length and cut into batches, and the batches
    shuffled. An epoch still holds every example exactly once, in
    `steps_per_epoch` batches. Other splits keep their row order.

    Args:
        examples: `Examples`. The split.
        label_ids: np.ndarray or None. Label ids; None yields features only.
        packer: `tfft.backbones.TextPacker`. Tokenizes and packs in the graph.
        batch_size: int. Batch size (global, under a distribution strategy).
        training: bool. Shuffle, and batch examples of similar length together.
        seed: int. Shuffle seed.
        pad_to: str. `longest` (each batch to its longest sequence), `buckets`
            (to the next of `bucket_lengths`: few static shapes for TPU/XLA)
            or `max` (every batch to `sequence_length`).
        shuffle_buffer: int. Shuffle buffer size; 0 shuffles the whole split.
        repeat: bool. Repeat forever (train with `steps_per_epoch`).
        drop_remainder: bool. Drop each epoch's last partial batch (static
            batch size).
        epochs: int. Epochs of shuffled order to lay out, each with its own
            seed (training only); `repeat` continues past them.

    Returns:
        A dataset of `(features, label_ids)` or of `features`, where
        `features` holds the packer's int32 inputs, e.g. `token_ids`,
        `segment_ids` and `padding_mask`.
    """
    columns = _columns(examples)
    inputs = columns if label_ids is None else (columns, label_ids)
    ds = tf.data.Dataset.from_tensor_slices(inputs)

    def pack(*batch):
        features = batch[0]
        packed = packer(features["text"], features.get("text_pair"))
        return packed if label_ids is None else (packed, batch[1])

    ds = ds.batch(_TOKENIZE_BATCH).map(pack, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    # `unbatch` forgets the size; Keras needs it to see where an epoch ends.
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(examples))).cache()
    if training:
        # Epoch e is shuffled with seed + e, the same for every iterator. A
        # reshuffling `shuffle` gives each new iterator another order, and
        # Keras makes an extra iterator under a distribution strategy: the
        # examples' order would depend on the strategy.
        buffer = shuffle_buffer or len(examples)
        rounds = []
        for e in range(epochs):
            shuffled = ds.shuffle(buffer, seed=seed + e, reshuffle_each_iteration=False)
            if pad_to == "max":  # every batch is full width: grouping lengths gains nothing
                rounds.append(shuffled.batch(batch_size, drop_remainder=drop_remainder))
            else:
                rounds.append(_length_grouped_batches(shuffled, batch_size, drop_remainder, seed=seed + e))
        ds = functools.reduce(tf.data.Dataset.concatenate, rounds)
    else:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if repeat:
        ds = ds.repeat()
    if pad_to != "max":
        lengths = bucket_lengths(packer.sequence_length) if pad_to == "buckets" else None
        ds = ds.map(functools.partial(_trim_batch, lengths=lengths), num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    # Shard by element: the data come from memory, not from several files.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


# Elements are `features` or `(features, label_id)`: `element[0]` is the features.


def _length_grouped_batches(ds, batch_size: int, drop_remainder: bool, seed: int) -> tf.data.Dataset:
    """One epoch's batches: megabatches sorted by length, cut into batches, the batches shuffled."""

    def sort_by_length(*megabatch):
        order = tf.argsort(tf.reduce_sum(megabatch[0]["padding_mask"], axis=1), stable=True)
        return tf.nest.map_structure(lambda t: tf.gather(t, order), megabatch)

    def cut(*megabatch):
        slices = tf.data.Dataset.from_tensor_slices(megabatch if len(megabatch) > 1 else megabatch[0])
        return slices.batch(batch_size, drop_remainder=drop_remainder)

    # A megabatch is a whole number of batches: only the epoch's last one is partial.
    ds = ds.batch(batch_size * MEGABATCH_BATCHES).map(sort_by_length).flat_map(cut)
    return ds.shuffle(MEGABATCH_BATCHES, seed=seed, reshuffle_each_iteration=False)


def _trim_batch(*element, lengths: list[int] | None = None):
    """Cuts a batch's padding to its longest sequence, or to the next of `lengths`."""
    length = tf.reduce_max(tf.reduce_sum(element[0]["padding_mask"], axis=1))
    if lengths is not None:
        lengths = tf.constant(lengths, tf.int32)
        length = tf.gather(lengths, tf.searchsorted(lengths, tf.reshape(length, [1]), side="left"))[0]
    trimmed = {name: value[:, :length] for name, value in element[0].items()}
    return (trimmed, *element[1:]) if len(element) > 1 else trimmed


def steps_per_epoch(num_examples: int, batch_size: int, drop_remainder: bool = False) -> int:
    steps = num_examples // batch_size if drop_remainder else math.ceil(num_examples / batch_size)
    if steps < 1:
        raise DataError(
            f"The training split has {num_examples} examples, fewer than one batch of {batch_size}. "
            "Lower `train.batch_size` or add data."
        )
    return steps


@dataclasses.dataclass
class TruncationStats:
    """How many examples of a split the packer truncates."""

    examples: int
    truncated: int
    longest: int
    sequence_length: int

    def message(self, split: str) -> str:
        share = 100.0 * self.truncated / max(self.examples, 1)
        text = (
            f"{split}: {self.truncated:,} of {self.examples:,} examples ({share:.2f}%) are longer than "
            f"model.sequence_length={self.sequence_length} tokens and are truncated (longest: {self.longest} tokens)."
        )
        if self.truncated:
            text += " Raise `model.sequence_length` to keep them whole."
        return text


def truncation_stats(examples: Examples, packer) -> TruncationStats:
    """Counts the examples longer than the packer's `sequence_length`."""
    ds = tf.data.Dataset.from_tensor_slices(_columns(examples)).batch(_TOKENIZE_BATCH)
    ds = ds.map(lambda c: packer.token_counts(c["text"], c.get("text_pair")), num_parallel_calls=tf.data.AUTOTUNE)
    counts = np.concatenate([batch.numpy() for batch in ds]) if len(examples) else np.zeros([0], np.int32)
    return TruncationStats(
        examples=len(examples),
        truncated=int(np.sum(counts > packer.sequence_length)),
        longest=int(counts.max(initial=0)),
        sequence_length=packer.sequence_length,
    )
