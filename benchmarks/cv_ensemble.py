"""CoLA, 5-fold cross-validation with `tfft cv --ensemble`: the folds' spread, and the ensemble against one model.

all-MiniLM-L6-v2 with `configs/sst2_minilm.yaml`'s recipe (embeddings frozen, all 6 layers training) at CoLA's
learning rate 5e-5, 3 epochs, batch 32. Each fold trains on 4/5 of the CoLA training split (stratified by label)
and is scored on the fifth it never saw (MCC); then each fold's model and their ensemble are scored on the 1,043
dev sentences the folds never saw. Serving: batch-1 latency over the first --serving_sentences dev sentences
(after 20 warm-up calls), in a fresh process that loads only TensorFlow and TF Text, for the ensemble's
SavedModel and for fold 0's model exported alone; and each SavedModel's size on disk.

    python benchmarks/cv_ensemble.py                          # about 30 minutes on 2 cores
    python benchmarks/cv_ensemble.py --folds=3 --train_examples=3000

Prints a Markdown table and writes benchmarks/results/cv_ensemble.{md,json}.
"""

from __future__ import annotations

import json
import pathlib
import statistics

from absl import app, flags

import common

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with all_minilm_l6_v2/ and cola/.")
_FOLDS = flags.DEFINE_integer("folds", 5, "Folds.")
_TRAIN_EXAMPLES = flags.DEFINE_integer("train_examples", 0, "Use only the first N CoLA training sentences (0: all).")
_SERVING_SENTENCES = flags.DEFINE_integer("serving_sentences", 300, "Dev sentences timed at batch 1.")
_WORK_DIR = flags.DEFINE_string("work_dir", "runs/bench_cv_cola", "The cross-validation's output_dir.")

CV = """
import json, pathlib, sys
from tfft import cross_validation, export
from tfft.config import load_config
overrides, folds = json.loads(sys.argv[1]), int(sys.argv[2])
config = load_config("configs/sst2_minilm.yaml", overrides)
result = cross_validation.run(config, folds=folds, ensemble=True)
single = cross_validation.plan(config, folds, ())[0].config
single.name, single.export.base_dir = "cola_fold0", config.export.base_dir
print(json.dumps({"rows": result.rows, "dev": result.dev, "ensemble": result.export_path,
                  "single": str(export.run(single))}))
"""

# In a process with TensorFlow and TF Text only, as a server: batch-1 latency over argv[2]'s sentences.
SERVE = """
import json, sys, time
import numpy as np, tensorflow as tf, tensorflow_text  # noqa: F401  (the tokenizer's ops)
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
texts = json.loads(sys.argv[2])
for text in texts[:20]:
    serve(text=tf.constant([text]))
ms = []
for text in texts:
    start = time.perf_counter()
    serve(text=tf.constant([text]))
    ms.append(1000 * (time.perf_counter() - start))
print(json.dumps({"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}))
"""


def folder_mb(path: pathlib.Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def main(argv):
    del argv
    data = common.data_dir(_DATA_DIR.value)
    work = pathlib.Path(_WORK_DIR.value)
    overrides = [f"model.backbone={data / 'all_minilm_l6_v2'}", f"data.train={data / 'cola' / 'train.tsv'}",
                 f"data.validation={data / 'cola' / 'dev.tsv'}", "data.has_header=false", "data.text_column=3",
                 "data.label_column=1", "train.learning_rate=5e-5", "train.epochs=3", "name=cola_cv",
                 f"output_dir={work}", f"export.base_dir={work.parent / (work.name + '_saved_models')}"]
    if _TRAIN_EXAMPLES.value:
        overrides.append(f"data.max_train_examples={_TRAIN_EXAMPLES.value}")
    out = common.run_child(CV, json.dumps(overrides), str(_FOLDS.value), timeout=6 * 3600)
    rows = {r["run"]: r for r in out["rows"]}
    dev_members = [m["matthews_corrcoef"] for m in out["dev"]["members"]]
    dev_texts = [line.split("\t")[3] for line in (data / "cola" / "dev.tsv").read_text().splitlines()]
    texts = json.dumps(dev_texts[: _SERVING_SENTENCES.value])
    table = []
    for name, path in (("one model (fold 0)", out["single"]), (f"ensemble of {_FOLDS.value}", out["ensemble"])):
        served = common.run_child(SERVE, path, texts)
        table.append({
            "model": name,
            "held-out MCC (folds)": (f"{rows['mean']['matthews_corrcoef']:.4f} ± {rows['std']['matthews_corrcoef']:.4f}"
                                     if name.startswith("one") else ""),
            "dev MCC": (f"{dev_members[0]:.4f} (mean of {len(dev_members)}: {statistics.mean(dev_members):.4f} ± "
                        f"{statistics.stdev(dev_members):.4f})" if name.startswith("one")
                        else f"{out['dev']['ensemble']['matthews_corrcoef']:.4f}"),
            "p50 ms": round(served["p50_ms"], 2), "p99 ms": round(served["p99_ms"], 2),
            "SavedModel MB": round(folder_mb(pathlib.Path(path)), 1),
        })
    common.report("cv_ensemble", table, ["model", "held-out MCC (folds)", "dev MCC", "p50 ms", "p99 ms",
                                         "SavedModel MB"], {"folds": out["rows"], "dev": out["dev"]})


if __name__ == "__main__":
    app.run(main)
