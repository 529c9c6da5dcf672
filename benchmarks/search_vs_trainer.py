"""`tfft search` against the Hugging Face Trainer's `hyperparameter_search` (Optuna backend), MRPC, one run.

Both peers search the same space with the same budget, Optuna's TPE sampler seeded per trial as tfft's
(`tfft.trial_sampler.TrialSeededTPE`, seed 0: the same draws on both sides) and its median pruner on each
epoch's validation accuracy (tfft's breaks ties by the validation loss, `tfft.trial_pruner`; the Trainer reports
only its objective to Optuna, so a tie-break has nothing to read there):

    train.learning_rate        loguniform 1e-5 .. 3e-4     (Trainer: learning_rate)
    train.epochs               int 1 .. 4                  (num_train_epochs)
    train.warmup_ratio         uniform 0 .. 0.2            (warmup_ratio)
    train.batch_size           choice 16, 32               (per_device_train_batch_size)

all-MiniLM-L6-v2, sequence cap 128, AdamW (weight decay 0.01), linear decay, clipnorm 1.0, the same weights
trained (embeddings frozen, all 6 layers and the head training: `configs/sst2_minilm.yaml`). Trials train on
90% of the (first --train_examples) MRPC training pairs and are scored on the other 10%, the same rows for both
peers (tfft's `search.validation_fraction=0.1`, stratified, seed 0; the Trainer reads them from files).
`tfft_parallel` runs two trials at once (`search.parallel_trials=2`: on a 2-core machine each trial's process
has one TensorFlow thread). The Trainer's own parallel option, `n_jobs` (Optuna's threads around the one
Trainer), fails in transformers 4.57 (docs/performance.md, *Search and cross-validation*). The Trainer runs at
its best (`hf_trainer`: `group_by_length=True` and dynamic padding) or at its defaults
(`hf_trainer_default`: random batches, dynamic padding). Then each peer trains its winner once on all the
(capped) training pairs and scores it on the 408 dev pairs: with its final weights, no evaluation during that
run (tfft's final run is given no validation split, which would restore its best epoch chosen on dev).

Reported per peer: the best slice accuracy, the winner's dev accuracy and F1, the wall time of the search (the
trials alone) and of the whole job, and peak RSS: of the search process, and for tfft of its largest trial process.

    python benchmarks/search_vs_trainer.py                       # about an hour on 2 cores
    python benchmarks/search_vs_trainer.py --trials=4 --train_examples=400
    python benchmarks/search_vs_trainer.py --peers=tfft,hf_trainer,hf_trainer_default
    python benchmarks/search_vs_trainer.py --peers=tfft_parallel,hf_trainer,tfft   # two trials at once
    python benchmarks/search_vs_trainer.py --train_examples=0 --winner='{"train.learning_rate": 1.5e-4}'

Prints a Markdown table and writes benchmarks/results/search_vs_trainer.{md,json}.
"""

from __future__ import annotations

import json
import pathlib
import time

from absl import app, flags

import common

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with all_minilm_l6_v2/ and mrpc/.")
_TRIALS = flags.DEFINE_integer("trials", 10, "Trials per search.")
_TRAIN_EXAMPLES = flags.DEFINE_integer("train_examples", 1000, "Use the first N MRPC training pairs (0: all 3,668).")
_PEERS = flags.DEFINE_list("peers", ["tfft", "hf_trainer"], "Peers, run in this order.")
_WINNER = flags.DEFINE_string("winner", None, "Instead of the table: skip tfft's search and only train and score "
                              "this winner, a JSON object of config keys, as the final run does (to re-score a past "
                              "search's winner under this script's protocol).")

SPACE = {
    "train.learning_rate": {"type": "loguniform", "low": 1e-5, "high": 3e-4},
    "train.epochs": {"type": "int", "low": 1, "high": 4},
    "train.warmup_ratio": {"type": "uniform", "low": 0.0, "high": 0.2},
    "train.batch_size": {"type": "choice", "values": [16, 32]},
}

# The rows tfft's trials train on and are scored on, and all the (capped) rows, written as TSV files for the
# Trainer (argv[1]: the overrides, argv[2]: the folder), with tfft's own split (`tfft.folds`).
SPLIT = """
import json, pathlib, sys
from tfft import folds, tasks
from tfft.config import SplitConfig, load_config
config = load_config("configs/sst2_minilm.yaml", json.loads(sys.argv[1]))
task = tasks.create(config)
examples = task.read(config.data.train, split="train")
split = SplitConfig(fraction=config.search.validation_fraction, seed=config.search.seed)
parts = {"train": examples, "trials": folds.train_part(task, examples, split), "slice": folds.held_out(task, examples, split)}
for name, part in parts.items():
    rows = ["Quality\\t#1 String\\t#2 String"] + [f"{y}\\t{a}\\t{b}" for a, b, y in zip(part.texts, part.pairs, part.labels)]
    (pathlib.Path(sys.argv[2]) / f"{name}.tsv").write_text("\\n".join(rows) + "\\n", encoding="utf-8")
print(json.dumps({name: len(part) for name, part in parts.items()}))
"""

WINNER = """
import json, sys, time
from tfft.config import derived, load_config
from common import peak_rss_mb, train_final_weights
base = load_config("configs/sst2_minilm.yaml", json.loads(sys.argv[1]))
start = time.monotonic()
final, m = train_final_weights(derived(base, base.output_dir + "_winner", json.loads(sys.argv[2])))
print(json.dumps({"dev_accuracy": m["accuracy"], "dev_f1": m["per_class"][final.labels.names[-1]]["f1"],
                  "final_seconds": time.monotonic() - start, "peak_rss_mb": peak_rss_mb()}))
"""

TFFT = """
import json, sys, time
from tfft import search
from tfft.config import load_config
from common import peak_child_rss_mb, peak_rss_mb, train_final_weights
config = load_config("configs/sst2_minilm.yaml", json.loads(sys.argv[1]))
start = time.monotonic()
result = search.run(config)
search_seconds = time.monotonic() - start
final, m = train_final_weights(load_config(result.best_config_path))  # the final weights, as the Trainer's
print(json.dumps({"slice_accuracy": result.best_score, "best": result.best_params, "dev_accuracy": m["accuracy"],
                  "dev_f1": m["per_class"][final.labels.names[-1]]["f1"], "search_seconds": search_seconds,
                  "total_seconds": time.monotonic() - start, "peak_rss_mb": peak_rss_mb(),
                  "peak_trial_rss_mb": peak_child_rss_mb(),
                  "pruned": sum(r["state"] == "pruned" for r in result.rows)}))
"""

HF_TRAINER = """
import csv, json, sys, tempfile, time
import numpy as np, optuna, pandas as pd
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments)
from common import freeze_like_tfft, peak_rss_mb, predict_in_order
from tfft.trial_sampler import TrialSeededTPE
from tfft.config import load_config
backbone, train_file, trial_file, slice_file, dev_file, trials = sys.argv[1:6] + [int(sys.argv[6])]
grouped = sys.argv[7] == "1"  # at its best; "0": its default random batches
def read(path):
    frame = pd.read_csv(path, sep="\\t", quoting=csv.QUOTE_NONE, keep_default_na=False, encoding="utf-8-sig")
    return frame["#1 String"].tolist(), frame["#2 String"].tolist(), frame["Quality"].astype(int).to_numpy()
tokenizer = AutoTokenizer.from_pretrained(backbone)
def encode(texts, pairs, labels):
    enc = tokenizer(texts, pairs, truncation=True, max_length=128)
    return [{**{k: v[i] for k, v in enc.items()}, "labels": int(y)} for i, y in enumerate(labels)]
def model_init(trial=None):
    model = AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=2)
    freeze_like_tfft(model, load_config("configs/sst2_minilm.yaml").model)
    return model
def accuracy(p):
    predicted = p.predictions.argmax(-1)
    positive = predicted == 1
    f1 = 2 * (positive & (p.label_ids == 1)).sum() / max(positive.sum() + (p.label_ids == 1).sum(), 1)
    return {"accuracy": float((predicted == p.label_ids).mean()), "f1": float(f1)}
def space(trial):
    return {"learning_rate": trial.suggest_float("learning_rate", 1e-5, 3e-4, log=True),
            "num_train_epochs": trial.suggest_int("num_train_epochs", 1, 4),
            "warmup_ratio": trial.suggest_float("warmup_ratio", 0.0, 0.2),
            "per_device_train_batch_size": trial.suggest_categorical("per_device_train_batch_size", [16, 32])}
args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_eval_batch_size=64, weight_decay=0.01,
                         lr_scheduler_type="linear", max_grad_norm=1.0, eval_strategy="epoch", save_strategy="no",
                         report_to=[], seed=0, use_cpu=True, logging_strategy="no", disable_tqdm=True,
                         dataloader_num_workers=0, group_by_length=grouped)
trainer = Trainer(model_init=model_init, args=args, train_dataset=encode(*read(trial_file)),
                  eval_dataset=encode(*read(slice_file)), data_collator=DataCollatorWithPadding(tokenizer),
                  compute_metrics=accuracy)
start = time.monotonic()
best = trainer.hyperparameter_search(direction="maximize", backend="optuna", hp_space=space, n_trials=trials,
                                     compute_objective=lambda m: m["eval_accuracy"],
                                     sampler=TrialSeededTPE(seed=0),  # tfft's: the same draws
                                     pruner=optuna.pruners.MedianPruner(n_startup_trials=2))
search_seconds = time.monotonic() - start
for key, value in best.hyperparameters.items():
    setattr(trainer.args, key, value)
trainer.args.eval_strategy = "no"
trainer.train_dataset = encode(*read(train_file))
trainer.train()
dev = read(dev_file)
predicted = predict_in_order(trainer, encode(*dev)).predictions.argmax(-1)
positive, truth = predicted == 1, dev[2] == 1
print(json.dumps({"slice_accuracy": best.objective, "best": best.hyperparameters,
                  "dev_accuracy": float((predicted == dev[2]).mean()),
                  "dev_f1": float(2 * (positive & truth).sum() / (positive.sum() + truth.sum())),
                  "search_seconds": search_seconds, "total_seconds": time.monotonic() - start,
                  "peak_rss_mb": peak_rss_mb()}))
"""


def tfft_overrides(data: pathlib.Path, output_dir: str) -> list[str]:
    overrides = [
        f"model.backbone={data / 'all_minilm_l6_v2'}", f"data.train={data / 'mrpc' / 'train.tsv'}",
        f"data.validation={data / 'mrpc' / 'dev.tsv'}", "data.text_column=#1 String",
        "data.text_pair_column=#2 String", "data.label_column=Quality", "name=mrpc_search", f"output_dir={output_dir}",
        "export.enabled=false", f"search.trials={_TRIALS.value}", "search.objective=accuracy",
        "search.validation_fraction=0.1", "search.seed=0", f"search.space={json.dumps(SPACE)}",
    ]
    return overrides + ([f"data.max_train_examples={_TRAIN_EXAMPLES.value}"] if _TRAIN_EXAMPLES.value else [])


def main(argv):
    del argv
    data = common.data_dir(_DATA_DIR.value)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    overrides = tfft_overrides(data, f"runs/bench_search_mrpc_{stamp}")
    if _WINNER.value:
        out = common.run_child(WINNER, json.dumps(overrides), _WINNER.value, timeout=6 * 3600)
        common.report("search_vs_trainer_winner", [{"winner": _WINNER.value, **out}],
                      ["winner", "dev_accuracy", "dev_f1", "final_seconds", "peak_rss_mb"])
        return
    files = pathlib.Path(f"runs/bench_search_mrpc_{stamp}_files")
    files.mkdir(parents=True)
    sizes = common.run_child(SPLIT, json.dumps(overrides), str(files.resolve()))
    print("rows:", sizes, flush=True)
    rows, raw = [], {}
    for peer in _PEERS.value:
        if peer in ("tfft", "tfft_parallel"):  # each its own study, in its own folder
            parallel = ["search.parallel_trials=2"] if peer == "tfft_parallel" else []
            own = tfft_overrides(data, f"runs/bench_search_mrpc_{stamp}_{peer}") + parallel
            out = common.run_child(TFFT, json.dumps(own), timeout=6 * 3600)
        else:
            out = common.run_child(HF_TRAINER, str(data / "all_minilm_l6_v2"), *(str(files.resolve() / f"{n}.tsv")
                                   for n in ("train", "trials", "slice")), str(data / "mrpc" / "dev.tsv"),
                                   str(_TRIALS.value), "1" if peer == "hf_trainer" else "0", timeout=6 * 3600)
        print(peer, json.dumps(out), flush=True)
        raw[peer] = out
        names = {"tfft": "tfft search", "tfft_parallel": "tfft search, search.parallel_trials=2",
                 "hf_trainer": "Trainer.hyperparameter_search, group_by_length=True",
                 "hf_trainer_default": "Trainer.hyperparameter_search, defaults (random batches)"}
        rows.append({"peer": names[peer],
                     "trials": _TRIALS.value, "best slice accuracy": f"{out['slice_accuracy']:.4f}",
                     "winner's dev accuracy": f"{out['dev_accuracy']:.4f}", "winner's dev F1": f"{out['dev_f1']:.4f}",
                     "search s": round(out["search_seconds"]), "search + final s": round(out["total_seconds"]),
                     "peak RSS MB": round(out["peak_rss_mb"]),
                     "trial process peak RSS MB": round(out.get("peak_trial_rss_mb", 0)) or "(in the same)",
                     "winner": json.dumps(out["best"])})
    common.report("search_vs_trainer", rows, ["peer", "trials", "best slice accuracy", "winner's dev accuracy",
                                              "winner's dev F1", "search s", "search + final s", "peak RSS MB",
                                              "trial process peak RSS MB", "winner"],
                  {"raw": raw, "rows_per_split": sizes})


if __name__ == "__main__":
    app.run(main)
