"""`tfft.hidden_states`: the layer pairs, the masked difference by hand, layer outputs kept per thread, the refusals."""

import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import build_untrained
from tfft import hidden_states
from tfft.backbones import LayerGroups
from tfft.config import ConfigError


def test_each_student_layer_matches_a_teacher_layer_top_to_top():
    assert hidden_states.layer_pairs(3, 6) == [1, 3, 5]
    assert hidden_states.layer_pairs(2, 6) == [2, 5]
    assert hidden_states.layer_pairs(4, 6) == [0, 2, 3, 5]
    assert hidden_states.layer_pairs(3, 3) == [0, 1, 2]


def test_the_difference_is_averaged_over_the_width_and_the_marked_tokens_and_teaches_the_student_only():
    # Token 1: ((1-0)^2 + (3-0)^2) / 2 = 5; token 2: ((2-1)^2 + (2-3)^2) / 2 = 1; token 3 is padding (100 left out).
    student = tf.Variable([[[1.0, 3.0], [2.0, 2.0], [10.0, 10.0]]])
    teacher = tf.Variable([[[0.0, 0.0], [1.0, 3.0], [0.0, 0.0]]])
    with tf.GradientTape(persistent=True) as tape:
        loss = hidden_states.masked_mean_squared_difference(student, teacher, tf.constant([[1, 1, 0]]))
    assert float(loss) == pytest.approx((5.0 + 1.0) / 2)
    assert tape.gradient(loss, teacher) is None
    np.testing.assert_allclose(tape.gradient(loss, student).numpy()[0, 2], [0.0, 0.0])  # padding learns nothing


def two_layers():
    inputs = keras.Input((3, 2))
    first, second = keras.layers.Dense(2, name="first"), keras.layers.Dense(2, name="second")
    return keras.Model(inputs, second(first(inputs))), [first, second]


def test_layer_outputs_keep_each_layers_output_of_the_latest_call_in_each_thread():
    model, layers = two_layers()
    kept = hidden_states.LayerOutputs(layers)
    with pytest.raises(RuntimeError, match="2 of 2 layers have not run in this thread"):
        kept.latest()
    x = tf.random.stateless_normal((1, 3, 2), seed=(1, 2))
    outputs = model(x)
    first, second = kept.latest()
    np.testing.assert_allclose(first.numpy(), layers[0](x).numpy(), atol=1e-6)
    np.testing.assert_allclose(second.numpy(), outputs.numpy(), atol=1e-6)
    elsewhere = []
    thread = threading.Thread(target=lambda: (model(2 * x), elsewhere.extend(kept.latest())))
    thread.start()
    thread.join()
    np.testing.assert_allclose(elsewhere[1].numpy(), model(2 * x).numpy(), atol=1e-6)
    model(x)
    np.testing.assert_allclose(kept.latest()[1].numpy(), outputs.numpy(), atol=1e-6)  # this thread's own


def test_a_classifiers_top_block_gives_every_tokens_state_once_its_output_is_kept(make_config):
    """`build_model` has a head on `pooled_output` compute the top block's first token only; kept, it computes all."""
    from tfft.backbones import first_token

    model, source = build_untrained(make_config("task.type=regression"))
    encoder = source.layer_groups(model.backbone).encoder
    assert first_token.computes_first_token_only(encoder[-1])
    kept = hidden_states.LayerOutputs(encoder)
    features = source.packer()(tf.constant(["a fine film", "bad"]))
    model(features)
    assert [state.shape[1] for state in kept.latest()] == [features["token_ids"].shape[1]] * len(encoder)


def test_the_term_is_its_weight_times_the_mean_over_the_pairs_from_both_forward_passes():
    student, student_layers = two_layers()
    teacher, teacher_layers = two_layers()
    match = hidden_states.HiddenStateMatch(LayerGroups([], student_layers), LayerGroups([], teacher_layers), 3.0)
    x, mask = tf.random.stateless_normal((2, 3, 2), seed=(3, 4)), tf.constant([[1, 1, 0], [1, 0, 0]])
    student(x)
    teacher(x)
    term = float(match.loss(mask))
    s0, t0 = student_layers[0](x), teacher_layers[0](x)
    s1, t1 = student_layers[1](s0), teacher_layers[1](t0)
    difference = hidden_states.masked_mean_squared_difference
    assert term == pytest.approx(3.0 * float(difference(s0, t0, mask) + difference(s1, t1, mask)) / 2, rel=1e-5)
    assert term > 0.0

def test_a_backbone_whose_layers_are_not_each_called_once_is_refused_naming_the_key():
    _, layers = two_layers()
    with pytest.raises(ConfigError, match=r"`distill.hidden_weight` needs a teacher whose encoder layers are blocks "
                                          r"called once.*Received: hidden_weight=1.0"):
        hidden_states.HiddenStateMatch(LayerGroups([], layers), LayerGroups([], layers, called_once=False), 1.0)


def test_a_narrower_students_states_are_projected_to_the_teachers_width_and_the_projection_learns():
    inputs = keras.Input((3, 2))
    student_layer = keras.layers.Dense(2, name="student")
    student = keras.Model(inputs, student_layer(inputs))
    teacher_inputs = keras.Input((3, 2))
    teacher_layer = keras.layers.Dense(4, name="teacher")
    teacher = keras.Model(teacher_inputs, teacher_layer(teacher_inputs))
    projection = hidden_states.projection(2, 4, seed=0)
    assert hidden_states.projection(4, 4, seed=0) is None  # equal widths: compared as they are
    match = hidden_states.HiddenStateMatch(LayerGroups([], [student_layer]), LayerGroups([], [teacher_layer]), 2.0,
                                           projection)
    assert [tuple(w.shape) for w in match.trainable_weights] == [(2, 4), (4,)]
    x, mask = tf.random.stateless_normal((2, 3, 2), seed=(5, 6)), tf.constant([[1, 1, 0], [1, 1, 1]])
    with tf.GradientTape() as tape:
        student(x)
        teacher(x)
        term = match.loss(mask)
    kernel, bias = (w.numpy() for w in match.trainable_weights)
    projected = student_layer(x).numpy() @ kernel + bias  # by hand: the student's states mapped to 4 features
    expected = 2.0 * float(hidden_states.masked_mean_squared_difference(projected, teacher_layer(x), mask))
    assert float(term) == pytest.approx(expected, rel=1e-5)
    gradients = tape.gradient(term, match.trainable_weights + student_layer.trainable_weights + teacher_layer.trainable_weights)
    assert all(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in gradients[:4])  # projection, student
    assert gradients[4:] == [None, None]  # the teacher learns nothing
