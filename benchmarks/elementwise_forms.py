"""Two elementwise parts of a training step, in other forms: dropout's masks and GELU (issue 31's list).

Both in the shapes of one SST-2 training step of all-MiniLM-L6-v2, forward and backward in one `tf.function`,
--calls times per round, in --rounds alternating rounds; the table gives the median of the rounds' mean times per
call, and each form's time over the part's floor (no dropout; the identity in place of GELU).

**Dropout.** Dropout in a MiniLM step (batch 32, 15 tokens, tfft's mean padded length on SST-2) acts on 19 tensors: the
embeddings' output, and in each of the six layers the attention probabilities (32 x 12 x 15 x 15) and the outputs
of the attention and of the feed-forward block (32 x 15 x 384). The loss is `sum(dropout(x) * x)`, with gradients
to every `x`.

- **none**: no dropout, the floor the other forms are measured against.
- **Keras' `Dropout`** (tfft's now): `tf.nn.experimental.stateless_dropout`, one float drawn per element.
- **16-bit draws**: one 32-bit Philox draw gives two elements' 16-bit numbers, kept where >= round(0.1 * 2^16),
  the mask applied with `tf.where` in a `tf.custom_gradient` (a keep rate of 0.899994 against 0.9).
- **32-bit draws**: the same with one 32-bit number per element.

**GELU**, on the six feed-forward activations (32 x 15 x 1536, N(0, 2^2)); the loss is `sum(gelu(x))`:

- **tfft's** (`fast_layers.gelu`): `0.5 * x * erfc(-x / sqrt(2))`, `tf.nn.gelu`'s expression, which the LiteRT
  converter maps to its GELU kernel; the gradient by hand.
- **`erf` form** (`xla_gelu.gelu_erf`): `0.5 * x * (1 + erf(x / sqrt(2)))`, as PyTorch computes it; the same
  gradient by hand.
- **the same, XLA-compiled** (`xla_gelu.gelu_xla`): its forward and its backward each one XLA kernel, which XLA
  fuses into one loop; the check column also gives XLA's compile time at a new sequence length (median of five).
- **tanh approximation** (`fast_layers.gelu_approximate`), other values: for comparison only.

    python benchmarks/elementwise_forms.py
"""

import statistics
import time

import tfft  # noqa: F401  (first: tfft's environment, oneDNN's kernels, before TensorFlow loads)

# isort: split
import tensorflow as tf
from absl import app, flags

import common
from tfft.backbones import fast_layers
from xla_gelu import gelu_erf, gelu_xla

_CALLS = flags.DEFINE_integer("calls", 200, "Calls per form and round.")
_ROUNDS = flags.DEFINE_integer("rounds", 4, "Alternating rounds.")

RATE = 0.1
BATCH, TOKENS, HIDDEN, HEADS, LAYERS = 32, 15, 384, 12, 6
SHAPES = [(BATCH, TOKENS, HIDDEN)] * (1 + 2 * LAYERS) + [(BATCH, HEADS, TOKENS, TOKENS)] * LAYERS


def keras_dropout(x, seed):
    return tf.nn.experimental.stateless_dropout(x, rate=RATE, seed=seed)


def _masked(x, keep):
    scale = 1.0 / (1.0 - RATE)

    @tf.custom_gradient
    def apply(x):
        def grad(upstream):
            return tf.where(keep, upstream * scale, tf.zeros_like(upstream))

        return tf.where(keep, x * scale, tf.zeros_like(x)), grad

    return apply(x)


def dropout_16_bit(x, seed):
    size = tf.size(x)
    bits = tf.random.stateless_uniform([(size + 1) // 2], seed=seed, minval=None, maxval=None, dtype=tf.uint32)
    halves = tf.reshape(tf.bitcast(bits, tf.uint16), [-1])[:size]
    keep = tf.reshape(halves >= tf.constant(round(RATE * 2**16), tf.uint16), tf.shape(x))
    return _masked(x, keep)


def dropout_32_bit(x, seed):
    bits = tf.random.stateless_uniform(tf.shape(x), seed=seed, minval=None, maxval=None, dtype=tf.uint32)
    return _masked(x, bits >= tf.constant(round(RATE * 2**32), tf.uint32))


DROPOUT = {
    "none (no dropout)": lambda x, seed: x,
    "Keras' `Dropout` (tfft's now)": keras_dropout,
    "16-bit draws, `tf.where` masks": dropout_16_bit,
    "32-bit draws, `tf.where` masks": dropout_32_bit,
}


GELU = {
    "identity (no GELU)": tf.identity,
    "tfft's `erfc` form (now)": fast_layers.gelu,
    "`erf` form, as PyTorch": gelu_erf,
    "`erf` form, forward and backward each one XLA kernel": gelu_xla,
    "tanh approximation (other values)": fast_layers.gelu_approximate,
}


def dropout_step(form, variables):
    @tf.function
    def step(seed):
        with tf.GradientTape() as tape:
            loss = tf.add_n([tf.reduce_sum(form(x, seed + i) * x) for i, x in enumerate(variables)])
        return tape.gradient(loss, variables)

    return step


def gelu_step(form, variables):
    @tf.function
    def step(seed):
        del seed
        with tf.GradientTape() as tape:
            loss = tf.add_n([tf.reduce_sum(form(x)) for x in variables])
        return tape.gradient(loss, variables)

    return step


def keep_rate(form) -> str:
    return f"keep rate {float(tf.reduce_mean(tf.cast(form(tf.ones([1_000_000]), tf.constant([1, 2])) > 0, tf.float32))):.4f}"


def gelu_difference(form) -> str:
    x = tf.random.normal([100_000], stddev=4.0, seed=0)
    text = f"max abs difference {float(tf.reduce_max(tf.abs(form(x) - fast_layers.gelu(x)))):.1e}"
    return text + (f"; {xla_compile_ms():.0f} ms to compile each new length" if form is gelu_xla else "")


def xla_compile_ms() -> float:
    """The median time of the XLA form's first step at each of five new sequence lengths (XLA compiles per shape)."""
    times = []
    for tokens in range(TOKENS + 1, TOKENS + 6):
        variables = [tf.Variable(tf.random.normal([BATCH, tokens, 4 * HIDDEN]))]
        new_step = gelu_step(gelu_xla, variables)
        new_step.get_concrete_function(tf.constant([1, 2]))  # traced before the clock starts: XLA's compile is timed
        start = time.perf_counter()
        new_step(tf.constant([1, 2]))
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def timed(steps: dict) -> dict[str, list[float]]:
    """Each step's mean ms per call in each round, the order alternating."""
    seed = tf.constant([1, 2])
    for step in steps.values():
        step(seed)  # traces
    times = {name: [] for name in steps}
    for round_ in range(_ROUNDS.value):
        for name in (list(steps) if round_ % 2 == 0 else list(reversed(steps))):
            start = time.perf_counter()
            for call in range(_CALLS.value):
                steps[name](seed + call)
            times[name].append(1000 * (time.perf_counter() - start) / _CALLS.value)
    return times


def part_rows(part: str, forms: dict, make_step, shapes, check) -> list[dict]:
    variables = [tf.Variable(tf.random.normal(shape, stddev=2.0)) for shape in shapes]
    times = timed({name: make_step(form, variables) for name, form in forms.items()})
    floor_name = next(iter(times))  # the first form is the floor
    floor = statistics.median(times[floor_name])
    return [{"part": part, "form": name, "ms per step (median of rounds)": f"{statistics.median(ms):.2f}",
             "over the floor, ms": f"{statistics.median(ms) - floor:.2f}",
             "check": "" if name == floor_name else check(forms[name]),
             "rounds": " ".join(f"{x:.2f}" for x in ms)} for name, ms in times.items()]


def main(argv):
    del argv
    rows = part_rows("dropout", DROPOUT, dropout_step, SHAPES, keep_rate)
    rows += part_rows("GELU", GELU, gelu_step, [(BATCH, TOKENS, 4 * HIDDEN)] * LAYERS, gelu_difference)
    common.report("elementwise_forms", rows, list(rows[0]), {"calls": _CALLS.value, "rounds": _ROUNDS.value})


if __name__ == "__main__":
    app.run(main)
