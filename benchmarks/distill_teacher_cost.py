"""What the teacher's forward pass costs a `tfft distill` step, and what caching its outputs saves.

A teacher (`configs/sst2_minilm.yaml`, all-MiniLM-L6-v2, 6 layers; with
--task=conll2003, `configs/conll2003_minilm.yaml`, whose outputs are per token)
trains on the first --train_examples training sentences, reused when --work_dir
holds it. Then,
in alternating rounds, each in its own process, a student keeping its lowest
--keep_layers layers trains --epochs epochs on the same sentences:

- `teacher in the step`: `tfft distill`, alpha 0.5, `distill.teacher_outputs=in_step`
  (the teacher runs forward on every batch, in the training graph);
- `teacher's outputs cached`: the same, `distill.teacher_outputs=cached`
  (`tfft.teacher_cache`: one forward pass over the split before training);
- `labels only`: the same student, `distill.alpha=0`, which runs no teacher;
- with --export_teacher, `the teacher's export, cached`: the teacher's
  SavedModel export as `distill.teacher` (`tfft.export_teacher`: its outputs
  on the rows' raw texts, computed once before training). That student starts
  from the pretrained backbone, not the teacher's layers, so only its times
  compare.

All read the same batches in the same order. The difference of the median
steady steps is the teacher's forward pass inside a distilled step; `run s`
is the whole `distill.run` (the cache's pass, the build and the traces too).

    python benchmarks/distill_teacher_cost.py --epochs=3
    python benchmarks/distill_teacher_cost.py --task=conll2003 --epochs=3
    python benchmarks/distill_teacher_cost.py --epochs=3 --export_teacher
"""

from __future__ import annotations

import json
import statistics

from absl import app, flags

import common

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with all_minilm_l6_v2/, sst2/ and conll2003/.")
_TASK = flags.DEFINE_enum("task", "sst2", ["sst2", "conll2003"], "SST-2 classification or CoNLL-2003 NER.")
_WORK_DIR = flags.DEFINE_string("work_dir", "runs/bench_distill_teacher_cost", "Where the runs go (per task).")
_TRAIN_EXAMPLES = flags.DEFINE_integer("train_examples", 3200, "Training sentences.")
_KEEP = flags.DEFINE_integer("keep_layers", 3, "The student's layers (the teacher's lowest N).")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Alternating rounds of the students.")
_EPOCHS = flags.DEFINE_integer("epochs", 1, "The students' epochs.")
_EXPORT = flags.DEFINE_bool("export_teacher", False, "Add a student taught by the teacher's export (SST-2 only).")

CHILD = """
import json, sys, time
from tfft import distill, train
from tfft.config import load_config
from timing import StepTimer
command, config_file, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
config = load_config(config_file, overrides)
timer = StepTimer()
started = time.time()
result = (distill.run if command == "distill" else train.run)(config, callbacks=[timer])
print(json.dumps({"steady_ms": timer.steady_ms, "steps": len(timer.times), "step_seconds": sum(timer.times[3:]),
                  "run_seconds": time.time() - started, "loss": result.history["loss"][-1]}))
"""

EXPORT_CHILD = """
import json, sys
from tfft import export
from tfft.config import load_config
config = load_config(sys.argv[1], json.loads(sys.argv[2]))
print(json.dumps({"export": str(export.run(config))}))
"""


def teacher_export(config_file: str, base: list[str], work) -> str:
    """The teacher's SavedModel version folder, exported once into `work/saved_models`."""
    versions = sorted((work / "saved_models").glob("*/1"))
    if versions:
        return str(versions[0])
    overrides = [*base, "export.enabled=true", f"export.base_dir={work / 'saved_models'}"]
    return common.run_child(EXPORT_CHILD, config_file, json.dumps(overrides))["export"]


def main(argv):
    del argv
    data = common.data_dir(_DATA_DIR.value)
    work = (common.REPO / _WORK_DIR.value).resolve() / _TASK.value
    teacher = work / "teacher"
    base = [*common.sst2_overrides(data, _TRAIN_EXAMPLES.value, str(teacher)), "data.validation=", "train.epochs=1"]
    config_file = "configs/sst2_minilm.yaml"
    if _TASK.value == "conll2003":
        config_file = "configs/conll2003_minilm.yaml"
        base = [*base, f"data.train={data / 'conll2003' / 'train.txt'}"]
    if not (teacher / "run_complete.json").is_file():
        common.run_child(CHILD, "train", config_file, json.dumps(base), timeout=4 * 3600)
    student = [*base, f"model.keep_layers={_KEEP.value}", f"distill.teacher={teacher}", f"train.epochs={_EPOCHS.value}"]
    peers = {"distilled, teacher in the step": [*student, "distill.teacher_outputs=in_step"],
             "distilled, teacher's outputs cached": [*student, "distill.teacher_outputs=cached"],
             "labels only (distill.alpha=0)": [*student, "distill.alpha=0"]}
    if _EXPORT.value:
        export = teacher_export(config_file, base, work)
        peers["the teacher's export, cached"] = [*student, f"distill.teacher={export}", "distill.teacher_outputs=cached"]
    runs = {name: [] for name in peers}
    for round_ in range(_ROUNDS.value):
        for name, overrides in peers.items():
            out = f"output_dir={work / f'student_{round_}_{list(peers).index(name)}'}"
            runs[name].append(common.run_child(CHILD, "distill", config_file, json.dumps([*overrides, out]),
                                               timeout=4 * 3600))
            print(name, runs[name][-1], flush=True)
    rows = []
    for name, results in runs.items():
        rows.append({"student": f"{_KEEP.value} layers, {name}",
                     "median ms/step": round(statistics.median(r["steady_ms"] for r in results), 1),
                     "train-step s": round(statistics.median(r["step_seconds"] for r in results), 2),
                     "run s": round(statistics.median(r["run_seconds"] for r in results), 1),
                     "last loss": " ".join(f"{r['loss']:.5f}" for r in results), "rounds": len(results)})
    in_step, _, plain = (row["median ms/step"] for row in rows[:3])
    rows.append({"student": "teacher's share of a distilled step (in the step)",
                 "median ms/step": round(in_step - plain, 1), "train-step s": f"{100 * (in_step - plain) / in_step:.0f}%"})
    common.report(f"distill_teacher_cost_{_TASK.value}_{_EPOCHS.value}_epochs", rows,
                  ["student", "median ms/step", "train-step s", "run s", "last loss", "rounds"],
                  {"task": _TASK.value, "train_examples": _TRAIN_EXAMPLES.value, "keep_layers": _KEEP.value,
                   "epochs": _EPOCHS.value, "export_teacher": _EXPORT.value})


if __name__ == "__main__":
    app.run(main)
