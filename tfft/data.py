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
import re

import numpy as np
import pandas as pd
import tensorflow as tf

from tfft import errors
from tfft.config import DataConfig, TrainConfig
from tfft.errors import DataError

logger = logging.getLogger(__name__)

TFDS_PREFIX = "tfds:"
_MAX_ROWS_IN_ERROR = 5

__all__ = ["DataError", "Examples", "read_split", "read_frame", "read_table", "read_conll", "make_dataset"]


@dataclasses.dataclass
class Examples:
    """The inputs and targets of one split, as read from its file.

    Args:
        source: str. The file or TFDS spec the examples came from.
        texts: list of str. The first (or only) text of each example; for
            token classification, the words joined by spaces.
        pairs: list of str or None. The second text, for sentence-pair tasks.
        labels: list or None. The targets as read, one per example: a label
            string, a list of label names, a float, or a list of tags, by
            task. None when unlabelled.
        words: list of list of str, or None. Token classification: the words.
        lines: list of int or None. The line each example starts on, where it
            differs from its row number (CoNLL files).
        ids: list of str or None. Each example's own id, where the data have
            one (SQuAD question ids); errors then name it.
    """

    source: str
    texts: list[str]
    pairs: list[str] | None = None
    labels: list | None = None
    words: list[list[str]] | None = None
    lines: list[int] | None = None
    ids: list[str] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def head(self, n: int) -> Examples:
        """The first `n` examples."""
        cut = lambda values: values[:n] if values is not None else None  # noqa: E731
        return Examples(
            self.source, self.texts[:n], cut(self.pairs), cut(self.labels), cut(self.words), cut(self.lines), cut(self.ids)
        )

    def plus(self, other: Examples) -> Examples:
        """These examples, then `other`'s (fields that either lacks stay None)."""
        join = lambda a, b: a + b if a is not None and b is not None else None  # noqa: E731
        return Examples(self.source, self.texts + other.texts, join(self.pairs, other.pairs),
                        join(self.labels, other.labels), join(self.words, other.words), None, join(self.ids, other.ids))

    def take(self, indices: list[int]) -> Examples:
        """The examples at `indices`, in that order (a held-out slice, a fold)."""
        pick = lambda values: [values[i] for i in indices] if values is not None else None  # noqa: E731
        return Examples(self.source, pick(self.texts), pick(self.pairs), pick(self.labels), pick(self.words),
                        pick(self.lines), pick(self.ids))

    def where(self, i: int) -> str:
        """How an error names example `i` (0-based): its id, its line, or its row."""
        if self.ids is not None:
            return f"id {self.ids[i]!r}"
        return f"line {self.lines[i]}" if self.lines is not None else f"row {i + 1}"


def rows_error(source: str, problem: str, rows: list[tuple[str, object]], fix: str) -> DataError:
    """A `DataError` that names the file and the first few bad rows.

    Args:
        source: str. The file.
        problem: str. What is wrong, e.g. "has labels that the training split never had".
        rows: list of (where, value). `where` is `Examples.where(i)`.
        fix: str. What to do about it.
    """
    shown = ", ".join(f"{where}: {value!r}" for where, value in rows[:_MAX_ROWS_IN_ERROR])
    more = f" and {len(rows) - _MAX_ROWS_IN_ERROR} more" if len(rows) > _MAX_ROWS_IN_ERROR else ""
    return DataError(f"Data file `{source}` {problem} ({shown}{more}). {fix}")


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
    frame = read_frame(spec, data, split, [data.label_column] if labelled else [])
    examples = examples_from_frame(frame, spec, data, labelled)
    return limit_train_examples(examples, data, split)


def limit_train_examples(examples: Examples, data: DataConfig, split: str) -> Examples:
    """The first `data.max_train_examples` of the training split; other splits whole."""
    if split == "train" and data.max_train_examples and len(examples) > data.max_train_examples:
        n = data.max_train_examples
        logger.info("Using the first %d of %d training examples (data.max_train_examples).", n, len(examples))
        return examples.head(n)
    return examples


def read_frame(spec: str, data: DataConfig, split: str, label_columns: list[str] = ()) -> pd.DataFrame:
    """One split as a frame of strings: a file, or a TFDS data set (`label_columns` name their features)."""
    if spec.startswith(TFDS_PREFIX):
        return _read_tfds(spec, data, split, list(label_columns))
    return read_table(spec, has_header=data.has_header, quoting=data.quoting, format=data.format)


def text_columns(
    frame: pd.DataFrame, source: str, data: DataConfig, first_line: int | None = None
) -> tuple[list[str], list[str] | None]:
    """The checked `data.text_column` (and `data.text_pair_column`) of a frame.

    `first_line`: the file line of the frame's first row (a streamed chunk); errors then name lines.
    """
    require_columns(frame, source, data, {"text_column": data.text_column, "text_pair_column": data.text_pair_column})
    texts = checked_column(frame, data.text_column, source, "text", first_line)
    pairs = checked_column(frame, data.text_pair_column, source, "text", first_line) if data.text_pair_column else None
    return texts, pairs


def line_numbers(n: int, first_line: int | None) -> list[int] | None:
    """The file lines of a chunk's `n` rows, or None for a whole file (errors then name rows)."""
    return None if first_line is None else list(range(first_line, first_line + n))


def require_columns(frame: pd.DataFrame, source: str, data: DataConfig, columns: dict[str, str | None]) -> None:
    """Fails naming the config key, when a column `columns` maps a key to is missing."""
    for key, column in columns.items():
        if column and column not in frame.columns:
            where = key if key.startswith("task.") else f"data.{key}"
            raise DataError(
                f"Data file `{source}` has no column `{column}`. Its columns are: "
                f"{', '.join(frame.columns)}. Set `{where}` to one of them"
                + ("" if data.has_header else " (header-less files name columns by position)")
                + "."
            )


def read_table(
    path: str | pathlib.Path,
    has_header: bool = True,
    quoting: str = "auto",
    format: str = "auto",
    key: str = "`data.train` / `data.validation`",
    keep_blank_lines: bool = False,
) -> pd.DataFrame:
    """Reads a `.csv`, `.tsv` or `.jsonl` file into a frame of strings.

    Every cell stays a string (no `NA` guessing), a UTF-8 byte-order mark is
    accepted, and bytes that are not UTF-8 fail with the line that holds them.
    Without a header, columns are named by position: `"0"`, `"1"`, ...
    A blank line of a `.csv`/`.tsv` is skipped, or with `keep_blank_lines`
    read as a row of empty cells (blank lines at the end are never rows).
    """
    path = pathlib.Path(path)
    suffix = path.suffix.lower() if format == "auto" else f".{format}"
    if suffix not in (".csv", ".tsv", ".jsonl", ".json"):
        _check_exists(path, key)
        raise DataError(
            f"Data file `{path}` has an unsupported extension `{suffix}`. Use .csv, .tsv, .jsonl, or "
            "`tfds:NAME[:SPLIT]` for a TFDS data set; for other names set `data.format` (csv, tsv or jsonl)."
        )
    text = read_text(path, key)
    if not text.strip():
        raise DataError(f"Data file `{path}` is empty: it has no rows.")
    if suffix in (".jsonl", ".json"):
        frame = jsonl_frame(text, path)
    else:
        frame = _read_delimited(text.rstrip("\r\n") + "\n" if keep_blank_lines else text, path, suffix, has_header,
                                quoting, skip_blank_lines=not keep_blank_lines)
        frame.columns = [str(c) for c in frame.columns]
        if not keep_blank_lines:
            _log_blank_lines(text, frame, path, suffix, has_header, quoting)
    if frame.empty:
        raise DataError(f"Data file `{path}` has a header but no rows.")
    return frame


def _log_blank_lines(text: str, frame: pd.DataFrame, path, suffix: str, has_header: bool, quoting: str) -> None:
    """Logs how many blank lines `read_table` skipped, before the header or between rows (not rows; a quoted
    cell's own blank lines are kept). Those between rows are counted by pandas' own parse keeping them, of the
    text from the header on, so that the header is the same line as in `read_table`'s parse."""
    body = text.lstrip("\r\n")
    skipped = text[: len(text) - len(body)].count("\n")
    body = body.rstrip("\r\n")
    if "\n\n" in body or "\n\r\n" in body:
        every_line = _read_delimited(body + "\n", path, suffix, has_header, quoting, skip_blank_lines=False)
        skipped += len(every_line) - len(frame)
    if skipped:
        logger.warning("Data file `%s`: %d blank line(s) skipped, as they hold no row; %d rows read.", path, skipped,
                       len(frame))


def quotes_ignored(tsv: bool, quoting: str) -> bool:
    """`data.quoting`: `none`, or `auto` for a TSV (GLUE tsvs hold stray `"` that are part of the text)."""
    return quoting == "none" or (quoting == "auto" and tsv)


def delimited_options(tsv: bool, has_header: bool, quoting: str) -> dict:
    """`pd.read_csv` options for a `.csv`/`.tsv` as tfft reads one: every cell a string, none read as missing."""
    return {"sep": "\t" if tsv else ",", "header": 0 if has_header else None, "dtype": str, "keep_default_na": False,
            "na_filter": False, "quoting": csv.QUOTE_NONE if quotes_ignored(tsv, quoting) else csv.QUOTE_MINIMAL}


def _read_delimited(
    text: str, path: pathlib.Path, suffix: str, has_header: bool, quoting: str, skip_blank_lines: bool = True
) -> pd.DataFrame:
    """A `.csv`/`.tsv` text as a frame of strings; a row with too many fields fails naming its line."""
    options = delimited_options(suffix == ".tsv", has_header, quoting)
    try:
        return pd.read_csv(io.StringIO(text), skip_blank_lines=skip_blank_lines, **options)
    except pd.errors.ParserError as err:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(err))
        where = f"line {found.group(2)} has {found.group(3)} fields where the header has {found.group(1)}" if found else str(err)
        fix = (
            "A tab inside a text cell splits it: remove it, or set `data.quoting: csv` and quote the cell."
            if suffix == ".tsv"
            else 'A comma inside a text cell splits it: quote the cell ("like, this"), or save the file as .tsv.'
        )
        raise DataError(f"Data file `{path}`: {where}. {fix}") from None


def _check_exists(path: pathlib.Path, key: str) -> None:
    if path.is_dir():
        raise DataError(f"Data path `{path}` is a folder, not a file. Name one file in it, e.g. `{path}/train.csv`.")
    if not path.is_file():
        raise errors.missing_file(path, key)


def read_text(path: str | pathlib.Path, key: str = "`data.train` / `data.validation`") -> str:
    """A data file's text: UTF-8 (a byte-order mark is accepted); other bytes fail naming the line.

    `key` is where the path came from, for the message when it is missing.
    """
    path = pathlib.Path(path)
    _check_exists(path, key)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        bad = raw[err.start : err.end + 2]
        raise DataError(
            f"Data file `{path}` is not valid UTF-8: line {line}, column {column} holds the bytes {bad!r}. "
            "Re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`)."
        ) from None


def read_conll(path: str | pathlib.Path, tag_column: int = -1) -> tuple[list[list[str]], list[list[str]], list[int]]:
    """Reads a CoNLL column file: one word per line, a blank line between sentences.

    Columns are split on whitespace; the word is the first, the tag is
    `tag_column` (-1: the last). Any blank or whitespace-only line ends a
    sentence, and `-DOCSTART-` lines are skipped.

    Returns:
        `(words, tags, lines)`: per sentence, its words, its tags and the
        line it starts on (counting from 1).
    """
    sentences, tags, starts = [], [], []
    words_now: list[str] = []
    tags_now: list[str] = []
    start = 0
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if words_now:
                sentences.append(words_now)
                tags.append(tags_now)
                starts.append(start)
            words_now, tags_now = [], []
            continue
        if len(fields) < 2 or not -len(fields) <= tag_column < len(fields) or tag_column == 0:
            raise DataError(
                f"Data file `{path}`, line {number}: {line.strip()!r} has {len(fields)} column(s), so it has no "
                f"tag in column {tag_column} (`task.tag_column`). CoNLL lines are `word ... tag`, separated by "
                "spaces or tabs; set `task.tag_column` to the tag's column."
            )
        if not words_now:
            start = number
        words_now.append(fields[0])
        tags_now.append(fields[tag_column])
    if words_now:
        sentences.append(words_now)
        tags.append(tags_now)
        starts.append(start)
    if not sentences:
        raise DataError(f"Data file `{path}` holds no sentences (CoNLL: one `word ... tag` per line).")
    return sentences, tags, starts


def jsonl_frame(text: str, path: pathlib.Path) -> pd.DataFrame:
    """JSON Lines text as a frame of string cells (`json_cell`); a bad line fails naming it."""
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
        records.append({k: json_cell(v) for k, v in record.items()})
    return pd.DataFrame.from_records(records).fillna("")


def json_cell(value) -> str:
    """A JSON value as a cell: lists and objects stay JSON, so a task can parse them back."""
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def examples_from_frame(
    frame: pd.DataFrame, source: str, data: DataConfig, labelled: bool, first_line: int | None = None
) -> Examples:
    """A table's rows as checked text examples with string labels (classification)."""
    require_columns(frame, source, data, {"text_column": data.text_column, "text_pair_column": data.text_pair_column,
                                          "label_column": data.label_column if labelled else None})
    texts, pairs = text_columns(frame, source, data, first_line)
    labels = checked_column(frame, data.label_column, source, "label", first_line) if labelled else None
    return Examples(source, texts, pairs, labels, lines=line_numbers(len(texts), first_line))


def checked_column(frame: pd.DataFrame, column: str, source: str, what: str, first_line: int | None = None) -> list[str]:
    """A column's cells as strings, none empty (`what`: `text`, or `label`, stripped); errors name the rows."""
    values = [str(v) for v in frame[column].tolist()]
    if what == "label":
        values = [v.strip() for v in values]
    empty = [i for i, v in enumerate(values) if not v.strip()]
    if empty:
        if first_line is None:
            rows = ", ".join(str(i + 1) for i in empty[:_MAX_ROWS_IN_ERROR])
            where = f"row(s) {rows}{{more}} (rows count from 1, the header not counted)"
        else:
            where = "line(s) " + ", ".join(str(first_line + i) for i in empty[:_MAX_ROWS_IN_ERROR]) + "{more}"
        more = f" and {len(empty) - _MAX_ROWS_IN_ERROR} more" if len(empty) > _MAX_ROWS_IN_ERROR else ""
        raise DataError(
            f"Data file `{source}`: the {what} column `{column}` is empty in {where.format(more=more)}. "
            "Fill or remove those rows."
        )
    return values


def _read_tfds(spec: str, data: DataConfig, split: str, label_columns: list[str]) -> pd.DataFrame:
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
    needed += label_columns
    for column in needed:
        if column not in features:
            raise DataError(
                f"TFDS data set `{name}` has no feature `{column}`. Its features are: {', '.join(features)}."
            )
    label_names = {c: getattr(features[c], "names", None) for c in label_columns}
    columns: dict[str, list[str]] = {c: [] for c in needed}
    for example in tfds.as_numpy(ds):
        for column in needed:
            value = example[column]
            if label_names.get(column):
                value = label_names[column][int(value)]
            elif isinstance(value, bytes):
                value = value.decode("utf-8")
            columns[column].append(str(value))
    frame = pd.DataFrame(columns)
    if frame.empty:
        raise DataError(f"TFDS data set `{name}` split `{tfds_split}` has no rows.")
    return frame


# --- Labels -----------------------------------------------------------------


class LabelVocabulary:
    """The label names of a task, in id order, taken from the training split.

    Integer labels keep numeric order (`"0", "1", "2"`), string labels sort
    alphabetically, so the same data always gives the same ids.
    """

    FILENAME = "labels.txt"

    def __init__(self, names: list[str], minimum: int = 2):
        if len(names) < minimum:
            raise DataError(
                f"A classifier needs at least {minimum} labels; the training split has {len(names)}: {names}."
            )
        self.names = list(names)
        self._ids = {name: i for i, name in enumerate(self.names)}

    @classmethod
    def from_labels(cls, labels, minimum: int = 2) -> LabelVocabulary:
        unique = set(labels)
        _warn_same_number(unique)
        try:
            names = sorted(unique, key=int)
        except ValueError:
            names = sorted(unique)
        return cls(names, minimum=minimum)

    def id(self, name: str) -> int:
        return self._ids[name]

    def __contains__(self, name: str) -> bool:
        return name in self._ids

    def __len__(self) -> int:
        return len(self.names)

    def encode(self, examples: Examples) -> np.ndarray:
        """Label ids of `examples`; a label the training split lacks is an error."""
        if examples.labels is None:
            raise DataError(f"`{examples.source}` has no labels to encode.")
        unknown = [(examples.where(i), label) for i, label in enumerate(examples.labels) if label not in self._ids]
        if unknown:
            raise rows_error(
                examples.source, "has labels that the training split never had", unknown,
                f"Known labels: {self.names}. Fix those rows or add examples of the label to the training data.",
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
    def load(cls, directory: str | pathlib.Path, minimum: int = 2) -> LabelVocabulary:
        path = pathlib.Path(directory) / cls.FILENAME
        if not path.is_file():
            raise DataError(f"`{path}` does not exist: is `{directory}` the output_dir of a tfft run?")
        return cls(path.read_text(encoding="utf-8").splitlines(), minimum=minimum)


def _warn_same_number(labels: set[str]) -> None:
    """Warns when distinct labels read as the same number (`1`, `01`, `1.0`): each becomes a class of its own."""
    by_value: dict[float, list[str]] = {}
    for label in labels:
        try:
            by_value.setdefault(float(label), []).append(label)
        except ValueError:
            continue
    for names in by_value.values():
        if len(names) > 1:
            logger.warning("The labels %s are the same number written %d ways; each is a class of its own. Write "
                           "each label one way if they mean the same.", ", ".join(sorted(names)), len(names))


# --- tf.data ----------------------------------------------------------------

#: Rows tokenized per call of the packer in a pipeline.
TOKENIZE_BATCH = 1024


def text_inputs(examples: Examples) -> dict[str, list[str]]:
    """The model inputs of a text task: `text` (and `text_pair`)."""
    columns = {"text": examples.texts}
    if examples.pairs is not None:
        columns["text_pair"] = examples.pairs
    return columns


def pack_texts(packer, inputs: dict, targets=None):
    """Packs a batch of `text_inputs`; the targets pass through. Runs in the graph."""
    packed = packer(inputs["text"], inputs.get("text_pair"))
    return packed if targets is None else (packed, targets)


def batched_inputs(inputs: dict, batch_size: int, targets=None) -> tf.data.Dataset:
    """Model inputs (`Task.inputs`) in row order, `batch_size` at a time; with `targets`, `(inputs, targets)` pairs."""
    ds = batch_rows(tf.data.Dataset.from_tensor_slices(inputs if targets is None else (inputs, targets)), batch_size)
    return ds.with_options(pipeline_options()).prefetch(tf.data.AUTOTUNE)


def length_order(*columns: list[str] | None) -> np.ndarray:
    """The indices that put rows shortest first, by the characters of their texts in `columns`; stable.

    Scored in this order, a batch pads to a length near its examples' own:
    SST-2's 872 dev sentences, in batches of 32 in row order, pad to 1.84x
    their tokens, shortest first to 1.04x (MRPC's dev pairs: 1.39x and
    1.05x). No score depends on the order of a split's examples.

    Args:
        *columns: lists of str, one entry per row each, or None (no such
            column): e.g. `examples.texts, examples.pairs`.
    """
    lengths = np.sum([[len(text or "") for text in column] for column in columns if column is not None], axis=0)
    return np.argsort(lengths, kind="stable")


def restore_order(outputs: dict, order: np.ndarray) -> dict:
    """Per-example `outputs` made for `examples.take(order)`, put back in the order of `examples`.

    Args:
        outputs: dict of np.ndarray or list, each with one entry per example.
        order: np.ndarray. The indices the examples were taken in (`length_order`).
    """
    back = np.argsort(order, kind="stable")  # the position in `outputs` of each example

    def put_back(name, values):
        if len(values) != len(order):
            raise ValueError(f"Output `{name}` has {len(values)} entries for {len(order)} examples: it must have one "
                             "per example to be put back in their order.")
        return values[back] if isinstance(values, np.ndarray) else [values[i] for i in back]

    return {name: put_back(name, values) for name, values in outputs.items()}


def batch_rows(ds: tf.data.Dataset, size: int) -> tf.data.Dataset:
    """`batch`, or `ragged_batch` where an element has a dimension of varying length (words, tags)."""
    ragged = any(isinstance(spec, tf.RaggedTensorSpec) or None in spec.shape for spec in tf.nest.flatten(ds.element_spec))
    return ds.ragged_batch(size) if ragged else ds.batch(size)


def bucket_lengths(sequence_length: int) -> list[int]:
    """The padded lengths of `pad_to="buckets"`: powers of two from 16, then `sequence_length`."""
    lengths, length = [], 16
    while length < sequence_length:
        lengths.append(length)
        length *= 2
    return lengths + [sequence_length]


@dataclasses.dataclass(frozen=True)
class Batching:
    """How a pipeline cuts packed examples into batches.

    Args:
        batch_size: int. Batch size (global, under a distribution strategy).
        pad_to: str. `longest` (each batch to its longest sequence), `buckets`
            (to the next of `bucket_lengths`: few shapes, for TPU/XLA)
            or `max` (every batch to the packer's `sequence_length`).
        drop_remainder: bool. Drop each epoch's last partial batch (static
            batch size).
        group_by_length: bool. Training batches of similar lengths (less
            padding); False: random batches. `pad_to="max"` never groups.
        megabatch: int. Batches per length-sorted megabatch when grouping.
    """

    batch_size: int
    pad_to: str = "longest"
    drop_remainder: bool = False
    group_by_length: bool = True
    # Grouped training batches come from megabatches of this many batches
    # (`train.megabatch`): sorted by length, cut into batches, batch order
    # shuffled. On SST-2 (batch 32), 16 leaves 13% of the tokens padding
    # (random batches: 67%); Hugging Face's `group_by_length` uses 50 (5%
    # padding), which in three seeds here scored 0.7 points lower: the more
    # alike a batch's lengths, the less random it is.
    megabatch: int = TrainConfig.megabatch


def training_pipeline(
    epoch_examples,
    batching: Batching,
    *,
    seed: int,
    epochs: int,
    sequence_length: int,
    sequence_targets: bool = False,
    repeat: bool = True,
    shard_policy=tf.data.experimental.AutoShardPolicy.DATA,
) -> tf.data.Dataset:
    """The training batches of `epochs` epochs, from packed examples in each epoch's shuffled order.

    The tail both the in-memory (`make_dataset`) and the streamed
    (`tfft.streaming.stream_dataset`) training pipelines end with. Epoch `e`
    is batched with seed `seed + e` (`training_batches`), the epochs are
    laid out one after another, then repeated, trimmed and given their
    options (`finish_batches`).

    Args:
        epoch_examples: callable. Epoch number -> dataset of packed examples
            in that epoch's shuffled order.
        batching: `Batching`.
        seed: int. The first epoch's seed.
        epochs: int. Epochs of shuffled order to lay out; `repeat` continues past them.
        sequence_length: int. The packer's; `pad_to="buckets"` pads up to it.
        sequence_targets: bool. Per-token targets, trimmed with the features.
        repeat: bool. Repeat forever (train with `steps_per_epoch`).
        shard_policy: `tf.data.experimental.AutoShardPolicy`. How
            `tf.distribute` splits the data between workers.
    """
    grouped = batching.group_by_length and batching.pad_to != "max"  # full-width batches gain nothing from grouping
    rounds = [
        training_batches(epoch_examples(e), batching.batch_size, batching.drop_remainder, seed + e,
                         batching.megabatch if grouped else 0)
        for e in range(epochs)
    ]
    ds = functools.reduce(tf.data.Dataset.concatenate, rounds)
    if repeat:
        ds = ds.repeat()
    return finish_batches(ds, batching.pad_to, sequence_length, sequence_targets, shard_policy)


def finish_batches(
    ds: tf.data.Dataset,
    pad_to: str,
    sequence_length: int,
    sequence_targets: bool = False,
    shard_policy=tf.data.experimental.AutoShardPolicy.DATA,
) -> tf.data.Dataset:
    """Trims each batch's padding (`pad_to`), sets the pipeline's options and prefetches: every pipeline's end.

    Every `pad_to` leaves the length axis unknown to the graph, `max`
    included (its batches are "trimmed" to `sequence_length`, the length
    they have). With a length the graph knows, Keras' TensorFlow `einsum`
    runs `EinsumDense`'s projections (attention's query, key, value and
    output) as a broadcasting batched matmul whose kernel gradient is
    computed per example and then summed: MiniLM's training step at 16
    tokens took about twice as long (docs/performance.md, *Speed*).
    """
    lengths = {"longest": None, "buckets": bucket_lengths(sequence_length), "max": [sequence_length]}[pad_to]
    trim = functools.partial(_trim_batch, lengths=lengths, sequence_targets=sequence_targets)
    ds = ds.map(trim, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.with_options(pipeline_options(shard_policy)).prefetch(tf.data.AUTOTUNE)


def pipeline_options(shard_policy=None) -> tf.data.Options:
    """The options of every tfft pipeline: elements in a fixed order, and tf.data's autotuning off.

    With autotuning on, deleting an iterator waits for tf.data's autotuning
    thread to wake, and that thread sleeps longer the longer the iterator has
    lived: on this CPU `model.fit` returned 18 s after its last step in about
    half the runs of a 30-second CoNLL-2003 training, waiting on its
    iterator. Without autotuning, `AUTOTUNE` parallelism is the number of
    cores and a prefetch buffer still grows when the consumer waits; the
    training steps measured as fast (docs/performance.md, *Speed against keras-hub and
    the Hugging Face Trainer*).

    Args:
        shard_policy: `tf.data.experimental.AutoShardPolicy` or None (TensorFlow's default).
    """
    options = tf.data.Options()
    if shard_policy is not None:
        options.experimental_distribute.auto_shard_policy = shard_policy
    options.deterministic = True
    options.autotune.enabled = False
    return options


def make_dataset(
    examples: Examples,
    label_ids,
    packer,
    *,
    task=None,
    elements: int | None = None,
    batching: Batching | None = None,
    training: bool = False,
    seed: int = 0,
    shuffle_buffer: int = 0,
    repeat: bool = False,
    epochs: int = 1,
    transform=None,
    **batching_args,
) -> tf.data.Dataset:
    """Builds the `tf.data` pipeline of one split held in memory.

    Training batches are laid out by `training_pipeline` (each epoch
    shuffled, then grouped by length: `training_batches`); other splits
    keep their row order.

    Args:
        examples: `Examples`. The split.
        label_ids: np.ndarray, tf.RaggedTensor or None. The task's encoded
            targets; None yields features only.
        packer: `tfft.backbones.TextPacker`. Tokenizes and packs in the graph.
        task: `tfft.tasks.Task` or None. Gives the model inputs and packs
            them with their targets; None: a text classification task.
        elements: int or None. The model inputs `task.pack` makes of the
            split (`task.prepare(...).elements`); None: one per example.
        batching: `Batching`, or None to make one of `batching_args`
            (`batch_size`, `pad_to`, `drop_remainder`, `group_by_length`).
        training: bool. Shuffle, and batch examples of similar length together.
        seed: int. Shuffle seed.
        shuffle_buffer: int. Shuffle buffer size; 0 shuffles the whole split.
        repeat: bool. Repeat forever (train with `steps_per_epoch`).
        epochs: int. Epochs of shuffled order to lay out, each with its own
            seed (training only); `repeat` continues past them.
        transform: callable or None. Dataset of packed elements (each padded
            to the packer's `sequence_length`, in row order) -> the same
            elements with more features, before any shuffling
            (`TrainingData.attach`). Features are trimmed with the batch on
            their second axis: a per-example feature is stored as `[1, ...]`.

    Returns:
        A dataset of `features`, `(features, targets)` or `(features,
        targets, sample_weights)`, where `features` holds the packer's int32
        inputs, e.g. `token_ids`, `segment_ids` and `padding_mask`.
    """
    batching = batching or Batching(**batching_args)
    sequence_targets = bool(task is not None and task.sequence_targets)
    elements = len(examples) if elements is None else elements
    ds = _packed_examples(examples, label_ids, packer, task, elements)
    if transform is not None:
        ds = transform(ds)
    if training:
        # Epoch e is shuffled with seed + e, the same for every iterator. A
        # reshuffling `shuffle` gives each new iterator another order, and
        # Keras makes an extra iterator under a distribution strategy: the
        # examples' order would depend on the strategy.
        buffer = shuffle_buffer or elements
        return training_pipeline(
            lambda e: ds.shuffle(buffer, seed=seed + e, reshuffle_each_iteration=False), batching, seed=seed,
            epochs=epochs, sequence_length=packer.sequence_length, sequence_targets=sequence_targets, repeat=repeat,
        )
    ds = ds.batch(batching.batch_size, drop_remainder=batching.drop_remainder)
    if repeat:
        ds = ds.repeat()
    # Shard by element: the data come from memory, not from several files.
    return finish_batches(ds, batching.pad_to, packer.sequence_length, sequence_targets)


def _packed_examples(examples: Examples, label_ids, packer, task, elements: int) -> tf.data.Dataset:
    """The split's packed model inputs (with their targets), one element each, cached."""
    columns = task.inputs(examples) if task is not None else text_inputs(examples)
    pack_fn = task.pack if task is not None else pack_texts
    ds = tf.data.Dataset.from_tensor_slices(columns if label_ids is None else (columns, label_ids))

    def pack(*batch):
        return pack_fn(packer, batch[0], batch[1] if len(batch) > 1 else None)

    ds = batch_rows(ds, TOKENIZE_BATCH).map(pack, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    # `unbatch` forgets the size; Keras needs it to see where an epoch ends.
    return ds.apply(tf.data.experimental.assert_cardinality(elements)).cache()


# Elements are `features` or `(features, label_id)`: `element[0]` is the features.


def training_batches(ds, batch_size: int, drop_remainder: bool, seed: int, megabatch: int) -> tf.data.Dataset:
    """One shuffled epoch's batches: grouped by length (`megabatch` > 0), or in the shuffled order.

    Grouped: the epoch is cut into megabatches of `megabatch` batches, each
    megabatch sorted by length and cut into batches, and the batches
    shuffled. An epoch still holds every example exactly once.
    """
    if megabatch:
        return _length_grouped_batches(ds, batch_size, drop_remainder, seed=seed, megabatch=megabatch)
    return ds.batch(batch_size, drop_remainder=drop_remainder)


def _length_grouped_batches(ds, batch_size: int, drop_remainder: bool, seed: int, megabatch: int) -> tf.data.Dataset:
    """One epoch's batches: megabatches sorted by length, cut into batches, the batches shuffled."""

    def cut(*sorted_run):
        slices = tf.data.Dataset.from_tensor_slices(sorted_run if len(sorted_run) > 1 else sorted_run[0])
        return slices.batch(batch_size, drop_remainder=drop_remainder)

    # A megabatch is a whole number of batches: only the epoch's last one is partial.
    ds = ds.batch(batch_size * megabatch).map(sort_by_length).flat_map(cut)
    return ds.shuffle(megabatch, seed=seed, reshuffle_each_iteration=False)


def sort_by_length(*megabatch):
    """A batch's elements (features first, then anything that goes with them) in order of length, stably."""
    order = tf.argsort(tf.reduce_sum(megabatch[0]["padding_mask"], axis=1), stable=True)
    return tf.nest.map_structure(lambda t: tf.gather(t, order), megabatch)


def _trim_batch(*element, lengths: list[int] | None = None, sequence_targets: bool = False):
    """Cuts a batch's padding to its longest sequence, or to the next of `lengths`.

    Per-token targets and sample weights (`sequence_targets`) are cut with the features.
    """
    length = tf.reduce_max(tf.reduce_sum(element[0]["padding_mask"], axis=1))
    if lengths is not None:
        lengths = tf.constant(lengths, tf.int32)
        length = tf.gather(lengths, tf.searchsorted(lengths, tf.reshape(length, [1]), side="left"))[0]
    trimmed = {name: value[:, :length] for name, value in element[0].items()}
    rest = tuple(value[:, :length] for value in element[1:]) if sequence_targets else element[1:]
    return (trimmed, *rest) if len(element) > 1 else trimmed


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
    """How many examples of a split the packer truncates (and, by word, how many words it drops)."""

    examples: int
    truncated: int
    longest: int
    sequence_length: int
    words: int | None = None
    truncated_words: int | None = None

    def message(self, split: str) -> str:
        share = 100.0 * self.truncated / max(self.examples, 1)
        text = (
            f"{split}: {self.truncated:,} of {self.examples:,} examples ({share:.2f}%) are longer than "
            f"model.sequence_length={self.sequence_length} tokens and are truncated (longest: {self.longest} tokens)."
        )
        if self.words is not None:
            text += f" {self.truncated_words:,} of {self.words:,} words are cut off and get no prediction."
        if self.truncated:
            text += " Raise `model.sequence_length` to keep them whole."
        return text


@dataclasses.dataclass
class PreparedSplit:
    """A split made ready for one packer, once (`Task.prepare`): what the log, the epoch length and the pipeline need.

    Args:
        examples: `Examples`. The split.
        elements: int. The model inputs `Task.pack` makes of it (QA: one per context window).
        truncation: `TruncationStats` or the task's own (an object with `truncated` and `message(split)`).
    """

    examples: Examples
    elements: int
    truncation: object


def truncation_stats(examples: Examples, packer, inputs: dict | None = None, count=None) -> TruncationStats:
    """Counts the examples longer than the packer's `sequence_length`.

    Args:
        examples: `Examples`. The split.
        packer: `TextPacker`.
        inputs: dict or None. The model inputs (`Task.inputs`); None: `text_inputs(examples)`.
        count: callable or None. A batch of `inputs` -> untruncated lengths, int32 `[batch]`, or
            `(lengths, words held, words lost)` for tagging; None: `packer.token_counts` of the texts.
    """
    columns = inputs if inputs is not None else text_inputs(examples)
    count = count or (lambda c: packer.token_counts(c["text"], c.get("text_pair")))
    ds = batch_rows(tf.data.Dataset.from_tensor_slices(columns), TOKENIZE_BATCH)
    ds = ds.map(count, num_parallel_calls=tf.data.AUTOTUNE).with_options(pipeline_options())
    batches = [tf.nest.map_structure(lambda t: t.numpy(), batch) for batch in ds]
    parts = [np.concatenate([b[i] for b in batches]) for i in range(3)] if batches and isinstance(batches[0], tuple) else None
    counts = parts[0] if parts else (np.concatenate(batches) if batches else np.zeros([0], np.int32))
    return TruncationStats(
        examples=len(examples),
        truncated=int(np.sum(counts > packer.sequence_length)),
        longest=int(counts.max(initial=0)),
        sequence_length=packer.sequence_length,
        words=int(parts[1].sum()) if parts else None,
        truncated_words=int(parts[2].sum()) if parts else None,
    )
