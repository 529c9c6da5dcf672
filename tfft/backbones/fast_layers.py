"""GELU and LayerNorm with hand-written gradients: Keras' values, in fewer TensorFlow kernels.

At fine-tuning's shapes (32 sequences of about 16 tokens) many of a
training step's kernels cost more in overhead than in arithmetic.
TensorFlow differentiates Keras' exact GELU and `LayerNormalization` op by
op, so their backward passes recompute what the forward pass had (the
`erfc`, the mean and the inverse deviation) in about twice as many small
elementwise kernels. The forms here return the same values with
`tf.custom_gradient`, whose backward pass reuses the forward's results; on
SST-2 with all-MiniLM-L6-v2 the training step is 7-9% faster
(`python benchmarks/fast_layers.py`; docs/performance.md, *Speed*).

```python
fast_layers.use_fast_layers(model)   # every LayerNormalization over the last axis in `model`
base.ACTIVATIONS["gelu"] is fast_layers.gelu
```
"""

from __future__ import annotations

import math
import types

import keras
import tensorflow as tf

_SQRT_HALF = 0.7071067811865476  # as tf.nn.gelu writes it
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_TANH_SCALE = 0.7978845608028654
_TANH_CUBIC = 0.044715


def gelu(x):
    """Exact GELU, `x * Phi(x)` (Keras' `gelu(x, approximate=False)`); the gradient `Phi(x) + x * phi(x)`.

    The forward pass is `tf.nn.gelu`'s own expression, which the LiteRT
    converter turns into its GELU kernel (it has no `erf`). A bfloat16 or
    float16 input is computed in float32 and rounded once (`_in_float32`).
    """
    return _in_float32(_gelu, x)


def gelu_approximate(x):
    """GELU's tanh approximation (Keras' `gelu(x, approximate=True)`, `tf.nn.gelu`'s expression), by hand.

    Half-precision inputs are computed in float32, as `gelu`'s are.
    """
    return _in_float32(_gelu_approximate, x)


def _in_float32(function, x):
    """`function(x)` computed in float32 for a bfloat16 or float16 `x`, cast back to `x`'s dtype.

    On the CPU TensorFlow's half-precision `erfc`, `exp` and `tanh` run
    element by element through float: under `mixed_bfloat16` the exact
    GELU's forward and backward took 2.2x as long as in float32 (16% of a
    training step's kernel time, against 6%), and rounded after every op.
    Through float32 they take float32's time plus two casts, and the result
    is float32's, rounded once.
    """
    if x.dtype in (tf.bfloat16, tf.float16):
        return tf.cast(function(tf.cast(x, tf.float32)), x.dtype)
    return function(x)


@tf.custom_gradient
def _gelu(x):
    with tf.name_scope("Gelu"):
        erfc = tf.math.erfc(-x * _SQRT_HALF)  # 2 Phi(x)
        outputs = 0.5 * x * erfc

    def grad(upstream):
        with tf.name_scope("Gelu_grad"):  # named for profiles: a custom gradient runs outside the layer's scope
            return upstream * (0.5 * erfc + x * _INV_SQRT_2PI * tf.exp(-0.5 * tf.square(x)))

    return outputs, grad


@tf.custom_gradient
def _gelu_approximate(x):
    with tf.name_scope("Gelu"):
        tanh = tf.tanh(_TANH_SCALE * (x + _TANH_CUBIC * tf.pow(x, 3)))
        outputs = 0.5 * x * (1.0 + tanh)

    def grad(upstream):
        with tf.name_scope("Gelu_grad"):
            slope = _TANH_SCALE * (1.0 + 3.0 * _TANH_CUBIC * tf.square(x))
            return upstream * (0.5 * (1.0 + tanh) + 0.5 * x * (1.0 - tf.square(tanh)) * slope)

    return outputs, grad


def layer_norm(x, gamma, beta, epsilon: float):
    """LayerNorm over the last axis, `(x - mean) / sqrt(var + epsilon) * gamma + beta`, differentiated by hand.

    Args:
        x: float tensor. Normalized over its last axis.
        gamma: tensor of `x`'s last dimension, or None (no scale).
        beta: tensor of `x`'s last dimension, or None (no offset).
        epsilon: float. Added to the variance.

    Returns:
        A tensor like `x`.
    """
    params = [p for p in (gamma, beta) if p is not None]
    batch_axes = list(range(len(x.shape) - 1))

    @tf.custom_gradient
    def normalize(x, *params):
        scale, offset = (params[0] if gamma is not None else None), (params[-1] if beta is not None else None)
        centred = x - tf.reduce_mean(x, axis=-1, keepdims=True)
        inverse = tf.math.rsqrt(tf.reduce_mean(tf.square(centred), axis=-1, keepdims=True) + epsilon)
        normalized = centred * inverse
        outputs = normalized if scale is None else normalized * scale
        outputs = outputs if offset is None else outputs + offset

        def grad(upstream):
            with tf.name_scope("layer_norm_grad"):
                scaled = upstream if scale is None else upstream * scale
                dx = inverse * (
                    scaled
                    - tf.reduce_mean(scaled, axis=-1, keepdims=True)
                    - normalized * tf.reduce_mean(scaled * normalized, axis=-1, keepdims=True)
                )
                dparams = []
                if scale is not None:
                    dparams.append(tf.reduce_sum(upstream * normalized, axis=batch_axes))
                if offset is not None:
                    dparams.append(tf.reduce_sum(upstream, axis=batch_axes))
                return (dx, *dparams)

        return outputs, grad

    return normalize(x, *params)


def fast_layer_norm_call(self, inputs):
    """`LayerNormalization.call` through `layer_norm` (float32 or wider inside, as Keras computes it)."""
    dtype = tf.float64 if inputs.dtype == tf.float64 else tf.float32
    gamma = tf.cast(self.gamma, dtype) if self.scale else None
    beta = tf.cast(self.beta, dtype) if self.center else None
    outputs = layer_norm(tf.cast(inputs, dtype), gamma, beta, self.epsilon)
    return tf.cast(outputs, self.compute_dtype)


def normalizes_last_axis(layer: keras.layers.LayerNormalization) -> bool:
    """Whether `layer` is a plain LayerNorm over the last axis (no RMS scaling): the form `layer_norm` computes."""
    return not layer.rms_scaling and layer.axis in (-1, [-1], (-1,))


def use_fast_layers(model: keras.Model) -> int:
    """Makes every LayerNorm over the last axis in `model` compute through `layer_norm`.

    The layers keep their class, weights and config (a saved preset or
    SavedModel is unchanged); only their `call` is replaced, on each
    instance. Returns how many layers were changed.
    """
    changed = 0
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.LayerNormalization) and normalizes_last_axis(layer):
            layer.call = types.MethodType(fast_layer_norm_call, layer)
            changed += 1
    return changed
