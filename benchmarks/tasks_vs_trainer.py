"""tfft against the Hugging Face Trainer on multi-label, regression and NER, one run, same machine.

Same weights (all-MiniLM-L6-v2), data, epochs, batch size (32), sequence cap
(128) and learning rate for both; each peer trains in its own process without
evaluating during training and keeps its final weights. Both predict the dev
and test splits, and this script scores both with the same code
(`tfft.metrics`). GoEmotions' threshold is chosen on dev (the best macro-F1 on
a 0.05 grid), for each peer, then applied to test; the 0.5 figure is shown too.

| data | tfft task | Trainer recipe |
|---|---|---|
| GoEmotions (28 labels) | `multi_label` | `AutoModelForSequenceClassification`, `problem_type="multi_label_classification"` |
| SICK relatedness (pairs, 1-5) | `regression` | `AutoModelForSequenceClassification`, `num_labels=1` |
| CoNLL-2003 | `token_classification` | `run_ner`: `AutoModelForTokenClassification`, labels on each word's first piece (`word_ids()`), `DataCollatorForTokenClassification` |

    python benchmarks/tasks_vs_trainer.py                          # all three, both peers
    python benchmarks/tasks_vs_trainer.py --tasks=sick --peers=tfft

The Trainer needs PyTorch: `pip install torch==2.13.0` (the CPU wheel) and `accelerate`.
"""

from __future__ import annotations

import json

from absl import app, flags

import common

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with all_minilm_l6_v2/, goemotions/, sick/, conll2003/.")
_TASKS = flags.DEFINE_list("tasks", ["sick", "conll2003", "goemotions"], "Data sets to run.")
_PEERS = flags.DEFINE_list("peers", ["tfft", "hf_trainer_grouped", "hf_trainer"], "Peers to run, in this order.")
_EPOCHS = flags.DEFINE_string("epochs", "", "Override the epochs, e.g. `sick=4,conll2003=3` (default: each config's).")
_TRAIN_EXAMPLES = flags.DEFINE_integer("train_examples", 0, "Use only the first N training examples (0: all).")

#: data set -> (config, dev file, test file), paths under --data_dir.
DATASETS = {
    "goemotions": ("goemotions_minilm", "goemotions/train.tsv", "goemotions/dev.tsv", "goemotions/test.tsv"),
    "sick": ("sick_minilm", "sick/SICK_train.txt", "sick/SICK_trial.txt", "sick/SICK_test_annotated.txt"),
    "conll2003": ("conll2003_minilm", "conll2003/train.txt", "conll2003/valid.txt", "conll2003/test.txt"),
}


def overrides(name: str, data, epochs: int, train_examples: int) -> list[str]:
    _, train, dev, _ = DATASETS[name]
    values = [
        f"model.backbone={data / 'all_minilm_l6_v2'}",
        f"data.train={data / train}",
        f"data.validation={data / dev}",
        f"output_dir=runs/bench_{name}",
        "train.overwrite_output_dir=true",
        "export.enabled=false",
        f"train.epochs={epochs}",
    ]
    if name == "goemotions":
        values.append(f"task.label_names_file={data / 'goemotions' / 'labels.txt'}")
    if train_examples:
        values.append(f"data.max_train_examples={train_examples}")
    return values


# Each child prints {"seconds", "steps", "examples", "peak_rss_mb", "dev": predictions, "test": predictions}.
# Predictions: multi-label probabilities [n, labels], regression scores [n], NER tags per word.
TFFT = """
import json, sys
from tfft import evaluate, train
from tfft.freezing import count_parameters
from tfft.config import load_config
from common import peak_rss_mb
from timing import StepTimer
config_name, dev, test, overrides = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
config = load_config(f"configs/{config_name}.yaml", overrides)
# Trained like the Trainer peer: no evaluation during training, final weights.
validation, config.data.validation = config.data.validation, ""
timer = StepTimer()
result = train.run(config, callbacks=[timer])
task, out = result.task, {}
for split, path in (("dev", dev), ("test", test)):
    outputs = evaluate.predict_outputs(task, result.model, result.packer, task.read(path, split="validation"), 64)
    key = {"multi_label": "probabilities", "regression": "score", "token_classification": "tags"}[task.type]
    values = outputs[key]
    out[split] = values if isinstance(values, list) else values.tolist()
n = len(task.read(config.data.train, split="train"))
trainable = count_parameters(result.model.trainable_weights)
print(json.dumps({"seconds": timer.total_seconds, "steps": len(timer.times), "examples": n * config.train.epochs,
                  "steady_ms": timer.steady_ms, "step_seconds": sum(timer.times[3:]), "trainable": trainable,
                  "peak_rss_mb": peak_rss_mb(), **out}))
"""

HF_TRAINER = """
import json, sys, tempfile, time
import numpy as np, torch
from transformers import (AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer,
                          DataCollatorForTokenClassification, DataCollatorWithPadding, Trainer, TrainerCallback,
                          TrainingArguments)
from tfft import tasks
from tfft.config import load_config
from common import freeze_like_tfft, peak_rss_mb, predict_in_order
config_name, dev, test, overrides = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
grouped = sys.argv[5] == "grouped"
config = load_config(f"configs/{config_name}.yaml", overrides)
task = tasks.create(config)  # tfft's readers only: the same rows, labels and label order
train = task.read(config.data.train, split="train")
task.fit_vocabulary(train)
path, tc = config.model.backbone, config.train
tokenizer = AutoTokenizer.from_pretrained(path)
length = config.model.sequence_length
kind = task.type

def encode(examples, labelled=True):
    if kind == "token_classification":
        enc = tokenizer(examples.words, is_split_into_words=True, truncation=True, max_length=length)
        ids = {t: i for i, t in enumerate(task.label_names)}
        rows = []
        for i, tags in enumerate(examples.labels):
            word_ids, previous, labels = enc.word_ids(i), None, []
            for w in word_ids:  # run_ner: the label on each word's first piece, -100 elsewhere
                labels.append(-100 if w is None or w == previous else ids[tags[w]])
                previous = w
            rows.append({"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                         "token_type_ids": enc["token_type_ids"][i], "labels": labels})
        return rows, enc
    enc = tokenizer(examples.texts, examples.pairs, truncation=True, max_length=length)
    targets = task.encode(examples)
    rows = []
    for i in range(len(examples)):
        row = {k: v[i] for k, v in enc.items()}
        row["labels"] = [float(x) for x in targets[i]] if kind == "multi_label" else float(targets[i][0])
        rows.append(row)
    return rows, enc

if kind == "token_classification":
    model = AutoModelForTokenClassification.from_pretrained(path, num_labels=len(task.label_names))
    collator = DataCollatorForTokenClassification(tokenizer)
elif kind == "multi_label":
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(task.label_names),
                                                               problem_type="multi_label_classification")
    collator = DataCollatorWithPadding(tokenizer)
else:
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    collator = DataCollatorWithPadding(tokenizer)

trainable = freeze_like_tfft(model, config.model)  # the weights tfft trains

class Steps(TrainerCallback):
    times = []
    def on_step_begin(self, args, state, control, **kw): self._s = time.perf_counter()
    def on_step_end(self, args, state, control, **kw): self.times.append(time.perf_counter() - self._s)

steps = Steps()
args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=tc.batch_size,
                         per_device_eval_batch_size=64, num_train_epochs=tc.epochs, learning_rate=tc.learning_rate,
                         warmup_ratio=tc.warmup_ratio, weight_decay=tc.weight_decay, max_grad_norm=tc.clipnorm,
                         lr_scheduler_type="linear", save_strategy="no", eval_strategy="no", report_to=[], seed=0,
                         use_cpu=True, logging_steps=100, dataloader_num_workers=0, group_by_length=grouped)
train_rows, _ = encode(train)
trainer = Trainer(model=model, args=args, train_dataset=train_rows, data_collator=collator, callbacks=[steps])
result = trainer.train()
out = {}
for split, file in (("dev", dev), ("test", test)):
    examples = task.read(file, split="validation")
    rows, enc = encode(examples)
    logits = predict_in_order(trainer, rows).predictions
    if kind == "multi_label":
        out[split] = (1 / (1 + np.exp(-logits))).tolist()
    elif kind == "regression":
        out[split] = logits.reshape(-1).tolist()
    else:  # each word's tag from its first piece; words past the cap get O
        tags = []
        for i, words in enumerate(examples.words):
            predicted, previous = ["O"] * len(words), None
            for position, w in enumerate(enc.word_ids(i)):
                if w is not None and w != previous:
                    predicted[w] = task.label_names[int(logits[i][position].argmax())]
                previous = w
            tags.append(predicted)
        out[split] = tags
steady = sorted(steps.times[3:]) or [0.0]
print(json.dumps({"seconds": result.metrics["train_runtime"], "steps": len(steps.times),
                  "examples": len(train) * tc.epochs, "steady_ms": 1000 * steady[len(steady) // 2],
                  "step_seconds": sum(steps.times[3:]), "trainable": trainable,
                  "peak_rss_mb": peak_rss_mb(), "threads": torch.get_num_threads(), **out}))
"""

#: peer -> (name in the table, child code, its extra argument).
PEERS = {
    "tfft": ("tfft", TFFT, "-"),
    "tfft_eigen": ("tfft, `TF_ENABLE_ONEDNN_OPTS=0` (TensorFlow's own kernels)", TFFT, "-"),
    "hf_trainer_grouped": ("Hugging Face `Trainer`, `group_by_length=True`", HF_TRAINER, "grouped"),
    "hf_trainer": ("Hugging Face `Trainer`, defaults (random batches)", HF_TRAINER, "default"),
}


def score(name: str, config, data, out: dict) -> dict:
    """Dev and test scores of one peer's predictions, with tfft's metrics for both peers."""
    import numpy as np

    from tfft import metrics, tasks

    task = tasks.create(config)
    _, train, dev, test = DATASETS[name]
    task.fit_vocabulary(task.read(str(data / train), split="train"))
    gold = {split: task.read(str(data / path), split="validation") for split, path in (("dev", dev), ("test", test))}
    if task.type == "regression":
        dev_scores = metrics.regression_metrics(gold["dev"].labels, out["dev"])
        test_scores = metrics.regression_metrics(gold["test"].labels, out["test"])
        return {"metric": "Pearson", "dev": dev_scores["pearson"], "test": test_scores["pearson"],
                "test Spearman": test_scores["spearman"], "test MSE": test_scores["mse"]}
    if task.type == "token_classification":
        dev_scores = metrics.entity_metrics(gold["dev"].labels, out["dev"])
        test_scores = metrics.entity_metrics(gold["test"].labels, out["test"])
        return {"metric": "entity F1", "dev": dev_scores["f1"], "test": test_scores["f1"],
                "test P/R": f"{test_scores['precision']:.4f}/{test_scores['recall']:.4f}"}
    names = task.label_names
    truth = {split: task.encode(examples) for split, examples in gold.items()}
    probabilities = {split: np.asarray(out[split]) for split in ("dev", "test")}

    def macro(split, threshold):
        return metrics.multi_label_metrics(truth[split], probabilities[split] >= threshold, names, threshold)

    grid = [round(t, 2) for t in np.arange(0.05, 0.96, 0.05)]
    best = max(grid, key=lambda t: macro("dev", t)["macro_f1"])
    test_scores = macro("test", best)
    return {"metric": f"macro-F1 (threshold {best:g}, chosen on dev)", "dev": macro("dev", best)["macro_f1"],
            "test": test_scores["macro_f1"], "test micro-F1": test_scores["micro_f1"],
            "test macro-F1 at 0.5": macro("test", 0.5)["macro_f1"]}


def main(argv):
    del argv
    from tfft.config import load_config

    data = common.data_dir(_DATA_DIR.value)
    for name in _TASKS.value:
        if not (data / DATASETS[name][1]).is_file():
            raise SystemExit(f"No {DATASETS[name][1]} under {data}.")
    epochs_override = dict(item.split("=") for item in _EPOCHS.value.split(",") if item)
    rows, raw = [], {}
    for name in _TASKS.value:
        config_name, _, dev, test = DATASETS[name]
        epochs = int(epochs_override.get(name, load_config(f"configs/{config_name}.yaml").train.epochs))
        values = overrides(name, data, epochs, _TRAIN_EXAMPLES.value)
        config = load_config(f"configs/{config_name}.yaml", values)
        results = {}
        for peer in _PEERS.value:
            out = common.run_child(PEERS[peer][1], config_name, str(data / dev), str(data / test), json.dumps(values),
                                   PEERS[peer][2], timeout=4 * 3600, env=common.PEER_ENV.get(peer))
            summary = {k: v for k, v in out.items() if k not in ("dev", "test")}
            results[peer] = {**summary, **score(name, config, data, out)}
            print(name, peer, json.dumps(results[peer]), flush=True)
        raw[name] = results
        for peer, r in results.items():
            row = {"data": name, "peer": PEERS[peer][0], "epochs": epochs, "metric": r["metric"],
                   "dev": f"{r['dev']:.4f}", "test": f"{r['test']:.4f}",
                   "examples/s": r["examples"] / r["seconds"], "train s": round(r["seconds"], 1),
                   "train-step s": round(r["step_seconds"], 1), "trainable": f"{r['trainable']:,}",
                   "peak RSS MB": round(r["peak_rss_mb"])}
            if "tfft" in results:
                tfft = results["tfft"]
                row["tfft speed-up"] = common.speed_up(tfft, r)
                row["tfft speed-up (train steps)"] = common.ratio(r["step_seconds"], tfft["step_seconds"])
                row["tfft - peer (points)"] = f"{100 * (tfft['test'] - r['test']):+.2f}"
            rows.append(row)
        common.report("tasks_vs_trainer", rows,
                      ["data", "peer", "epochs", "metric", "dev", "test", "trainable", "train-step s",
                       "tfft speed-up (train steps)", "examples/s", "train s", "tfft speed-up", "peak RSS MB",
                       "tfft - peer (points)"],
                      {"raw": raw, "batch_size": 32, "sequence_length": 128})


if __name__ == "__main__":
    app.run(main)
