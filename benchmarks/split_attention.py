"""Attention's products in two halves of the batch (for the benchmarks).

On the AMD EPYC without AVX-512, TensorFlow's CPU batched matmul slows 3.6x between 22 and 23 tokens for MiniLM's
`[384, T, 32]` products (0.31 -> 1.12 ms a product), and two half-batch products side by side take about half the
time of one above that length (docs/performance.md). `compute_attention` replaces Keras'
`MultiHeadAttention._compute_attention` (self-attention, no flash attention): the scores and the weighted sum are
each two einsums over the two halves of the batch, concatenated; the mask, softmax and dropout are Keras' own over
the whole batch, so the same dropout masks are drawn. Not a tfft layer: `benchmarks/fast_layers.py
--against=split_attention`.
"""

import types

import keras
import tensorflow as tf
from keras import ops


def _halves(*tensors):
    half = tf.shape(tensors[0])[0] // 2
    return [[t[:half] for t in tensors], [t[half:] for t in tensors]]


def compute_attention(self, query, key, value, attention_mask=None, training=None, return_attention_scores=False,
                      use_causal_mask=False):
    """Keras' `_compute_attention` without flash attention or a causal mask, each product in two halves."""
    query = ops.multiply(query, ops.cast(self._inverse_sqrt_key_dim, query.dtype))
    scores = tf.concat([ops.einsum(self._dot_product_equation, k, q) for k, q in _halves(key, query)], 0)
    scores = self._masked_softmax(scores, attention_mask)
    dropped = self._dropout_layer(scores, training=training) if self._dropout > 0.0 else scores
    output = tf.concat([ops.einsum(self._combine_equation, p, v) for p, v in _halves(dropped, value)], 0)
    return output, scores


def with_split_attention(model) -> int:
    """Puts `compute_attention` in every `MultiHeadAttention` of `model`; returns how many layers changed."""
    layers = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.MultiHeadAttention)]
    for layer in layers:
        layer._compute_attention = types.MethodType(compute_attention, layer)
    return len(layers)
