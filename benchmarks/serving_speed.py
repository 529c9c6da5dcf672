"""Serving speed, size and accuracy of a fine-tuned MiniLM SST-2 model: tfft's SavedModel and LiteRT files against
the Hugging Face `pipeline("text-classification")` (PyTorch), one run, same machine.

Both models start from all-MiniLM-L6-v2 and are fine-tuned the same way on the first --train_examples SST-2
training sentences: one epoch, batch 32, sequence cap 128, lr 2e-4 with 10% linear warmup then linear decay,
AdamW (weight decay 0.01, none on biases and norms), clipnorm 1.0, embeddings frozen. tfft trains with
`configs/sst2_minilm.yaml`; the Hugging Face model with the `Trainer`.

Each row is measured in a fresh process, on the 872 SST-2 dev sentences, tokenization included:
- latency at batch 1: every dev sentence once, after 20 warmup calls; p50 and p99;
- throughput at batch 32: the dev set in batches of 32, after one warmup pass;
- size: the files a server loads (SavedModel folder; `.tflite` file; the Hugging Face folder);
- agreement with the SavedModel: predicted labels, and the largest probability difference;
- peak RSS of the serving process; dev accuracy.

Rows run in the order given, then again in reverse (--rounds=2), and each figure is the median of its rounds.

    python benchmarks/serving_speed.py                      # train both (about 10 minutes), then measure
    python benchmarks/serving_speed.py --skip_training      # measure the models trained before

The Hugging Face rows need PyTorch (`pip install torch` CPU wheel) and `accelerate`.
"""

from __future__ import annotations

import json
import pathlib
import statistics

from absl import app, flags

import common
from serving_harness import measure_rows

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with all_minilm_l6_v2/ and sst2/.")
_TRAIN_EXAMPLES = flags.DEFINE_integer("train_examples", 8000, "SST-2 training sentences for both models.")
_SKIP_TRAINING = flags.DEFINE_bool("skip_training", False, "Reuse the models in --work_dir.")
_WORK_DIR = flags.DEFINE_string("work_dir", "runs/bench_serving", "Where the trained models go.")
_ROWS = flags.DEFINE_list("rows", ["saved_model", "litert_float32", "litert_dynamic_range", "hf_pipeline"],
                          "Rows to measure, in this order.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Passes over the rows, alternating their order.")

TRAIN_TFFT = """
import json, pathlib, sys
from tfft import export, litert, train
from tfft.config import load_config
overrides, work = json.loads(sys.argv[1]), pathlib.Path(sys.argv[2])
config = load_config("configs/sst2_minilm.yaml", overrides)
result = train.run(config)
version = pathlib.Path(result.export_path)
(version / "model_dynamic_range.tflite").write_bytes(
    litert.convert(result.model, result.packer, result.task, quantize="dynamic_range"))
print(json.dumps({"export": str(version), "accuracy": result.metrics["accuracy"]}))
"""

TRAIN_HF = """
import json, sys
import numpy as np, pandas as pd, torch
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments)
backbone, train_file, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
torch.manual_seed(0)
frame = pd.read_csv(train_file, sep="\\t", quoting=3, keep_default_na=False).head(n)
tokenizer = AutoTokenizer.from_pretrained(backbone)
enc = tokenizer(frame.sentence.tolist(), truncation=True, max_length=128)
rows = [{**{k: v[i] for k, v in enc.items()}, "labels": int(frame.label[i])} for i in range(len(frame))]
model = AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=2)
for p in model.bert.embeddings.parameters():  # tfft freezes the embeddings (model.freeze_embeddings)
    p.requires_grad = False
args = TrainingArguments(output_dir=out + "/trainer", per_device_train_batch_size=32, num_train_epochs=1,
                         learning_rate=2e-4, warmup_ratio=0.1, lr_scheduler_type="linear", weight_decay=0.01,
                         max_grad_norm=1.0, save_strategy="no", report_to=[], seed=0, use_cpu=True,
                         dataloader_num_workers=0, logging_steps=50)
Trainer(model=model, args=args, train_dataset=rows, data_collator=DataCollatorWithPadding(tokenizer)).train()
model.save_pretrained(out + "/model")
tokenizer.save_pretrained(out + "/model")
print(json.dumps({"model": out + "/model"}))
"""


def main(argv):
    del argv
    data = common.data_dir(_DATA_DIR.value)
    work = (common.REPO / _WORK_DIR.value).resolve()
    state_file = work / "trained.json"
    if not _SKIP_TRAINING.value:
        overrides = [
            *common.sst2_overrides(data, _TRAIN_EXAMPLES.value, str(work / "tfft_run")),
            "name=sst2_minilm_bench",
            "export.enabled=true",
            f"export.base_dir={work / 'saved_models'}",
            "export.formats=saved_model,litert",
        ]
        tfft_out = common.run_child(TRAIN_TFFT, json.dumps(overrides), str(work))
        hf_out = common.run_child(TRAIN_HF, str(data / "all_minilm_l6_v2"), str(data / "sst2" / "train.tsv"),
                                  str(_TRAIN_EXAMPLES.value), str(work / "hf"))
        work.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps({"tfft": tfft_out, "hf": hf_out}))
    state = json.loads(state_file.read_text())
    version = pathlib.Path(state["tfft"]["export"])
    paths = {
        "saved_model": version,
        "litert_float32": version / "model.tflite",
        "litert_dynamic_range": version / "model_dynamic_range.tflite",
        "hf_pipeline": pathlib.Path(state["hf"]["model"]),
    }
    measured = measure_rows(paths, _ROWS.value, data / "sst2" / "dev.tsv", _ROUNDS.value)

    names = {
        "saved_model": "tfft SavedModel (TF, in-process)",
        "litert_float32": "tfft LiteRT float32",
        "litert_dynamic_range": "tfft LiteRT dynamic_range (int8 weights)",
        "hf_pipeline": "HF pipeline (PyTorch)",
    }
    reference = measured.get("saved_model", [None])[0]
    rows = []
    for row, results in measured.items():
        median = lambda key, results=results: statistics.median(r[key] for r in results)  # noqa: E731
        agree, gap = "", ""
        if reference is not None:
            same = sum(a == b for a, b in zip(results[0]["predicted"], reference["predicted"], strict=True))
            agree = f"{same}/{len(reference['predicted'])}"
            if results[0]["probabilities"][0] is not None:
                import numpy as np

                diff = np.abs(np.array(results[0]["probabilities"]) - np.array(reference["probabilities"]))
                gap = f"{diff.max():.1e}"
        rows.append({
            "model": names[row], "p50 ms (batch 1)": median("p50_ms"), "p99 ms (batch 1)": median("p99_ms"),
            "sentences/s (batch 32)": median("batch32_per_s"), "size MB": results[0]["size_mb"],
            "peak RSS MB": median("peak_rss_mb"), "dev accuracy": results[0]["accuracy"],
            "labels = SavedModel's": agree, "max abs prob. diff.": gap,
        })
    columns = ["model", "p50 ms (batch 1)", "p99 ms (batch 1)", "sentences/s (batch 32)", "size MB", "peak RSS MB",
               "dev accuracy", "labels = SavedModel's", "max abs prob. diff."]
    common.report("serving_speed", rows, columns, {"train_examples": _TRAIN_EXAMPLES.value, "rounds": _ROUNDS.value})


if __name__ == "__main__":
    app.run(main)
