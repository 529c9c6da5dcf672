"""Where one attention block's training time goes, op by op: tfft's (Keras) against PyTorch's (Hugging Face BERT).

On the AMD EPYC machine tfft's steps fall behind PyTorch's from 24 tokens a sentence on, and an earlier probe put
most of the gap in the backward pass through attention (docs/performance.md, *Speed*). This benchmark takes one attention block
of all-MiniLM-L6-v2's shape (hidden 384, 12 heads, dropout 0.1 on the attention weights and on the output) and
times its forward and backward pass, the weights' and the input's gradients (as in a layer with trained layers
below it), on --batch random sentences of --length tokens:

- **tfft**: Keras' `MultiHeadAttention` (as keras-hub's `TransformerEncoder` calls it, with its padding mask), then
  `Dropout`, the residual add and tfft's `fast_layers.layer_norm`, in one `tf.function` whose length dimension is
  unknown (as a run's trimmed batches are).
- **PyTorch**: transformers' `BertAttention` (self-attention, output projection, dropout, residual, LayerNorm) with
  its default SDPA attention, and with `eager` attention.

Each peer runs in its own process, --rounds rounds alternating; the table gives the median step over all rounds
and, from one profiled round of 10 steps (TensorFlow's profiler; `torch.profiler`), each group of ops' time per
step. A group's time is the kernels' own time summed: TensorFlow runs independent kernels side by side on its
inter-op threads, so its groups can add up to more than the step's wall time; PyTorch runs one op at a time.

    python benchmarks/attention_ops.py                   # 32 tokens
    python benchmarks/attention_ops.py --length=16
"""

from __future__ import annotations

import statistics

from absl import app, flags

import common

_LENGTH = flags.DEFINE_integer("length", 32, "Tokens per sentence.")
_BATCH = flags.DEFINE_integer("batch", 32, "Sentences per batch.")
_STEPS = flags.DEFINE_integer("steps", 30, "Timed steps per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Rounds; each runs every peer, the order alternating.")

GROUPS = ["projections (query, key, value, output)", "scores and weighted sum", "softmax", "dropout", "layer norm",
          "transposes and copies", "other"]

TFFT = """
import collections, json, sys, tempfile, time
import tfft  # first: tfft's environment (oneDNN's kernels) before TensorFlow loads
import keras, tensorflow as tf
import common
from tfft.backbones import fast_layers
batch, length, steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
H = 384
attention = keras.layers.MultiHeadAttention(12, H // 12, dropout=0.1)
dropout = keras.layers.Dropout(0.1)
norm = keras.layers.LayerNormalization(epsilon=1e-12)
x = tf.random.normal([batch, length, H])

@tf.function(input_signature=[tf.TensorSpec([None, None, H])])
def step(x):
    mask = tf.ones(tf.stack([tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[1]]), tf.bool)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = attention(x, x, attention_mask=mask, training=True)
        with tf.name_scope("layer_norm"):
            y = fast_layers.layer_norm(x + dropout(y, training=True), norm.gamma, norm.beta, 1e-12)
        loss = tf.reduce_sum(y * y)
    return tape.gradient(loss, [x, *attention.trainable_variables, norm.gamma, norm.beta])

attention(x, x)
norm.build(x.shape)
for _ in range(5):
    step(x)[0].numpy()
times = []
for _ in range(steps):
    start = time.perf_counter(); step(x)[0].numpy(); times.append(time.perf_counter() - start)
logdir = tempfile.mkdtemp()
tf.profiler.experimental.start(logdir)
for _ in range(10):
    step(x)[0].numpy()
tf.profiler.experimental.stop()

def group(op, kind):
    if any(f"/{p}" in op for p in ("query", "key", "value", "attention_output")) and kind in ("Einsum", "MatMul", "BatchMatMulV2", "Sum", "BiasAddGrad", "AddV2", "BiasAdd"):
        return "projections (query, key, value, output)"
    if kind in ("BatchMatMulV2", "Einsum", "MatMul"):
        return "scores and weighted sum"
    if "softmax" in op.lower() or kind == "Softmax":
        return "softmax"
    if "dropout" in op.lower() or kind.startswith("StatelessRandom"):
        return "dropout"
    if "layer_norm" in op:
        return "layer norm"
    if kind in ("Transpose", "Reshape", "Identity", "Tile", "ConcatV2"):
        return "transposes and copies"
    return "other"

groups, ops = collections.Counter(), collections.Counter()
for op, kind, seconds in common.profiled_kernels(logdir):
    groups[group(op, kind)] += seconds * 1000 / 10
    ops[f"{op}:{kind}"] += seconds * 1000 / 10
print(json.dumps({"times": times, "groups": groups, "top": dict(ops.most_common(12))}))
"""

TORCH = """
import collections, json, sys, time
import torch
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertAttention
batch, length, steps, implementation = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
config = BertConfig(hidden_size=384, num_attention_heads=12, intermediate_size=1536, attention_probs_dropout_prob=0.1,
                    hidden_dropout_prob=0.1, layer_norm_eps=1e-12, attn_implementation=implementation)
block = BertAttention(config).train()
x = torch.randn(batch, length, 384, requires_grad=True)
mask = torch.zeros(batch, 1, 1, length)  # additive: nothing masked, as the TF side's all-true mask

def step():
    y = block(x, attention_mask=mask)[0]
    (y * y).sum().backward()
    block.zero_grad(); x.grad = None

for _ in range(5):
    step()
times = []
for _ in range(steps):
    start = time.perf_counter(); step(); times.append(time.perf_counter() - start)

def group(name):
    if name in ("aten::addmm", "aten::mm", "aten::linear", "AddmmBackward0", "aten::sum"):
        return "projections (query, key, value, output)"
    if "scaled_dot_product" in name or name in ("aten::bmm", "aten::matmul", "BmmBackward0"):
        return "scores and weighted sum"
    if "softmax" in name:
        return "softmax"
    if "dropout" in name or "bernoulli" in name:
        return "dropout"
    if "layer_norm" in name:
        return "layer norm"
    if name in ("aten::copy_", "aten::clone", "aten::contiguous", "aten::transpose", "aten::permute", "aten::view",
                "aten::reshape", "aten::_unsafe_view", "aten::t", "aten::expand", "aten::as_strided"):
        return "transposes and copies"
    return "other"

with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
    for _ in range(10):
        step()
groups, ops = collections.Counter(), collections.Counter()
for event in profile.key_averages():
    if event.self_cpu_time_total > 0:
        groups[group(event.key)] += event.self_cpu_time_total / 1000 / 10
        ops[event.key] += event.self_cpu_time_total / 1000 / 10
print(json.dumps({"times": times, "groups": groups, "top": dict(ops.most_common(12))}))
"""


def main(argv):
    del argv
    args = (str(_BATCH.value), str(_LENGTH.value), str(_STEPS.value))
    peers = {"tfft (Keras MultiHeadAttention)": (TFFT,), "PyTorch BertAttention, SDPA": (TORCH, "sdpa"),
             "PyTorch BertAttention, eager": (TORCH, "eager")}
    times, groups, tops = ({name: [] for name in peers} for _ in range(3))
    for round_, name in common.alternating(peers, _ROUNDS.value):
        code, *extra = peers[name]
        out = common.run_child(code, *args, *extra)
        times[name] += out["times"]
        groups[name].append(out["groups"])
        tops[name].append(out["top"])
        print(f"round {round_} {name}: median {1000 * statistics.median(out['times']):.1f} ms", flush=True)
    rows = []
    for name in peers:
        row = {"peer": name, "median ms/step": round(1000 * statistics.median(times[name]), 1)}
        for g in GROUPS:  # per-group ms per step, the median over the rounds' profiles
            row[g] = round(statistics.median(profile.get(g, 0.0) for profile in groups[name]), 2)
        rows.append(row)
    for name in peers:
        print(f"\n{name}, the costliest ops (ms per step, last round):")
        for op, ms in tops[name][-1].items():
            print(f"  {ms:7.2f}  {op}")
    common.report(f"attention_ops_{_LENGTH.value}", rows, list(rows[0]),
                  {"batch": _BATCH.value, "length": _LENGTH.value, "steps": _STEPS.value, "rounds": _ROUNDS.value})


if __name__ == "__main__":
    app.run(main)
