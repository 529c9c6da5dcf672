"""Where a training step's time goes: frozen layers, XLA, padding. MiniLM-L6 on SST-2, batch 32.

    python benchmarks/where_time_goes.py --steps=30

Each row is a short tfft run; the figure is the median step time after the
first 3 steps (tracing/compilation left out).
"""

import json

from absl import app, flags

import common

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with all_minilm_l6_v2/ and sst2/.")
_STEPS = flags.DEFINE_integer("steps", 30, "Training steps per row.")

CHILD = """
import json, pathlib, sys
import common
from tfft import train
from tfft.config import load_config
from timing import StepTimer
data, steps, extra = pathlib.Path(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
timer = StepTimer()
overrides = common.sst2_overrides(data, 32 * steps, "runs/bench_where") + ["data.validation="] + extra
train.run(load_config("configs/sst2_minilm.yaml", overrides), callbacks=[timer])
print(json.dumps({"steady_ms": timer.steady_ms}))
"""

ROWS = [
    ("freeze_layers", "0, embeddings train too (as the Trainer peer)",
     ["model.freeze_layers=0", "model.freeze_embeddings=false"]),
    ("freeze_layers", "0 (embeddings frozen)", ["model.freeze_layers=0"]),
    ("freeze_layers", "2 (default)", ["model.freeze_layers=2"]),
    ("freeze_layers", "4", ["model.freeze_layers=4"]),
    ("freeze_layers", "6 (all encoder layers)", ["model.freeze_layers=6"]),
    ("freeze_layers", "-1 (head only)", ["model.freeze_layers=-1"]),
    ("padding", "to 128 (`pad_to: max`)", ["train.pad_to=max"]),
    ("padding", "to longest in batch (default)", ["train.pad_to=longest"]),
    ("XLA", "off, fixed buckets", ["train.pad_to=buckets", "train.jit_compile=false"]),
    ("XLA", "on, fixed buckets", ["train.pad_to=buckets", "train.jit_compile=true"]),
]


def main(argv):
    del argv
    data = common.data_dir(_DATA_DIR.value)
    rows, baseline = [], {}
    for knob, setting, extra in ROWS:
        out = common.run_child(CHILD, str(data), str(_STEPS.value), json.dumps(extra))
        baseline.setdefault(knob, out["steady_ms"])
        rows.append({"knob": knob, "setting": setting, "ms/step": out["steady_ms"],
                     "examples/s": 32000.0 / out["steady_ms"],
                     "speed-up vs first row of knob": f"{baseline[knob] / out['steady_ms']:.2f}x"})
        print(rows[-1], flush=True)
    common.report("where_time_goes", rows, ["knob", "setting", "ms/step", "examples/s", "speed-up vs first row of knob"],
                  {"steps": _STEPS.value, "batch_size": 32, "sequence_length": 128})


if __name__ == "__main__":
    app.run(main)
