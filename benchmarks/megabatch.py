"""Length grouping's megabatch size: padding, train-step time and dev accuracy, over seeds.

tfft groups training batches by length within megabatches of `train.megabatch` batches (16), then
shuffles the batches; the Hugging Face Trainer's `group_by_length=True` uses megabatches of 50 batches. A larger
megabatch pads less (its sorted run is longer) but makes each batch's neighbours less random. Each run trains
`configs/sst2_minilm.yaml` for one epoch on the first --train_examples SST-2 sentences, in its own process, with
the constant set to one of --values; the values alternate within each seed. Reported per value: padded tokens per
example (counted over one epoch's batches), the time inside the train steps after 3 warm-up steps, and the mean and
standard deviation of dev accuracy over --seeds (`train.seed`: the head's start, dropout and the batch order).

    python benchmarks/megabatch.py --values=16,50 --seeds=0,1,2,3,4
"""

import json
import statistics

from absl import app, flags

import common

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with all_minilm_l6_v2/ and sst2/.")
_TRAIN_EXAMPLES = flags.DEFINE_integer("train_examples", 8000, "SST-2 training sentences.")
_VALUES = flags.DEFINE_list("values", ["16", "50"], "Batches per megabatch.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "train.seed values.")

CHILD = """
import json, pathlib, sys
import tfft  # first: tfft's environment (oneDNN's kernels) before TensorFlow loads
import tensorflow as tf
import common
from tfft import train
from tfft.config import load_config
from timing import StepTimer
data, examples, megabatch, seed = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
config = load_config("configs/sst2_minilm.yaml", common.sst2_overrides(data, examples, "runs/bench_megabatch") + [
    "train.epochs=1", f"train.seed={seed}", f"train.megabatch={megabatch}"])
timer = StepTimer()
result = train.run(config, callbacks=[timer])
inputs = train.prepare_data(config, result.task, tf.distribute.get_strategy(), None)
tokens = sum(int(tf.size(f["padding_mask"])) for f, *_ in inputs.train_ds.take(inputs.steps))
print(json.dumps({"step_seconds": sum(timer.times[3:]), "steady_ms": timer.steady_ms,
                  "accuracy": result.metrics["accuracy"], "padded_per_example": tokens / inputs.train.elements}))
"""


def main(argv):
    del argv
    data = common.data_dir(_DATA_DIR.value)
    runs = {value: [] for value in _VALUES.value}
    for index, value in common.alternating(_VALUES.value, len(_SEEDS.value)):  # one round per seed
        seed = _SEEDS.value[index]
        result = common.run_child(CHILD, str(data), str(_TRAIN_EXAMPLES.value), value, seed, timeout=3600)
        runs[value].append(result)
        print(f"megabatch {value}, seed {seed}: {json.dumps(result)}", flush=True)
    rows = []
    for value, results in runs.items():
        accuracy = [r["accuracy"] for r in results]
        rows.append({
            "batches per megabatch": value,
            "padded tokens per example": round(statistics.mean(r["padded_per_example"] for r in results), 2),
            "train-step s (median)": round(statistics.median(r["step_seconds"] for r in results), 1),
            "median ms/step": round(statistics.median(r["steady_ms"] for r in results), 1),
            "dev accuracy": common.mean_and_std(accuracy),
            "per seed": " ".join(f"{a:.4f}" for a in accuracy),
        })
    common.report("megabatch", rows, list(rows[0]), {"train_examples": _TRAIN_EXAMPLES.value, "seeds": _SEEDS.value})


if __name__ == "__main__":
    app.run(main)
