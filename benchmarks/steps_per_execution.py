"""Host overhead per step: `train.steps_per_execution` 1 against N, MiniLM-L6 on SST-2, batch 32.

Each run trains `configs/sst2_minilm.yaml` for --steps steps on the first 32 x --steps SST-2 sentences, without
validation, in its own process; the settings alternate for --rounds rounds. With N steps per execution Keras calls
the training function (and the callbacks) once per N steps, so the figure is the mean time per step over every
execution but the first (which traces): the sum of those executions' times over the steps they ran.

    python benchmarks/steps_per_execution.py --values=1,8
"""

import statistics

from absl import app, flags

import common

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with all_minilm_l6_v2/ and sst2/.")
_STEPS = flags.DEFINE_integer("steps", 96, "Training steps per run (a multiple of every value).")
_VALUES = flags.DEFINE_list("values", ["1", "8"], "train.steps_per_execution values.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Alternating rounds.")

CHILD = """
import json, pathlib, sys
import common
from tfft import train
from tfft.config import load_config
from timing import StepTimer
data, steps, every = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
timer = StepTimer()
overrides = common.sst2_overrides(data, 32 * steps, "runs/bench_steps_per_execution") + [
    "data.validation=", "train.epochs=1", f"train.steps_per_execution={every}"]
train.run(load_config("configs/sst2_minilm.yaml", overrides), callbacks=[timer])
print(json.dumps({"executions": len(timer.times), "ms_per_step": 1000 * sum(timer.times[1:]) / (steps - every)}))
"""


def main(argv):
    del argv
    data = common.data_dir(_DATA_DIR.value)
    runs = {value: [] for value in _VALUES.value}
    for _ in range(_ROUNDS.value):
        for value in _VALUES.value:
            runs[value].append(common.run_child(CHILD, str(data), str(_STEPS.value), value))
            print(value, runs[value][-1], flush=True)
    first = statistics.median(r["ms_per_step"] for r in runs[_VALUES.value[0]])
    rows = []
    for value, results in runs.items():
        ms = statistics.median(r["ms_per_step"] for r in results)
        rows.append({"steps_per_execution": value, "mean ms/step (median of rounds)": ms,
                     "per round": " ".join(f"{r['ms_per_step']:.0f}" for r in results),
                     "speed-up": f"{first / ms:.2f}x"})
    common.report("steps_per_execution", rows,
                  ["steps_per_execution", "mean ms/step (median of rounds)", "per round", "speed-up"],
                  {"steps": _STEPS.value, "rounds": _ROUNDS.value})


if __name__ == "__main__":
    app.run(main)
