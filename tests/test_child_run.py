"""`run_in_child`: a run trained in a process of its own, stopped from the parent, and its failure named."""

import pathlib

import pytest

from tfft import child_run, run_dir

pytestmark = pytest.mark.slow


def test_a_run_in_a_child_trains_there_and_stops_when_the_parent_says(make_config):
    config = make_config("train.epochs=3", "data.max_train_examples=64")
    seen = []

    def on_epoch(epoch, logs):
        seen.append((epoch, sorted(logs)))
        return epoch == 1  # stop after the second epoch

    metrics = child_run.run_in_child(config, on_epoch=on_epoch)
    folder = pathlib.Path(config.output_dir)
    assert metrics == run_dir.finished_metrics(folder) and "accuracy" in metrics
    assert [epoch for epoch, _ in seen] == [0, 1]
    assert {"loss", "val_accuracy", "val_loss"} <= set(seen[0][1])
    assert len(run_dir.read_history(folder)["loss"]) == 2  # the third epoch never ran


def test_a_child_that_fails_is_named_with_its_folder(make_config, tmp_path):
    broken = tmp_path / "train.csv"
    broken.write_text("text,label\n", encoding="utf-8")  # valid to the config, no rows to train on
    config = make_config(f"data.train={broken}")
    with pytest.raises(child_run.ChildRunError, match=f"The run in {config.output_dir} ended in its process with "
                                                      "exit status 1 before finishing"):
        child_run.run_in_child(config)
