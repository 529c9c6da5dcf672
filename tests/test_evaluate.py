import json

import numpy as np
import pytest

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


def test_predict_outputs_batches_the_shortest_texts_together_and_answers_in_row_order():
    outputs = evaluate.predict_outputs(CountingTask(), None, None, texts_of_lengths(LENGTHS), batch_size=4)
    np.testing.assert_array_equal(outputs["length"], LENGTHS)  # each text's own output, in its row
    np.testing.assert_array_equal(outputs["padded_to"], [9, 3, 9, 3, 7, 3, 7, 7, 7, 3])
    assert outputs["padded_to"].sum() == 58  # row order: 74
