"""`WarmRuns`: a run that differs from the last only in `REUSABLE` keys reuses its data, model and traced steps."""

import numpy as np
import pytest

from conftest import TASK_DATA
from tfft import train, warm_runs
from tfft.config import load_config
from tfft.tasks import TASKS


def _trained(result) -> list:
    return [np.array(v) for v in result.model.weights]


def _assert_same_weights(a, b, atol=1e-6) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, atol=atol, rtol=0)


@pytest.mark.slow
def test_a_warm_run_trains_as_a_fresh_one_without_building_or_tracing_again(make_config, tmp_path, monkeypatch):
    first = make_config("train.epochs=1", "model.dropout=0.1", f"output_dir={tmp_path / 'a'}")
    values = ["train.epochs=2", "model.dropout=0.1", "train.batch_size=8", "train.learning_rate=3e-3",
              "train.warmup_ratio=0.3", "train.weight_decay=0.5"]  # the first run's: 1, 16, 1e-2, 0.1, 0.01
    second = make_config(*values, f"output_dir={tmp_path / 'b'}")
    fresh = train.run(make_config(*values, f"output_dir={tmp_path / 'fresh'}"))
    warm = warm_runs.WarmRuns()
    one = train.run(first, phases=warm)
    builds, reads = [], []
    monkeypatch.setattr(train, "build", lambda *a, **k: builds.append(1))
    monkeypatch.setattr(train, "read_data", lambda *a, **k: reads.append(1))
    traced = []  # `train_step` runs in Python only while Keras traces it
    step = one.model.train_step
    monkeypatch.setattr(one.model, "train_step", lambda data: traced.append(1) or step(data), raising=False)
    two = train.run(second, phases=warm)
    assert builds == reads == []  # the first run's model and data
    assert two.model is one.model
    assert traced == []  # the first run's traced step, for the other batch size too
    assert len(two.history["loss"]) == 2
    # Dropout on: the seed generators were reset too. The warm step was traced for general shapes, the fresh one
    # first for the first batch's: kernels may sum in another order.
    np.testing.assert_allclose(two.history["loss"], fresh.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(two.history["val_loss"], fresh.history["val_loss"], rtol=1e-5)
    _assert_same_weights(_trained(two), _trained(fresh), atol=1e-5)
    assert two.metrics["accuracy"] == fresh.metrics["accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize("task_type", sorted(set(TASKS) - {"classification"}))  # classification: above
def test_a_warm_run_of_every_task_trains_as_a_fresh_one(task_type, make_config, data_dir, tmp_path):
    def config(name, *values):
        return make_config(*TASK_DATA[task_type](data_dir), "data.max_train_examples=32", "train.epochs=1",
                           "model.dropout=0.1", *values, f"output_dir={tmp_path / name}")

    values = ["train.batch_size=8", "train.learning_rate=3e-3"]
    fresh = train.run(config("fresh", *values))
    warm = warm_runs.WarmRuns()
    one = train.run(config("a"), phases=warm)
    two = train.run(config("b", *values), phases=warm)
    assert two.model is one.model
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(two.history[key], fresh.history[key], rtol=1e-5)
    monitor = fresh.task.monitor[0]
    assert two.metrics[monitor] == pytest.approx(fresh.metrics[monitor], abs=1e-5)


@pytest.mark.slow
def test_a_run_with_other_keys_builds_anew(make_config, tmp_path):
    warm = warm_runs.WarmRuns()
    one = train.run(make_config("train.epochs=1", f"output_dir={tmp_path / 'a'}"), phases=warm)
    two = train.run(make_config("train.epochs=1", "train.seed=7", f"output_dir={tmp_path / 'b'}"), phases=warm)
    assert two.model is not one.model


def test_reusable_allows_the_keys_a_traced_step_reads_as_values_and_no_other(tmp_path):
    base = load_config(None, ["model.backbone=x", "data.train=t.csv", f"output_dir={tmp_path / 'a'}"])
    same = [f"output_dir={tmp_path / 'b'}", "name=other", "train.learning_rate=1e-3", "train.warmup_ratio=0.2",
            "train.epochs=5", "train.batch_size=8", "train.weight_decay=0.1"]
    # A head dropout above 0 draws a seed when it is built: the head's initial weights differ with the rate. A
    # weight decay of 0 traces a step without any.
    other = ["train.seed=1", "model.dropout=0.0", "train.weight_decay=0.0", "train.schedule=cosine",
             "model.freeze_layers=1", "data.max_train_examples=5", "train.layer_decay=0.8"]
    for override in same:
        assert warm_runs.reusable(base, load_config(None, [*_overrides(base), override])), override
    for override in other:
        assert not warm_runs.reusable(base, load_config(None, [*_overrides(base), override])), override


def test_with_gradual_unfreezing_by_epochs_the_batch_size_is_not_reusable(tmp_path):
    base = ["model.backbone=x", "data.train=t.csv", "model.freeze_layers=0", "train.unfreeze.every=1"]
    one = load_config(None, base)
    assert not warm_runs.reusable(one, load_config(None, [*base, "train.batch_size=8"]))
    assert warm_runs.reusable(one, load_config(None, [*base, "train.learning_rate=1e-3"]))
    steps = ["train.unfreeze.unit=steps"]
    assert warm_runs.reusable(load_config(None, [*base, *steps]), load_config(None, [*base, *steps,
                                                                                     "train.batch_size=8"]))


def _overrides(config) -> list[str]:
    return ["model.backbone=x", "data.train=t.csv", f"output_dir={config.output_dir}"]
