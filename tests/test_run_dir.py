"""The run folder survives kills, races and typos: a test for each way a user lost work."""

import csv
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pandas as pd
import pytest

from conftest import KILLED_MID_EPOCH, REPO, run_python, run_tfft, write_csv
from tfft import export, run_dir, train
from tfft.config import ConfigError
from tfft.data import DataError
from tfft.errors import OutputDirError


def _epochs(out: pathlib.Path) -> list[int]:
    with open(out / "history.csv") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


# Trains, then dies by SIGKILL in the middle of the export: the SavedModel is in its staging folder.
KILLED_DURING_EXPORT = """
import os, signal, sys
from tfft import export, train
from tfft.config import load_config
real = export.build_archive
def dying(*args, **kwargs):
    archive = real(*args, **kwargs)
    class Dying:
        def write_out(self, path, verbose=False):
            archive.write_out(path, verbose=verbose)
            os.kill(os.getpid(), signal.SIGKILL)
    return Dying()
export.build_archive = dying
train.run(load_config(sys.argv[1]))
"""


@pytest.mark.slow
def test_kill_during_export_then_rerun_trains_nothing_again(make_config, tmp_path, monkeypatch):
    config = make_config("train.epochs=2", "export.enabled=true")
    config.save(tmp_path / "config.yaml")
    child = run_python(KILLED_DURING_EXPORT, str(tmp_path / "config.yaml"))
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    out, models = pathlib.Path(config.output_dir), pathlib.Path(config.export.base_dir) / "tiny"
    assert (out / run_dir.TRAINED_FILE).is_file() and not (out / run_dir.COMPLETE_FILE).exists()
    assert [p.name for p in models.glob(".staging-*")] and export.versions(models) == []

    def no_training(*args, **kwargs):
        raise AssertionError("a finished training must not run again")

    monkeypatch.setattr(keras.Model, "fit", no_training)
    result = train.run(config)  # the same command again
    assert _epochs(out) == [0, 1]  # each epoch once
    assert len(result.history["loss"]) == 2 and result.metrics["accuracy"] >= 0.5
    assert result.export_path == str(models / "1") and (models / "1" / "saved_model.pb").is_file()
    assert not list(models.glob(".staging-*"))  # the dead export's staging folder is gone
    assert (out / run_dir.COMPLETE_FILE).is_file()




@pytest.mark.slow
def test_kill_mid_epoch_resumes_at_the_last_backup_with_the_data_order_unchanged(make_config, tmp_path):
    # Dropout on: its seed generators' state must come back too, or the resumed run differs.
    overrides = ("train.epochs=2", "train.backup_every_steps=5", "model.dropout=0.1")
    config = make_config(*overrides)
    config.save(tmp_path / "config.yaml")
    steps = 960 // 16
    child = run_python(KILLED_MID_EPOCH, str(tmp_path / "config.yaml"), str(steps + 17))  # epoch 2, batch 17
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    out = pathlib.Path(config.output_dir)
    assert _epochs(out) == [0]

    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(int(self.model.optimizer.iterations.numpy()))

    resumed = train.run(config, callbacks=[Record()])  # the same command again
    assert seen[0] == steps + 15  # the last backup, not the epoch's start
    assert len(seen) == steps - 15
    assert _epochs(out) == [0, 1]
    assert not (out / run_dir.BACKUP_DIR).exists()

    # A run never stopped ends with the same weights: same batches in the same order, same dropout masks.
    straight = train.run(make_config(*overrides, f"output_dir={tmp_path / 'straight'}"))
    for a, b in zip(straight.model.weights, resumed.model.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=a.path)


@pytest.mark.slow
def test_resume_after_an_epoch_keeps_the_data_order(make_config, tmp_path, monkeypatch):
    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt("stopped after epoch 1")

    overrides = ("train.epochs=2", "model.dropout=0.1")
    with pytest.raises(KeyboardInterrupt):
        train.run(make_config(*overrides), callbacks=[Stop()])
    resumed = train.run(make_config(*overrides))
    straight = train.run(make_config(*overrides, f"output_dir={tmp_path / 'straight'}"))
    for a, b in zip(straight.model.weights, resumed.model.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=a.path)


@pytest.mark.slow
def test_ctrl_c_between_steps_backs_up_the_step_reached(make_config):
    class CtrlC(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == 17:
                raise KeyboardInterrupt

    config = make_config("train.epochs=2")  # no backup_every_steps: epoch ends and interrupts only
    with pytest.raises(KeyboardInterrupt):
        train.run(config, callbacks=[CtrlC()])
    state = json.loads((pathlib.Path(config.output_dir) / run_dir.BACKUP_DIR / "state.json").read_text())
    assert (state["step"], state["epoch"], state["batch"]) == (17, 0, 17)
    assert run_dir.inspect(config, pathlib.Path(config.output_dir)) == "resume"  # progress kept, config locked


def test_fit_plan_finishes_a_broken_epoch_first():
    assert train.fit_plan(0, 10, 3) == [(0, 3, 10)]
    assert train.fit_plan(20, 10, 3) == [(2, 3, 10)]
    assert train.fit_plan(25, 10, 3) == [(2, 3, 5)]
    assert train.fit_plan(15, 10, 3) == [(1, 2, 5), (2, 3, 10)]
    assert train.fit_plan(30, 10, 3) == []


def test_the_resume_log_counts_epochs_as_the_run_has_them():
    """Issue 26: a run killed after its last step logged "Resuming at epoch 4 ... of a 3-epoch run"."""
    assert train.resume_message(25, 10, 3) == "Resuming in epoch 3 of 3, after step 5 of 10."
    assert train.resume_message(20, 10, 3) == "Resuming in epoch 3 of 3, after step 0 of 10."
    assert train.resume_message(30, 10, 3) == "Training had run all 3 epochs: nothing is left to train."


def test_history_keeps_only_the_epochs_the_backup_holds(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,loss\n0,0.5\n1,0.4\n2,0.3\n")
    run_dir.trim_history(tmp_path, 2)
    assert _epochs(tmp_path) == [0, 1]


@pytest.mark.parametrize(
    "bad, error",
    [("model.freeze_layers=20", ConfigError), ("data.label_column=sentiment", DataError)],
)
def test_a_failed_check_writes_nothing_and_the_fix_runs(make_config, bad, error):
    out = pathlib.Path(make_config().output_dir)
    with pytest.raises(error):
        train.run(make_config(bad, "train.epochs=1"))
    assert not out.exists()  # no config.yaml, no lock file, no folder
    result = train.run(make_config("train.epochs=1"))  # the corrected command is not refused
    assert len(result.history["loss"]) == 1


def test_a_run_that_never_completed_an_epoch_accepts_a_changed_config(make_config):
    first = make_config("train.learning_rate=1e-2")
    out = pathlib.Path(first.output_dir)
    run_dir.prepare_output_dir(first, out)  # then killed in its first epoch
    (out / "logs").mkdir()
    changed = make_config("train.learning_rate=1e-4")
    assert run_dir.prepare_output_dir(changed, out) is False  # a new run, not refused
    assert "learning_rate: 0.0001" in (out / "config.yaml").read_text()
    assert not (out / "logs").exists()


def test_an_unfinished_run_resumes_with_another_search_section_and_not_another_rate(make_config):
    first = make_config("search.trials=5")
    out = pathlib.Path(first.output_dir)
    run_dir.prepare_output_dir(first, out)
    (out / run_dir.BACKUP_DIR).mkdir()  # an epoch completed, then killed
    assert run_dir.inspect(make_config("search.trials=9"), out) == "resume"  # training never reads `search`
    with pytest.raises(run_dir.OutputDirError, match="train.learning_rate: 0.01 there, 0.0001 now"):
        run_dir.inspect(make_config("search.trials=5", "train.learning_rate=1e-4"), out)


HOLD_LOCK = """
import pathlib, sys, time
from tfft import run_dir
with run_dir.locked(pathlib.Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(120)
"""


def _hold_lock(out: pathlib.Path) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True, cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    assert child.stdout.readline().strip() == "locked"
    return child


@pytest.mark.parametrize("existed", [False, True])
def test_a_run_refused_under_the_lock_leaves_the_folder_as_it_found_it(existed, make_config, tmp_path, no_fit):
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence,label\na fine film,1\n")  # no `text` column: refused while reading, under the lock
    config = make_config(f"data.train={bad}")
    out = pathlib.Path(config.output_dir)
    if existed:
        out.mkdir()
    with pytest.raises(DataError, match="bad.csv"):
        train.run(config)
    assert out.is_dir() == existed and (not existed or list(out.iterdir()) == [])  # no lock file left behind
    with run_dir.locked(out):  # the lock still works after the cleanup, and a run that wrote keeps its files
        (out / "history.csv").write_text("epoch\n")
    assert sorted(p.name for p in out.iterdir()) == [run_dir.LOCK_FILE, "history.csv"]


def test_a_file_that_appears_in_a_refused_runs_new_folder_stays_and_the_run_error_is_raised(make_config, tmp_path,
                                                                                              monkeypatch):
    out = pathlib.Path(make_config().output_dir)

    def user_writes_meanwhile(folder):  # the user's file lands after the cleanup's check, before rmdir
        (folder / "notes.txt").write_text("mine")
        return []

    monkeypatch.setattr(run_dir, "_entries", user_writes_meanwhile)
    with pytest.raises(DataError, match="refused"), run_dir.locked(out):
        raise DataError("refused")
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"
    with run_dir.locked(out):  # the lock was released
        pass


def test_a_second_run_on_a_live_folder_is_refused_naming_the_holder(make_config, no_fit, caplog):
    config = make_config()
    out = pathlib.Path(config.output_dir)
    child = _hold_lock(out)
    try:
        started = time.monotonic()
        with pytest.raises(OutputDirError, match=rf"is in use by process {child.pid} on .*\(tfft train, since"):
            train.run(config)
        assert time.monotonic() - started < 30  # refused at once, not after reading data
        with pytest.raises(OutputDirError, match="in use by process"):
            export.run(config)
    finally:
        child.kill()
        child.wait()
    # The killed holder left its name in the lock file; the lock itself died with it and is taken over.
    with caplog.at_level("WARNING"), run_dir.locked(out):
        pass
    assert f"left by process {child.pid}" in caplog.text


def test_holder_names_the_live_process_holding_a_folder_and_makes_nothing(tmp_path):
    out = tmp_path / "run"
    assert run_dir.holder(out) is None and not out.exists()  # no folder: nothing made
    child = _hold_lock(out)
    try:
        assert run_dir.holder(out).startswith(f"process {child.pid} on ")
        assert run_dir.holder(out) is not None  # looking did not take it over
    finally:
        child.kill()
        child.wait()
    assert run_dir.holder(out) is None  # the lock died with its process
    with run_dir.locked(out):  # and is free to take
        pass


def test_concurrent_publishers_get_distinct_whole_versions(tmp_path):
    base = tmp_path / "m"
    base.mkdir()
    stagings = []
    for i in range(12):
        staging = base / f".staging-{os.getpid()}-{i}"
        staging.mkdir()
        (staging / "saved_model.pb").write_text(str(i))
        stagings.append(staging)
    threads = [threading.Thread(target=export._publish, args=(s, base)) for s in stagings]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert export.versions(base) == list(range(1, 13))
    assert sorted(int((base / str(v) / "saved_model.pb").read_text()) for v in range(1, 13)) == list(range(12))


def test_a_crash_inside_publish_leaves_no_version_folder(tmp_path, monkeypatch):
    base = tmp_path / "m"
    staging = base / ".staging-1-x"
    staging.mkdir(parents=True)

    def crash(*args):
        raise OSError("crash while publishing (injected)")

    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(OSError, match="injected"):
        export._publish(staging, base)
    assert export.versions(base) == []  # no empty numbered folder for TF Serving to load


def test_only_staging_folders_of_dead_exports_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".staging-{int(dead.stdout)}-abc"
    live = tmp_path / f".staging-{os.getpid()}-def"
    stale.mkdir()
    live.mkdir()
    export.remove_stale_staging(tmp_path)
    assert not stale.exists() and live.exists()


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("ragged.csv", 'text,label\nfine,pos\nhello, world,neg\n',
         r"ragged.csv`: line 3 has 3 fields where the header has 2\. A comma inside a text cell splits it"),
        ("extra.tsv", "text\tlabel\nfine\tpos\nhello\tworld\tneg\n",
         r"extra.tsv`: line 3 has 3 fields where the header has 2\. A tab inside a text cell splits it"),
    ],
)
def test_malformed_rows_name_the_file_and_line(make_config, no_fit, tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=message):
        train.run(make_config(f"data.train={tmp_path / name}"))


def test_a_folder_as_the_data_path_is_called_a_folder(make_config, no_fit, tmp_path):
    with pytest.raises(DataError, match=rf"`{tmp_path}` is a folder, not a file"):
        train.run(make_config(f"data.train={tmp_path}"))


@pytest.mark.parametrize(
    "override, error, message",
    [
        # An unreachable filesystem (no such scheme here; gs:// without network or credentials alike).
        ("export.base_dir=nosuch://bucket/models", ConfigError,
         r"^Argument `export.base_dir` cannot be reached: File system scheme 'nosuch' not implemented"),
        ("data.train=nosuch://bucket/train-*.csv", DataError,
         r"^`nosuch://bucket/train-\*.csv` in `data.train` cannot be read: File system scheme 'nosuch' not"),
    ],
)
def test_unreachable_paths_fail_in_one_line_before_training(make_config, no_fit, tmp_path, override, error, message):
    """Issue 26: gs:// paths gave raw TensorFlow tracebacks, and an export folder failed only after training."""
    with pytest.raises(error, match=message) as err:
        train.run(make_config(override, "export.enabled=true"))
    assert "\n" not in str(err.value)
    assert not (pathlib.Path(make_config().output_dir) / "config.yaml").exists()  # nothing written


def test_an_export_folder_that_cannot_be_written_fails_before_training(make_config, no_fit, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ConfigError, match=r"`export.base_dir` must be a folder this process can write: .*file` is not"):
        train.run(make_config(f"export.base_dir={tmp_path / 'file' / 'models'}", "export.enabled=true"))


@pytest.mark.parametrize("override", ["name=..", "name=a/b", "export.base_dir="])
def test_unsafe_export_paths_are_refused(make_config, override):
    with pytest.raises(ConfigError, match="Argument `(name|export.base_dir)`"):
        make_config(override)


def test_predict_input_errors_name_the_flag(trained_run, tmp_path):
    from tfft import predict

    _, result = trained_run
    with pytest.raises(ConfigError, match=r"`--batch_size` must be at least 1. Received: batch_size=0"):
        predict.predict_file(result.export_path, "x.csv", "y.csv", batch_size=0)
    with pytest.raises(DataError, match=r"`missing.csv` does not exist \(read from .*\)\. Check the path in `--input`"):
        predict.predict_file(result.export_path, "missing.csv", tmp_path / "y.csv")
    (tmp_path / "in.csv").write_text("sentence\nhello\n")
    with pytest.raises(DataError, match="has no column `text`.*Pass the right one with --text_column"):
        predict.predict_file(result.export_path, tmp_path / "in.csv", tmp_path / "y.csv")


def test_predict_replaces_no_file_it_was_not_asked_to(trained_run, tmp_path):
    """`tfft predict --output=notes.csv` wrote over the user's notes.csv, and `--output` equal to `--input` over the input."""
    from tfft import predict

    _, result = trained_run
    (tmp_path / "in.csv").write_text("text\nthe plot was superb\n")
    (tmp_path / "notes.csv").write_text("mine")
    with pytest.raises(ConfigError, match=r"`--output` names an existing file: `.*notes.csv`. Pass --overwrite"):
        predict.predict_file(result.export_path, tmp_path / "in.csv", tmp_path / "notes.csv", progress=False)
    assert (tmp_path / "notes.csv").read_text() == "mine"
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match=r"`--output` is the input file .*in.csv`: the predictions would replace"):
            predict.predict_file(result.export_path, tmp_path / "in.csv", tmp_path / "in.csv", progress=False,
                                 overwrite=overwrite)
    assert (tmp_path / "in.csv").read_text() == "text\nthe plot was superb\n"
    with pytest.raises(ConfigError, match=r"`--output` is a folder"):
        predict.predict_file(result.export_path, tmp_path / "in.csv", tmp_path, progress=False, overwrite=True)

    frame = predict.predict_file(result.export_path, tmp_path / "in.csv", tmp_path / "notes.csv", progress=False,
                                 overwrite=True)  # asked to: replaced, whole
    assert (tmp_path / "notes.csv").read_text() == frame.to_csv(index=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "notes.csv"]  # no temporary file left


def test_predict_says_which_rows_the_model_did_not_read_whole(trained_run, tmp_path, caplog):
    """A classifier's `tfft predict` cut long texts to the sequence length without a word."""
    from tfft import predict

    _, result = trained_run
    long_text = "the plot was superb " * 40
    (tmp_path / "in.csv").write_text(f"text\nthe plot was superb\n{long_text}\n")
    with caplog.at_level("WARNING", logger="tfft.predict"):
        frame = predict.predict_file(result.export_path, tmp_path / "in.csv", tmp_path / "out.csv", progress=False)
    pieces = len(np.asarray(result.packer.tokenizer(long_text)))
    assert frame["truncated_tokens"].tolist() == [0, pieces + 2 - result.packer.sequence_length]
    assert "1 of 2 rows have truncated_tokens > 0" in caplog.text


def test_predict_batches_the_shortest_rows_together_and_writes_each_rows_predictions_in_its_row(
        trained_run, tmp_path, monkeypatch):
    from tfft import predict

    _, result = trained_run
    texts = ["the plot was superb " * 40, "dull", "the plot was superb and the cast was lovely"]
    write_csv(tmp_path / "in.csv", [(text,) for text in texts], header=("text",))
    batches, served, serving_function = [], [], predict.serving_function

    def recording(*args):  # the serving function, with the batches it is given recorded
        served.append(serving_function(*args))
        return lambda inputs: batches.append(inputs["text"]) or served[0](inputs)

    monkeypatch.setattr(predict, "serving_function", recording)
    frame = predict.predict_file(result.export_path, tmp_path / "in.csv", tmp_path / "out.csv", batch_size=2,
                                 progress=False)
    assert batches == [[texts[1], texts[2]], [texts[0]]]  # shortest first
    assert frame["text"].tolist() == texts
    assert (frame["truncated_tokens"] > 0).tolist() == [True, False, False]
    alone = [served[0]({"text": [text]})["probabilities"][0] for text in texts]  # each row's text on its own
    np.testing.assert_allclose(frame[["probability_neg", "probability_pos"]].to_numpy(), alone, atol=1e-5)


def test_predict_keeps_a_row_for_every_line_of_a_one_column_file(trained_run, tmp_path, caplog):
    """A blank line of a one-column file (an empty text) was skipped: the output silently had fewer rows."""
    from tfft import predict

    _, result = trained_run
    (tmp_path / "in.csv").write_text("text\nthe plot was superb\n\ndull and slow\n\n")  # the last blank: no row
    with caplog.at_level("WARNING", logger="tfft.predict"):
        frame = predict.predict_file(result.export_path, tmp_path / "in.csv", tmp_path / "out.csv", progress=False)
    assert frame["text"].tolist() == ["the plot was superb", "", "dull and slow"]
    assert len(pd.read_csv(tmp_path / "out.csv", keep_default_na=False)) == 3
    assert "1 row(s) with every cell empty, blank lines included (rows 2, counting from 1)" in caplog.text


def test_predict_refuses_an_input_that_has_its_output_columns(trained_run, tmp_path):
    """Predictions fed back in as input: their columns would have been replaced in the output without a word."""
    from tfft import predict

    _, result = trained_run
    (tmp_path / "in.csv").write_text("text\nthe plot was superb\n")
    predict.predict_file(result.export_path, tmp_path / "in.csv", tmp_path / "first.csv", progress=False)
    with pytest.raises(DataError, match=r"`.*first.csv` already has the columns `tfft predict` writes: predicted_label, "
                                        r"predicted_label_id, probability_neg, probability_pos, truncated_tokens"):
        predict.predict_file(result.export_path, tmp_path / "first.csv", tmp_path / "second.csv", progress=False)
    assert not (tmp_path / "second.csv").exists()


@pytest.mark.slow
def test_sigterm_stops_with_one_line_that_says_how_to_resume(make_config, tmp_path):
    config = make_config("train.epochs=50")
    config.save(tmp_path / "c.yaml")
    err = open(tmp_path / "stderr.txt", "w")  # a file, not a pipe nobody reads while it trains
    child = subprocess.Popen(
        [sys.executable, "-c", "from tfft.cli import run_main; run_main()", "train", f"--config={tmp_path / 'c.yaml'}"],
        stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    for line in child.stdout:  # training has started
        if line.startswith("Epoch 2/"):
            break
    child.send_signal(signal.SIGTERM)
    child.communicate(timeout=120)
    err.close()
    stderr = (tmp_path / "stderr.txt").read_text()
    assert child.returncode == 130
    assert "Traceback" not in stderr
    assert "tfft: stopped. Run the same command again to resume from the last backup: tfft train" in stderr
    assert (pathlib.Path(config.output_dir) / run_dir.BACKUP_DIR).is_dir()  # what the rerun resumes from


def _user_project(folder: pathlib.Path) -> dict[str, str]:
    """A user's folder as the new-user trial had it: a config.yaml of their own, notes, a source tree."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"config.yaml": "lr: 0.1\n", "notes.txt": "keep\n", "src/model.py": "print('mine')\n"}
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return files


@pytest.mark.slow
@pytest.mark.parametrize("overwrite", [False, True])
def test_the_cli_never_deletes_a_folder_tfft_did_not_write(make_config, tmp_path, overwrite):
    """Issue 26: `--set output_dir=p` on a user's folder deleted notes.txt and src/; with overwrite, any folder."""
    project = tmp_path / "p"
    files = _user_project(project)
    make_config().save(tmp_path / "tiny.yaml")
    result = run_tfft("train", f"--config={tmp_path / 'tiny.yaml'}", f"--set=output_dir={project}",
                      f"--set=train.overwrite_output_dir={overwrite}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"output_dir `{project}` is not empty and is not a tfft run" in result.stderr
    assert "it holds config.yaml, notes.txt, src/" in result.stderr and "Traceback" not in result.stderr
    assert {str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()} == set(files)
    assert all((project / name).read_text() == text for name, text in files.items())


@pytest.mark.slow
def test_output_dir_dot_in_a_project_folder_is_refused(make_config, tmp_path):
    project = tmp_path / "project"
    files = _user_project(project)
    make_config().save(tmp_path / "tiny.yaml")
    result = run_tfft("train", f"--config={tmp_path / 'tiny.yaml'}", "--set=output_dir=.",
                      "--set=train.overwrite_output_dir=true", cwd=project)
    assert result.returncode == 2 and "is not empty and is not a tfft run" in result.stderr, result.stderr[-2000:]
    assert all((project / name).read_text() == text for name, text in files.items())
    assert not (project / run_dir.LOCK_FILE).exists()  # refused before taking the lock


def test_starting_over_removes_only_what_tfft_wrote(make_config):
    config = make_config()
    out = pathlib.Path(config.output_dir)
    run_dir.prepare_output_dir(config, out)  # then killed in its first epoch
    (out / "logs").mkdir()
    (out / "my_notes.txt").write_text("mine")
    assert run_dir.prepare_output_dir(make_config("train.learning_rate=1e-4"), out) is False
    assert not (out / "logs").exists() and (out / "my_notes.txt").read_text() == "mine"
    assert (out / run_dir.RUN_MARKER).is_file() and "learning_rate: 0.0001" in (out / "config.yaml").read_text()


def test_overwriting_a_finished_run_keeps_the_users_files(make_config):
    config = make_config()
    out = pathlib.Path(config.output_dir)
    run_dir.prepare_output_dir(config, out)
    for name in (run_dir.WEIGHTS_FILE, run_dir.COMPLETE_FILE, "metrics_test.json", "logs/events"):  # a finished run
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("tfft's")
    (out / "analysis.ipynb").write_text("{}")
    with pytest.raises(OutputDirError, match="holds a finished run"):
        run_dir.prepare_output_dir(config, out)
    assert run_dir.prepare_output_dir(make_config("train.overwrite_output_dir=true"), out) is False
    assert (out / "analysis.ipynb").read_text() == "{}"
    assert sorted(p.name for p in out.iterdir()) == sorted([run_dir.RUN_MARKER, "config.yaml", "analysis.ipynb"])


def test_own_entries_name_the_files_the_other_modules_write():
    """`run_dir.OWN_ENTRIES` spells names that modules importing run_dir own; a rename there must reach it."""
    from tfft import adapt, evaluate, streaming
    from tfft.backbones import recipes
    from tfft.data import LabelVocabulary
    from tfft.tasks import extractive_qa

    for name in (LabelVocabulary.FILENAME, recipes.VOCABULARY_FILE, extractive_qa.STATE_FILE, streaming.SCAN_FILE,
                 adapt.ADAPT_FILE, run_dir.BACKBONE_DIR, evaluate.METRICS_FILE):
        assert run_dir.is_own_entry(name), name
    assert run_dir.is_own_entry("metrics_test.json") and not run_dir.is_own_entry("notes.txt")
