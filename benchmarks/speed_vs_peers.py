"""tfft vs keras-hub's BertTextClassifier vs the Hugging Face Trainer, one run, same machine.

Same weights (all-MiniLM-L6-v2), same SST-2 training subset, batch 32, sequence
cap 128, one epoch each, dev accuracy on the full dev set (872). Each peer runs
in its own process (its own peak RSS); with --rounds > 1 the order rotates.

The Trainer runs twice: at its defaults (random batches, dynamic padding) and
at its best (`group_by_length=True`), both with the word embeddings frozen as
tfft freezes them, so every peer trains the same weights. `train-step s` is the
time inside the training steps after 3 warm-up steps, the figure to compare;
`epoch s` adds set-up and the first steps' tracing.

    python benchmarks/speed_vs_peers.py                    # 8,000 sentences
    python benchmarks/speed_vs_peers.py --train_examples=2000 --rounds=2
    python benchmarks/speed_vs_peers.py --peers=tfft,tfft_bf16,hf_trainer_grouped,hf_trainer_grouped_bf16 --rounds=2

The Trainer needs PyTorch: `pip install torch==2.13.0` (the CPU wheel).
"""

import json

from absl import app, flags

import common

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with all_minilm_l6_v2/ and sst2/.")
_TRAIN_EXAMPLES = flags.DEFINE_integer("train_examples", 8000, "Training sentences (at least 8,000 for the README).")
_ROUNDS = flags.DEFINE_integer("rounds", 1, "Runs of each peer; the order rotates every round.")
_PEERS = flags.DEFINE_list("peers", ["tfft", "hf_trainer_grouped", "hf_trainer", "keras_hub"], "Which peers to run.")

TFFT = """
import json, sys
from tfft import train
from tfft.config import load_config
from common import peak_rss_mb
from timing import StepTimer
data, n, extra = sys.argv[1], int(sys.argv[2]), sys.argv[3:]  # extra: the peer's own config overrides
import common, pathlib
timer = StepTimer()
overrides = common.sst2_overrides(pathlib.Path(data), n, "runs/bench_speed") + extra
result = train.run(load_config("configs/sst2_minilm.yaml", overrides), callbacks=[timer])
print(json.dumps({"seconds": timer.total_seconds, "steps": len(timer.times), "steady_ms": timer.steady_ms,
                  "step_seconds": sum(timer.times[3:]), "accuracy": result.metrics["accuracy"],
                  "peak_rss_mb": peak_rss_mb()}))
"""

KERAS_HUB = """
import csv, json, sys
import keras, keras_hub, numpy as np, pandas as pd
from common import peak_rss_mb
from timing import StepTimer
data, n = sys.argv[1], int(sys.argv[2])
read = lambda f: pd.read_csv(f"{data}/sst2/{f}", sep="\\t", quoting=csv.QUOTE_NONE, keep_default_na=False)
train, dev = read("train.tsv")[:n], read("dev.tsv")
keras.utils.set_random_seed(0)
# As keras-hub's documentation shows; sequence_length set, or the preset pads to 512.
preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(f"{data}/all_minilm_l6_v2", sequence_length=128)
classifier = keras_hub.models.BertTextClassifier.from_preset(
    f"{data}/all_minilm_l6_v2", num_classes=2, preprocessor=preprocessor)
timer = StepTimer()
classifier.fit(x=train["sentence"].tolist(), y=train["label"].astype(int).to_numpy(), batch_size=32, epochs=1,
               callbacks=[timer], verbose=2)
predicted = classifier.predict(dev["sentence"].tolist(), batch_size=64, verbose=0).argmax(-1)
accuracy = float(np.mean(predicted == dev["label"].astype(int).to_numpy()))
print(json.dumps({"seconds": timer.total_seconds, "steps": len(timer.times), "steady_ms": timer.steady_ms,
                  "step_seconds": sum(timer.times[3:]), "accuracy": accuracy, "peak_rss_mb": peak_rss_mb()}))
"""

HF_TRAINER = """
import csv, json, sys, tempfile
import numpy as np, pandas as pd, torch
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainerCallback, TrainingArguments)
from common import freeze_like_tfft, peak_rss_mb, predict_in_order
from tfft.config import load_config
data, n, grouped, bf16 = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "grouped", "bf16" in sys.argv[4:]
read = lambda f: pd.read_csv(f"{data}/sst2/{f}", sep="\\t", quoting=csv.QUOTE_NONE, keep_default_na=False)
train, dev = read("train.tsv")[:n], read("dev.tsv")
path = f"{data}/all_minilm_l6_v2"
tokenizer = AutoTokenizer.from_pretrained(path)
model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
trainable = freeze_like_tfft(model, load_config("configs/sst2_minilm.yaml").model)  # the weights tfft trains
def encode(frame):
    enc = tokenizer(frame["sentence"].tolist(), truncation=True, max_length=128)
    return [{**{k: v[i] for k, v in enc.items()}, "labels": int(y)} for i, y in enumerate(frame["label"])]
class Steps(TrainerCallback):
    import time as _t
    times = []
    def on_step_begin(self, args, state, control, **kw): self._s = self._t.perf_counter()
    def on_step_end(self, args, state, control, **kw): self.times.append(self._t.perf_counter() - self._s)
steps = Steps()
args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=32, per_device_eval_batch_size=64,
                         num_train_epochs=1, learning_rate=1e-4, warmup_ratio=0.1, weight_decay=0.01,
                         lr_scheduler_type="linear", save_strategy="no", report_to=[], seed=0, use_cpu=True,
                         logging_steps=50, dataloader_num_workers=0, group_by_length=grouped,
                         bf16=bf16)  # bf16: autocast to bfloat16 on the CPU
trainer = Trainer(model=model, args=args, train_dataset=encode(train), data_collator=DataCollatorWithPadding(tokenizer),
                  callbacks=[steps])
out = trainer.train()
predicted = predict_in_order(trainer, encode(dev)).predictions.argmax(-1)
accuracy = float(np.mean(predicted == dev["label"].astype(int).to_numpy()))
steady = sorted(steps.times[3:]) or [0.0]
print(json.dumps({"seconds": out.metrics["train_runtime"], "steps": len(steps.times),
                  "steady_ms": 1000 * steady[len(steady) // 2], "step_seconds": sum(steps.times[3:]),
                  "accuracy": accuracy, "peak_rss_mb": peak_rss_mb(), "threads": torch.get_num_threads(),
                  "trainable": trainable}))
"""

PEERS = {
    "tfft": ("tfft (`configs/sst2_minilm.yaml`)", TFFT, ()),
    "tfft_bf16": ("tfft, `train.mixed_precision=mixed_bfloat16`", TFFT, ("train.mixed_precision=mixed_bfloat16",)),
    "tfft_eigen": ("tfft, `TF_ENABLE_ONEDNN_OPTS=0` (TensorFlow's own kernels)", TFFT, ()),
    "keras_hub": ("keras-hub `BertTextClassifier.fit`", KERAS_HUB, ()),
    "hf_trainer": ("Hugging Face `Trainer`, defaults (random batches)", HF_TRAINER, ("default",)),
    "hf_trainer_grouped": ("Hugging Face `Trainer`, `group_by_length=True`", HF_TRAINER, ("grouped",)),
    "hf_trainer_grouped_bf16": ("Hugging Face `Trainer`, `group_by_length=True`, `bf16=True`", HF_TRAINER,
                                ("grouped", "bf16")),
}


def main(argv):
    del argv
    data, n = common.data_dir(_DATA_DIR.value), _TRAIN_EXAMPLES.value
    results = {peer: [] for peer in _PEERS.value}
    for round_index in range(_ROUNDS.value):
        order = _PEERS.value[round_index % len(_PEERS.value) :] + _PEERS.value[: round_index % len(_PEERS.value)]
        for peer in order:
            out = common.run_child(PEERS[peer][1], str(data), str(n), *PEERS[peer][2], env=common.PEER_ENV.get(peer))
            print(peer, json.dumps(out), flush=True)
            results[peer].append(out)
    rows = []
    for peer, runs in results.items():
        best = min(runs, key=lambda r: r["seconds"])
        rows.append({
            "peer": PEERS[peer][0], "train-step s": round(best["step_seconds"], 1), "examples/s": n / best["seconds"],
            "ms/step": 1000 * best["seconds"] / best["steps"],
            "steady ms/step": best["steady_ms"], "peak RSS MB": round(best["peak_rss_mb"]),
            "dev accuracy": f"{best['accuracy']:.4f}", "epoch s": round(best["seconds"], 1),
        })
    tfft_row = next((r for r, p in zip(rows, results, strict=True) if p == "tfft"), None)
    if tfft_row:
        for row in rows:
            row["tfft speed-up (train steps)"] = f"{row['train-step s'] / tfft_row['train-step s']:.2f}x"
    common.report(
        "speed_vs_peers", rows,
        ["peer", "train-step s", "steady ms/step", "tfft speed-up (train steps)", "examples/s", "epoch s", "peak RSS MB",
         "dev accuracy"],
        {"train_examples": n, "batch_size": 32, "sequence_length": 128, "rounds": _ROUNDS.value, "raw": results},
    )


if __name__ == "__main__":
    app.run(main)
