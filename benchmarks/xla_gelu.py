"""Exact GELU in the `erf` form, its forward and its backward each one XLA-compiled kernel (for the benchmarks).

Not a tfft layer: XLA compiles it once per input shape, and a serving export would have to trace another form
(README, *Speed*). `benchmarks/elementwise_forms.py` times it alone, `benchmarks/fast_layers.py --against=xla_gelu`
in MiniLM's training step.
"""

import tensorflow as tf

SQRT_HALF = 0.7071067811865476
INV_SQRT_2PI = 0.3989422804014327


@tf.function(jit_compile=True)
def _forward(x):
    return 0.5 * x * (1.0 + tf.math.erf(x * SQRT_HALF))


@tf.function(jit_compile=True)
def _backward(upstream, x):
    cdf_twice = 1.0 + tf.math.erf(x * SQRT_HALF)
    return upstream * (0.5 * cdf_twice + x * INV_SQRT_2PI * tf.exp(-0.5 * tf.square(x)))


@tf.custom_gradient
def gelu_xla(x):
    """`x * Phi(x)`; the gradient `Phi(x) + x * phi(x)`, both XLA-fused."""
    return _forward(x), lambda upstream: _backward(upstream, x)
