"""Regression: float targets, their errors, the loss choice and learning on sentence pairs."""

import pathlib

import keras
import pytest

from conftest import TASK_DATA, write_csv
from tfft import tasks, train
from tfft.config import load_config
from tfft.data import DataError
from tfft.errors import DivergedError


def _task(*overrides):
    return tasks.create(load_config(None, ["data.train=unused.csv", "task.type=regression", *overrides]))


def test_reads_single_sentences_and_pairs(tmp_path):
    write_csv(tmp_path / "s.csv", [("a", "3.5"), ("b", " -1 "), ("c", "2e0")])
    assert _task().read(str(tmp_path / "s.csv")).labels == [3.5, -1.0, 2.0]
    write_csv(tmp_path / "p.csv", [("a", "b", "4.2")], header=("s1", "s2", "score"))
    pairs = _task("data.text_column=s1", "data.text_pair_column=s2", "data.label_column=score").read(str(tmp_path / "p.csv"))
    assert (pairs.texts, pairs.pairs, pairs.labels) == (["a"], ["b"], [4.2])


def test_a_cell_that_is_not_a_number_names_its_row(make_config, data_dir, no_fit, tmp_path):
    write_csv(tmp_path / "bad.csv", [("a", "b", "3.1"), ("c", "d", "high"), ("e", "f", "nan"), ("g", "h", "1e39"),
                                     ("i", "j", "-3.4e38")], header=("text", "text_pair", "label"))
    config = make_config(*TASK_DATA["regression"](data_dir), f"data.validation={tmp_path / 'bad.csv'}")
    # 1e39 is finite in Python but not in float32; -3.4e38 fits.
    with pytest.raises(DataError, match=r"bad.csv` has cells in the target column `label` that are not finite "
                                        r"float32 numbers \(row 2: 'high', row 3: 'nan', row 4: '1e39'\)"):
        train.run(config)


def test_a_loss_that_overflows_stops_the_run_naming_the_step_and_exports_nothing(make_config, tmp_path):
    rows = [(f"text {i}", "b", "1e30") for i in range(32)]  # fits float32; its square, the MSE, does not
    write_csv(tmp_path / "huge.csv", rows, header=("text", "text_pair", "label"))
    config = make_config("task.type=regression", f"data.train={tmp_path / 'huge.csv'}", "data.validation=",
                         "data.text_pair_column=text_pair", "train.epochs=1", "export.enabled=true")
    with pytest.raises(DivergedError, match=r"The training loss became inf at step 1: training stopped and nothing "
                                            r"was exported. Lower `train.learning_rate`"):
        train.run(config)
    assert not pathlib.Path(config.export.base_dir).exists()
    assert not (pathlib.Path(config.output_dir) / "run_complete.json").exists()


def test_loss_is_mse_or_huber():
    assert isinstance(_task().loss(), keras.losses.MeanSquaredError)
    assert isinstance(_task("task.loss=huber").loss(), keras.losses.Huber)


@pytest.mark.slow
def test_learns_a_pair_regression(make_config, data_dir):
    config = make_config(*TASK_DATA["regression"](data_dir), "train.epochs=8", "train.learning_rate=3e-3")
    result = train.run(config)
    assert result.metrics["pearson"] >= 0.9 and result.metrics["spearman"] >= 0.8
    assert result.metrics["mse"] < 0.5  # predicting the mean gives about 2
