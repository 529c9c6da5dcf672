"""What the teacher's forward pass costs a `tfft distill` step: the bound on what caching its outputs would save.

A teacher (`configs/sst2_minilm.yaml`, all-MiniLM-L6-v2, 6 layers) trains on the
first --train_examples SST-2 sentences, reused when --work_dir holds it. Then,
in alternating rounds, each in its own process, a student keeping its lowest
--keep_layers layers trains one epoch on the same sentences:

- `distilled`: `tfft distill`, alpha 0.5 (the teacher runs forward on every batch,
  in the training graph);
- `labels only`: the same student, `distill.alpha=0`, which runs no teacher.

Both read the same batches in the same order. The difference of their median
steady steps is the teacher's forward pass inside a distilled step: what a
cache of its outputs would save in every epoch after the first.

    python benchmarks/distill_teacher_cost.py
"""

from __future__ import annotations

import json
import statistics

from absl import app, flags

import common

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with all_minilm_l6_v2/ and sst2/.")
_WORK_DIR = flags.DEFINE_string("work_dir", "runs/bench_distill_teacher_cost", "Where the runs go.")
_TRAIN_EXAMPLES = flags.DEFINE_integer("train_examples", 3200, "SST-2 training sentences.")
_KEEP = flags.DEFINE_integer("keep_layers", 3, "The student's layers (the teacher's lowest N).")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Alternating rounds of the two students.")

CHILD = """
import json, sys
from tfft import distill, train
from tfft.config import load_config
from timing import StepTimer
command, overrides = sys.argv[1], json.loads(sys.argv[2])
config = load_config("configs/sst2_minilm.yaml", overrides)
timer = StepTimer()
(distill.run if command == "distill" else train.run)(config, callbacks=[timer])
print(json.dumps({"steady_ms": timer.steady_ms, "steps": len(timer.times), "step_seconds": sum(timer.times[3:])}))
"""


def main(argv):
    del argv
    data = common.data_dir(_DATA_DIR.value)
    work = (common.REPO / _WORK_DIR.value).resolve()
    base = [*common.sst2_overrides(data, _TRAIN_EXAMPLES.value, str(work / "teacher")), "data.validation=",
            "train.epochs=1"]
    teacher = work / "teacher"
    if not (teacher / "run_complete.json").is_file():
        common.run_child(CHILD, "train", json.dumps(base), timeout=4 * 3600)
    student = [*base, f"model.keep_layers={_KEEP.value}", f"distill.teacher={teacher}"]
    peers = {"distilled": student, "labels only (distill.alpha=0)": [*student, "distill.alpha=0"]}
    runs = {name: [] for name in peers}
    for round_ in range(_ROUNDS.value):
        for name, overrides in peers.items():
            out = f"output_dir={work / f'student_{round_}_{len(runs[name])}_{name.split()[0]}'}"
            runs[name].append(common.run_child(CHILD, "distill", json.dumps([*overrides, out]), timeout=4 * 3600))
            print(name, runs[name][-1], flush=True)
    rows = []
    for name, results in runs.items():
        rows.append({"student": f"{_KEEP.value} layers, {name}",
                     "median ms/step": statistics.median(r["steady_ms"] for r in results),
                     "train-step s": statistics.median(r["step_seconds"] for r in results),
                     "rounds": len(results)})
    distilled, plain = (row["median ms/step"] for row in rows)
    rows.append({"student": "teacher's share of a distilled step", "median ms/step": distilled - plain,
                 "train-step s": f"{100 * (distilled - plain) / distilled:.0f}%"})
    common.report("distill_teacher_cost", rows, ["student", "median ms/step", "train-step s", "rounds"],
                  {"train_examples": _TRAIN_EXAMPLES.value, "keep_layers": _KEEP.value})


if __name__ == "__main__":
    app.run(main)
