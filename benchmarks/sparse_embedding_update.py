"""One AdamW update of a training word-embedding table: Keras' sparse Adam against tfft's dense fused update.

all-MiniLM-L6-v2's table (30,522 x 384, random) gets the gradient a batch of --batch sentences x --tokens tokens
gives it: an `IndexedSlices` with one row per token (token ids drawn from a Zipf law, so rows repeat, as words do).
Until 2026-12-04 tfft's `AdamW` gave such gradients to Keras' own `AdamW` update (which squares each slice of a
repeated row instead of their sum); it now densifies them and takes its fused kernel, as PyTorch applies an
embedding's dense gradient. Each form runs as one `tf.function`, --calls times per round, in --rounds alternating
rounds; the table gives the median of the rounds' mean milliseconds per update.

    python benchmarks/sparse_embedding_update.py
"""

import statistics

import tfft  # noqa: F401  (first: tfft's environment, oneDNN's kernels, before TensorFlow loads)

# isort: split
import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

import common
from tfft import optimization

_CALLS = flags.DEFINE_integer("calls", 30, "Updates per form and round.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds.")
_BATCH = flags.DEFINE_integer("batch", 32, "Sentences per batch.")
_TOKENS = flags.DEFINE_integer("tokens", 32, "Tokens per sentence.")

VOCAB, WIDTH = 30522, 384


def update_function(optimizer_class):
    """A traced update of a fresh table by `optimizer_class`, over a fixed sparse gradient."""
    rng = np.random.default_rng(0)
    table = keras.Variable(rng.standard_normal((VOCAB, WIDTH)).astype("float32") * 0.02, name="embeddings")
    rows = _BATCH.value * _TOKENS.value
    ids = tf.constant(np.minimum(rng.zipf(1.3, rows) - 1, VOCAB - 1).astype("int32"))
    gradient = tf.IndexedSlices(tf.constant(rng.standard_normal((rows, WIDTH)).astype("float32") * 1e-3), ids,
                                tf.constant([VOCAB, WIDTH]))
    optimizer = optimizer_class(learning_rate=1e-4, weight_decay=0.01, epsilon=1e-6)
    step = tf.function(lambda: optimizer.apply([gradient], [table]))
    step()  # trace and build the moments
    return step


def main(argv):
    del argv
    forms = {"Keras' sparse AdamW (tfft before 2026-12-04)": update_function(keras.optimizers.AdamW),
             "tfft's AdamW, densified, one fused kernel": update_function(optimization.AdamW)}
    times = common.interleaved_ms(forms, _CALLS.value, _ROUNDS.value)
    rows = [{"form": name, "ms per update (median of rounds)": statistics.median(t),
             "rounds": " ".join(f"{x:.1f}" for x in t)} for name, t in times.items()]
    common.report("sparse_embedding_update", rows, list(rows[0]),
                  {"calls": _CALLS.value, "rounds": _ROUNDS.value, "batch": _BATCH.value, "tokens": _TOKENS.value})


if __name__ == "__main__":
    app.run(main)
