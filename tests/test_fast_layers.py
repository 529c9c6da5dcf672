"""tfft's GELU and LayerNorm give Keras' values and gradients, and built models use them."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import build_untrained
from tfft.backbones import base, fast_layers


def values_and_gradient(function, x):
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = function(x)
        loss = tf.reduce_sum(tf.sin(y) * y)  # a non-uniform upstream gradient
    return y.numpy(), tape.gradient(loss, x).numpy()


@pytest.mark.parametrize("approximate", [False, True])
def test_gelu_matches_keras_values_and_gradient(approximate):
    x = np.concatenate([np.random.default_rng(0).normal(0, 3, 997), [-12.0, -6.0, 0.0, 6.0, 12.0]]).astype("float32")
    fast = fast_layers.gelu_approximate if approximate else fast_layers.gelu
    y, dx = values_and_gradient(fast, x)
    y_keras, dx_keras = values_and_gradient(lambda v: keras.activations.gelu(v, approximate=approximate), x)
    np.testing.assert_allclose(y, y_keras, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(dx, dx_keras, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("approximate", [False, True])
def test_gelu_of_bfloat16_is_float32s_rounded_once(approximate):
    """Under `mixed_bfloat16` GELU computes in float32: values and gradient are float32's, rounded to bfloat16."""
    fast = fast_layers.gelu_approximate if approximate else fast_layers.gelu
    rng = np.random.default_rng(3)
    x, upstream = (tf.cast(rng.normal(0, 3, 4096).astype("float32"), tf.bfloat16) for _ in range(2))
    results = []
    for dtype in (tf.bfloat16, tf.float32):
        v = tf.cast(x, dtype)
        with tf.GradientTape() as tape:
            tape.watch(v)
            y = fast(v)
        dx = tape.gradient(y, v, output_gradients=tf.cast(upstream, dtype))
        assert y.dtype == dx.dtype == dtype
        results.append([tf.cast(tf.cast(t, tf.bfloat16), tf.float32).numpy() for t in (y, dx)])
    (y, dx), (y32, dx32) = results
    np.testing.assert_array_equal(y, y32)
    np.testing.assert_array_equal(dx, dx32)


def test_backbones_use_the_fast_gelu_by_name():
    assert base.ACTIVATIONS["gelu"] is fast_layers.gelu
    assert base.ACTIVATIONS["gelu_approximate"] is fast_layers.gelu_approximate


@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False)])
def test_layer_norm_matches_keras_values_and_gradients(center, scale):
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(2.0, 3.0, (3, 5, 16)), tf.float32)
    layers = []
    for _ in range(2):
        layer = keras.layers.LayerNormalization(epsilon=1e-5, center=center, scale=scale)
        layer.build(x.shape)
        if scale:
            layer.gamma.assign(rng.normal(1.0, 0.5, 16).astype("float32"))
        if center:
            layer.beta.assign(rng.normal(0.0, 0.5, 16).astype("float32"))
        layers.append(layer)
    layers[1].set_weights(layers[0].get_weights())
    keras_layer, fast_layer = layers
    assert fast_layers.use_fast_layers(keras.Sequential([fast_layer])) == 1
    results = []
    for layer in (keras_layer, fast_layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(tf.sin(y) * y)
        grads = tape.gradient(loss, [x, *layer.trainable_weights])
        results.append((y.numpy(), [g.numpy() for g in grads]))
    (y_keras, grads_keras), (y_fast, grads_fast) = results
    np.testing.assert_allclose(y_fast, y_keras, atol=1e-5)
    assert len(grads_fast) == len(grads_keras) == 1 + center + scale
    for fast, reference in zip(grads_fast, grads_keras, strict=True):
        np.testing.assert_allclose(fast, reference, atol=1e-4, rtol=1e-4)


def test_fast_layer_norm_computes_in_float32_under_mixed_precision():
    layer = keras.layers.LayerNormalization(dtype="mixed_bfloat16")
    reference = keras.layers.LayerNormalization(dtype="mixed_bfloat16")
    x = tf.constant(np.random.default_rng(2).normal(0, 50, (2, 4, 8)), tf.float32)
    layer.build(x.shape)
    reference.build(x.shape)
    fast_layers.use_fast_layers(keras.Sequential([layer]))
    y = layer(x)
    assert y.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(y, tf.float32), tf.cast(reference(x), tf.float32), atol=1e-2)


def test_rms_and_other_axes_keep_keras_layer_norm():
    layers = [keras.layers.LayerNormalization(rms_scaling=True), keras.layers.LayerNormalization(axis=1)]
    assert fast_layers.use_fast_layers(keras.Sequential([keras.Input((4, 8)), *layers])) == 0


def test_built_models_use_the_fast_layer_norms(make_config):
    model, _ = build_untrained(make_config("task.type=regression"))  # a head without a label vocabulary to read
    norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.LayerNormalization)]
    assert len(norms) >= 3  # the embeddings' and two per encoder layer
    assert all(layer.call.__func__ is fast_layers.fast_layer_norm_call for layer in norms)
