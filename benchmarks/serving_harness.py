"""The serving harness of `serving_speed.py`, shared with `distill_sst2.py`: one SST-2 classifier, one fresh process.

A row is a model file and how to load it (`saved_model`, `litert_*`, `hf_pipeline`). Each is measured in its own
process on the 872 SST-2 dev sentences, tokenization included: batch-1 latency (p50, p99) over every sentence after
20 warmup calls, batch-32 throughput after one warmup pass, the size of what a server loads, peak RSS, accuracy.
"""

from __future__ import annotations

import pathlib

import common

# Each child measures one row and prints one JSON line.
MEASURE = """
import json, os, pathlib, sys, time
import numpy as np, pandas as pd
from common import peak_rss_mb
row, path, dev_file = sys.argv[1], sys.argv[2], sys.argv[3]
dev = pd.read_csv(dev_file, sep="\\t", quoting=3, keep_default_na=False)
texts, labels = dev.sentence.tolist(), dev.label.to_numpy()

if row == "saved_model":
    import tensorflow as tf, tensorflow_text  # noqa: F401
    serve = tf.saved_model.load(path).signatures["serving_default"]
    def predict(batch):
        out = serve(text=tf.constant(batch))
        return out["label_id"].numpy(), out["probabilities"].numpy()
    size = sum(p.stat().st_size for p in pathlib.Path(path).rglob("*") if p.is_file() and "litert" not in p.name
               and p.suffix != ".tflite")
    labels_out = [l.strip() for l in (pathlib.Path(path) / "assets" / "labels.txt").read_text().splitlines()]
elif row.startswith("litert"):
    from tfft.litert import LiteRTModel
    model = LiteRTModel(path, num_threads=os.cpu_count())
    def predict(batch):
        out = model(text=batch)
        return out["label_id"], out["probabilities"]
    size = pathlib.Path(path).stat().st_size
    labels_out = [l.strip() for l in (pathlib.Path(path).parent / "assets" / "labels.txt").read_text().splitlines()]
else:
    import torch
    from transformers import pipeline
    pipe = pipeline("text-classification", model=path, tokenizer=path, device=-1, truncation=True, max_length=128)
    def predict(batch):
        return np.array([int(r["label"].split("_")[-1]) for r in pipe(batch, batch_size=len(batch))]), None
    size = sum(p.stat().st_size for p in pathlib.Path(path).rglob("*") if p.is_file())
    labels_out = ["0", "1"]

for text in texts[:20]:
    predict([text])
latencies, predicted, probabilities = [], [], []
for text in texts:
    started = time.perf_counter()
    label_id, probs = predict([text])
    latencies.append(time.perf_counter() - started)
    predicted.append(label_id[0])
    probabilities.append(None if probs is None else probs[0].tolist())
batches = [texts[i:i + 32] for i in range(0, len(texts), 32)]
for batch in batches:
    predict(batch)
started = time.perf_counter()
for batch in batches:
    predict(batch)
throughput = len(texts) / (time.perf_counter() - started)
predicted_labels = np.array([int(labels_out[i]) for i in predicted])
ms = np.array(latencies) * 1000
print(json.dumps({"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
                  "batch32_per_s": throughput, "size_mb": size / 1e6, "peak_rss_mb": peak_rss_mb(),
                  "accuracy": float((predicted_labels == labels).mean()), "predicted": predicted_labels.tolist(),
                  "probabilities": probabilities}))
"""



def measure_rows(paths: dict[str, pathlib.Path], rows: list[str], dev: pathlib.Path, rounds: int) -> dict[str, list[dict]]:
    """Measures each row `rounds` times, alternating the order (forward, then reverse); row -> its results."""
    measured: dict[str, list[dict]] = {row: [] for row in rows}
    for round_, row in common.alternating(rows, rounds):
        kind = "saved_model" if row.endswith("saved_model") else "litert" if "litert" in row else "hf_pipeline"
        result = common.run_child(MEASURE, kind, str(paths[row]), str(dev))
        print(f"round {round_ + 1} {row}: p50 {result['p50_ms']:.2f} ms, {result['batch32_per_s']:.1f}/s", flush=True)
        measured[row].append(result)
    return measured
