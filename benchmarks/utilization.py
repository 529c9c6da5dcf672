"""How close tfft's training step comes to this machine's float32 matmul peak, and where its time goes.

One tfft run (all-MiniLM-L6-v2, `configs/sst2_minilm.yaml`, the first N SST-2
sentences) in a child process, which reports:

- **Utilization.** Training FLOPs per step are counted from the padded batch:
  per token and encoder layer, the forward pass costs 2 x (4h^2 + 2hf) for the
  projections plus 4Lh for attention (h hidden width, f feed-forward width, L
  the batch's padded length); a trained layer costs 3x its forward pass
  (forward, input gradient, weight gradient), a frozen one 1x. A top block
  that computes the first token alone (`tfft.backbones.first_token`) counts
  the keys and values of every token and the rest for one token: the work
  done, not the work a full block would do. Embeddings and head are left
  out. Achieved FLOP/s is their sum over the steps after 3 warm-up steps,
  divided by those steps' time. The peak is TensorFlow's own
  float32 matmul, 2048 x 2048 x 2048, best of 10, measured in the same
  process just before training.
- **Where the time goes.** TensorFlow's profiler records `--profile_steps`
  steady steps; each kernel's time is put in one group (matmuls, the
  optimizer, dropout's random numbers and masks, GELU, layer norm, softmax and
  its mask, other), as a share of all kernel time.

    python benchmarks/utilization.py                       # 4,000 sentences
    python benchmarks/utilization.py --train_examples=8000
    python benchmarks/utilization.py --set=train.mixed_precision=mixed_bfloat16
    python benchmarks/utilization.py --train_examples=2048 --set=model.freeze_layers=0 \
        --set=model.backbone=runs/families_speed/electra_small   # another backbone with keras-hub's blocks
                                                                 # (families_speed.py writes this one)
"""


import json

from absl import app, flags

import common

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with all_minilm_l6_v2/ and sst2/.")
_TRAIN_EXAMPLES = flags.DEFINE_integer("train_examples", 4000, "Training sentences.")
_PROFILE_STEPS = flags.DEFINE_integer("profile_steps", 20, "Steady steps recorded by the profiler (0: none).")
_SET = flags.DEFINE_multi_string("set", [], "A config override for the run, e.g. "
                                 "`--set=train.mixed_precision=mixed_bfloat16` (its share is then of the bfloat16 peak).")

CHILD = """
import collections, json, pathlib, sys, tempfile, time
import tfft  # first: tfft's environment (oneDNN's kernels) before TensorFlow loads
import keras, tensorflow as tf
import common
from tfft import backbones, train
from tfft.backbones import first_token
from tfft.config import load_config
from timing import StepTimer
data, n, profile_steps, extra = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])

def matmul_peak(dtype=tf.float32):
    a = tf.cast(tf.random.normal([2048, 2048]), dtype)
    f = tf.function(lambda a: tf.matmul(a, a))
    f(a).numpy()
    best = float("inf")
    for _ in range(10):
        start = time.perf_counter(); f(a).numpy(); best = min(best, time.perf_counter() - start)
    return 2 * 2048**3 / best

GROUPS = [("optimizer", lambda op, kind: "/adam_w/" in op),
          ("matmul", lambda op, kind: "MatMul" in kind or "Einsum" in kind),
          ("dropout", lambda op, kind: "dropout" in op),
          ("GELU", lambda op, kind: "Gelu" in op),
          ("layer norm", lambda op, kind: "layer_norm" in op),
          ("softmax and its mask", lambda op, kind: "softmax" in op)]

def kernel_groups(logdir):
    totals, others = collections.Counter(), collections.Counter()
    for op, kind, seconds in common.profiled_kernels(logdir):
        group = next((g for g, match in GROUPS if match(op, kind)), "other")
        totals[group] += seconds
        if group == "other":
            others[f"{op.rsplit('/', 1)[-1]}:{kind}"] += seconds
    return totals, dict(others.most_common(8))

class Profile(keras.callbacks.Callback):
    def __init__(self, first, count, logdir):
        super().__init__(); self.first, self.last, self.logdir = first, first + count - 1, logdir
    def on_train_batch_begin(self, batch, logs=None):
        if batch == self.first: tf.profiler.experimental.start(self.logdir)
    def on_train_batch_end(self, batch, logs=None):
        if batch == self.last: tf.profiler.experimental.stop()

peaks = {"float32": matmul_peak(), "bfloat16": matmul_peak(tf.bfloat16)}
overrides = common.sst2_overrides(data, n, "runs/bench_utilization") + ["data.validation="] + extra
config = load_config("configs/sst2_minilm.yaml", overrides)
compute = "bfloat16" if config.train.mixed_precision == "mixed_bfloat16" else "float32"
timer, logdir = StepTimer(), tempfile.mkdtemp()
callbacks = [timer] + ([Profile(40, profile_steps, logdir)] if profile_steps else [])
result = train.run(config, callbacks=callbacks)
inputs = train.prepare_data(config, result.task, tf.distribute.get_strategy(), kept=None)  # the same batches, seeded
lengths = [int(x["token_ids"].shape[1]) for x, *_ in inputs.train_ds.take(len(timer.times))]
backbone = result.model.backbone
encoder = backbones.resolve(config.model).layer_groups(backbone).encoder  # keras-hub's blocks, from any source
h, f, layers = int(backbone.output["sequence_output"].shape[-1]), encoder[0].intermediate_dim, len(encoder)
trained = layers - config.model.freeze_layers if config.model.freeze_layers >= 0 else 0  # -1: head only
batch = config.train.batch_size
top_first = first_token.computes_first_token_only(encoder[-1])
def layer_forward(L, queries):  # one sequence: keys and values of L tokens; queries, output, feed-forward of `queries`
    return 2 * (2 * h * h * L + (2 * h * h + 2 * h * f) * queries) + 4 * queries * L * h
def step_flops(L):  # a trained layer 3x its forward pass, a frozen one 1x
    return batch * sum(layer_forward(L, 1 if top_first and i == layers - 1 else L) * (3 if i >= layers - trained else 1)
                       for i in range(layers))
steady = slice(3, None)
flops = sum(step_flops(L) for L in lengths[steady])
seconds = sum(timer.times[steady])
groups, others = kernel_groups(logdir) if profile_steps else ({}, {})
print(json.dumps({"peaks": peaks, "compute": compute, "flops": flops, "seconds": seconds,
                  "steps": len(timer.times[steady]), "tokens": batch * sum(lengths[steady]), "groups": groups,
                  "other_ops": others}))
"""


def main(argv):
    del argv
    data = common.data_dir(_DATA_DIR.value)
    out = common.run_child(CHILD, str(data), str(_TRAIN_EXAMPLES.value), str(_PROFILE_STEPS.value),
                           json.dumps(_SET.value))
    achieved, peak = out["flops"] / out["seconds"], out["peaks"][out["compute"]]
    rows = [{"measure": f"TensorFlow {dtype} matmul peak (2048^3)", "value": f"{value / 1e9:.0f} GFLOP/s"}
            for dtype, value in out["peaks"].items()]
    rows += [{"measure": f"tfft training, {out['steps']} steady steps", "value": f"{achieved / 1e9:.0f} GFLOP/s"},
             {"measure": f"share of the {out['compute']} matmul peak", "value": f"{100 * achieved / peak:.0f}%"},
             {"measure": "padded tokens per second", "value": f"{out['tokens'] / out['seconds']:.0f}"}]
    total = sum(out["groups"].values())
    for group, seconds in sorted(out["groups"].items(), key=lambda item: -item[1]):
        rows.append({"measure": f"kernel time: {group}", "value": f"{100 * seconds / total:.1f}%"})
    for op, seconds in out.get("other_ops", {}).items():
        rows.append({"measure": f"in other: {op}", "value": f"{100 * seconds / total:.1f}%"})
    common.report("utilization", rows, ["measure", "value"], {"train_examples": _TRAIN_EXAMPLES.value, "raw": out})


if __name__ == "__main__":
    app.run(main)
