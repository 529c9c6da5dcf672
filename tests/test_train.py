import csv
import json
import pathlib
import warnings

import h5py
import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from conftest import TASK_DATA, write_csv
from tfft import evaluate, tasks, train
from tfft import model as tfft_model
from tfft.config import ConfigError, load_config
from tfft.data import DataError

pytestmark = pytest.mark.slow


def test_training_learns_the_task(trained_run):
    config, result = trained_run
    assert result.metrics["accuracy"] >= 0.9
    saved = json.loads((pathlib.Path(config.output_dir) / "metrics.json").read_text())
    for key in ("accuracy", "macro_f1", "per_class", "confusion_matrix"):
        assert key in saved
    assert saved["accuracy"] == result.metrics["accuracy"]
    assert sum(map(sum, saved["confusion_matrix"])) == 96


def test_frozen_weights_are_bit_identical_and_the_rest_trained(trained_run, tiny_preset):
    _, result = trained_run
    pretrained = keras_hub.models.Backbone.from_preset(str(tiny_preset))
    trained = result.model.backbone
    frozen = ["token_embedding", "position_embedding", "segment_embedding", "embeddings_layer_norm", "transformer_layer_0"]
    for name in frozen:
        for before, after in zip(pretrained.get_layer(name).weights, trained.get_layer(name).weights, strict=True):
            assert np.array_equal(before.numpy(), after.numpy()), f"{before.path} changed but is frozen"
    for name in ["transformer_layer_1", "pooled_dense"]:
        pairs = zip(pretrained.get_layer(name).weights, trained.get_layer(name).weights, strict=True)
        assert all(not np.array_equal(b.numpy(), a.numpy()) for b, a in pairs), f"{name} did not train"


def test_run_folder_holds_everything_to_repeat_the_run(trained_run):
    config, result = trained_run
    out = pathlib.Path(config.output_dir)
    for name in ["config.yaml", "labels.txt", "model.weights.h5", "checkpoints/best.weights.h5", "history.csv", "logs"]:
        assert (out / name).exists(), name
    assert not (out / "backup").exists()  # removed once training finished

    assert load_config(out / "config.yaml") == config
    with open(out / "history.csv") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [0, 1, 2]


def test_weights_files_hold_the_model_without_the_optimizer_state(trained_run):
    config, result = trained_run
    out = pathlib.Path(config.output_dir)
    for name in ["model.weights.h5", "checkpoints/best.weights.h5"]:
        with h5py.File(out / name) as f:
            assert "layers" in f and "optimizer" not in f, f"{name}: {sorted(f)}"


def test_weights_of_an_earlier_tfft_with_the_optimizer_state_load_without_a_warning(trained_run, tmp_path):
    config, result = trained_run
    earlier = tmp_path / "earlier.weights.h5"
    keras.Model.save_weights(result.model, earlier)  # Keras' own: the AdamW state beside the model's
    with h5py.File(earlier) as f:
        assert "optimizer" in f
    model = tfft_model.load_trained(config).model
    model.compile(optimizer=keras.optimizers.AdamW())
    model.optimizer.build(model.trainable_variables)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.load_weights(earlier)
    for loaded, trained in zip(model.weights, result.model.weights, strict=True):
        assert np.array_equal(loaded.numpy(), trained.numpy()), loaded.path


def test_evaluate_reloads_the_run(trained_run):
    config, result = trained_run
    metrics = evaluate.run(config)
    assert metrics["accuracy"] == pytest.approx(result.metrics["accuracy"])


class _Crash(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise KeyboardInterrupt("simulated crash after epoch 1")


def test_interrupted_run_resumes_at_the_next_epoch(make_config):
    config = make_config("train.epochs=3")
    with pytest.raises(KeyboardInterrupt):
        train.run(config, callbacks=[_Crash()])
    out = pathlib.Path(config.output_dir)
    assert (out / "backup").is_dir() and not (out / "run_complete.json").exists()

    resumed_at = {}

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            resumed_at.setdefault("epoch", epoch)
            resumed_at.setdefault("step", int(self.model.optimizer.iterations))

    result = train.run(config, callbacks=[Record()])  # same command again
    assert len(result.history["loss"]) == 2  # epochs 2 and 3 only
    steps = 960 // 16
    # Optimizer state came back too: the schedule goes on from step 60, not from warmup.
    assert resumed_at == {"epoch": 1, "step": steps}
    with open(out / "history.csv") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [0, 1, 2]


class _ZeroAfterLastEpoch(keras.callbacks.Callback):
    """Zeroes every trained weight after the last epoch's checkpoint: the final weights are then no epoch's best."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.params["epochs"] - 1:
            for variable in self.model.trainable_variables:
                variable.assign(np.zeros(variable.shape, variable.dtype))


@pytest.mark.parametrize("restore_best", [True, False])
def test_restore_best_decides_which_weights_the_run_ends_with(make_config, restore_best):
    config = make_config("train.epochs=2", f"train.restore_best={str(restore_best).lower()}")
    result = train.run(config, callbacks=[_ZeroAfterLastEpoch()])
    zeroed = all(not np.any(v.numpy()) for v in result.model.trainable_variables)
    assert zeroed is not restore_best
    assert (pathlib.Path(config.output_dir) / "checkpoints" / "best.weights.h5").is_file() is restore_best
    best_logged = max(result.history["val_accuracy"])
    if restore_best:
        assert result.metrics["accuracy"] == pytest.approx(best_logged)
    else:  # the zeroed model predicts one class for every row: the run reports what it ends with
        predicted = [sum(column) for column in zip(*result.metrics["confusion_matrix"], strict=True)]
        assert sum(1 for n in predicted if n) == 1 and result.metrics["accuracy"] < best_logged


def test_train_step_is_traced_once(make_config, monkeypatch):
    # Variables made during the first trace (optimizer slots, built lazily
    # outside a strategy) make tf.function trace the whole step a second
    # time: 8 of the first step's 16 s on MiniLM.
    from tfft.tasks import TaskModel

    traces = []
    original = TaskModel.train_step

    def counting(self, data):
        traces.append(1)
        return original(self, data)

    monkeypatch.setattr(TaskModel, "train_step", counting)
    train.run(make_config("train.epochs=1", "data.validation="))
    assert len(traces) == 1


def test_a_run_traces_the_tasks_forward_pass_once_for_its_epochs_scores_and_its_final_scores(
        make_config, data_dir, monkeypatch):
    """The final scoring traced the model again after the per-epoch scoring had (about 1.3 s a run on MiniLM)."""
    from tfft.tasks.base import Task

    traces = []

    def counting(name):
        original = getattr(Task, name)

        def traced(self, *args):  # its Python body runs once per trace
            traces.append(name)
            return original(self, *args)
        return traced

    for name in ("outputs", "labelled_outputs"):
        monkeypatch.setattr(Task, name, counting(name))
    result = train.run(make_config(*TASK_DATA["regression"](data_dir), "train.epochs=2"))
    assert len(result.history["val_pearson"]) == 2 and "pearson" in result.metrics  # scored each epoch, then at the end
    assert traces == ["labelled_outputs"]


@pytest.mark.parametrize("task_type,score", [("regression", "pearson"), ("classification", "accuracy")])
@pytest.mark.parametrize("restore_best", ["true", "false"])
def test_the_final_scoring_reuses_the_outputs_of_the_epoch_whose_weights_the_run_kept(
        make_config, data_dir, monkeypatch, restore_best, task_type, score):
    """The final scoring passed over the validation split once more, with weights an epoch had scored it with."""
    from tfft.tasks.base import Task

    passes = []
    original = Task.collect

    def counting(self, batches):  # called once per pass over the split
        passes.append(1)
        return original(self, batches)

    monkeypatch.setattr(Task, "collect", counting)
    config = make_config(*TASK_DATA[task_type](data_dir), "train.epochs=3", f"train.restore_best={restore_best}")
    result = train.run(config)
    scores = result.history[f"val_{score}"]
    assert len(passes) == 3  # one an epoch; the final scoring made none
    kept = max(scores) if restore_best == "true" else scores[-1]
    assert result.metrics[score] == pytest.approx(kept, abs=1e-6)


@pytest.mark.parametrize("task_type", ["classification", "regression", "multi_label", "token_classification",
                                       "extractive_qa"])
def test_one_pass_over_the_validation_split_an_epoch_logs_keras_loss_and_metrics_and_the_task_scores(
        make_config, data_dir, monkeypatch, task_type):
    """Keras passed over the split for its loss and metrics, then `ValidationScores` again for the task's scores."""
    import keras

    class KerasPasses(keras.callbacks.Callback):
        batches = 0

        def on_test_batch_end(self, batch, logs=None):
            self.batches += 1

    keras_passes = KerasPasses()
    # Batches of 20: the last is smaller, and weighs less in the loss.
    config = make_config(*TASK_DATA[task_type](data_dir), "train.epochs=2", "train.restore_best=false", "train.batch_size=20")
    result = train.run(config, callbacks=[keras_passes])
    assert keras_passes.batches == 0
    monkeypatch.setattr(train, "keras_validates", lambda task, strategy: True)  # Keras' pipeline, to compare with
    inputs = train.prepare_data(config, result.task, tf.distribute.get_strategy(), None, trains=False)
    keras_logs = result.model.evaluate(inputs.val_ds, return_dict=True, verbose=0)  # the last epoch's weights
    task_scores = result.task.logged_scores(result.metrics)
    for name, value in {**keras_logs, **task_scores}.items():
        assert result.history[f"val_{name}"][-1] == pytest.approx(task_scores.get(name, value), rel=1e-5), name


def test_finished_run_is_refused_not_overwritten(trained_run):
    config, _ = trained_run
    before = (pathlib.Path(config.output_dir) / "model.weights.h5").stat().st_mtime_ns
    with pytest.raises(train.OutputDirError, match="holds a finished run.*overwrite_output_dir=true"):
        train.prepare_output_dir(config, pathlib.Path(config.output_dir))
    assert (pathlib.Path(config.output_dir) / "model.weights.h5").stat().st_mtime_ns == before


def test_unfinished_run_with_another_config_is_refused(make_config, tmp_path):
    config = make_config()
    out = pathlib.Path(config.output_dir)
    train.prepare_output_dir(config, out)
    (out / "backup").mkdir()
    other = make_config("train.learning_rate=1e-4")
    with pytest.raises(train.OutputDirError, match="another config \\(train.learning_rate: 0.01 there, 0.0001 now"):
        train.prepare_output_dir(other, out)
    assert train.prepare_output_dir(make_config("export.enabled=true"), out) is True  # resumable change


def test_foreign_folder_is_refused(make_config):
    config = make_config()
    out = pathlib.Path(config.output_dir)
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(train.OutputDirError, match="is not empty and is not a tfft run .* it holds notes.txt"):
        train.run(config)
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "override, error, message",
    [
        ("model.freeze_layers=20", ConfigError, "Argument `model.freeze_layers` must be between -1 and 2"),
        ("data.train=missing.csv", DataError, "Data file `missing.csv` does not exist"),
        ("data.text_column=sentence", DataError, "has no column `sentence`"),
        ("model.sequence_length=100", ConfigError, "must be at most 64, the backbone's number of positions"),
    ],
)
def test_bad_input_fails_before_training(make_config, no_fit, override, error, message):
    with pytest.raises(error, match=message):
        train.run(make_config(override))


def test_unseen_validation_label_fails_before_training(make_config, no_fit, tmp_path):
    write_csv(tmp_path / "dev.csv", [("the movie was great", "pos"), ("meh", "mixed")])
    with pytest.raises(DataError, match=r"never had \(row 2: 'mixed'\)"):
        train.run(make_config(f"data.validation={tmp_path / 'dev.csv'}"))


def test_keras_validation_pipeline_batches_the_shortest_examples_together(make_config, tmp_path, monkeypatch):
    """Where Keras validates (masked LM, TPUs), its pipeline is ordered as `ValidationScores`' pass."""
    rows = [(" ".join(["great"] * n), "pos" if n % 2 else "neg") for n in range(20, 0, -1)]  # longest first
    config = make_config(f"data.validation={write_csv(tmp_path / 'dev.csv', rows)}", "train.batch_size=8")
    task = tasks.create(config)
    monkeypatch.setattr(train, "keras_validates", lambda task, strategy: True)
    inputs = train.prepare_data(config, task, tf.distribute.get_strategy(), kept=None)
    widths = [int(features["token_ids"].shape[1]) for features, _ in inputs.val_ds]
    assert widths == [10, 18, 22]  # 8 + 2 tokens, 16 + 2, 20 + 2; in row order: 22, 14, 6


def test_no_keras_validation_pipeline_is_built_where_validation_scores_makes_the_one_pass(make_config):
    """Built and never read, it cost a run about 0.15 s (tracing its packing map: MRPC, 2.15 against 2.01 s)."""
    config = make_config()
    inputs = train.prepare_data(config, tasks.create(config), tf.distribute.get_strategy(), kept=None)
    assert inputs.validation is not None and inputs.val_ds is None


class _Writer:
    """The calls `train.finish` makes on its `RunWriter`, in order."""

    def __init__(self, chief: bool):
        self.chief, self.path, self.calls = chief, pathlib.Path("/nonexistent/run"), []

    def export(self, *args):
        self.calls.append("export")

    def complete(self, *args):
        self.calls.append("complete")


@pytest.mark.parametrize("chief", [True, False])
def test_a_features_finished_hook_runs_on_the_chief_alone_before_the_run_is_marked_complete(chief):
    # Before: a kill while it writes leaves a run that reruns it. The chief alone: the others' folders are temporary.
    writer = _Writer(chief)

    class Hooks(train.RunHooks):
        def finished(self, config, result):
            writer.calls.append("finished")

    inputs = train.Inputs.__new__(train.Inputs)
    inputs.validation, inputs.packer = None, None
    result = train.finish(load_config(None, ["data.train=x.csv"]), None, None, inputs, train.Fitted({}, 1.0), writer,
                          Hooks())
    assert writer.calls == (["export", "finished", "complete"] if chief else ["export", "complete"])
    assert result.chief is chief
