"""Attention's projections (query, key, value, output) as one 2-D `MatMul` each instead of `EinsumDense`'s einsum.

`with_matmul_projections(model)` puts `call` on every `EinsumDense` of equation `abc,cde->abde` (the query, key
and value projections) or `abcd,cde->abe` (the output projection): the input reshaped to `[tokens, width]`, one
`tf.matmul` with the kernel reshaped to 2-D, the result reshaped back. The same values to float rounding.

In TensorFlow's profile of an SST-2 step the projections' `_MklEinsum` kernels take 26% of kernel time for about
0.55x the feed-forward's `_MklMatMul` work (41%), so the 2-D form looked cheaper per FLOP; in the whole step it is
not (docs/performance.md, *Speed*):

    python benchmarks/fast_layers.py --against=matmul_projections
"""

import types

import keras
import tensorflow as tf


def _in_projection(self, inputs, training=None):
    width, heads, size = self.kernel.shape
    flat = tf.matmul(tf.reshape(inputs, [-1, width]), tf.reshape(self.kernel, [width, heads * size]))
    outputs = tf.reshape(flat, tf.concat([tf.shape(inputs)[:-1], [heads, size]], 0))
    return outputs if self.bias is None else outputs + self.bias


def _out_projection(self, inputs, training=None):
    heads, size, width = self.kernel.shape
    flat = tf.matmul(tf.reshape(inputs, [-1, heads * size]), tf.reshape(self.kernel, [heads * size, width]))
    outputs = tf.reshape(flat, tf.concat([tf.shape(inputs)[:-2], [width]], 0))
    return outputs if self.bias is None else outputs + self.bias


CALLS = {"abc,cde->abde": _in_projection, "abcd,cde->abe": _out_projection}


def with_matmul_projections(model) -> int:
    """Puts the 2-D form in every projection of `model`; returns how many layers changed."""
    layers = [layer for layer in model._flatten_layers()
              if isinstance(layer, keras.layers.EinsumDense) and layer.equation in CALLS and layer.activation is None]
    for layer in layers:
        layer.call = types.MethodType(CALLS[layer.equation], layer)
    return len(layers)
