"""`tfft distill` on CoNLL-2003 NER and extractive QA: a smaller student of a fine-tuned all-MiniLM-L6-v2.

For each --tasks entry the teacher is the task's config (6 layers), reused when --work_dir holds it finished.
Students keep its lowest N encoder layers (`model.keep_layers`) and train with the same config, data and steps:

- `distilled`: `tfft distill` from the teacher's weights, alpha 0.5, temperature 2 (NER: the per-piece KL on each
  word's first piece; QA: the start and end KL over positions);
- `labels only, teacher's start` (with --teacher_start): `tfft distill --set distill.alpha=0`, the same start, the
  labels alone: what the teacher's soft targets add beyond its weights;
- `labels only, pretrained start`: `tfft train` with `model.keep_layers`, no teacher.

| task | config | student | scored on |
|---|---|---|---|
| `conll2003` | `configs/conll2003_minilm.yaml` (3 epochs) | 3 layers | CoNLL-2003 test (3,453 sentences), entity F1 |
| `squad` | `configs/squad_minilm.yaml` (--squad_epochs) | 4 layers | XQuAD-en's 1,190 questions, EM / F1 |

The SQuAD split is `benchmarks/qa_vs_trainer.py`'s (SQuAD v1.1 dev by paragraph: XQuAD's paragraphs to score, the
others to train); run that script once first to write it (`runs/squad_split/`). Each run's checkpoint is the one
with the best validation score, as for any run (for QA the validation split is the scored one, as in
`qa_vs_trainer.py`).

    python benchmarks/distill_tasks.py --tasks=conll2003                         # about 25 minutes on 2 cores
    python benchmarks/distill_tasks.py --tasks=squad --squad_questions=3000       # about 20 minutes
"""

from __future__ import annotations

import json
import pathlib

from absl import app, flags

import common

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with all_minilm_l6_v2/, conll2003/ and squad_v1_1/.")
_WORK_DIR = flags.DEFINE_string("work_dir", "runs/bench_distill_tasks", "Where the runs go.")
_TASKS = flags.DEFINE_list("tasks", ["conll2003", "squad"], "Tasks to run.")
_SQUAD_SPLIT = flags.DEFINE_string("squad_split", "runs/squad_split", "qa_vs_trainer.py's split (train.json, eval.json).")
_SQUAD_QUESTIONS = flags.DEFINE_integer("squad_questions", 0, "SQuAD training questions (0: all 9,380).")
_SQUAD_EPOCHS = flags.DEFINE_integer("squad_epochs", 1, "SQuAD epochs, for every run.")
_TEACHER_START = flags.DEFINE_bool("teacher_start", False, "Also train the `labels only, teacher's start` student.")

# Trains (or reads back) one run; scores its best checkpoint on the test file, or reads its validation scores.
RUN = """
import json, pathlib, sys
from tfft import distill, evaluate, train
from tfft.config import load_config
from common import peak_rss_mb
config_file, overrides, command, test = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
config = load_config(config_file, overrides)
if not (pathlib.Path(config.output_dir) / "run_complete.json").is_file():
    (distill.run if command == "distill" else train.run)(config)
metrics = json.loads((pathlib.Path(config.output_dir) / "metrics.json").read_text())
scores = evaluate.run(config, split_file=test) if test else metrics
keys = [k for k in ("f1", "exact_match") if k in scores]
print(json.dumps({"scores": {k: scores[k] for k in keys}, "train_seconds": metrics["train_seconds"],
                  "peak_rss_mb": peak_rss_mb()}))
"""


def settings(task: str, data: pathlib.Path) -> tuple[str, list[str], str, int]:
    """(config file, data overrides, test file or "", student layers) of one task."""
    backbone = f"model.backbone={data / 'all_minilm_l6_v2'}"
    if task == "conll2003":
        conll = data / "conll2003"
        return ("configs/conll2003_minilm.yaml", [backbone, f"data.train={conll / 'train.txt'}",
                f"data.validation={conll / 'valid.txt'}"], str(conll / "test.txt"), 3)
    split = (common.REPO / _SQUAD_SPLIT.value).resolve()
    if not (split / "train.json").is_file():
        raise SystemExit(f"No SQuAD split in {split}: run `python benchmarks/qa_vs_trainer.py` once first.")
    overrides = [backbone, f"data.train={split / 'train.json'}", f"data.validation={split / 'eval.json'}",
                 f"train.epochs={_SQUAD_EPOCHS.value}"]
    if _SQUAD_QUESTIONS.value:
        overrides.append(f"data.max_train_examples={_SQUAD_QUESTIONS.value}")
    return "configs/squad_minilm.yaml", overrides, "", 4


def run_task(task: str, data: pathlib.Path, work: pathlib.Path) -> list[dict]:
    config_file, base, test, layers = settings(task, data)
    base = [*base, "export.enabled=false"]
    student = [f"model.keep_layers={layers}", f"distill.teacher={work / task / 'teacher'}"]
    runs = [
        ("teacher (6 layers)", "train", [f"output_dir={work / task / 'teacher'}"]),
        (f"{layers} layers, distilled", "distill", [f"output_dir={work / task / 'distilled'}", *student]),
        (f"{layers} layers, labels only, pretrained start", "train",
         [f"output_dir={work / task / 'labels_pretrained_start'}", f"model.keep_layers={layers}"]),
    ]
    if _TEACHER_START.value:
        runs.append((f"{layers} layers, labels only, teacher's start", "distill",
                     [f"output_dir={work / task / 'labels_teacher_start'}", *student, "distill.alpha=0"]))
    rows, teacher = [], None
    for label, command, extra in runs:
        result = common.run_child(RUN, config_file, json.dumps([*base, *extra]), command, test, timeout=4 * 3600)
        teacher = teacher or result["scores"]
        row = {"task": task, "model": label, "train s": result["train_seconds"], "peak RSS MB": result["peak_rss_mb"]}
        for key, value in result["scores"].items():
            row[key] = value
            row[f"% of teacher's {key}"] = 100 * value / teacher[key]
        rows.append(row)
        print(f"{task}, {label}: {result['scores']}", flush=True)
    return rows


def main(argv):
    del argv
    data = common.data_dir(_DATA_DIR.value)
    work = (common.REPO / _WORK_DIR.value).resolve()
    rows = [row for task in _TASKS.value for row in run_task(task, data, work)]
    columns = ["task", "model", "f1", "% of teacher's f1", "exact_match", "% of teacher's exact_match", "train s",
               "peak RSS MB"]
    common.report("distill_tasks", rows, columns, {"squad_questions": _SQUAD_QUESTIONS.value,
                                                   "squad_epochs": _SQUAD_EPOCHS.value})


if __name__ == "__main__":
    app.run(main)
