"""Scores of every task, against seqeval's committed values, scipy and numbers worked by hand."""

import json

import numpy as np
import pytest

from tfft import metrics

# Sentences in IOB2, IOB1 (I- starts an entity unless it follows the same type) and IOBES, with the mistakes
# taggers make: a wrong type, a wrong boundary, an I- after O, a missing entity, an extra one.
IOB2 = (
    [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG", "I-ORG"], ["B-MISC", "O", "B-PER", "B-PER"],
     ["O", "O"], ["B-LOC", "I-LOC", "I-LOC", "O", "B-ORG"]],
    [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-ORG", "I-ORG", "O"], ["I-MISC", "O", "B-PER", "I-PER"],
     ["B-PER", "O"], ["B-LOC", "I-LOC", "I-LOC", "O", "B-ORG"]],
)
IOB1 = (
    [["I-PER", "I-PER", "O", "I-LOC"], ["I-ORG", "B-ORG", "O", "I-MISC"], ["I-LOC", "I-LOC", "B-LOC", "O"]],
    [["I-PER", "I-PER", "O", "I-ORG"], ["I-ORG", "I-ORG", "O", "I-MISC"], ["I-LOC", "I-LOC", "B-LOC", "I-LOC"]],
)
IOBES = (
    [["S-PER", "O", "B-LOC", "E-LOC"], ["B-ORG", "I-ORG", "E-ORG", "S-MISC"]],
    [["S-PER", "O", "B-LOC", "I-LOC"], ["B-ORG", "I-ORG", "E-ORG", "S-PER"]],
)


# seqeval's scores of the fixtures above: entity F1's reference, computed once with seqeval 1.2.2 in its default
# mode (conlleval's chunking: an I- after O or after another type starts an entity) and committed, so the test
# needs no seqeval install (its sdist no longer builds). How they were computed, for each scheme's (true, pred):
#   from seqeval import metrics as s
#   s.precision_score(true, pred), s.recall_score(true, pred), s.f1_score(true, pred), s.accuracy_score(true, pred)
#   s.classification_report(true, pred, output_dict=True, zero_division=0)  # per type
# Per type: (precision, recall, f1, support).
SEQEVAL = {
    "iob2": {"precision": 1 / 2, "recall": 1 / 2, "f1": 1 / 2, "token_accuracy": 14 / 19,
             "per_type": {"LOC": (1.0, 1 / 2, 2 / 3, 2), "MISC": (1.0, 1.0, 1.0, 1), "ORG": (1 / 3, 1 / 2, 0.4, 2),
                          "PER": (1 / 3, 1 / 3, 1 / 3, 3)}},
    "iob1": {"precision": 1 / 2, "recall": 3 / 7, "f1": 6 / 13, "token_accuracy": 3 / 4,
             "per_type": {"LOC": (1 / 2, 1 / 3, 0.4, 3), "MISC": (1.0, 1.0, 1.0, 1), "ORG": (0.0, 0.0, 0.0, 2),
                          "PER": (1.0, 1.0, 1.0, 1)}},
    "iobes": {"precision": 3 / 4, "recall": 3 / 4, "f1": 3 / 4, "token_accuracy": 3 / 4,
              "per_type": {"LOC": (1.0, 1.0, 1.0, 1), "MISC": (0.0, 0.0, 0.0, 1), "ORG": (1.0, 1.0, 1.0, 1),
                           "PER": (1 / 2, 1.0, 2 / 3, 1)}},
}


@pytest.mark.parametrize("scheme", ["iob2", "iob1", "iobes"])
def test_entity_scores_equal_seqeval(scheme):
    true, pred = {"iob2": IOB2, "iob1": IOB1, "iobes": IOBES}[scheme]
    expected = SEQEVAL[scheme]
    ours = metrics.entity_metrics(true, pred)
    for key in ("precision", "recall", "f1", "token_accuracy"):
        assert ours[key] == pytest.approx(expected[key]), key
    assert sorted(ours["per_type"]) == sorted(expected["per_type"])  # every type, none missing or extra
    for kind, (precision, recall, f1, support) in expected["per_type"].items():
        got = ours["per_type"][kind]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((precision, recall, f1)), kind
        assert got["support"] == support, kind


def test_entity_chunks_follow_conlleval():
    assert metrics.entities(["B-PER", "I-PER", "O", "I-LOC"]) == [("PER", 0, 1), ("LOC", 3, 3)]
    assert metrics.entities(["B-PER", "I-LOC"]) == [("PER", 0, 0), ("LOC", 1, 1)]  # a type change ends a chunk
    assert metrics.entities(["I-ORG", "B-ORG"]) == [("ORG", 0, 0), ("ORG", 1, 1)]  # IOB1: B- splits same-type runs
    assert metrics.entities(["S-PER", "B-LOC", "E-LOC", "O"]) == [("PER", 0, 0), ("LOC", 1, 2)]


def test_entity_scores_need_one_prediction_per_word():
    with pytest.raises(ValueError, match="Sentence 0 has 2 true tags and 1 predicted"):
        metrics.entity_metrics([["O", "O"]], [["O"]])


def test_multi_label_scores_by_hand():
    y_true = [[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0]]
    y_pred = [[1, 0, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0]]
    m = metrics.multi_label_metrics(y_true, y_pred, ["a", "b", "c"], threshold=0.4)
    # a: tp 2 fp 0 fn 0; b: tp 1 fp 0 fn 1; c: tp 0 fp 1 fn 0.
    assert m["per_label"]["a"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert m["per_label"]["b"]["f1"] == pytest.approx(2 / 3)
    assert m["per_label"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert m["micro_precision"] == pytest.approx(3 / 4) and m["micro_recall"] == pytest.approx(3 / 4)
    assert m["micro_f1"] == pytest.approx(3 / 4)
    assert m["exact_match"] == pytest.approx(2 / 4)
    assert m["threshold"] == 0.4
    json.dumps(m)
    assert "micro-F1 0.7500" in metrics.format_multi_label_metrics(m)


def test_regression_scores_match_scipy():
    from scipy import stats

    y_true = [1.0, 2.5, 3.0, 4.2, 5.0]
    y_pred = [1.2, 2.0, 3.5, 4.0, 4.1]
    m = metrics.regression_metrics(y_true, y_pred)
    assert m["pearson"] == pytest.approx(stats.pearsonr(y_true, y_pred)[0])
    assert m["spearman"] == pytest.approx(stats.spearmanr(y_true, y_pred)[0])
    assert m["mse"] == pytest.approx(np.mean((np.array(y_pred) - y_true) ** 2))
    assert m["mae"] == pytest.approx(np.mean(np.abs(np.array(y_pred) - y_true)))


def test_constant_predictions_have_zero_correlation_not_nan():
    m = metrics.regression_metrics([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
    assert m["pearson"] == 0.0 and m["spearman"] == 0.0
    json.dumps(m)
