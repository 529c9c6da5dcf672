"""Attention's small products fused by XLA, with lengths rounded up inside attention (for the benchmarks).

TensorFlow's CPU kernel for the many tiny matrices of attention (`[batch, heads, length, length]` scores, the
weighted sum) is slow (docs/performance.md, *Where in attention the time goes*). `compute_attention` replaces
Keras' `MultiHeadAttention._compute_attention`: the scores, mask and softmax are one XLA function, the weighted
sum another; dropout between them stays Keras' own. XLA compiles once per shape, so the length is padded up to a
multiple of `BUCKET` inside attention alone (padded keys masked, padded queries cut off): a run compiles a few
lengths, not one per batch length. Not a tfft layer: `benchmarks/fast_layers.py --against=xla_attention`.
"""

import types

import keras
import tensorflow as tf

BUCKET = 8


@tf.function(jit_compile=True)
def _probabilities(query, key, mask, scale):
    scores = tf.einsum("aecd,abcd->acbe", key, query * scale)
    keep = mask[:, tf.newaxis] > 0.5
    probabilities = tf.nn.softmax(tf.where(keep, scores, -1e9), axis=-1)
    return tf.where(keep, probabilities, 0.0)


@tf.function(jit_compile=True)
def _weighted_sum(probabilities, value):
    return tf.einsum("acbe,aecd->abcd", probabilities, value)


def compute_attention(self, query, key, value, attention_mask=None, training=None, return_attention_scores=False,
                      use_causal_mask=False):
    """Keras' `_compute_attention` for self-attention with a `[B, T, S]` mask, its products XLA-compiled."""
    length = tf.shape(query)[1]
    pad = (-length) % BUCKET
    padding = [[0, 0], [0, pad], [0, 0], [0, 0]]
    query, key, value = (tf.pad(t, padding) for t in (query, key, value))
    mask = tf.cast(attention_mask, query.dtype)  # [B, T, S], or [B, 1, S] (a padding mask for every query)
    mask = tf.pad(mask, [[0, 0], [0, tf.where(tf.shape(mask)[1] == 1, 0, pad)], [0, pad]])
    probabilities = _probabilities(query, key, mask, tf.constant(self._inverse_sqrt_key_dim, query.dtype))
    dropped = self._dropout_layer(probabilities, training=training) if self._dropout > 0.0 else probabilities
    return _weighted_sum(dropped, value)[:, :length], None


def with_xla_attention(model) -> int:
    """Puts `compute_attention` in every `MultiHeadAttention` of `model`; returns how many layers changed."""
    layers = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.MultiHeadAttention)]
    for layer in layers:
        layer._compute_attention = types.MethodType(compute_attention, layer)
    return len(layers)


