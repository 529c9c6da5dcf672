"""Multi-label classification: the three label forms, their errors, the outputs and learning."""

import json

import numpy as np
import pytest
import tensorflow as tf

from conftest import TASK_DATA, write_csv
from tfft import tasks, train
from tfft.config import load_config
from tfft.data import DataError


def _task(*overrides):
    return tasks.create(load_config(None, ["data.train=unused.csv", "task.type=multi_label", *overrides]))


def test_label_names_separated_in_one_column(tmp_path):
    write_csv(tmp_path / "t.csv", [("a", "joy, love"), ("b", ""), ("c", "anger")])
    task = _task()
    examples = task.read(str(tmp_path / "t.csv"))
    assert examples.labels == [["joy", "love"], [], ["anger"]]  # a row with no label is allowed
    task.fit_vocabulary(examples)
    assert task.label_names == ["anger", "joy", "love"]
    np.testing.assert_array_equal(task.encode(examples), [[0, 1, 1], [0, 0, 0], [1, 0, 0]])


def test_ids_into_a_label_names_file_as_goemotions_ships_them(tmp_path):
    (tmp_path / "labels.txt").write_text("admiration\namusement\nanger")  # no newline at the end
    (tmp_path / "t.tsv").write_text('"He said ""hi""\tthere"\t0,2\tid1\nplain\t1\tid2\n', encoding="utf-8")
    task = _task(f"task.label_names_file={tmp_path / 'labels.txt'}", "data.has_header=false",
                 "data.text_column=0", "data.label_column=1", "data.quoting=csv")
    examples = task.read(str(tmp_path / "t.tsv"))
    assert examples.texts == ['He said "hi"\tthere', "plain"]
    assert examples.labels == [["admiration", "anger"], ["amusement"]]
    task.fit_vocabulary(examples)
    assert task.label_names == ["admiration", "amusement", "anger"]  # the file's order, every name


def test_json_lists_and_zero_one_columns(tmp_path):
    (tmp_path / "t.jsonl").write_text(
        json.dumps({"text": "a", "label": ["x", "y"]}) + "\n" + json.dumps({"text": "b", "label": []}) + "\n"
    )
    assert _task().read(str(tmp_path / "t.jsonl")).labels == [["x", "y"], []]
    write_csv(tmp_path / "c.csv", [("a", "1", "0"), ("b", "0", "0"), ("c", "1", "1")], header=("text", "toxic", "insult"))
    task = _task("task.label_columns=toxic,insult")
    examples = task.read(str(tmp_path / "c.csv"))
    assert examples.labels == [["toxic"], [], ["toxic", "insult"]]
    task.fit_vocabulary(examples)
    assert task.label_names == ["toxic", "insult"]  # column order


@pytest.mark.parametrize(
    "rows, overrides, message",
    [
        ([("a", "1", "0"), ("b", "2", "0")], ["task.label_columns=toxic,insult"],
         r"cells in the label column `toxic` that are not 0 or 1 \(row 2: '2'\)"),
        ([("a", "1", "0")], ["task.label_columns=toxic,spam"],
         r"has no column `spam`.*Set `task.label_columns` to one of them"),
    ],
)
def test_label_column_errors_name_the_row_or_key(tmp_path, rows, overrides, message):
    write_csv(tmp_path / "c.csv", rows, header=("text", "toxic", "insult"))
    with pytest.raises(DataError, match=message):
        _task(*overrides).read(str(tmp_path / "c.csv"))


def test_json_cells_that_are_no_flat_list_of_names_are_refused(tmp_path):
    """Issue 26: `{"a":1}` and `[["joy"]]` became labels named by a Python repr; `[1,2]` mixed ids with names."""
    rows = [{"text": "a", "label": ["joy"]}, {"text": "b", "label": {"a": 1}}, {"text": "c", "label": [["joy"]]},
            {"text": "d", "label": [1, 2]}, {"text": "e", "label": [True]}]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"""cannot be read \(row 2: '\{"a": 1\}', row 3: '\[\["joy"\]\]', row 4: """
                                        r"""'\[1, 2\]', row 5: '\[true\]'\).*or a JSON list of names"""):
        _task().read(str(tmp_path / "t.jsonl"))
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    (tmp_path / "ids.jsonl").write_text(json.dumps({"text": "d", "label": [0, 2]}) + "\n")
    assert _task(f"task.label_names_file={tmp_path / 'labels.txt'}").read(str(tmp_path / "ids.jsonl")).labels == [
        ["a", "c"]]  # with a names file, ids are what a list holds


def test_id_out_of_the_names_file_names_the_row(tmp_path):
    (tmp_path / "labels.txt").write_text("a\nb\n")
    write_csv(tmp_path / "t.csv", [("x", "0"), ("y", "1,7")])
    with pytest.raises(DataError, match=r"cannot be read \(row 2: '1,7'\).*0-based ids into `task.label_names_file`"):
        _task(f"task.label_names_file={tmp_path / 'labels.txt'}").read(str(tmp_path / "t.csv"))


def test_unseen_validation_label_fails_before_training(make_config, data_dir, no_fit, tmp_path):
    write_csv(tmp_path / "dev.csv", [("the plot was great", "pos"), ("the cast was dull", "neg,sarcasm")])
    config = make_config(*TASK_DATA["multi_label"](data_dir), f"data.validation={tmp_path / 'dev.csv'}")
    with pytest.raises(DataError, match=r"dev.csv` has labels that the training split never had \(row 2: 'sarcasm'\)"):
        train.run(config)


def test_outputs_use_the_threshold_and_join_names_with_the_separator():
    task = _task("task.threshold=0.3", "task.label_separator=|")
    task.names = ["joy", "love", "anger"]
    logits = tf.constant([[2.0, -0.5, -3.0], [-5.0, -5.0, -5.0]])  # sigmoid(-0.5) = 0.38 >= 0.3
    out = task.postprocess(logits)
    np.testing.assert_array_equal(out["predicted"], [[1, 1, 0], [0, 0, 0]])
    assert out["labels"].numpy().tolist() == [b"joy|love", b""]
    np.testing.assert_allclose(out["probabilities"], tf.sigmoid(logits))


@pytest.mark.slow
def test_learns_a_multi_label_task(make_config, data_dir):
    config = make_config(*TASK_DATA["multi_label"](data_dir), "train.epochs=8", "train.learning_rate=3e-3")
    result = train.run(config)
    assert result.metrics["micro_f1"] >= 0.9 and result.metrics["macro_f1"] >= 0.9
    assert result.metrics["exact_match"] >= 0.8  # chance: a quarter
