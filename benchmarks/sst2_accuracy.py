"""Dev accuracy of all-MiniLM-L6-v2 fine-tuned with tfft on SST-2 (and optional MRPC, CoLA rows).

    python benchmarks/sst2_accuracy.py                       # 8,000 training sentences, full dev set (872)
    python benchmarks/sst2_accuracy.py --train_examples=0    # the full train set (67,349)
    python benchmarks/sst2_accuracy.py --random_init --mrpc --cola
    python benchmarks/sst2_accuracy.py --nosst2 --mrpc --cola  # only the MRPC and CoLA rows
    python benchmarks/sst2_accuracy.py --seeds=0,1,2         # one SST-2 row per seed
    python benchmarks/sst2_accuracy.py --seeds=0,1,2 --set=train.mixed_precision=mixed_bfloat16   # any override

--train_examples caps the SST-2 rows only; MRPC and CoLA train on their full
train sets.

Reads the weights and data from --data_dir (default $TFFT_DATA_DIR, else
../shared/data). Prints a Markdown table and writes benchmarks/results/.
"""

import json
import time

from absl import app, flags

import common

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with all_minilm_l6_v2/, sst2/, mrpc/, cola/.")
_TRAIN_EXAMPLES = flags.DEFINE_integer("train_examples", 8000, "Training sentences (0: all).")
_SST2 = flags.DEFINE_bool("sst2", True, "The SST-2 row (--nosst2 to run only the rows below).")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds (weights of the head, dropout, shuffling): one SST-2 row each.")
_RANDOM_INIT = flags.DEFINE_bool("random_init", False, "Add a row with the same architecture, random weights.")
_MRPC = flags.DEFINE_bool("mrpc", False, "Add an MRPC row (sentence pairs; accuracy and F1).")
_COLA = flags.DEFINE_bool("cola", False, "Add a CoLA row (Matthews correlation).")
_SET = flags.DEFINE_multi_string("set", [], "A config override for every row, e.g. "
                                 "`--set=train.mixed_precision=mixed_bfloat16`; repeatable.")

CHILD = """
import json, sys, time
from tfft import train
from tfft.config import load_config
from common import peak_rss_mb
overrides = json.loads(sys.argv[1])
started = time.time()
result = train.run(load_config("configs/sst2_minilm.yaml", overrides))
m = result.metrics
print(json.dumps({"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "mcc": m["matthews_corrcoef"],
                  "f1_positive": m["per_class"][result.labels.names[-1]]["f1"], "dev_examples": m["examples"],
                  "train_seconds": m["train_seconds"], "wall_seconds": round(time.time() - started, 1),
                  "peak_rss_mb": round(peak_rss_mb())}))
"""


def main(argv):
    del argv
    data = common.data_dir(_DATA_DIR.value)
    n = _TRAIN_EXAMPLES.value
    sst2 = common.sst2_overrides(data, n, "runs/bench_accuracy")
    full = common.sst2_overrides(data, 0, "runs/bench_accuracy")
    runs = []
    if _SST2.value:
        for seed in _SEEDS.value:
            name = "MiniLM-L6 pretrained" + (f", seed {seed}" if len(_SEEDS.value) > 1 else "")
            runs.append(("SST-2", name, n or "all", [*sst2, f"train.seed={seed}"], "accuracy"))
    if _RANDOM_INIT.value:
        runs.append(("SST-2", "MiniLM-L6 random init", n or "all", [*sst2, "model.pretrained=false"], "accuracy"))
    if _MRPC.value:
        runs.append(("MRPC", "MiniLM-L6 pretrained", "all", [
            *full, f"data.train={data / 'mrpc' / 'train.tsv'}", f"data.validation={data / 'mrpc' / 'dev.tsv'}",
            "data.text_column=#1 String", "data.text_pair_column=#2 String", "data.label_column=Quality",
            "train.epochs=3"], "accuracy / F1"))
    if _COLA.value:
        runs.append(("CoLA", "MiniLM-L6 pretrained", "all", [
            *full, f"data.train={data / 'cola' / 'train.tsv'}", f"data.validation={data / 'cola' / 'dev.tsv'}",
            "data.has_header=false", "data.text_column=3", "data.label_column=1", "train.epochs=3",
            # 2e-4 collapsed to one class on CoLA; 5e-5 is in BERT's fine-tuning range (Devlin et al., 2019).
            "train.learning_rate=5e-5"], "MCC"))
    rows = []
    for task, model, examples, overrides, metric in runs:
        started = time.time()
        model += "".join(f", {override}" for override in _SET.value)
        out = common.run_child(CHILD, json.dumps([*overrides, *_SET.value]))
        value = {"accuracy": f"{out['accuracy']:.4f}", "MCC": f"{out['mcc']:.4f}",
                 "accuracy / F1": f"{out['accuracy']:.4f} / {out['f1_positive']:.4f}"}[metric]
        rows.append({"task": task, "model": model, "train examples": examples, "dev metric": metric,
                     "dev score": value, "dev examples": out["dev_examples"], "train s": out["train_seconds"],
                     "wall s": round(time.time() - started, 1), "peak RSS MB": out["peak_rss_mb"]})
        print(rows[-1], flush=True)
    common.report("sst2_accuracy", rows, ["task", "model", "train examples", "dev metric", "dev score",
                                          "dev examples", "train s", "wall s", "peak RSS MB"])


if __name__ == "__main__":
    app.run(main)
