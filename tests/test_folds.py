"""`tfft.folds`: `data.split` holds out a slice or one fold of the training split, keeping strata and groups."""

import collections

import pytest

from conftest import TASK_DATA, multi_label_rows, write_csv
from tfft import folds, tasks
from tfft.config import ConfigError, SplitConfig, load_config


def task_for(*overrides):
    return tasks.create(load_config(None, [*overrides]))


def read_train(task):
    return task.read(task.config.data.train, split="train")


def test_folds_partition_the_rows_and_keep_each_labels_share(data_dir):
    task = task_for(f"data.train={data_dir / 'train.csv'}")
    examples = read_train(task)
    parts = folds.fold_indices(task, examples, folds=5, seed=0)
    everything = sorted(i for part in parts for i in part)
    assert everything == list(range(len(examples)))  # every row once
    share = collections.Counter(examples.labels)
    for part in parts:
        counts = collections.Counter(examples.labels[i] for i in part)
        for label, total in share.items():  # StratifiedKFold: each fold within one row of the label's share
            assert abs(counts[label] - total / 5) <= 1


def test_a_fold_run_trains_on_the_other_folds_and_validates_on_its_own(data_dir):
    config = load_config(None, [f"data.train={data_dir / 'train.csv'}", "data.split.folds=4", "data.split.fold=1"])
    task = tasks.create(config)
    examples = read_train(task)
    train_part = folds.train_part(task, examples, config.data.split)
    held = folds.read_validation(task, config)
    expected = folds.fold_indices(task, examples, 4, seed=0)[1]
    assert held.texts == [examples.texts[i] for i in expected]
    rest = [i for i in range(len(examples)) if i not in set(expected)]
    assert train_part.texts == [examples.texts[i] for i in rest]


def test_a_fraction_holds_out_that_share_stratified(data_dir):
    split = SplitConfig(fraction=0.1, seed=3)
    task = task_for(f"data.train={data_dir / 'train.csv'}")
    examples = read_train(task)
    held = folds.held_out(task, examples, split)
    assert len(held) == 96  # 10% of 960
    held_counts = collections.Counter(held.labels)
    for label, count in collections.Counter(examples.labels).items():
        assert abs(held_counts[label] - count / 10) <= 1
    assert len(folds.train_part(task, examples, split)) == 864


def test_the_seed_changes_the_folds(data_dir):
    task = task_for(f"data.train={data_dir / 'train.csv'}")
    examples = read_train(task)
    assert folds.fold_indices(task, examples, 3, seed=0) != folds.fold_indices(task, examples, 3, seed=1)


def test_qa_folds_keep_a_contexts_questions_together(data_dir):
    task = task_for(*TASK_DATA["extractive_qa"](data_dir))
    examples = read_train(task)
    contexts = [{examples.pairs[i] for i in part} for part in folds.fold_indices(task, examples, 3, seed=0)]
    assert len(set().union(*contexts)) == sum(len(c) for c in contexts)  # no context in two folds


def test_multi_label_folds_spread_a_rare_label(tmp_path):
    rows = multi_label_rows(200, seed=0) + [("a rare one", "rare")] * 5
    path = write_csv(tmp_path / "multi.csv", rows)
    task = task_for("task.type=multi_label", f"data.train={path}")
    examples = read_train(task)
    parts = folds.fold_indices(task, examples, 5, seed=0)
    rare = [sum("rare" in examples.labels[i] for i in part) for part in parts]
    assert rare == [1, 1, 1, 1, 1]


def test_fewer_rows_than_folds_is_refused_naming_the_key(tmp_path):
    path = write_csv(tmp_path / "few.csv", [("good", "pos"), ("bad", "neg"), ("fine", "pos")])
    task = task_for(f"data.train={path}")
    with pytest.raises(ConfigError, match=r"`data.split.folds` must be at most the number of examples .* \(3\)"):
        folds.fold_indices(task, read_train(task), 5, seed=0)


def test_a_label_rarer_than_the_folds_is_refused_naming_it_and_the_fix(tmp_path):
    rows = [("good", "pos"), ("bad", "neg")] * 10 + [("odd", "other")] * 2
    path = write_csv(tmp_path / "rare.csv", rows)
    task = task_for(f"data.train={path}")
    with pytest.raises(ConfigError, match=r"rare.csv.*'other' \(2\).*data.split.stratify=false"):
        folds.fold_indices(task, read_train(task), 3, seed=0)
    assert len(folds.fold_indices(task, read_train(task), 3, seed=0, stratify=False)) == 3


@pytest.mark.parametrize("overrides, message", [
    (["data.split.folds=1"], "`data.split.folds` must be 0 (off) or >= 2"),
    (["data.split.folds=3", "data.split.fold=3"], "`data.split.fold` must be between 0 and 2"),
    (["data.split.fraction=1.0"], "`data.split.fraction` must be in [0, 1)"),
    (["data.split.fraction=0.1", "data.split.folds=3"], "cannot be combined with `data.split.folds`"),
])
def test_bad_split_values_are_refused_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_config(None, ["data.train=t.csv", *overrides])


def test_a_split_with_a_validation_file_is_refused():
    with pytest.raises(ConfigError, match="`data.validation` must be empty when `data.split`"):
        load_config(None, ["data.train=t.csv", "data.validation=v.csv", "data.split.folds=3"])


@pytest.mark.slow
def test_a_fold_run_trains_and_evaluates_on_its_held_out_fold(make_config, caplog):
    from tfft import evaluate, train

    caplog.set_level("INFO")

    config = make_config("data.validation=", "data.split.folds=4", "data.split.fold=2", "train.epochs=1")
    result = train.run(config)
    held = folds.read_validation(result.task, config)
    assert len(held) == 240
    assert "240 validation examples" in caplog.text
    assert evaluate.run(config)["accuracy"] == pytest.approx(result.metrics["accuracy"], abs=1e-6)
