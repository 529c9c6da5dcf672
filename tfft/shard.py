"""`tfft shard`: one large table file into N shards (TFRecord or JSONL), for streamed training.

Rows go round-robin, row `i` to shard `i % N`, in order, so every shard holds
a sample of the whole file. Every column is written, as text (TFRecord: a
bytes feature per column). Each shard is written under a temporary name and
renamed once complete; the output may be on any filesystem TensorFlow
writes (`gs://bucket/prefix`).

```bash
tfft shard --input=big.csv --output=gs://bucket/train --num_shards=64
# gs://bucket/train-00000-of-00064.tfrecord ... ; then data.train: gs://bucket/train-*.tfrecord
```
"""

from __future__ import annotations

import json
import logging

import tensorflow as tf

from tfft.config import DataConfig
from tfft.errors import ConfigError, DataError
from tfft.progress import progress_bar

logger = logging.getLogger(__name__)

FORMATS = ("tfrecord", "jsonl")

__all__ = ["shard_file", "FORMATS"]


def shard_file(
    input_path: str,
    output_prefix: str,
    num_shards: int,
    format: str = "tfrecord",
    data: DataConfig | None = None,
    progress: bool = True,
) -> list[str]:
    """Writes `input_path`'s rows into `num_shards` files named `<output_prefix>-00000-of-000NN.<format>`.

    A shard holds at least one row: an input with fewer rows than `num_shards` gets one shard per row (and a
    warning). Shards already at `output_prefix` are refused, not mixed with the new ones. On an error, nothing
    is left behind.

    Args:
        input_path: str. A `.csv`, `.tsv` or `.jsonl` file (read as `data` says: header, quoting, format).
            Quoted CSV cells may span lines; the shards keep their line breaks.
        output_prefix: str. Path and name prefix of the shards, local or `gs://`.
        num_shards: int. How many shards, at most.
        format: str. `tfrecord` (`tf.train.Example`, a bytes feature per column) or `jsonl`.
        data: `DataConfig` or None. How to read the input (defaults: header, `auto` quoting).
        progress: bool. Show a progress bar.

    Returns:
        The shard paths.
    """
    from tfft import streaming

    if num_shards < 1:
        raise ConfigError(f"Argument `--num_shards` must be at least 1. Received: num_shards={num_shards}")
    if format not in FORMATS:
        raise ConfigError(f"Argument `--shard_format` must be one of {FORMATS}. Received: shard_format={format!r}")
    data = data or DataConfig()
    (path,) = streaming.expand_files(input_path, key="--input")
    _refuse_existing_shards(output_prefix)
    parent = output_prefix.rsplit("/", 1)[0] if "/" in output_prefix else ""
    if parent:
        tf.io.gfile.makedirs(parent)
    temporary = [f"{output_prefix}-{i:05d}.{format}.tmp" for i in range(num_shards)]
    try:
        rows = _write_rows(streaming.read_chunks(path, data, multiline=True), [_writer(t, format) for t in temporary],
                           tf.io.gfile.stat(path).length if progress else None)
        if rows == 0:
            raise DataError(f"Data file `{path}` has no rows to shard.")
        return _publish(temporary, output_prefix, format, rows, num_shards)
    finally:
        for name in temporary:  # whatever was not published: an error's partial output, empty shards
            if tf.io.gfile.exists(name):
                tf.io.gfile.remove(name)


def _refuse_existing_shards(output_prefix: str) -> None:
    existing = sorted(tf.io.gfile.glob(f"{output_prefix}-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9].*"))
    if existing:
        raise ConfigError(
            f"Argument `--output` names shards that exist already: {', '.join(existing[:3])}"
            f"{f' and {len(existing) - 3} more' if len(existing) > 3 else ''}. A glob over the prefix would read "
            "both sets; remove them first, or choose another --output."
        )


def _write_rows(chunks, writers: list, total_bytes: int | None) -> int:
    """Writes the rows round-robin, row `i` to writer `i % len(writers)`; closes every writer; returns the rows."""
    bar = progress_bar(total_bytes, "byte") if total_bytes is not None else None
    row = 0
    try:
        for frame, _, size in chunks:
            columns = list(frame.columns)
            for values in frame.itertuples(index=False, name=None):
                writers[row % len(writers)](dict(zip(columns, (str(v) for v in values), strict=True)))
                row += 1
            if bar is not None:
                bar.add(size)
    finally:
        for write in writers:
            write(None)
    return row


def _publish(temporary: list[str], output_prefix: str, format: str, rows: int, num_shards: int) -> list[str]:
    """Renames the shards that hold rows to their final names (`-of-` the shards written)."""
    count = min(rows, num_shards)
    if count < num_shards:
        logger.warning("The input has %d rows: wrote %d shards, not %d (a shard holds at least one row).",
                       rows, count, num_shards)
    names = [f"{output_prefix}-{i:05d}-of-{count:05d}.{format}" for i in range(count)]
    for tmp, name in zip(temporary, names, strict=False):
        tf.io.gfile.rename(tmp, name, overwrite=True)
    logger.info("Wrote %d rows into %d shards: %s ... %s", rows, count, names[0], names[-1])
    return names


def _writer(path: str, format: str):
    """A function that writes one row (a dict of strings), and closes the file when given None."""
    if format == "tfrecord":
        writer = tf.io.TFRecordWriter(path)

        def write(row):
            if row is None:
                writer.close()
                return
            feature = {k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode("utf-8")]))
                       for k, v in row.items()}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())

        return write
    f = tf.io.gfile.GFile(path, "w")

    def write_line(row):
        if row is None:
            f.close()
            return
        f.write(json.dumps(row, ensure_ascii=False) + "\n")

    return write_line
