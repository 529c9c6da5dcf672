"""The two memory passes tfft's AdamW changed, against the forms they replaced, on MiniLM's trained matrices.

The variables are the 36 weight matrices of all-MiniLM-L6-v2's six encoder layers (4 x 384 x 384 and 384 x 1536,
1536 x 384 each; 10.6 M floats), random. Each form runs as one `tf.function` over all of them, --calls times per
round, in --rounds alternating rounds; the table gives the median of the rounds' mean times per call.

- **Weight decay**, `var -= lr * wd * var` on every matrix: `ResourceApplyGradientDescent` with the variable's
  own value as the delta (tfft before 2026-12-02), against assigning `var * (1 - lr * wd)` (tfft now).
- **Clipping by the global norm** (the norm, then the scale; 1.0, so every step clips): Keras' `clip_by_global_norm`
  (`square`, then `sum`, per gradient) against tfft's (`L2Loss` per gradient), the functions themselves.

    python benchmarks/optimizer_passes.py
"""

import statistics

import tfft  # noqa: F401  (first: tfft's environment, oneDNN's kernels, before TensorFlow loads)

# isort: split
import tensorflow as tf
from absl import app, flags
from keras.src.optimizers.base_optimizer import clip_by_global_norm as keras_clip_by_global_norm

import common
from tfft import optimization

_CALLS = flags.DEFINE_integer("calls", 50, "Calls per form and round.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds.")

SHAPES = [(384, 384)] * 24 + [(384, 1536), (1536, 384)] * 6


def forms():
    variables = [tf.Variable(tf.random.normal(shape)) for shape in SHAPES]
    grads = [tf.random.normal(shape) for shape in SHAPES]

    @tf.function
    def decay_in_place():
        for v in variables:
            tf.raw_ops.ResourceApplyGradientDescent(var=v.handle, alpha=tf.constant(1e-6), delta=tf.identity(v))

    @tf.function
    def decay_assigned():
        for v in variables:
            value = tf.raw_ops.ReadVariableOp(resource=v.handle, dtype=tf.float32)
            tf.raw_ops.AssignVariableOp(resource=v.handle, value=value * (1.0 - 1e-6))

    @tf.function
    def clip_keras():
        return keras_clip_by_global_norm(grads, 1.0)

    @tf.function
    def clip_tfft():
        return optimization.clip_by_global_norm(grads, 1.0)

    return {
        ("weight decay", "in place, the variable as delta (before)"): decay_in_place,
        ("weight decay", "assign var * (1 - lr * wd) (tfft)"): decay_assigned,
        ("clipping by the global norm", "Keras' `clip_by_global_norm` (before)"): clip_keras,
        ("clipping by the global norm", "`tfft.optimization.clip_by_global_norm`"): clip_tfft,
    }


def main(argv):
    del argv
    functions = forms()
    for function in functions.values():
        function()  # traces
    times = common.interleaved_ms(functions, _CALLS.value, _ROUNDS.value)
    rows = [{"pass": what, "form": form, "ms per step (median of rounds)": statistics.median(ms),
             "rounds": " ".join(f"{x:.2f}" for x in ms)} for (what, form), ms in times.items()]
    common.report("optimizer_passes", rows, list(rows[0]), {"calls": _CALLS.value, "rounds": _ROUNDS.value})


if __name__ == "__main__":
    app.run(main)
