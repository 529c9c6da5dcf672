"""Memory and speed of streamed training data as it grows, against the in-memory path; pre-pass speed; accuracy.

Writes its own data: SST-2 training sentences resampled (with replacement, seeded) to --sizes rows, as 16 CSV
shards each (and, for the smallest size, one CSV file too, for the in-memory row; and 16 TFRecord shards of the
--prepass_rows size, for the pre-pass row). Data goes to --work_dir and is reused by later runs.

- Memory and speed: the demo backbone (`tiny-bert`, 2 x 64), sequence cap 64, batch 32, trained --steps steps in a
  fresh process per row; peak RSS of that process, and steps per second over the steps after the first 50.
- Pre-pass: rows per second of `tfft.streaming.scan` over 16 shards, CSV and TFRecord.
- Accuracy: all-MiniLM-L6-v2 fine-tuned on the first 8,000 SST-2 sentences, one file against 8 shards of the
  same rows; SST-2 dev accuracy.

    python benchmarks/streaming_memory.py                                  # everything (about 25 minutes)
    python benchmarks/streaming_memory.py --parts=prepass                  # the pre-pass rows only
"""

from __future__ import annotations

import json
import pathlib

from absl import app, flags

import common

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with sst2/ and all_minilm_l6_v2/.")
_WORK_DIR = flags.DEFINE_string("work_dir", "runs/bench_streaming", "Where the generated data and runs go.")
_SIZES = flags.DEFINE_list("sizes", ["100000", "1000000", "5000000"], "Row counts to stream.")
_STEPS = flags.DEFINE_integer("steps", 400, "Training steps per memory/speed row.")
_PREPASS_ROWS = flags.DEFINE_integer("prepass_rows", 1_000_000, "Rows for the pre-pass speed rows.")
_PARTS = flags.DEFINE_list("parts", ["memory", "prepass", "accuracy"], "Which tables to measure.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2", "3", "4"], "Seeds of the accuracy rows (data order, head, dropout).")

SHARDS = 16

MAKE_DATA = """
import csv, pathlib, sys
import numpy as np, pandas as pd
import tensorflow as tf
sst2, out, n, shards, one_file, tfrecord = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), \\
    sys.argv[5] == "1", sys.argv[6] == "1"
frame = pd.read_csv(sst2, sep="\\t", quoting=csv.QUOTE_NONE, keep_default_na=False)
rows = frame.sample(n=n, replace=True, random_state=0).reset_index(drop=True)
rows = rows.rename(columns={"sentence": "text"})[["text", "label"]]
out.mkdir(parents=True, exist_ok=True)
for i in range(shards):
    rows.iloc[i::shards].to_csv(out / f"train-{i:02d}-of-{shards}.csv", index=False)
    if tfrecord:
        with tf.io.TFRecordWriter(str(out / f"train-{i:02d}-of-{shards}.tfrecord")) as w:
            for text, label in rows.iloc[i::shards].itertuples(index=False):
                f = {"text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode()])),
                     "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)]))}
                w.write(tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString())
if one_file:
    rows.to_csv(out / "all.csv", index=False)
print("{}")
"""

TRAIN = """
import json, sys, time
import tfft  # first: tfft's environment (oneDNN's kernels) before TensorFlow loads
import keras
from tfft import train
from tfft.config import load_config
from common import peak_rss_mb
overrides, steps = json.loads(sys.argv[1]), int(sys.argv[2])

class Stop(keras.callbacks.Callback):
    times = []
    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())
        if len(self.times) >= steps:
            self.model.stop_training = True

stop = Stop()
started = time.perf_counter()
train.run(load_config("configs/demo.yaml", overrides), callbacks=[stop])
window = stop.times[50:]
print(json.dumps({"steps_per_s": (len(window) - 1) / (window[-1] - window[0]), "peak_rss_mb": peak_rss_mb(),
                  "seconds_to_first_step": stop.times[0] - started}))
"""

PREPASS = """
import json, sys, time
from tfft import streaming, tasks
from tfft.config import load_config
spec = sys.argv[1]
config = load_config(None, [f"data.train={spec}"])
files = streaming.expand_files(spec)
started = time.perf_counter()
scanned = streaming.scan(files, tasks.create(config), config.data, progress=False)
seconds = time.perf_counter() - started
print(json.dumps({"rows": scanned.rows, "seconds": seconds, "rows_per_s": scanned.rows / seconds}))
"""

ACCURACY = """
import json, sys
from tfft import train
from tfft.config import load_config
result = train.run(load_config("configs/sst2_minilm.yaml", json.loads(sys.argv[1])))
print(json.dumps({"accuracy": result.metrics["accuracy"], "train_seconds": result.metrics["train_seconds"]}))
"""


def main(argv):
    del argv
    data = common.data_dir(_DATA_DIR.value)
    work = (common.REPO / _WORK_DIR.value).resolve()
    sst2 = data / "sst2" / "train.tsv"
    sizes = [int(s) for s in _SIZES.value]

    def ensure(n: int, one_file: bool, tfrecord: bool) -> pathlib.Path:
        folder = work / "data" / str(n)
        marker = folder / ("all.csv" if one_file else f"train-00-of-{SHARDS}.{'tfrecord' if tfrecord else 'csv'}")
        if not marker.is_file():
            common.run_child(MAKE_DATA, str(sst2), str(folder), str(n), str(SHARDS), str(int(one_file)),
                             str(int(tfrecord)))
        return folder

    base = ["model.sequence_length=64", "data.validation=", "data.text_column=text", "export.enabled=false",
            "train.epochs=1", "train.overwrite_output_dir=true"]
    rows = []
    smallest = min(sizes)
    if "memory" not in _PARTS.value:
        sizes = []
    folder = ensure(smallest, one_file=True, tfrecord=False) if sizes else None
    result = {} if not sizes else common.run_child(TRAIN, json.dumps([*base, f"data.train={folder / 'all.csv'}", "data.streaming=false",
                                                 f"output_dir={work / 'run_memory'}"]), str(_STEPS.value))
    if sizes:
        rows.append({"data": f"{smallest:,} rows, one file, in memory", **result})
        print(rows[-1], flush=True)
    for n in sizes:
        folder = ensure(n, one_file=n == smallest, tfrecord=False)
        result = common.run_child(TRAIN, json.dumps([*base, f"data.train={folder}/train-*.csv", "data.streaming=true",
                                                     f"output_dir={work / f'run_{n}'}"]), str(_STEPS.value))
        rows.append({"data": f"{n:,} rows, {SHARDS} CSV shards, streamed", **result})
        print(rows[-1], flush=True)
    if rows:
        common.report("streaming_memory", rows, ["data", "peak_rss_mb", "steps_per_s", "seconds_to_first_step"])

    folder = ensure(_PREPASS_ROWS.value, one_file=False, tfrecord=True) if "prepass" in _PARTS.value else None
    prepass = []
    for kind in ("csv", "tfrecord") if folder else ():
        result = common.run_child(PREPASS, f"{folder}/train-*.{kind}")
        prepass.append({"files": f"{SHARDS} {kind} shards", **result})
        print(prepass[-1], flush=True)
    if prepass:
        common.report("streaming_prepass", prepass, ["files", "rows", "seconds", "rows_per_s"])

    if "accuracy" in _PARTS.value:
        accuracy = []
        folder = work / "data" / "sst2_8000"
        if not (folder / "all.csv").is_file():
            import pandas as pd

            frame = pd.read_csv(sst2, sep="\t", quoting=3, keep_default_na=False).head(8000)
            folder.mkdir(parents=True, exist_ok=True)
            frame.to_csv(folder / "all.csv", index=False)
            for i in range(8):
                frame.iloc[i::8].to_csv(folder / f"train-{i}-of-8.csv", index=False)
        minilm = [f"model.backbone={data / 'all_minilm_l6_v2'}", f"data.validation={data / 'sst2' / 'dev.tsv'}",
                  "export.enabled=false", "train.overwrite_output_dir=true"]
        for seed in _SEEDS.value:  # alternating: one file, then shards, for each seed
            for name, spec, streamed in (("one file, in memory", folder / "all.csv", "false"),
                                         ("8 shards, streamed", f"{folder}/train-*-of-8.csv", "true")):
                overrides = [*minilm, f"data.train={spec}", f"data.streaming={streamed}", f"train.seed={seed}",
                             f"output_dir={work / 'run_accuracy'}"]
                result = common.run_child(ACCURACY, json.dumps(overrides))
                accuracy.append({"SST-2, 8,000 sentences": name, "seed": seed, **result})
                print(accuracy[-1], flush=True)
        for name in ("one file, in memory", "8 shards, streamed"):
            scores = [row["accuracy"] for row in accuracy if row["SST-2, 8,000 sentences"] == name and "seed" in row]
            accuracy.append({"SST-2, 8,000 sentences": name, "seed": "mean", "accuracy": sum(scores) / len(scores),
                             "train_seconds": f"spread {min(scores):.4f}-{max(scores):.4f}"})
        common.report("streaming_accuracy", accuracy, ["SST-2, 8,000 sentences", "seed", "accuracy", "train_seconds"])


if __name__ == "__main__":
    app.run(main)
