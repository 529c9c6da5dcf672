"""Training data larger than memory: sharded files, checked by one pre-pass, streamed through `tf.data`.

`data.train` may name several files: comma-separated paths and glob patterns
(`data/train-*.csv`, `gs://bucket/train-*.tfrecord`), on any filesystem
TensorFlow reads. With `data.streaming: true` (or `auto`, for more than one
file or more than `STREAM_ABOVE_MB` in all) the training split is never held
in memory:

1. **Pre-pass** (`scan`). Every file is read in chunks, in parallel threads,
   with a progress bar: rows are counted, the label vocabulary is built and
   each row gets the same checks as the in-memory path, by the same task
   code. A bad row fails naming its file and line; with
   `data.on_bad_row: skip` it is skipped, counted and logged instead. The
   result is cached in `output_dir` (`data_scan.json`), so a resumed run
   does not read the data twice.
2. **Stream** (`stream_dataset`). TensorFlow's file readers (`CsvDataset`,
   `TextLineDataset`, `TFRecordDataset`) read the files, interleaved; rows
   are shuffled within `data.shuffle_buffer`, tokenized in the graph,
   length-grouped and padded as in memory. Each epoch's order comes from the
   seed, so resuming skips to the right batch. The epoch length and the
   learning-rate schedule come from the pre-pass count. Under
   `multi_worker`, `tf.distribute` shards by file when there are at least as
   many files as workers, else by row.

`distill.unlabeled`'s files (texts without labels) may stream beside the
training files: `scan(..., labelled=False)` checks them, and
`stream_dataset(..., unlabeled=...)` draws their rows among the others,
each marked (`UNLABELED`) for the teacher to label in the training step.

Supported formats: `.csv`, `.tsv`, `.jsonl`, `.parquet` (with pyarrow) and
`.tfrecord` (`tf.train.Example` records with bytes, int64 or float features). Tasks stream when they can
build their targets in the graph (`Task.stream_targets`): classification,
regression and multi-label.

Example:

```python
files = expand_files("data/train-*.csv")
scan_result = scan(files, task, config.data)
ds = stream_dataset(files, task, packer, config.data, tfft.data.Batching(batch_size=32))
```
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import functools
import io
import json
import logging
import os
import pathlib

import numpy as np
import pandas as pd
import tensorflow as tf

from tfft import data as data_lib
from tfft import errors
from tfft.errors import ConfigError, DataError
from tfft.progress import progress_bar

logger = logging.getLogger(__name__)

SCAN_FILE = "data_scan.json"
UNLABELED_SCAN_FILE = "unlabeled_scan.json"
#: The feature that marks a streamed row of `distill.unlabeled` (1.0; the training split's rows 0.0), shaped `[1]`.
UNLABELED = "unlabeled_row"
STREAM_ABOVE_MB = 256
CHUNK_ROWS = 50_000
_KINDS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".tfrecord": "tfrecord",
          ".tfrecords": "tfrecord", ".parquet": "parquet"}

__all__ = ["expand_files", "should_stream", "scan", "ScanResult", "stream_dataset", "SCAN_FILE", "UNLABELED_SCAN_FILE",
           "UNLABELED"]


# --- Files ------------------------------------------------------------------


def expand_files(spec: str, key: str = "data.train") -> list[str]:
    """The files `spec` names: comma-separated paths and glob patterns, each pattern's matches sorted."""
    try:
        return _expand(spec, key)
    except tf.errors.OpError as err:  # a filesystem TensorFlow cannot reach: gs:// without credentials or network
        raise DataError(f"`{spec}` in `{key}` cannot be read: {err.message.splitlines()[0]}. Check the path, the "
                        "credentials and the network.") from None


def _expand(spec: str, key: str) -> list[str]:
    files = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if any(c in part for c in "*?["):
            matched = sorted(tf.io.gfile.glob(part))
            if not matched:
                raise DataError(f"`{part}` in `{key}` matches no file. Check the pattern and the folder.")
            files += matched
        else:
            if tf.io.gfile.isdir(part):
                raise DataError(f"Data path `{part}` is a folder, not a file. Name its files, e.g. `{part}/*.csv`.")
            if not tf.io.gfile.exists(part):
                raise errors.missing_file(part, f"`{key}`")
            files.append(part)
    return files


def training_files(data) -> list[str] | None:
    """The files to stream `data.train` from, or None when it is read into memory (`data.streaming`)."""
    if data.train.startswith(data_lib.TFDS_PREFIX) or data.streaming == "false":
        return None
    files = expand_files(data.train)
    return files if should_stream(files, data.streaming) else None


def read_all(task, spec: str, split: str) -> data_lib.Examples:
    """A split read into memory by the task, from one file or several (`expand_files`), in order."""
    if spec.startswith(data_lib.TFDS_PREFIX) or ("," not in spec and not any(c in spec for c in "*?[")):
        return task.read(spec, split=split)
    parts = [task.read(f, split=split) for f in expand_files(spec, key=f"data.{split}")]
    joined = data_lib.Examples(spec, [t for p in parts for t in p.texts])
    for field in ("pairs", "labels", "words", "ids"):
        if getattr(parts[0], field) is not None:
            setattr(joined, field, [v for p in parts for v in getattr(p, field)])
    return joined


def sample_texts(files: list[str], data, n: int = 100_000) -> list[str]:
    """The first `n` texts of the files (both texts of a pair), for backbones that learn a vocabulary (recipes)."""
    columns = [data.text_column] + ([data.text_pair_column] if data.text_pair_column else [])
    texts: list[str] = []
    for path in files:
        for frame, _, _ in read_chunks(path, data):
            texts += [str(t) for c in columns if c in frame.columns for t in frame[c].tolist()][: n - len(texts)]
            if len(texts) >= n:
                return texts
    return texts


def should_stream(files: list[str], setting: str) -> bool:
    """`data.streaming`: `true`, `false`, or `auto` (several files, or more than `STREAM_ABOVE_MB` in all)."""
    if setting in ("true", "false"):
        return setting == "true"
    if len(files) > 1:
        return True
    return sum(tf.io.gfile.stat(f).length for f in files) > STREAM_ABOVE_MB * 1e6


def file_kind(path: str, data) -> str:
    """`csv`, `tsv`, `jsonl` or `tfrecord`, by `data.format` or the extension."""
    if data.format != "auto":
        return data.format
    suffix = pathlib.PurePosixPath(path).suffix.lower()
    if suffix not in _KINDS:
        raise DataError(
            f"Data file `{path}` has an extension tfft cannot stream (`{suffix}`). Use .csv, .tsv, .jsonl, "
            ".parquet or .tfrecord, or set `data.format`."
        )
    return _KINDS[suffix]


# --- Pre-pass -----------------------------------------------------------------


@dataclasses.dataclass
class ScanResult:
    """What the pre-pass found in the training files.

    Args:
        rows: int. Rows that train (bad rows skipped are not counted).
        skipped: int. Bad rows skipped (`data.on_bad_row: skip`).
        labels: list or None. The distinct labels as the task reads them (label
            lists for multi-label), for `Task.fit_vocabulary`.
        files: dict. File -> rows kept in it.
        skipped_examples: list of str. The first few skipped rows, "file, line N: why".
        fingerprint: dict. The files (sizes, times) and reading options
            scanned: a cached scan is reused only for the same.
    """

    rows: int
    skipped: int
    labels: list | None
    files: dict[str, int]
    skipped_examples: list[str] = dataclasses.field(default_factory=list)
    fingerprint: dict = dataclasses.field(default_factory=dict)


def _fingerprint(files: list[str], data, task) -> dict:
    stats = [[f, stat.length, stat.mtime_nsec] for f, stat in ((f, tf.io.gfile.stat(f)) for f in files)]
    keys = ("text_column", "text_pair_column", "label_column", "has_header", "format", "quoting", "on_bad_row")
    labels = ("type", "label_columns", "label_separator", "label_names_file")  # how the task reads labels
    return {"files": stats, "data": {k: getattr(data, k) for k in keys},
            "task": {k: getattr(task.config.task, k) for k in labels}}


def scan(files: list[str], task, data, cache_dir: str | pathlib.Path | None = None, progress: bool = True,
         labelled: bool = True) -> ScanResult:
    """Reads every training row once: counts, label vocabulary, checks. See the module docstring.

    Args:
        files: list of str. The training files (`expand_files`).
        task: `tfft.tasks.Task`. Its `examples_from_frame` checks each chunk.
        data: `DataConfig`. Columns, format, `on_bad_row`.
        cache_dir: path or None. Where a previous scan of the same files was cached.
        progress: bool. Show a progress bar (rows read).
        labelled: bool. False: rows of texts only (`distill.unlabeled`), cached as `UNLABELED_SCAN_FILE`.
    """
    fingerprint = json.loads(json.dumps(_fingerprint(files, data, task)))  # as it reads back from the cache
    name = SCAN_FILE if labelled else UNLABELED_SCAN_FILE
    cached = pathlib.Path(cache_dir) / name if cache_dir is not None else None
    if cached is not None and cached.is_file():
        saved = ScanResult(**json.loads(cached.read_text()))
        if saved.fingerprint == fingerprint:
            logger.info("Training data: the pre-pass of %d file(s) was cached in %s.", len(files), cached)
            return saved
    total_bytes = sum(row[1] for row in fingerprint["files"])
    bar = progress_bar(total_bytes, "byte") if progress else None
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(files), os.cpu_count() or 1)) as pool:
        futures = [pool.submit(_scan_file, f, task, data, bar, labelled) for f in files]
        parts = [future.result() for future in futures]
    labels = None
    if any(part[2] is not None for part in parts):
        labels = sorted({label for part in parts for label in (part[2] or ())}, key=str)
        labels = [list(label) if isinstance(label, tuple) else label for label in labels]
    result = ScanResult(
        rows=sum(p[0] for p in parts),
        skipped=sum(p[1] for p in parts),
        labels=labels,
        files={f: p[0] for f, p in zip(files, parts, strict=True)},
        skipped_examples=[e for p in parts for e in p[3]][:20],
        fingerprint=fingerprint,
    )
    if result.rows == 0:
        raise DataError(f"The training files ({', '.join(files[:3])}...) hold no usable rows.")
    empty = [f for f in files if not result.files[f]]
    if empty:
        logger.warning("Skipped %d training file(s) that hold no rows: %s%s.", len(empty), ", ".join(empty[:5]),
                       f" and {len(empty) - 5} more" if len(empty) > 5 else "")
    logger.info("Training data: %d rows in %d file(s)%s.", result.rows, len(files),
                f", {result.skipped} bad rows skipped (data.on_bad_row: skip)" if result.skipped else "")
    for example in result.skipped_examples[:5]:
        logger.warning("Skipped %s", example)
    return result


def save_scan(scanned: ScanResult, output_dir: str | pathlib.Path, name: str = SCAN_FILE) -> None:
    """Caches a `scan` in `output_dir` (once the run's checks passed), for a resumed run."""
    (pathlib.Path(output_dir) / name).write_text(json.dumps(dataclasses.asdict(scanned)) + "\n")


def _scan_file(path: str, task, data, bar, labelled: bool = True) -> tuple[int, int, set | None, list[str]]:
    kept = skipped = 0
    labels: set | None = None
    skipped_examples: list[str] = []
    for frame, first_line, size in read_chunks(path, data):
        examples, bad = _checked_chunk(task, frame, path, first_line, data.on_bad_row, labelled)
        bad = frame.attrs.get("skipped", []) + bad  # lines that were no row at all, then rows that fail a check
        kept += len(examples)
        skipped += len(bad)
        skipped_examples += bad[: 20 - len(skipped_examples)]
        if examples.labels is not None:
            labels = labels or set()
            # Distinct labels as the task reads them (a name; a tuple of names for multi-label rows).
            labels.update(tuple(label) if isinstance(label, list) else label for label in examples.labels)
        if bar is not None:
            bar.add(size)
    return kept, skipped, labels, skipped_examples


def _checked_chunk(task, frame: pd.DataFrame, path: str, first_line: int, on_bad_row: str, labelled: bool = True):
    """The chunk's examples, by the task's checks; with `skip`, bad rows are dropped one by one."""
    try:
        examples = task.examples_from_frame(frame, path, labelled=labelled, first_line=first_line)
        if labelled:
            task.check_stream_rows(frame, examples)
        return examples, []
    except DataError as err:
        if on_bad_row != "skip":
            raise
        if len(frame) == 1:
            return None, [f"{path}, line {first_line}: {err}"]
    good, bad = [], []
    for i in range(len(frame)):
        examples, why = _checked_chunk(task, frame.iloc[i : i + 1], path, first_line + i, on_bad_row, labelled)
        (good.append(i) if examples is not None else bad.extend(why))
    examples = task.examples_from_frame(frame.iloc[good], path, labelled=labelled, first_line=first_line)
    return examples, bad


def read_chunks(path: str, data, chunk_rows: int = CHUNK_ROWS, multiline: bool = False):
    """`(frame of strings, line of its first row, bytes read)` chunks of one file, for the pre-pass.

    `multiline=True` (for `tfft shard`) reads CSV and TSV cells that span lines, as the in-memory path
    does; the stream cannot, so the pre-pass refuses them.
    """
    kind = file_kind(path, data)
    if multiline and kind in ("csv", "tsv"):
        yield from _table_chunks(path, kind, data, chunk_rows)
        return
    if kind == "tfrecord":
        yield from _tfrecord_chunks(path, chunk_rows)
        return
    if kind == "parquet":
        line = 1
        for frame, size in _parquet_batches(path, chunk_rows):
            yield frame, line, size
            line += len(frame)
        return
    header_line = None
    for lines, first_line, size in _line_chunks(path, chunk_rows, skip_header=kind != "jsonl" and data.has_header):
        if kind == "jsonl":
            yield data_lib.jsonl_frame("\n".join(lines), pathlib.Path(path)), first_line, size
            continue
        if header_line is None:
            header_line = _header(path) if data.has_header else ""
        yield _delimited_chunk(lines, first_line, header_line, path, kind, data), first_line, size


_SPANS_LINES = (
    "A streamed CSV holds one row per line: convert the file with `tfft shard --input={path} --output=<prefix> "
    "--num_shards=<N>` (TFRecord shards, which keep the line breaks) and train on `<prefix>-*.tfrecord`, or set "
    "`data.streaming: false`."
)


def _delimited_chunk(lines: list[str], first_line: int, header_line: str, path: str, kind: str, data) -> pd.DataFrame:
    """CSV or TSV lines as a frame of strings, one row per line.

    A line that cannot be a row (an unclosed quote, a wrong number of fields) fails naming its line and cause; with
    `data.on_bad_row: skip` it is left out, and listed in `frame.attrs["skipped"]` for the pre-pass to count.
    """
    options = data_lib.delimited_options(kind == "tsv", data.has_header, data.quoting)
    header = header_line + "\n" if data.has_header else ""
    try:
        frame = pd.read_csv(io.StringIO(header + "\n".join(lines)), **options)
    except pd.errors.ParserError:
        frame = None
    if frame is not None and len(frame) == len(lines):
        frame.columns = [str(c) for c in frame.columns]
        frame.attrs["skipped"] = []
        return frame
    if frame is not None and data.on_bad_row != "skip":  # parsed, into fewer rows: a quoted cell joins lines
        raise DataError(f"Data file `{path}`: the {len(lines)} lines from line {first_line} hold {len(frame)} rows: "
                        "a quoted cell spans lines. " + _SPANS_LINES.format(path=path))
    width = len(_fields(header_line if data.has_header else lines[0], kind, data))
    bad = {first_line + i: why for i, line in enumerate(lines) if (why := _bad_line(line, width, kind, data))}
    if data.on_bad_row != "skip":
        if not bad:
            raise DataError(f"Data file `{path}`: the {len(lines)} lines from line {first_line} cannot be read as "
                            f"{kind.upper()}. Quote cells that hold the separator or span lines.")
        line, why = next(iter(bad.items()))
        fix = "Quote cells that hold the separator." if "fields" in why else (
            "Close the quote; a quoted cell that spans lines cannot stream. " + _SPANS_LINES.format(path=path))
        raise DataError(f"Data file `{path}`: line {line} {why}. {fix}")
    good = [line for i, line in enumerate(lines) if first_line + i not in bad]
    frame = pd.read_csv(io.StringIO(header + "\n".join(good)), **options) if good else pd.DataFrame(
        columns=_fields(header_line, kind, data) if data.has_header else [str(i) for i in range(width)])
    frame.columns = [str(c) for c in frame.columns]
    frame.attrs["skipped"] = [f"{path}, line {line}: it {why}" for line, why in bad.items()]
    return frame


def _fields(line: str, kind: str, data) -> list[str]:
    quoting = csv.QUOTE_NONE if data_lib.quotes_ignored(kind == "tsv", data.quoting) else csv.QUOTE_MINIMAL
    return next(csv.reader([line], delimiter="\t" if kind == "tsv" else ",", quoting=quoting), [])


def _bad_line(line: str, width: int, kind: str, data) -> str | None:
    """Why one CSV/TSV line is not a row of `width` fields, or None."""
    if not data_lib.quotes_ignored(kind == "tsv", data.quoting) and line.count('"') % 2:
        return 'has an unclosed quote (a `"` that no `"` on the line closes)'
    fields = len(_fields(line, kind, data))
    return f"has {fields} fields where the header has {width}" if fields != width else None


def _table_chunks(path: str, kind: str, data, chunk_rows: int):
    """A CSV or TSV read by pandas a chunk at a time: a quoted cell may span lines. Rows, not lines, are counted."""
    with tf.io.gfile.GFile(path, "r") as f:  # text: pandas would wrap a binary one, which a GFile cannot be
        try:
            reader = pd.read_csv(f, chunksize=chunk_rows,
                                 **data_lib.delimited_options(kind == "tsv", data.has_header, data.quoting))
            row, done = 1 + int(data.has_header), 0
            for frame in reader:
                frame.columns = [str(c).lstrip("\ufeff") for c in frame.columns]
                position = f.tell()
                yield frame, row, position - done
                row, done = row + len(frame), position
        except (pd.errors.ParserError, UnicodeDecodeError) as err:
            raise DataError(f"Data file `{path}` cannot be read as UTF-8 {kind.upper()}: {err}. Re-save it as "
                            f"UTF-8 {kind.upper()}, with the separator quoted in cells.") from None


def _header(path: str) -> str:
    with tf.io.gfile.GFile(path, "rb") as f:
        return _decode(f.readline(), path, 1).rstrip("\r\n")


def _line_chunks(path: str, chunk_rows: int, skip_header: bool):
    """`(non-empty lines, line number of the first, bytes)` of a text file, `chunk_rows` lines at a time.

    Reads as it goes: memory holds one chunk, however large the file.
    """
    lines, first, size = [], None, 0
    with tf.io.gfile.GFile(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            size += len(raw)
            if number == 1 and skip_header:
                continue
            line = _decode(raw, path, number).rstrip("\r\n")
            if not line.strip():
                continue
            if first is None:
                first = number
            lines.append(line)
            if len(lines) == chunk_rows:
                yield lines, first, size
                lines, first, size = [], None, 0
    if lines:
        yield lines, first, size


def _decode(raw: bytes, path: str, line: int) -> str:
    try:
        return raw.decode("utf-8-sig" if line == 1 else "utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"Data file `{path}` is not valid UTF-8: line {line}, column {err.start + 1} holds the bytes "
            f"{raw[err.start : err.end + 2]!r}. Re-save the file as UTF-8."
        ) from None


def _parquet_file(path: str):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("Reading Parquet needs pyarrow: `pip install pyarrow` (or tfft's `[parquet]` extra).") from None
    with tf.io.gfile.GFile(path, "rb") as f:  # one shard, read whole, as for the other formats
        return pq.ParquetFile(io.BytesIO(f.read()))


def _parquet_batches(path: str, rows: int, columns: list[str] | None = None):
    """`(frame of strings, bytes)` batches of a Parquet file: numbers as their text, nulls as ""."""
    parquet = _parquet_file(path)
    share = parquet.metadata.serialized_size / max(parquet.metadata.num_rows, 1)
    for batch in parquet.iter_batches(batch_size=rows, columns=columns):
        frame = batch.to_pandas()
        for column in frame.columns:
            frame[column] = ["" if v is None or v != v else str(v) for v in frame[column].tolist()]
        frame.columns = [str(c) for c in frame.columns]
        yield frame, int(share * len(frame)) or len(frame)


def _tfrecord_chunks(path: str, chunk_rows: int):
    """Record chunks parsed by `tf.io.parse_example` (in C++); the features' kinds come from the first record."""
    kinds = _feature_kinds(_column_names(path, "tfrecord", None))
    spec = _tfrecord_spec(kinds, list(kinds), missing_ok=True)
    line = 1
    for batch in tf.data.TFRecordDataset(path).batch(chunk_rows).with_options(data_lib.pipeline_options()):
        parsed = tf.io.parse_example(batch, spec)
        # Numbers become text by the stream's own op, so a label reads the same in both.
        columns = {name: [v.decode("utf-8") for v in _feature_text(values).numpy()] for name, values in parsed.items()}
        size = int(tf.reduce_sum(tf.strings.length(batch)))
        yield pd.DataFrame(columns), line, size
        line += int(batch.shape[0])


# --- Stream -------------------------------------------------------------------


def stream_dataset(
    files: list[str],
    task,
    packer,
    data,
    batching: data_lib.Batching,
    *,
    seed: int = 0,
    epochs: int = 1,
    workers: int = 1,
    unlabeled: list[str] = (),
    unlabeled_share: float = 0.0,
) -> tf.data.Dataset:
    """The training pipeline over `files`, as `tfft.data.make_dataset` builds it in memory; see the module docstring.

    Epoch `e` reads the files in an order shuffled with `seed + e` and
    shuffles rows within `data.shuffle_buffer` (0: 10,000 rows) with the same
    seed; the epochs are laid out one after another, then repeated
    (`tfft.data.training_pipeline`).

    `unlabeled` files (`distill.unlabeled`: the text columns only) join each
    epoch's rows, drawn with the same seed at `unlabeled_share` of them (their
    share of all rows), each marked by the feature `UNLABELED` (1.0, the
    training files' rows 0.0) and with zero targets: the teacher labels them in
    the training step (`tfft.distill.SoftTargets`).
    """
    buffer = data.shuffle_buffer or 10_000
    targets = task.stream_targets()  # built eagerly: its lookup table lives outside the dataset's functions
    layout = _checked_layout(files, data, targets)  # every file's header read once, not once per epoch
    extra_layout = _checked_layout(list(unlabeled), data, None) if unlabeled else None

    def epoch_examples(e: int) -> tf.data.Dataset:
        order = list(np.random.default_rng(seed + e).permutation(len(files)))
        rows = _rows(files, [files[i] for i in order], data, targets, layout)
        if unlabeled:
            rows = _with_unlabeled(rows, list(unlabeled), unlabeled_share, data, seed + e, extra_layout)
        rows = rows.shuffle(buffer, seed=seed + e, reshuffle_each_iteration=False)
        return data_lib.batch_rows(rows, data_lib.TOKENIZE_BATCH).map(
            lambda inputs, targets: _packed(task, packer, inputs, targets), num_parallel_calls=tf.data.AUTOTUNE
        ).unbatch()

    policy = shard_policy(files, data, workers) if not unlabeled else tf.data.experimental.AutoShardPolicy.DATA
    if workers > 1:
        by = "file" if policy == tf.data.experimental.AutoShardPolicy.FILE else "row"
        logger.info("Training data: %d file(s) over %d workers, sharded by %s.", len(files), workers, by)
    return data_lib.training_pipeline(
        epoch_examples, batching, seed=seed, epochs=epochs, sequence_length=packer.sequence_length,
        sequence_targets=task.sequence_targets, shard_policy=policy,
    )


def _with_unlabeled(rows: tf.data.Dataset, files: list[str], share: float, data, seed: int, layout) -> tf.data.Dataset:
    """`rows` and the rows of the unlabeled `files`, drawn at `share` of them with `seed`, each marked (`UNLABELED`)."""
    order = list(np.random.default_rng(seed).permutation(len(files)))
    texts = _rows(files, [files[i] for i in order], data, None, layout)
    target_spec = rows.element_spec[1]

    def labelled(inputs, targets):
        return {**inputs, UNLABELED: tf.zeros([1])}, targets

    def unlabeled(inputs):
        zeros = tf.nest.map_structure(lambda spec: tf.zeros([d or 0 for d in spec.shape], spec.dtype), target_spec)
        return {**inputs, UNLABELED: tf.ones([1])}, zeros

    return tf.data.Dataset.sample_from_datasets(
        [rows.map(labelled), texts.map(unlabeled)], weights=[1.0 - share, share], seed=seed,
        stop_on_empty_dataset=False,
    )


def _packed(task, packer, inputs: dict, targets):
    """`task.pack` of a batch of rows, with their `UNLABELED` marks among the features where they have them."""
    packed = task.pack(packer, inputs, targets)
    if UNLABELED not in inputs:
        return packed
    return ({**packed[0], UNLABELED: inputs[UNLABELED]}, *packed[1:])


def shard_policy(files: list[str], data, workers: int) -> tf.data.experimental.AutoShardPolicy:
    """How `tf.distribute` splits the stream between `workers`: by file when each gets one, else by row.

    TensorFlow's own `AUTO` fails outright with fewer files than workers, and Parquet files (read by Python,
    not a TensorFlow reader) cannot be split by file.
    """
    by_file = len(files) >= workers and file_kind(files[0], data) != "parquet"
    return tf.data.experimental.AutoShardPolicy.FILE if by_file else tf.data.experimental.AutoShardPolicy.DATA


def check_streamable(task, config) -> None:
    """Fails with a `ConfigError` before training when the run cannot stream its training files."""
    reason = task.stream_unsupported
    if reason is not None:
        raise ConfigError(
            f"`task.type: {task.type}` cannot stream its training data ({reason}). "
            "Set `data.streaming: false` and give one file."
        )
    for key, value in (("data.max_train_examples", config.data.max_train_examples),
                       ("train.class_weight", config.train.class_weight)):
        if value is not None:
            raise ConfigError(
                f"Argument `{key}` applies to data read into memory, not streamed. Received: "
                f"{key.split('.')[1]}={value!r}. Remove it, or set `data.streaming: false`."
            )


def _checked_layout(files: list[str], data, targets) -> tuple[str, list[str], list[str]]:
    """`(kind, the first file's column names, the columns read)`, once every file is checked (`check_columns`).

    `targets` None reads the text columns alone (`distill.unlabeled`'s files).
    """
    kinds = {file_kind(f, data) for f in files}
    if len(kinds) != 1:
        raise DataError(f"The training files mix formats ({', '.join(sorted(kinds))}); convert them to one.")
    kind = kinds.pop()
    columns = [data.text_column] + ([data.text_pair_column] if data.text_pair_column else [])
    columns += targets.columns if targets is not None else []
    return kind, check_columns(files, kind, data, columns), columns


def _rows(all_files: list[str], files: list[str], data, targets, layout=None) -> tf.data.Dataset:
    """`(inputs, targets)` per row, read by TensorFlow's file readers; bad rows dropped as the pre-pass did.

    `layout` is `_checked_layout(all_files, ...)`, computed once for every epoch's reader; None computes it.
    `targets` None gives `inputs` alone.
    """
    kind, names, columns = layout or _checked_layout(all_files, data, targets)
    reader = functools.partial(_read_file, kind=kind, data=data, names=names, columns=columns)
    rows = tf.data.Dataset.from_tensor_slices(files).interleave(
        reader, cycle_length=min(len(files), 4), block_length=16, num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if data.on_bad_row == "skip":
        rows = rows.ignore_errors()  # rows the reader cannot parse; the pre-pass counted them

    def valid(row):
        ok = tf.strings.length(tf.strings.strip(row[data.text_column])) > 0
        if data.text_pair_column:
            ok &= tf.strings.length(tf.strings.strip(row[data.text_pair_column])) > 0
        return ok & targets.valid(row) if targets is not None else ok

    def split(row):
        inputs = {"text": row[data.text_column]}
        if data.text_pair_column:
            inputs["text_pair"] = row[data.text_pair_column]
        return (inputs, targets.targets(row)) if targets is not None else inputs

    return rows.filter(valid).map(split, num_parallel_calls=tf.data.AUTOTUNE)


def check_columns(files: list[str], kind: str, data, columns: list[str]) -> list[str]:
    """Checks that every file has `columns`, read the same way; returns the first file's column names.

    The stream reads a CSV or TSV row by column position, so each file's header must equal the first's (a shard
    whose header is `label,text` would give the labels as texts); records and JSON are read by name, and each file
    must hold the columns (TFRecord: with the same kind of feature).
    """
    first = _column_names(files[0], kind, data)
    for path in files:
        names = first if path == files[0] else _column_names(path, kind, data)
        plain = [n.split(":", 1)[1] for n in names] if kind == "tfrecord" else names
        missing = [c for c in columns if c not in plain]
        if missing:
            raise DataError(f"Data file `{path}` has no column `{missing[0]}`. Its columns are: {', '.join(plain)}.")
        if kind in ("csv", "tsv") and names != first:
            raise DataError(
                f"Data file `{path}` has the header {','.join(names)!r}, and `{files[0]}` has "
                f"{','.join(first)!r}. Streamed files are read by column position: give every shard the same "
                "header, in the same order."
            )
        if kind == "tfrecord" and {n for n in names if n.split(":", 1)[1] in columns} != {
                n for n in first if n.split(":", 1)[1] in columns}:
            raise DataError(f"Data file `{path}` stores its features as {sorted(names)}, and `{files[0]}` as "
                            f"{sorted(first)}: give every shard the same kind (bytes, int64 or float) per feature.")
    return first


def _column_names(path: str, kind: str, data) -> list[str]:
    if kind == "parquet":
        return [str(name) for name in _parquet_file(path).schema_arrow.names]
    if kind == "tfrecord":
        first = [record.numpy() for record in tf.data.TFRecordDataset(path).take(1)]
        if not first:  # an empty file: no features
            return []
        features = tf.train.Example.FromString(first[0]).features.feature
        return sorted(f"{features[name].WhichOneof('kind')}:{name}" for name in features)
    with tf.io.gfile.GFile(path, "r") as f:
        line = f.readline().lstrip("\ufeff")
    if kind == "jsonl":
        return list(json.loads(line))
    fields = next(csv.reader([line], delimiter="\t" if kind == "tsv" else ","))
    return fields if data.has_header else [str(i) for i in range(len(fields))]


def _read_file(path, *, kind: str, data, names: list[str], columns: list[str]) -> tf.data.Dataset:
    """One file's rows as `{column: string}`."""
    if kind in ("csv", "tsv"):
        # `TextLineDataset` and `decode_csv`, not `CsvDataset`: tf.distribute shards only file readers it knows
        # by file, and `CsvDataset` is not one of them. A row is one line (the pre-pass checks it).
        # Every field is decoded, so a line with too many or too few fields fails here, as in the pre-pass (with
        # `on_bad_row: skip`, `ignore_errors` drops it there too); `select_cols` would let extra fields through.
        index = [names.index(c) for c in columns]
        lines = tf.data.TextLineDataset(path).skip(1 if data.has_header else 0)
        lines = lines.filter(lambda line: tf.strings.length(line) > 0)

        def decode(line):
            values = tf.io.decode_csv(
                line, record_defaults=[tf.constant("", tf.string)] * len(names), field_delim="\t" if kind == "tsv" else ",",
                use_quote_delim=not data_lib.quotes_ignored(kind == "tsv", data.quoting),
            )
            return {column: values[i] for column, i in zip(columns, index, strict=True)}

        return lines.map(decode)
    if kind == "tfrecord":
        return tf.data.TFRecordDataset(path).map(_tfrecord_parser(columns, names))
    if kind == "parquet":
        # No TensorFlow reader reads Parquet: Python (pyarrow) does, a batch at a time. tf.distribute then
        # shards such files by row, not by file.
        def batches(name):
            for frame, _ in _parquet_batches(name.decode(), 4096, columns):
                yield {c: np.asarray(frame[c].tolist(), dtype=object) for c in columns}

        spec = {c: tf.TensorSpec([None], tf.string) for c in columns}
        return tf.data.Dataset.from_generator(batches, args=(path,), output_signature=spec).unbatch()
    lines = tf.data.TextLineDataset(path).filter(lambda line: tf.strings.length(tf.strings.strip(line)) > 0)

    def parse_json(batch):
        records = [json.loads(line) for line in batch.numpy()]
        return [np.asarray([data_lib.json_cell(r.get(c, "")) for r in records], dtype=object) for c in columns]

    def parse(batch):
        values = tf.py_function(parse_json, [batch], [tf.string] * len(columns))
        return {c: tf.reshape(v, [-1]) for c, v in zip(columns, values, strict=True)}

    return lines.batch(256).map(parse).unbatch()


_FEATURE_DTYPES = {"bytes_list": tf.string, "int64_list": tf.int64, "float_list": tf.float32}


def _feature_kinds(names: list[str]) -> dict[str, str]:
    """Feature name -> kind (`bytes_list`, ...), from `_column_names`' "kind:name" entries for records."""
    return dict(name.split(":", 1)[::-1] for name in names)


def _tfrecord_spec(kinds: dict[str, str], columns: list[str], missing_ok: bool) -> dict:
    """`parse_example` features for `columns`; `missing_ok` gives a record without one an empty value."""
    defaults = {"bytes_list": b"", "int64_list": 0, "float_list": 0.0}
    return {c: tf.io.FixedLenFeature([], _FEATURE_DTYPES[kinds[c]], default_value=defaults[kinds[c]] if missing_ok
                                     else None) for c in columns}


def _tfrecord_parser(columns: list[str], names: list[str]):
    """Parses `tf.train.Example` records into strings; int64 and float features by their text form."""
    spec = _tfrecord_spec(_feature_kinds(names), columns, missing_ok=False)

    def parse(record):
        return {c: _feature_text(v) for c, v in tf.io.parse_single_example(record, spec).items()}

    return parse


def _feature_text(values: tf.Tensor) -> tf.Tensor:
    """A parsed feature as strings: bytes as they are, int64 and float by their shortest text form."""
    if values.dtype == tf.string:
        return values
    return tf.strings.as_string(values) if values.dtype == tf.int64 else tf.strings.as_string(values, shortest=True)
