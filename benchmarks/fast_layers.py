"""tfft's GELU and LayerNorm with hand-written gradients (`tfft.backbones.fast_layers`) against Keras' own.

Both models are `configs/sst2_minilm.yaml`'s (all-MiniLM-L6-v2, embeddings frozen, six layers training), built by
`train.build` from the same weights; in the `Keras` one every LayerNorm and feed-forward GELU is put back to Keras'
own (`tfft.backbones.fast_layers` replaces them). Both use tfft's AdamW. Both train on the same --steps cached SST-2 batches (batch 32,
grouped by length, as a run pads them), in --rounds rounds of alternating blocks (ABBA order), so that the
machine's drift between minutes falls on both. The table gives each model's median step and the sum of its steps.
The losses after the same steps are printed too: the two must train alike. With `--against=xla_gelu` the other
model is tfft's with its feed-forward GELU fused by XLA (`benchmarks/xla_gelu.py`); each model's first pass over
the batches, which traces and (for XLA) compiles once per batch length, is timed apart. With
`--against=xla_attention` it is tfft's with attention's products fused by XLA (`benchmarks/xla_attention.py`);
`--against=split_attention`, tfft's with each of attention's products in two halves of the batch
(`benchmarks/split_attention.py`); `--against=split_heads`, with each head's width in two halves at 23-32
tokens (the same file); `--against=matmul_projections`, with attention's projections as 2-D `MatMul`s
(`benchmarks/matmul_projections.py`). `--task=conll2003` (or `sick`) takes `configs/conll2003_minilm.yaml` and CoNLL-2003's
batches (or SICK's) instead of SST-2's.

    python benchmarks/fast_layers.py
    python benchmarks/fast_layers.py --task=conll2003 --against=xla_attention
"""

import statistics
import time
import types

import tfft  # noqa: F401  (first: tfft's environment, oneDNN's kernels, before TensorFlow loads)

# isort: split
import keras
from absl import app, flags

import common

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with all_minilm_l6_v2/ and sst2/.")
_STEPS = flags.DEFINE_integer("steps", 40, "Cached training batches each block runs.")
_ROUNDS = flags.DEFINE_integer("rounds", 4, "Rounds; each runs a block per model, the order alternating.")
_TASK = flags.DEFINE_enum("task", "sst2", ["sst2", "conll2003", "sick"], "Whose config and batches: "
                          "`configs/<task>_minilm.yaml` on that set's training split.")
# --task: its training file under --data_dir (SST-2's comes from `common.sst2_overrides`).
TRAIN_FILES = {"conll2003": ("conll2003", "train.txt"), "sick": ("sick", "SICK_train.txt")}


def with_gelu(model, activation) -> int:
    """Puts `activation` in place of tfft's GELU in every layer of `model`; returns how many layers changed."""
    from tfft.backbones import fast_layers

    layers = [layer for layer in model._flatten_layers() if getattr(layer, "activation", None) is fast_layers.gelu]
    for layer in layers:
        layer.activation = activation
    return len(layers)


def with_keras_ops(model) -> int:
    """Puts Keras' own LayerNorm call and exact GELU back into `model`; returns how many layers changed."""
    norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.LayerNormalization)]
    for layer in norms:
        layer.call = types.MethodType(keras.layers.LayerNormalization.call, layer)
    return len(norms) + with_gelu(model, lambda x: keras.activations.gelu(x, approximate=False))


def with_xla_gelu(model) -> int:
    """Puts `xla_gelu.gelu_xla` (forward and backward each one XLA kernel) in place of tfft's GELU."""
    from xla_gelu import gelu_xla

    return with_gelu(model, gelu_xla)


def with_xla_attention(model) -> int:
    """Puts `xla_attention.compute_attention` (attention's products XLA-compiled) in every attention layer."""
    from xla_attention import with_xla_attention as put

    return put(model)


def with_split_attention(model) -> int:
    """Puts `split_attention.compute_attention` (attention's products in two halves of the batch) in every
    attention layer."""
    from split_attention import with_split_attention as put

    return put(model)


def with_split_heads(model) -> int:
    """Puts `split_attention.compute_attention_split_heads` (half-width head products at 23-32 tokens) in every
    attention layer."""
    from split_attention import with_split_heads as put

    return put(model)


def with_matmul_projections(model) -> int:
    """Puts `matmul_projections`' 2-D `MatMul` in place of the einsum of every attention projection."""
    from matmul_projections import with_matmul_projections as put

    return put(model)


# --against: the other model's name, what changes its layers (returns how many), and its row in the table.
OTHERS = {
    "keras": ("Keras", with_keras_ops, "Keras' own"),
    "xla_gelu": ("XLA GELU", with_xla_gelu, "tfft's, GELU fused by XLA (`benchmarks/xla_gelu.py`)"),
    "xla_attention": ("XLA attention", with_xla_attention,
                      "tfft's, attention's products fused by XLA (`benchmarks/xla_attention.py`)"),
    "split_attention": ("split attention", with_split_attention,
                        "tfft's, attention's products in two halves of the batch (`benchmarks/split_attention.py`)"),
    "matmul_projections": ("2-D MatMul projections", with_matmul_projections,
                           "tfft's, attention's projections as 2-D `MatMul`s (`benchmarks/matmul_projections.py`)"),
    "split_heads": ("split heads", with_split_heads,
                    "tfft's, attention's products over half-width heads at 23-32 tokens (`benchmarks/split_attention.py`)"),
}
_AGAINST = flags.DEFINE_enum("against", "keras", list(OTHERS),
                             "The other model: Keras' own GELU and LayerNorm, or tfft's with GELU (or attention's "
                             "products) fused by XLA, or attention's products split over halves of the batch or of "
                             "each head's width.")


def build_models(config):
    import tensorflow as tf

    from tfft import tasks, train

    task = tasks.create(config)
    strategy = tf.distribute.get_strategy()
    inputs = train.prepare_data(config, task, strategy, None)
    models = {}
    other, change, _ = OTHERS[_AGAINST.value]
    for name in ("tfft", other):
        keras.utils.set_random_seed(config.train.seed)
        model = train.build(config, task, inputs, strategy)
        if name == other:
            print(f"{other}: {change(model)} layers changed", flush=True)
        models[name] = model
    batches = inputs.train_ds.take(_STEPS.value).cache()
    for _ in batches:  # fills the cache: both models then see the same batches in the same order
        pass
    return models, batches


def time_block(model, batches, steps: int) -> tuple[list[float], float]:
    """Seconds of each of the first `steps` steps over `batches`, and the last step's loss."""
    model.make_train_function()
    function = model.train_function
    iterator = iter(batches)
    times, loss = [], None
    for _ in range(steps):
        start = time.perf_counter()
        logs = function(iterator)
        loss = float(logs["loss"])  # waits for the step
        times.append(time.perf_counter() - start)
    return times, loss


def main(argv):
    del argv
    from tfft.config import load_config

    data = common.data_dir(_DATA_DIR.value)
    overrides = common.sst2_overrides(data, 32 * _STEPS.value, "runs/bench_fast_layers") + [
        "data.validation=", "train.epochs=1"]
    if _TASK.value in TRAIN_FILES:
        overrides = [f"data.train={data.joinpath(*TRAIN_FILES[_TASK.value])}" if o.startswith("data.train=") else o
                     for o in overrides]
    models, batches = build_models(load_config(f"configs/{_TASK.value}_minilm.yaml", overrides))
    first_pass = {}
    for name, model in models.items():  # traces, and XLA compiles once per batch length: timed apart
        start = time.perf_counter()
        time_block(model, batches, _STEPS.value)
        first_pass[name] = time.perf_counter() - start
    times = {name: [] for name in models}
    losses = {name: [] for name in models}
    for round_ in range(_ROUNDS.value):
        order = list(models) if round_ % 2 == 0 else list(reversed(models))
        for name in order:
            block, loss = time_block(models[name], batches, _STEPS.value)
            times[name].extend(block)
            losses[name].append(loss)
            print(f"round {round_} {name}: median {1000 * statistics.median(block):.1f} ms, loss {loss:.4f}", flush=True)
    other = next(name for name in models if name != "tfft")
    reference = statistics.median(times[other])
    described = {"tfft": "tfft's (`fast_layers`)", other: OTHERS[_AGAINST.value][2]}
    rows = [{"GELU and LayerNorm": described[name],
             "median ms/step": 1000 * statistics.median(steps), "sum of steps s": sum(steps),
             "first pass s (traces, compiles)": round(first_pass[name], 1),
             "steps": len(steps), "speed-up": f"{reference / statistics.median(steps):.2f}x",
             "loss after each round": " ".join(f"{x:.4f}" for x in losses[name])}
            for name, steps in times.items()]
    common.report(f"fast_layers_{_AGAINST.value}_{_TASK.value}", rows, list(rows[0]),
                  {"steps": _STEPS.value, "rounds": _ROUNDS.value, "task": _TASK.value})


if __name__ == "__main__":
    app.run(main)
