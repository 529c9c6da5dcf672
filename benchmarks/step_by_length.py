"""tfft's training step against PyTorch's at the same padded shapes, length by length.

The speed tables compare whole epochs, where each peer pads its batches its own way. This benchmark takes padding
out: both peers train all-MiniLM-L6-v2 as `configs/sst2_minilm.yaml` does (the same weights trained, the
embeddings frozen, dropout on, AdamW with decay and clipping at 1.0) on the same batch shapes, --batch sentences of
random word pieces at each of --lengths tokens. tfft's step is `model.fit`'s own train function, fed a dataset whose
length dimension is unknown, as a run's trimmed batches are (one trace serves every length; checked); PyTorch's is the Hugging Face Trainer's
(forward, backward, `clip_grad_norm_`, `AdamW.step`, `zero_grad`) on `BertForSequenceClassification`.

Each peer runs in its own process, in --rounds rounds whose order alternates; in a process each length gets 3
warm-up steps, then --steps timed steps, the lengths in rising then falling order. The table gives each peer's
median step per length over all its timed steps, and each peer's over tfft's (above 1.00x: tfft is faster).
`tfft_eigen` is tfft with TensorFlow's own choice of CPU kernels (`TF_ENABLE_ONEDNN_OPTS=0`), which on an x86 CPU
without AVX-512's newer extensions are Eigen's: tfft turns oneDNN's on there (`tfft/__init__.py`).

    python benchmarks/step_by_length.py
    python benchmarks/step_by_length.py --peers=tfft,tfft_eigen,PyTorch --lengths=12,24,32,48 --rounds=2
"""

from __future__ import annotations

import json
import statistics

from absl import app, flags

import common

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with all_minilm_l6_v2/ and sst2/.")
_LENGTHS = flags.DEFINE_list("lengths", ["4", "8", "12", "16", "24", "32", "64"], "Padded lengths, in tokens.")
_BATCH = flags.DEFINE_integer("batch", 32, "Sentences per batch.")
_STEPS = flags.DEFINE_integer("steps", 12, "Timed steps per length and pass (two passes per process).")
_ROUNDS = flags.DEFINE_integer("rounds", 4, "Rounds; each runs every peer, the order alternating.")
_PEERS = flags.DEFINE_list("peers", ["tfft", "PyTorch"],
                           "Peers: tfft, PyTorch, tfft_eigen (tfft with `TF_ENABLE_ONEDNN_OPTS=0`).")

TIMING = """
import json, statistics, sys, time
lengths, batch, steps = json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def timed(step):
    times = {n: [] for n in lengths}
    for n in lengths:
        for _ in range(3):
            step(n)
    for order in (lengths, lengths[::-1]):
        for n in order:
            for _ in range(steps):
                start = time.perf_counter()
                step(n)
                times[n].append(time.perf_counter() - start)
    return times
"""

TFFT = TIMING + """
import tfft  # first: tfft's environment (oneDNN's kernels) before TensorFlow loads
import tensorflow as tf
from tfft import tasks, train
from tfft.config import load_config
config = load_config("configs/sst2_minilm.yaml", json.loads(sys.argv[1]))
task = tasks.create(config)
inputs = train.prepare_data(config, task, tf.distribute.get_strategy(), None)
model = train.build(config, task, inputs, tf.distribute.get_strategy())
features, *targets = next(iter(inputs.train_ds))
targets = [t[:batch] for t in targets]

def dataset(n):  # the batch at length n, its length dimension unknown to the trace, as a run's trimmed batches
    rows = {k: tf.random.stateless_uniform((batch, n), (n, 0), 1000, 20000, dtype=v.dtype) if k == "token_ids"
            else tf.ones((batch, n), v.dtype) for k, v in features.items()}
    ds = tf.data.Dataset.from_tensor_slices((rows, *targets))
    # Without `padded_shapes` the spec says n: the first length would get a trace of its own, with a static length
    # (Keras' einsum then takes another, slower path: docs/performance.md, *Speed*), and the later ones a generalized trace.
    unknown = tf.nest.map_structure(lambda spec: [None] * spec.shape.rank, ds.element_spec)
    return iter(ds.padded_batch(batch, padded_shapes=unknown).repeat())

iterators = {n: dataset(n) for n in lengths}
traces, train_step = [], model.train_step
model.train_step = lambda data: traces.append(1) or train_step(data)  # runs once per trace
model.make_train_function()
times = timed(lambda n: float(model.train_function(iterators[n])["loss"]))
assert len(traces) == 1, f"the train function was traced {len(traces)} times; every length should share one trace"
print(json.dumps(times))
"""

TORCH = TIMING + """
import torch
from transformers import AutoModelForSequenceClassification
from tfft.config import load_config
config = load_config("configs/sst2_minilm.yaml", json.loads(sys.argv[1]))
import common
model = AutoModelForSequenceClassification.from_pretrained(config.model.backbone, num_labels=2)
common.freeze_like_tfft(model, config.model)
model.train()
named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
groups = [{"params": [p for k, p in named if "bias" not in k and "LayerNorm" not in k],
           "weight_decay": config.train.weight_decay},
          {"params": [p for k, p in named if "bias" in k or "LayerNorm" in k], "weight_decay": 0.0}]
optimizer = torch.optim.AdamW(groups, lr=config.train.learning_rate)
labels = torch.zeros(batch, dtype=torch.long)

def step(n):
    ids = torch.randint(1000, 20000, (batch, n))
    loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad()

print(json.dumps(timed(step)))
"""


def main(argv):
    del argv
    data = common.data_dir(_DATA_DIR.value)
    overrides = [*common.sst2_overrides(data, 64, "runs/bench_step_by_length"), "data.validation="]
    lengths = [int(n) for n in _LENGTHS.value]
    args = (json.dumps(overrides), json.dumps(lengths), str(_BATCH.value), str(_STEPS.value))
    code = {"tfft": TFFT, "tfft_eigen": TFFT, "PyTorch": TORCH}
    peers = _PEERS.value
    times = {name: {n: [] for n in lengths} for name in peers}
    for round_, name in common.alternating(peers, _ROUNDS.value):
        out = common.run_child(code[name], *args, env=common.PEER_ENV.get(name))
        for n in lengths:
            times[name][n] += out[str(n)]
        print(f"round {round_} {name}: " + ", ".join(
            f"{n}: {1000 * statistics.median(out[str(n)]):.0f} ms" for n in lengths), flush=True)
    rows = []
    for n in lengths:
        ms = {name: 1000 * statistics.median(times[name][n]) for name in peers}
        row = {"tokens per sentence": n, **{f"{name} median ms/step": ms[name] for name in peers}}
        if "tfft" in ms:
            row.update({f"tfft speed-up over {name}": f"{ms[name] / ms['tfft']:.2f}x"
                        for name in peers if name != "tfft"})
            row["tfft padded tokens/s"] = round(1000 * n * _BATCH.value / ms["tfft"])
        rows.append(row)
    common.report("step_by_length", rows, list(rows[0]), {"batch": _BATCH.value, "steps": _STEPS.value,
                                                          "rounds": _ROUNDS.value})


if __name__ == "__main__":
    app.run(main)
