"""Exact GELU in the `erf` form, as PyTorch computes it, plain and XLA-fused (for the benchmarks).

`gelu_erf` runs the forward and the hand-written backward as TensorFlow ops; `gelu_xla` compiles each of the
same two functions into one XLA kernel. Not tfft layers: XLA compiles once per input shape, and a serving export
would have to trace another form (docs/performance.md, *Speed*). `benchmarks/elementwise_forms.py` times both alone,
`benchmarks/fast_layers.py --against=xla_gelu` the XLA one in MiniLM's training step.
"""

import tensorflow as tf

SQRT_HALF = 0.7071067811865476
INV_SQRT_2PI = 0.3989422804014327


def _forward(x):
    return 0.5 * x * (1.0 + tf.math.erf(x * SQRT_HALF))


def _backward(upstream, x):
    cdf_twice = 1.0 + tf.math.erf(x * SQRT_HALF)
    return upstream * (0.5 * cdf_twice + x * INV_SQRT_2PI * tf.exp(-0.5 * tf.square(x)))


_forward_xla = tf.function(_forward, jit_compile=True)
_backward_xla = tf.function(_backward, jit_compile=True)


@tf.custom_gradient
def gelu_erf(x):
    """`x * Phi(x)`; the gradient `Phi(x) + x * phi(x)`, as TensorFlow ops."""
    return _forward(x), lambda upstream: _backward(upstream, x)


@tf.custom_gradient
def gelu_xla(x):
    """`x * Phi(x)`; the gradient `Phi(x) + x * phi(x)`, each one XLA kernel."""
    return _forward_xla(x), lambda upstream: _backward_xla(upstream, x)
