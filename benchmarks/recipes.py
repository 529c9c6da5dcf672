"""Fine-tuning recipes on CoLA (MCC) and MRPC (F1): tfft's plain recipe, its layer recipes, LoRA, and the Trainer.

all-MiniLM-L6-v2, the full training split, dev scores, several seeds per row,
each run in its own process (its own peak RSS). Rows:

| peer | what |
|---|---|
| `tfft` | (a) the current recipe: `configs/sst2_minilm.yaml` (embeddings frozen, all 6 layers at one rate) |
| `tfft_layers` | (b) the same with `train.layer_decay` and `model.reinit_layers` (`--layer_decay`, `--reinit_layers`; `--layers_*` for its other keys) |
| `hf_trainer` | (c) the Hugging Face Trainer at its best: one learning rate for every trained weight, the same weights as (a) trained, `group_by_length=True` |
| `hf_trainer_default` | (c) the same Trainer at its defaults: random batches (dynamic padding, as `DataCollatorWithPadding` gives) |
| `hf_trainer_default_frozen` | (c) at its defaults with the lowest `--layers_freeze_layers` layers frozen too: the layers (b) trains |
| `tfft_lora` | (d) `model.lora_rank=8` on the query and value projections (the default targets), at `--lora_learning_rate` |
| `tfft_lora_mean` | (d') the same, with the head on the mean of the token vectors instead of the (frozen, untrained) pooler |
| `tfft_accumulate` | 4 batches of 8 accumulated (`train.gradient_accumulation_steps=4`), for its peak RSS against one batch of 32 |
| `tfft_unfreeze` | (a) with gradual unfreezing: the head first, one more layer from the top every `--unfreeze_every` updates |
| `tfft_epsilon` | (a) with `--adam_epsilon` and `--adam_epsilon_placement` (1e-8 after bias correction: the Trainer's `AdamW`) |

    python benchmarks/recipes.py                                     # both sets, 5 seeds, every peer
    python benchmarks/recipes.py --tasks=mrpc --seeds=0,1 --peers=tfft,tfft_lora --train_examples=mrpc=2000
    python benchmarks/recipes.py --select=layers --seeds=0   # choose (b)'s keys on a held-out quarter of train
    python benchmarks/recipes.py --select=layers --seeds=0,1,2 --tasks=mrpc   # the same, each point's mean of 3 seeds
    python benchmarks/recipes.py --select=layers --seeds=0 --tasks=cola --grid_layer_decay=1.0 --grid_reinit_layers=1 \
        --grid_epochs=5,8                                    # and (b)'s epochs (--layers_epochs for the table)
    python benchmarks/recipes.py --select=lora --seeds=0     # choose (d')'s learning rate and epochs the same way

Epochs, batch size (32), warmup (10%) and learning rate are the same for
every peer of a task. Every peer trains as the Trainer does by default: no
evaluation while training, the final weights scored once on dev (tfft's runs
are given no validation split, which would restore their best epoch on dev).
examples/s counts training only (tfft: `timing.StepTimer`; the Trainer: its
`train_runtime`). Prints a Markdown table (mean and standard deviation
over the seeds) and writes benchmarks/results/recipes.{md,json}.
"""

import itertools
import json
import pathlib
import statistics
import tempfile

from absl import app, flags

import common

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with all_minilm_l6_v2/, cola/, mrpc/.")
_TASKS = flags.DEFINE_list("tasks", ["cola", "mrpc"], "Data sets.")
_PEERS = flags.DEFINE_list("peers", ["tfft", "tfft_layers", "hf_trainer", "hf_trainer_default", "tfft_lora_mean",
                                     "tfft_accumulate"], "Rows.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2", "3", "4"], "Seeds: one run per peer and seed.")
_TRAIN_EXAMPLES = flags.DEFINE_string("train_examples", "", "Use only the first N training examples of a set, e.g. "
                                      "`cola=4000,mrpc=2000` (default: all).")
_LAYER_DECAY = flags.DEFINE_float("layer_decay", 0.8, "(b)'s train.layer_decay (ELECTRA's 0.8).")
_REINIT = flags.DEFINE_integer("reinit_layers", 1, "(b)'s model.reinit_layers.")
_LORA_LR = flags.DEFINE_float("lora_learning_rate", 1e-3, "(d)'s learning rate.")
_EPSILON = flags.DEFINE_float("adam_epsilon", 1e-8, "tfft_epsilon's train.adam_epsilon (the Trainer's is 1e-8).")
_PLACEMENT = flags.DEFINE_enum("adam_epsilon_placement", "before_bias_correction",
                               ["before_bias_correction", "after_bias_correction"],
                               "tfft_epsilon's train.adam_epsilon_placement (the Trainer's: after_bias_correction).")
_UNFREEZE_EVERY = flags.DEFINE_integer("unfreeze_every", 50, "tfft_unfreeze's train.unfreeze.every, in optimizer "
                                      "updates: one more layer from the top joins every N updates.")
_LORA_EPOCHS = flags.DEFINE_integer("lora_epochs", 0, "(d)'s epochs; 0: the task's, as every other peer.")
_LAYERS_EPOCHS = flags.DEFINE_integer("layers_epochs", 0, "(b)'s epochs; 0: the task's, as every other peer.")
_LAYERS_LR = flags.DEFINE_float("layers_learning_rate", 0.0, "(b)'s learning rate; 0: the task's, as every other peer.")
_LAYERS_POOLING = flags.DEFINE_enum("layers_pooling", "pooled", ["pooled", "mean"], "(b)'s model.pooling.")
_LAYERS_FREEZE = flags.DEFINE_integer("layers_freeze_layers", 0, "(b)'s model.freeze_layers (0: the config's, every "
                                      "encoder layer training; N: the lowest N frozen too).")
_LAYERS_BATCH = flags.DEFINE_integer("layers_batch_size", 0, "(b)'s train.batch_size; 0: the config's (32), as "
                                     "every other peer.")
_TRAINER_EPOCHS = flags.DEFINE_integer("trainer_epochs", 0, "(c)'s epochs, both Trainer peers; 0: the task's.")
_SELECT = flags.DEFINE_enum("select", None, ["layers", "lora"], "Instead of the table: choose (b)'s keys "
                            "(`layers`) or (d')'s learning rate and epochs (`lora`) on a slice of the training split.")
_GRID_DECAY = flags.DEFINE_list("grid_layer_decay", ["1.0", "0.9", "0.8"], "--select=layers: layer_decay values.")
_GRID_REINIT = flags.DEFINE_list("grid_reinit_layers", ["0", "1"], "--select=layers: reinit_layers values.")
_GRID_EPOCHS = flags.DEFINE_list("grid_epochs", [], "--select=layers: epochs values (default: the task's only).")
_GRID_POOLING = flags.DEFINE_list("grid_pooling", [], "--select=layers: model.pooling values (default: the config's).")
_GRID_LR = flags.DEFINE_list("grid_learning_rate", [], "--select=layers: learning rates (default: the task's only).")
_GRID_FREEZE = flags.DEFINE_list("grid_freeze_layers", [], "--select=layers: model.freeze_layers values (default: "
                                 "the config's only).")
_GRID_BATCH = flags.DEFINE_list("grid_batch_size", [], "--select=layers: train.batch_size values (default: the "
                                 "config's only).")
_GRID_LORA_LR = flags.DEFINE_list("grid_lora_learning_rate", ["1e-3", "3e-3"], "--select=lora: learning rates.")
_GRID_LORA_EPOCHS = flags.DEFINE_list("grid_lora_epochs", ["3", "6"], "--select=lora: epochs.")
_HELD_OUT = flags.DEFINE_float("held_out", 0.25, "--select: the share of the (capped) training rows scored.")
_RESUME = flags.DEFINE_bool("resume", False, "Reuse the runs benchmarks/results/recipes.jsonl already holds for the "
                                             "same task, peer, seed and training examples.")

#: data set -> (metric, learning rate, epochs, overrides after `configs/sst2_minilm.yaml`'s).
TASKS = {
    # CoLA collapsed to one class at 2e-4; 5e-5 is in BERT's fine-tuning range (Devlin et al., 2019).
    "cola": ("mcc", 5e-5, 3, ["data.train={d}/cola/train.tsv", "data.validation={d}/cola/dev.tsv",
                              "data.has_header=false", "data.text_column=3", "data.label_column=1"]),
    "mrpc": ("f1", 2e-4, 3, ["data.train={d}/mrpc/train.tsv", "data.validation={d}/mrpc/dev.tsv",
                             "data.text_column=#1 String", "data.text_pair_column=#2 String",
                             "data.label_column=Quality"]),
}

# Trained as the Trainer peer is (`common.train_final_weights`): no evaluation while training, the final weights.
TFFT = """
import json, sys
from tfft.config import load_config
from tfft.freezing import count_parameters
from common import peak_rss_mb, train_final_weights
from timing import StepTimer
timer = StepTimer()
result, m = train_final_weights(load_config("configs/sst2_minilm.yaml", json.loads(sys.argv[1])), [timer])
model = result.model
print(json.dumps({"mcc": m["matthews_corrcoef"], "f1": m["per_class"][result.labels.names[-1]]["f1"],
                  "seconds": timer.total_seconds, "peak_rss_mb": peak_rss_mb(),
                  "trainable": count_parameters(model.trainable_weights), "total": count_parameters(model.weights)}))
"""

# The Trainer training the weights tfft's (a) trains, with dynamic padding; argv[7] "1": at its best
# (`group_by_length=True`), "0": its default random batches; argv[8]: N > 0 freezes the lowest N encoder layers too
# (0: the config's freezing, as (a)'s and (b)'s `--layers_freeze_layers=0`).
HF_TRAINER = """
import csv, dataclasses, json, sys, tempfile
import numpy as np, pandas as pd
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments)
from sklearn.metrics import f1_score, matthews_corrcoef
from common import freeze_like_tfft, peak_rss_mb, predict_in_order
from tfft.config import load_config
data, task, seed, lr, epochs, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
grouped = sys.argv[7] == "1"
def read(name):
    if task == "cola":
        frame = pd.read_csv(f"{data}/cola/{name}", sep="\\t", header=None, quoting=csv.QUOTE_NONE)
        return frame[3].tolist(), None, frame[1].astype(int).to_numpy()
    frame = pd.read_csv(f"{data}/mrpc/{name}", sep="\\t", quoting=csv.QUOTE_NONE, keep_default_na=False,
                        encoding="utf-8-sig")
    return frame["#1 String"].tolist(), frame["#2 String"].tolist(), frame["Quality"].astype(int).to_numpy()
train, dev = read("train.tsv"), read("dev.tsv")
if n:
    train = tuple(None if c is None else c[:n] for c in train)
path = f"{data}/all_minilm_l6_v2"
tokenizer = AutoTokenizer.from_pretrained(path)
model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
frozen = load_config("configs/sst2_minilm.yaml").model
if int(sys.argv[8]):
    frozen = dataclasses.replace(frozen, freeze_layers=int(sys.argv[8]))
trainable = freeze_like_tfft(model, frozen)
def encode(texts, pairs, labels):
    enc = tokenizer(texts, pairs, truncation=True, max_length=128)
    return [{**{k: v[i] for k, v in enc.items()}, "labels": int(y)} for i, y in enumerate(labels)]
args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=32, per_device_eval_batch_size=64,
                         num_train_epochs=epochs, learning_rate=lr, warmup_ratio=0.1, weight_decay=0.01,
                         lr_scheduler_type="linear", save_strategy="no", report_to=[], seed=seed, use_cpu=True,
                         logging_steps=100, dataloader_num_workers=0, group_by_length=grouped)
trainer = Trainer(model=model, args=args, train_dataset=encode(*train), data_collator=DataCollatorWithPadding(tokenizer))
out = trainer.train()
predicted = predict_in_order(trainer, encode(*dev)).predictions.argmax(-1)
print(json.dumps({"mcc": float(matthews_corrcoef(dev[2], predicted)), "f1": float(f1_score(dev[2], predicted)),
                  "seconds": out.metrics["train_runtime"], "peak_rss_mb": peak_rss_mb(), "trainable": trainable,
                  "total": sum(p.numel() for p in model.parameters())}))
"""

#: The peers the Hugging Face Trainer runs (`HF_TRAINER`); every other peer is tfft.
TRAINER_PEERS = ("hf_trainer", "hf_trainer_default", "hf_trainer_default_frozen")

NAMES = {
    "tfft": "(a) tfft, `configs/sst2_minilm.yaml`",
    "tfft_layers": "(b) tfft, layer_decay {decay}, reinit_layers {reinit}",
    "hf_trainer": "(c) Hugging Face Trainer, one rate, `group_by_length=True`",
    "hf_trainer_default": "(c) Hugging Face Trainer, one rate, defaults (random batches)",
    "hf_trainer_default_frozen": "(c) Hugging Face Trainer, one rate, defaults, the lowest {freeze} layers frozen too",
    "tfft_lora": "(d) tfft, LoRA rank 8, lr {lora_lr:g}, {lora_epochs} epochs",
    "tfft_lora_mean": "(d') tfft, LoRA rank 8, lr {lora_lr:g}, {lora_epochs} epochs, `model.pooling=mean`",
    "tfft_accumulate": "tfft, 4 x 8 accumulated",
    "tfft_epsilon": "(a) tfft, `train.adam_epsilon={epsilon:g}`{placement}",
    "tfft_unfreeze": "(a) tfft, `train.unfreeze.every={every}`, `unit=steps`",
}


def train_examples(task: str) -> int:
    """`--train_examples`' cap for `task`, 0 for all."""
    caps = dict(item.split("=") for item in _TRAIN_EXAMPLES.value.split(",") if item)
    return int(caps.get(task, 0))


def epochs_of(peer: str, task: str) -> int:
    """The epochs `peer` trains `task` for: the task's, or `--lora_epochs` (LoRA), `--layers_epochs` ((b)) or
    `--trainer_epochs` (both Trainer peers)."""
    lora = peer in ("tfft_lora", "tfft_lora_mean") and _LORA_EPOCHS.value
    layers = peer == "tfft_layers" and _LAYERS_EPOCHS.value
    trainer = peer in TRAINER_PEERS and _TRAINER_EPOCHS.value
    return lora or layers or trainer or TASKS[task][2]


def layers_keys() -> list[tuple[str, object, str]]:
    """(b)'s keys that its `--layers_*` flags set: (config key, value, what its row name adds); a flag left at 0 sets
    nothing. `model.pooling` is always set, and named only when `mean`."""
    keys = [("train.learning_rate", _LAYERS_LR.value, f", lr {_LAYERS_LR.value:g}"),
            ("model.pooling", _LAYERS_POOLING.value, ", `model.pooling=mean`" if _LAYERS_POOLING.value == "mean" else ""),
            ("model.freeze_layers", _LAYERS_FREEZE.value, f", `model.freeze_layers={_LAYERS_FREEZE.value}`"),
            ("train.batch_size", _LAYERS_BATCH.value, f", batch {_LAYERS_BATCH.value}")]
    return [key for key in keys if key[1]]


def peer_name(peer: str, task: str) -> str:
    """The peer's row name, with the settings that distinguish its runs (its `--resume` key too)."""
    name = NAMES[peer].format(decay=_LAYER_DECAY.value, reinit=_REINIT.value, lora_lr=_LORA_LR.value,
                              freeze=_LAYERS_FREEZE.value, lora_epochs=epochs_of(peer, task), epsilon=_EPSILON.value,
                              every=_UNFREEZE_EVERY.value,
                              placement=", after bias correction" if _PLACEMENT.value == "after_bias_correction" else "")
    if peer == "tfft_layers":
        name += "".join(label for _, _, label in layers_keys())
    if (peer == "tfft_layers" and _LAYERS_EPOCHS.value) or (peer in TRAINER_PEERS and _TRAINER_EPOCHS.value):
        name += f", {epochs_of(peer, task)} epochs"
    return name


def tfft_overrides(peer: str, data, task: str, seed: str) -> list[str]:
    _, lr, _, extra = TASKS[task]
    epochs = epochs_of(peer, task)
    values = [f"model.backbone={data / 'all_minilm_l6_v2'}", *(e.format(d=data) for e in extra),
              f"output_dir=runs/bench_recipes_{task}_{peer}_seed{seed}", "train.overwrite_output_dir=true", "export.enabled=false",
              f"train.epochs={epochs}", f"train.learning_rate={lr}", f"train.seed={seed}"]
    if train_examples(task):
        values.append(f"data.max_train_examples={train_examples(task)}")
    if peer == "tfft_layers":
        values += [f"train.layer_decay={_LAYER_DECAY.value}", f"model.reinit_layers={_REINIT.value}"]
        values += [f"{key}={value}" for key, value, _ in layers_keys()]
    elif peer in ("tfft_lora", "tfft_lora_mean"):
        values += ["model.lora_rank=8", f"train.learning_rate={_LORA_LR.value}"]  # on query and value
        if peer == "tfft_lora_mean":  # LoRA freezes the pooler, which all-MiniLM-L6-v2 never trained
            values.append("model.pooling=mean")
    elif peer == "tfft_accumulate":
        values += ["train.batch_size=8", "train.gradient_accumulation_steps=4"]
    elif peer == "tfft_epsilon":
        values += [f"train.adam_epsilon={_EPSILON.value}", f"train.adam_epsilon_placement={_PLACEMENT.value}"]
    elif peer == "tfft_unfreeze":
        values += [f"train.unfreeze.every={_UNFREEZE_EVERY.value}", "train.unfreeze.unit=steps"]
    return values


def finished_runs() -> dict:
    """(task, peer, seed, training examples) -> a result recorded before, for `--resume`."""
    path = common.RESULTS / "recipes.jsonl"
    if not _RESUME.value or not path.is_file():
        return {}
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["task"], r.get("settings"), r["seed"], r.get("train_examples")): r for r in records}


def run_one(peer: str, data, task: str, seed: str) -> dict:
    if peer in TRAINER_PEERS:
        lr, epochs = TASKS[task][1], epochs_of(peer, task)
        frozen = _LAYERS_FREEZE.value if peer == "hf_trainer_default_frozen" else 0
        return common.run_child(HF_TRAINER, str(data), task, seed, str(lr), str(epochs), str(train_examples(task)),
                                "1" if peer == "hf_trainer" else "0", str(frozen))
    return common.run_child(TFFT, json.dumps(tfft_overrides(peer, data, task, seed)))


def summary(peer: str, task: str, runs: list[dict], examples: int) -> dict:
    metric, epochs = TASKS[task][0], epochs_of(peer, task)
    scores = [r[metric] for r in runs]
    return {
        "task": task.upper(), "peer": peer_name(peer, task), "metric": metric.upper(), "seeds": len(runs),
        "mean": f"{statistics.mean(scores):.4f}", "std": f"{statistics.stdev(scores):.4f}" if len(runs) > 1 else "n/a",
        "scores": " ".join(f"{s:.3f}" for s in scores),
        "examples/s": round(examples * epochs / statistics.mean(r["seconds"] for r in runs), 1),
        "trainable": f"{runs[0]['trainable']:,} ({100 * runs[0]['trainable'] / runs[0]['total']:.2f}%)",
        "peak RSS MB": round(max(r["peak_rss_mb"] for r in runs)),
    }


def split_train(data, task: str, folder) -> tuple[str, str]:
    """Writes the (capped) training split as two files, the last `--held_out` share apart: (train, held-out) paths.

    Lines are copied as they are (a header first, where the file has one), so both read as the original does.
    """
    source = data / task / "train.tsv"
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    header, rows = (lines[:1], lines[1:]) if task == "mrpc" else ([], lines)
    rows = rows[: train_examples(task) or len(rows)]
    cut = int(len(rows) * (1 - _HELD_OUT.value))
    paths = (folder / f"{task}_select_train.tsv", folder / f"{task}_select_held_out.tsv")
    for path, part in zip(paths, (rows[:cut], rows[cut:]), strict=True):
        path.write_text("".join(header + part), encoding="utf-8")
    return str(paths[0]), str(paths[1])


def grid() -> list[dict]:
    """`--select`'s grid: each point's peer and its settings (config keys -> values), every combination of the
    values given; a key given no values keeps the run's own."""
    if _SELECT.value == "layers":
        peer, axes = "tfft", {"train.layer_decay": _GRID_DECAY.value, "model.reinit_layers": _GRID_REINIT.value,
                              "train.learning_rate": _GRID_LR.value, "train.epochs": _GRID_EPOCHS.value,
                              "model.pooling": _GRID_POOLING.value, "model.freeze_layers": _GRID_FREEZE.value,
                              "train.batch_size": _GRID_BATCH.value}
    else:
        peer, axes = "tfft_lora_mean", {"train.learning_rate": _GRID_LORA_LR.value,
                                        "train.epochs": _GRID_LORA_EPOCHS.value}
    axes = {key: values for key, values in axes.items() if values}
    return [{"peer": peer, **dict(zip(axes, point, strict=True))} for point in itertools.product(*axes.values())]


def select(data) -> None:
    """(b)'s or (d')'s protocol: each point of `grid()`, trained on a training slice and scored on the rest, once per
    `--seeds` seed (the mean chooses; one seed's held-out score moves by a point or more)."""
    rows = []
    folder = pathlib.Path(tempfile.mkdtemp())
    for task in _TASKS.value:
        metric = TASKS[task][0]
        train_file, held_out = split_train(data, task, folder)
        for point in grid():
            settings = {key: value for key, value in point.items() if key != "peer"}
            scores = []
            for seed in _SEEDS.value:
                overrides = [*tfft_overrides(point["peer"], data, task, seed), f"data.train={train_file}",
                             f"data.validation={held_out}", *(f"{key}={value}" for key, value in settings.items()),
                             "data.max_train_examples=null", f"output_dir=runs/bench_recipes_select_{task}"]
                scores.append(common.run_child(TFFT, json.dumps(overrides))[metric])
                print(task, point, seed, f"{scores[-1]:.4f}", flush=True)
            rows.append({"task": task.upper(), "peer": point["peer"], **settings, "metric": metric.upper(),
                         "held-out score": f"{statistics.mean(scores):.4f}",
                         "std": f"{statistics.stdev(scores):.4f}" if len(scores) > 1 else "",
                         "per seed": " ".join(f"{score:.4f}" for score in scores)})
            print(rows[-1], flush=True)
    common.report(f"recipes_selection_{_SELECT.value}", rows, list(rows[0]),
                  {"held_out": _HELD_OUT.value, "train_examples": _TRAIN_EXAMPLES.value, "seeds": _SEEDS.value})


def main(argv):
    del argv
    data = common.data_dir(_DATA_DIR.value)
    if _SELECT.value is not None:
        return select(data)
    rows, raw = [], {}
    for task in _TASKS.value:
        examples = train_examples(task) or {"cola": 8551, "mrpc": 3668}[task]
        results, done = {peer: [] for peer in _PEERS.value}, finished_runs()
        for i, seed in enumerate(_SEEDS.value):  # peers alternate, each seed in another order
            order = _PEERS.value[i % len(_PEERS.value):] + _PEERS.value[: i % len(_PEERS.value)]
            for peer in order:
                key = (task, peer_name(peer, task), seed, train_examples(task))
                out = done.get(key) or run_one(peer, data, task, seed)
                print(task, peer, seed, json.dumps(out), flush=True)
                results[peer].append(out)
                if key not in done:
                    common.append_result("recipes", {"task": task, "peer": peer, "settings": key[1], "seed": seed,
                                                     "train_examples": train_examples(task), **out})
        rows += [summary(peer, task, runs, examples) for peer, runs in results.items()]
        raw[task] = results
    common.report("recipes", rows, ["task", "peer", "metric", "seeds", "mean", "std", "scores", "examples/s",
                                    "trainable", "peak RSS MB"], {"raw": raw})


if __name__ == "__main__":
    app.run(main)
