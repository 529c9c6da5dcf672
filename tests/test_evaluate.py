import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import CountingTask, texts_of_lengths
from tfft import evaluate


def test_metrics_by_hand():
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    m = evaluate.classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": pytest.approx(2 / 3), "f1": pytest.approx(0.8), "support": 3}
    assert m["per_class"]["b"]["precision"] == pytest.approx(0.5)
    f1s = [0.8, 0.5, 2 / 3]
    assert m["macro_f1"] == pytest.approx(np.mean(f1s))
    json.dumps(m)  # JSON-ready


def test_binary_mcc_matches_formula():
    y_true = [1, 1, 1, 0, 0, 0, 1, 0]
    y_pred = [1, 1, 0, 0, 0, 1, 1, 0]
    tp, tn, fp, fn = 3, 3, 1, 1
    expected = (tp * tn - fp * fn) / np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert evaluate.classification_metrics(y_true, y_pred, ["0", "1"])["matthews_corrcoef"] == pytest.approx(expected)


def test_class_never_predicted_has_zero_precision_not_nan():
    m = evaluate.classification_metrics([0, 1], [0, 0], ["a", "b"])
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["matthews_corrcoef"] == 0.0


def test_table_lists_every_class():
    m = evaluate.classification_metrics([0, 1, 1], [0, 1, 0], ["negative", "positive"])
    table = evaluate.format_metrics(m)
    assert "accuracy 0.6667" in table and "negative" in table and "confusion matrix" in table


#: Ten texts' lengths in row order; in batches of 4 they pad to 9, 7 and 5 characters (74 in all), shortest first to
#: 3, 7 and 9 (58 in all).
LENGTHS = [9, 1, 8, 2, 7, 3, 6, 4, 5, 0]


@pytest.mark.parametrize("pairs", [False, True])
def test_predict_outputs_traces_the_forward_pass_once_for_every_batch_shape(pairs):
    task = CountingTask()
    outputs = evaluate.predict_outputs(task, None, None, texts_of_lengths(LENGTHS, pairs), batch_size=4)  # 4, 4, 2
    assert task.traces == 1
    np.testing.assert_array_equal(outputs["length"], LENGTHS)


def test_an_output_predictor_traces_once_for_all_its_calls_and_again_for_other_inputs():
    task = CountingTask()
    predict = evaluate.OutputPredictor(task, model=None, packer=None, batch_size=4)
    for _ in range(3):  # as a callback scoring every epoch calls it
        np.testing.assert_array_equal(predict(texts_of_lengths(LENGTHS))["length"], LENGTHS)
    assert task.traces == 1
    np.testing.assert_array_equal(predict(texts_of_lengths(LENGTHS, pairs=True))["length"], LENGTHS)  # another spec
    assert task.traces == 2


class ScaledLengthTask(CountingTask):
    """Each text's length times the model's one weight; counts its passes over a split (`collect` calls)."""

    passes = 0

    def outputs(self, model, packer, inputs):
        length = super().outputs(model, packer, inputs)["length"]
        return {"length": tf.cast(length, tf.float32) * model.weights[0][0, 0]}

    def collect(self, outputs):
        self.passes += 1
        return super().collect(outputs)


def one_weight_model(value: float) -> keras.Model:
    return keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False,
                                                                     kernel_initializer=keras.initializers.Constant(value))])


def test_a_remembering_predictor_passes_over_a_split_once_for_each_weights_it_scores_it_with():
    """A run's final scoring passed over the validation split again, for weights an epoch had scored it with."""
    task, model, examples = ScaledLengthTask(), one_weight_model(1.0), texts_of_lengths(LENGTHS)
    predict = evaluate.OutputPredictor(task, model, None, batch_size=4, remember=True)
    predict(examples)  # epoch 1
    model.weights[0].assign([[2.0]])
    np.testing.assert_array_equal(predict(examples)["length"], np.multiply(LENGTHS, 2.0))  # epoch 2: a pass
    assert task.passes == 2
    model.weights[0].assign([[1.0]])  # epoch 1's checkpoint restored
    np.testing.assert_array_equal(predict(examples)["length"], LENGTHS)  # epoch 1's outputs, no pass
    assert task.passes == 2
    predict(texts_of_lengths(LENGTHS))  # other examples, with the same weights: a pass
    assert task.passes == 3


def test_a_predictor_that_does_not_remember_passes_over_the_split_at_every_call():
    task = ScaledLengthTask()
    predict = evaluate.OutputPredictor(task, one_weight_model(3.0), None, batch_size=4)
    examples = texts_of_lengths(LENGTHS)
    for _ in range(2):
        np.testing.assert_array_equal(predict(examples)["length"], np.multiply(LENGTHS, 3.0))
    assert task.passes == 2


def test_the_weights_digest_tells_weights_apart_by_any_one_value():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dense(1)])
    before = evaluate.weights_digest(model)
    assert evaluate.weights_digest(model) == before
    kernel = model.layers[1].kernel
    values = kernel.numpy()
    values[1, 0] = np.nextafter(values[1, 0], np.float32(np.inf))  # one value, one float32 step
    kernel.assign(values)
    assert evaluate.weights_digest(model) != before


def test_predict_outputs_batches_the_shortest_texts_together_and_answers_in_row_order():
    outputs = evaluate.predict_outputs(CountingTask(), None, None, texts_of_lengths(LENGTHS), batch_size=4)
    np.testing.assert_array_equal(outputs["length"], LENGTHS)  # each text's own output, in its row
    np.testing.assert_array_equal(outputs["padded_to"], [9, 3, 9, 3, 7, 3, 7, 7, 7, 3])
    assert outputs["padded_to"].sum() == 58  # row order: 74
