"""Attention's products in two halves of the batch (for the benchmarks).

On the AMD EPYC without AVX-512, TensorFlow's CPU batched matmul slows 3.6x between 22 and 23 tokens for MiniLM's
`[384, T, 32]` products (0.31 -> 1.12 ms a product), and two half-batch products side by side take about half the
time of one above that length (docs/performance.md). `compute_attention` replaces Keras'
`MultiHeadAttention._compute_attention` (self-attention, no flash attention): the scores and the weighted sum are
each two einsums over the two halves of the batch, concatenated; the mask, softmax and dropout are Keras' own over
the whole batch, so the same dropout masks are drawn. `compute_attention_split_heads` instead splits each
head's width in two at the lengths where a half-width product stays on the fast path (`SPLIT_LENGTHS`). Neither
paid in a whole train step; neither is a tfft layer: `benchmarks/fast_layers.py --against=split_attention` (or
`--against=split_heads`).
"""

import types

import keras
import tensorflow as tf
from keras import ops


def _halves(*tensors):
    half = tf.shape(tensors[0])[0] // 2
    return [[t[:half] for t in tensors], [t[half:] for t in tensors]]


def _attend(layer, query, key, value, attention_mask, training, scores_of, combine):
    """Keras' `_compute_attention` without flash attention or a causal mask, its two products given: `scores_of(
    scaled_query, key)` and `combine(dropped_probabilities, value)`; the mask, softmax and dropout are Keras'."""
    query = ops.multiply(query, ops.cast(layer._inverse_sqrt_key_dim, query.dtype))
    scores = layer._masked_softmax(scores_of(query, key), attention_mask)
    dropped = layer._dropout_layer(scores, training=training) if layer._dropout > 0.0 else scores
    return combine(dropped, value), scores


def compute_attention(self, query, key, value, attention_mask=None, training=None, return_attention_scores=False,
                      use_causal_mask=False):
    """Keras' `_compute_attention` without flash attention or a causal mask, each product in two halves."""

    def scores_of(q, k):
        return tf.concat([ops.einsum(self._dot_product_equation, kh, qh) for kh, qh in _halves(k, q)], 0)

    def combine(p, v):
        return tf.concat([ops.einsum(self._combine_equation, ph, vh) for ph, vh in _halves(p, v)], 0)

    return _attend(self, query, key, value, attention_mask, training, scores_of, combine)


def with_split_attention(model) -> int:
    """Puts `compute_attention` in every `MultiHeadAttention` of `model`; returns how many layers changed."""
    return _put(model, compute_attention)


def _put(model, method) -> int:
    layers = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.MultiHeadAttention)]
    for layer in layers:
        layer._compute_attention = types.MethodType(method, layer)
    return len(layers)


#: Lengths at which `compute_attention_split_heads` splits each head's width in two: above 22 tokens TensorFlow's
#: batched matmul takes its slow path for a `T x T x 32` product; up to 32 tokens a `T x T x 16` one does not.
SPLIT_LENGTHS = (23, 32)


def _scores_split(query, key):
    """`[B, N, T, S]` scores of `[B, T, N, H]` tensors, each head's width in two halves, summed."""
    b, t, n, h = tf.unstack(tf.shape(query))
    s = tf.shape(key)[1]
    q = tf.transpose(tf.reshape(query, [b, t, n, 2, h // 2]), [0, 2, 3, 1, 4])
    k = tf.transpose(tf.reshape(key, [b, s, n, 2, h // 2]), [0, 2, 3, 1, 4])
    return tf.reduce_sum(tf.matmul(q, k, transpose_b=True), axis=2)


def _combine_split(probabilities, value):
    """`[B, T, N, H]`: `[B, N, T, S]` weights over `[B, S, N, H]` values, each head's width in two halves."""
    b, s, n, h = tf.unstack(tf.shape(value))
    v = tf.transpose(tf.reshape(value, [b, s, n, 2, h // 2]), [0, 2, 3, 1, 4])
    out = tf.matmul(probabilities[:, :, tf.newaxis], v)  # [B, N, 2, T, H / 2]
    return tf.reshape(tf.transpose(out, [0, 3, 1, 2, 4]), [b, tf.shape(probabilities)[2], n, h])


def compute_attention_split_heads(self, query, key, value, attention_mask=None, training=None,
                                  return_attention_scores=False, use_causal_mask=False):
    """Keras' `_compute_attention`, each product over half-width heads where the length is in `SPLIT_LENGTHS`."""
    length = tf.shape(query)[1]
    split = tf.logical_and(length >= SPLIT_LENGTHS[0], length <= SPLIT_LENGTHS[1])

    def scores_of(q, k):
        return tf.cond(split, lambda: _scores_split(q, k), lambda: ops.einsum(self._dot_product_equation, k, q))

    def combine(p, v):
        return tf.cond(split, lambda: _combine_split(p, v), lambda: ops.einsum(self._combine_equation, p, v))

    return _attend(self, query, key, value, attention_mask, training, scores_of, combine)


def with_split_heads(model) -> int:
    """Puts `compute_attention_split_heads` in every `MultiHeadAttention` of `model`; returns how many changed."""
    return _put(model, compute_attention_split_heads)
