"""Streaming sharded training data (`tfft.streaming`): the pre-pass, the stream, and training on it."""

import json
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import (
    KILLED_MID_EPOCH,
    TASK_DATA,
    regression_rows,
    run_python,
    run_tfft,
    sentiment_rows,
    write_csv,
)
from tfft import streaming, tasks, train
from tfft.config import ConfigError, load_config
from tfft.data import DataError

ROWS = sentiment_rows(960, seed=0)


def _shards(folder: pathlib.Path, rows, n: int = 8, kind: str = "csv", header=("text", "label")) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        part = rows[i::n]
        path = folder / f"train-{i:02d}.{kind}"
        if kind == "csv":
            write_csv(path, part, header=header)
        elif kind == "parquet":
            import pandas as pd

            pd.DataFrame(part, columns=list(header)).to_parquet(path)
        elif kind == "jsonl":
            path.write_text("".join(json.dumps(dict(zip(header, r, strict=True))) + "\n" for r in part))
        else:
            with tf.io.TFRecordWriter(str(path)) as writer:
                for text, label in part:
                    feature = {"text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode()])),
                               "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label == "pos")]))}
                    writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return str(folder / f"train-*.{kind}")


def _config(*overrides):
    return load_config(None, ["data.train=unused.csv", *overrides])


def _scan(spec, *overrides):
    config = _config(f"data.train={spec}", *overrides)
    task = tasks.create(config)
    return streaming.scan(streaming.expand_files(spec), task, config.data, progress=False)


def test_shards_on_disk_and_on_a_tf_filesystem_scan_as_one_file(tmp_path):
    one = write_csv(tmp_path / "all.csv", ROWS)
    whole = _scan(str(one))
    local = _scan(_shards(tmp_path / "shards", ROWS))
    # `ram://` is TensorFlow's in-memory filesystem, standing in for gs://.
    for path in sorted((tmp_path / "shards").iterdir()):
        tf.io.gfile.copy(str(path), f"ram://bucket/{path.name}", overwrite=True)
    remote = _scan("ram://bucket/train-*.csv")
    assert whole.rows == local.rows == remote.rows == 960
    assert whole.labels == local.labels == remote.labels == ["neg", "pos"]
    assert len(remote.files) == 8 and sum(remote.files.values()) == 960


def test_a_missing_shard_is_named_with_the_folder_a_relative_path_was_read_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.csv").write_text("text,label\nx,1\n")
    with pytest.raises(DataError, match=r"`b.csv` does not exist \(read from the current folder, `.*`\)\. Check the "
                       r"path in `data.train`"):
        streaming.expand_files("a.csv,b.csv")


def test_a_bad_row_in_shard_7_is_named_with_its_file_and_line(tmp_path):
    spec = _shards(tmp_path, ROWS)
    shard = tmp_path / "train-07.csv"
    lines = shard.read_text().splitlines()
    lines[41] = ",pos"  # line 42: an empty text
    shard.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"train-07\.csv`: the text column `text` is empty in line\(s\) 42\b"):
        _scan(spec)


def test_on_bad_row_skip_counts_the_skipped_rows(tmp_path):
    spec = _shards(tmp_path, ROWS)
    shard = tmp_path / "train-03.csv"
    lines = shard.read_text().splitlines()
    lines[5], lines[9] = ",pos", "the meal was fine,"  # empty text, empty label
    shard.write_text("\n".join(lines) + "\n")
    scanned = _scan(spec, "data.on_bad_row=skip")
    assert (scanned.rows, scanned.skipped) == (958, 2)
    assert "train-03.csv, line 6" in scanned.skipped_examples[0]


def _stream_rows(spec, *overrides, files=None):
    config = _config(f"data.train={spec}", *overrides)
    task = tasks.create(config)
    files = files or streaming.expand_files(spec)
    scanned = streaming.scan(files, task, config.data, progress=False)
    task.fit_vocabulary(streaming.data_lib.Examples(spec, [], labels=scanned.labels))
    rows = streaming._rows(files, files, config.data, task.stream_targets())
    return sorted((inputs["text"].decode(), int(label)) for inputs, label in rows.as_numpy_iterator())


@pytest.mark.parametrize("kind", ["jsonl", "tfrecord", "parquet"])
def test_jsonl_parquet_and_tfrecord_shards_stream_the_same_rows_as_csv(tmp_path, kind):
    integer = [(text, "1" if label == "pos" else "0") for text, label in ROWS]
    expected = _stream_rows(_shards(tmp_path / "csv", integer))
    assert _stream_rows(_shards(tmp_path / kind, ROWS if kind == "tfrecord" else integer, kind=kind)) == expected
    assert len(expected) == 960


def _worker_rows(spec, workers=2):
    """Each worker's rows, as MultiWorkerMirroredStrategy shards the stream (its own `_AutoShardDataset`)."""
    from tensorflow.python.data.experimental.ops.distribute import _AutoShardDataset

    config = _config(f"data.train={spec}")
    task = tasks.create(config)
    task.fit_vocabulary(streaming.data_lib.Examples(spec, [], labels=["neg", "pos"]))
    files = streaming.expand_files(spec)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = streaming.shard_policy(files, config.data, workers)
    rows = streaming._rows(files, files, config.data, task.stream_targets()).with_options(options)
    return [sorted(i["text"].decode() for i, _ in _AutoShardDataset(rows, workers, w).as_numpy_iterator())
            for w in range(workers)]


def test_with_fewer_files_than_workers_the_stream_is_split_by_row(tmp_path):
    seen = _worker_rows(str(write_csv(tmp_path / "one.csv", ROWS)))
    assert len(seen[0]) == len(seen[1]) == 480
    assert sorted(seen[0] + seen[1]) == sorted(text for text, _ in ROWS)


def test_two_workers_see_disjoint_files_and_every_row_once(tmp_path):
    spec = _shards(tmp_path, ROWS)
    seen = _worker_rows(spec)
    # By file: worker w reads shards w, w + 2, ... (here the rows i with i % 8 in those shards).
    for worker in range(2):
        expected = sorted(text for i, (text, _) in enumerate(ROWS) if (i % 8) % 2 == worker)
        assert seen[worker] == expected


def test_tasks_that_cannot_stream_fail_before_training(tmp_path, make_config, data_dir, no_fit):
    config = make_config(*TASK_DATA["token_classification"](data_dir), "data.streaming=true")
    with pytest.raises(ConfigError, match="token_classification` cannot stream"):
        train.run(config)
    config = make_config(f"data.train={_shards(tmp_path / 's', ROWS)}", "train.class_weight=balanced")
    with pytest.raises(ConfigError, match="train.class_weight` applies to data read into memory"):
        train.run(config)


@pytest.mark.slow
def test_training_on_shards_matches_the_in_memory_epochs_and_learns(tmp_path, make_config):
    spec = _shards(tmp_path / "shards", ROWS)
    steps = {}

    class Steps(keras.callbacks.Callback):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def on_epoch_end(self, epoch, logs=None):
            steps.setdefault(self.name, []).append(int(self.model.optimizer.iterations.numpy()))
            steps.setdefault(self.name + "_lr", []).append(float(self.model.optimizer.learning_rate.numpy()))

    # lr 5e-3 and 4 epochs: the streamed run learned this set on each of seeds 0-5. At the fixture's 1e-2 and 2
    # epochs seeds 1 and 3 stalled at one class (0.54) and seed 0, the test's, passed or not by its dropout draws.
    recipe = ("train.epochs=4", "train.learning_rate=5e-3")
    streamed = train.run(make_config(f"data.train={spec}", *recipe, f"output_dir={tmp_path / 's'}"),
                         callbacks=[Steps("stream")])
    train.run(make_config(*recipe, f"output_dir={tmp_path / 'm'}"), callbacks=[Steps("memory")])
    assert steps["stream"] == steps["memory"] == [60, 120, 180, 240]  # same epoch length
    np.testing.assert_allclose(steps["stream_lr"], steps["memory_lr"])  # same schedule
    assert streamed.metrics["accuracy"] >= 0.9
    assert streamed.metrics["training_data"] == {"files": 8, "rows": 960, "skipped_rows": 0}
    assert (pathlib.Path(tmp_path / "s") / streaming.SCAN_FILE).is_file()


@pytest.mark.slow
def test_streamed_regression_trains(tmp_path, make_config):
    spec = _shards(tmp_path, regression_rows(960, seed=0), n=4, header=("text", "text_pair", "label"))
    config = make_config("task.type=regression", "data.text_pair_column=text_pair", f"data.train={spec}",
                         f"data.validation={tmp_path / 'train-00.csv'}", "train.epochs=8", "train.learning_rate=3e-3")
    result = train.run(config)  # as tests/test_regression.py trains it in memory
    assert result.metrics["pearson"] >= 0.8  # in memory: >= 0.9 on its own data order


@pytest.mark.slow
def test_a_streamed_run_resumes_after_a_kill_with_the_same_weights(tmp_path, make_config):
    spec = _shards(tmp_path / "shards", ROWS)
    overrides = (f"data.train={spec}", "train.epochs=2", "model.dropout=0.1", "train.backup_every_steps=5")
    make_config(*overrides).save(tmp_path / "config.yaml")
    child = run_python(KILLED_MID_EPOCH, str(tmp_path / "config.yaml"), "77")  # kill -9 after step 77
    assert child.returncode == -9, child.stderr[-2000:]
    assert (pathlib.Path(make_config().output_dir) / streaming.SCAN_FILE).is_file()
    resumed = train.run(make_config(*overrides))  # reads the cached pre-pass, resumes at step 75
    straight = train.run(make_config(*overrides, f"output_dir={tmp_path / 'straight'}"))
    for a, b in zip(straight.model.weights, resumed.model.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=a.path)


@pytest.mark.parametrize("shard_format", ["tfrecord", "jsonl"])
def test_shard_command_splits_a_file_into_shards_that_stream(tmp_path, shard_format):
    from absl.testing import flagsaver

    from tfft import cli

    big = write_csv(tmp_path / "big.csv", ROWS)
    with flagsaver.flagsaver(input=str(big), output=str(tmp_path / "out" / "train"), num_shards=4,
                             shard_format=shard_format):
        assert cli.main(["tfft", "shard"]) == 0
    shards = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in shards] == [f"train-{i:05d}-of-00004.{shard_format}" for i in range(4)]
    scanned = _scan(f"{tmp_path}/out/train-*.{shard_format}")
    assert (scanned.rows, scanned.labels) == (960, ["neg", "pos"])
    assert list(scanned.files.values()) == [240] * 4


def test_the_pre_pass_reads_as_it_goes_and_names_lines(tmp_path):
    # Chunks of 100 rows: errors still name the file's own line.
    shard = write_csv(tmp_path / "train-0.csv", ROWS[:300])
    lines = shard.read_text().splitlines()
    lines[250] = '"the cast was fine\nand more",pos'  # line 251: a quoted cell over two lines
    shard.write_text("\n".join(lines) + "\n")
    config = _config(f"data.train={shard}")
    with pytest.raises(DataError, match=r"train-0\.csv`: the 100 lines from line 202 hold 99 rows: a quoted cell"):
        for _ in streaming.read_chunks(str(shard), config.data, chunk_rows=100):
            pass
    lines[250] = "the cast was fine,pos,extra"
    shard.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"line 251 has 3 fields where the header has 2"):
        for _ in streaming.read_chunks(str(shard), config.data, chunk_rows=100):
            pass
    shard.write_bytes("\n".join(lines[:250]).encode() + b"\nthe caf\xe9 was fine,pos\n")
    with pytest.raises(DataError, match=r"not valid UTF-8: line 251, column 8"):
        for _ in streaming.read_chunks(str(shard), config.data, chunk_rows=100):
            pass


def _streamed_and_in_memory_targets(spec, *overrides):
    """`(text, targets)` of every row, streamed and read into memory by the same task, sorted."""
    config = _config(f"data.train={spec}", "task.type=multi_label", *overrides)
    task = tasks.create(config)
    streaming.check_streamable(task, config)
    files = streaming.expand_files(spec)
    scanned = streaming.scan(files, task, config.data, progress=False)
    task.fit_vocabulary(streaming.data_lib.Examples(spec, [], labels=scanned.labels))
    streamed = sorted((i["text"].decode(), tuple(t)) for i, t in
                      streaming._rows(files, files, config.data, task.stream_targets()).as_numpy_iterator())
    examples = streaming.read_all(task, spec, "train")
    return streamed, sorted(zip(examples.texts, map(tuple, task.encode(examples)), strict=True)), task


def test_multi_label_shards_stream_the_in_memory_targets(tmp_path, data_dir):
    from conftest import multi_label_rows

    rows = multi_label_rows(400, seed=0)
    rows[7] = (rows[7][0], '["neg", "pos"]')  # a JSON list cell
    streamed, expected, _ = _streamed_and_in_memory_targets(_shards(tmp_path / "shards", rows, n=4))
    assert streamed == expected and len(streamed) == 400


def test_multi_label_indicator_columns_stream_the_in_memory_targets(tmp_path):
    from conftest import multi_label_rows

    cells = [("1", "0"), ("0", "1"), ("true", ""), ("1.0", "1"), ("0", "false"), (" 1 ", "0.0")]
    rows = [(text, *cells[i % len(cells)]) for i, (text, _) in enumerate(multi_label_rows(300, seed=1))]
    spec = _shards(tmp_path / "shards", rows, n=3, header=("text", "pos", "neg"))
    streamed, expected, task = _streamed_and_in_memory_targets(spec, "task.label_columns=pos,neg")
    assert streamed == expected and len(streamed) == 300 and task.names == ["pos", "neg"]
    assert {t for _, t in streamed} == {(1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.0, 0.0)}
    # A cell that is neither 0 nor 1 fails in the pre-pass, naming its shard and line.
    bad = tmp_path / "bad" / "train-00.csv"
    write_csv(bad, [*rows[:5], (rows[5][0], "yes", "0")], header=("text", "pos", "neg"))
    with pytest.raises(DataError, match=r"train-00\.csv.*`pos` that are not 0 or 1") as err:
        _scan(str(bad), "task.type=multi_label", "task.label_columns=pos,neg")
    assert "line 7" in str(err.value)


def test_json_list_label_cells_with_commas_and_quotes_stream_as_in_memory(tmp_path):
    from conftest import multi_label_rows

    labels = ['["pos, mostly", "neg"]', '["say \\"hi\\""]', '[ "neg" ]', "[]", '["back\\\\slash","neg"]']
    rows = [(text, labels[i % len(labels)]) for i, (text, _) in enumerate(multi_label_rows(100, seed=2))]
    spec = _shards(tmp_path / "shards", rows, n=2)
    streamed, expected, task = _streamed_and_in_memory_targets(spec)
    assert streamed == expected and len(streamed) == 100
    assert sorted(task.names) == ['back\\slash', "neg", "pos, mostly", 'say "hi"']
    # Other JSON escapes (`json.dumps`' default \\u00e9) fail in the pre-pass, naming the line.
    bad = write_csv(tmp_path / "bad" / "train-0.csv", [*rows[:3], (rows[3][0], '["caf\\u00e9"]')])
    with pytest.raises(DataError, match=r"JSON label cells with escapes .*line 5.*ensure_ascii=False"):
        _scan(str(bad), "task.type=multi_label")


@pytest.mark.slow
def test_streamed_multi_label_trains(tmp_path, make_config, data_dir):
    from conftest import multi_label_rows

    spec = _shards(tmp_path, multi_label_rows(960, seed=0), n=4)
    config = make_config(*TASK_DATA["multi_label"](data_dir), f"data.train={spec}", "train.epochs=8",
                         "train.learning_rate=3e-3")  # as tests/test_multi_label.py trains it in memory
    result = train.run(config)
    assert result.metrics["macro_f1"] >= 0.8 and result.metrics["training_data"]["files"] == 4


def test_float_tfrecord_labels_read_the_same_in_the_pre_pass_and_the_stream(tmp_path):
    path = tmp_path / "train-0.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i, (text, _) in enumerate(ROWS[:100]):
            feature = {"text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode()])),
                       "label": tf.train.Feature(float_list=tf.train.FloatList(value=[(0.1, 1.0)[i % 2]]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    config = _config(f"data.train={path}", "data.streaming=true")
    task = tasks.create(config)
    scanned = streaming.scan([str(path)], task, config.data, progress=False)
    task.fit_vocabulary(streaming.data_lib.Examples(str(path), [], labels=scanned.labels))
    rows = list(streaming._rows([str(path)], [str(path)], config.data, task.stream_targets()).as_numpy_iterator())
    assert len(rows) == scanned.rows == 100  # no row lost to a label the stream spells differently
    assert sorted({int(label) for _, label in rows}) == [0, 1]


def test_shard_command_reads_cells_over_several_lines_which_then_stream(tmp_path):
    from tfft import shard

    rows = [(f"{text}\nsecond line, with a comma" if i % 7 == 0 else text, label)
            for i, (text, label) in enumerate(ROWS[:200])]
    big = write_csv(tmp_path / "big.csv", rows)
    config = _config(f"data.train={big}")
    with pytest.raises(DataError, match=r"a quoted cell spans lines.*tfft shard --input="):
        streaming.scan([str(big)], tasks.create(config), config.data, progress=False)
    shard.shard_file(str(big), str(tmp_path / "out" / "train"), num_shards=3, progress=False)
    spec = f"{tmp_path}/out/train-*.tfrecord"
    config = _config(f"data.train={spec}")
    task = tasks.create(config)
    files = streaming.expand_files(spec)
    scanned = streaming.scan(files, task, config.data, progress=False)
    task.fit_vocabulary(streaming.data_lib.Examples(spec, [], labels=scanned.labels))
    streamed = sorted(i["text"].decode() for i, _ in
                      streaming._rows(files, files, config.data, task.stream_targets()).as_numpy_iterator())
    assert streamed == sorted(text for text, _ in rows) and scanned.rows == 200


@pytest.mark.slow
@pytest.mark.parametrize("header", [("label", "text"), ("text_pair", "text", "label")])
def test_the_cli_refuses_a_shard_whose_columns_are_in_another_order(tmp_path, make_config, header):
    """Issue 26: shards were read by the first file's column positions; texts became labels, pairs were swapped."""
    columns = ("text", "text_pair", "label") if "text_pair" in header else ("text", "label")
    rows = [(text, "the cast", label) if len(columns) == 3 else (text, label) for text, label in ROWS[:200]]
    spec = _shards(tmp_path / "shards", rows, n=3, header=columns)
    reordered = [tuple(dict(zip(columns, row, strict=True))[c] for c in header) for row in rows[:50]]
    write_csv(tmp_path / "shards" / "train-03.csv", reordered, header=header)
    pair = ["data.text_pair_column=text_pair"] if "text_pair" in header else []
    make_config(f"data.train={spec}", "data.validation=", "train.epochs=1", *pair).save(tmp_path / "c.yaml")
    result = run_tfft("train", f"--config={tmp_path / 'c.yaml'}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"Data file `{tmp_path / 'shards' / 'train-03.csv'}` has the header '{','.join(header)}'" in result.stderr
    assert "same header, in the same order" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "config.yaml").exists()  # refused before the run's first write


@pytest.mark.slow
def test_the_cli_trains_on_shards_when_some_are_empty(tmp_path, make_config):
    """Issue 26: `tfft shard --num_shards=500` on 200 rows wrote 300 empty files, and training on them hung."""
    big = write_csv(tmp_path / "big.csv", ROWS[:200])
    result = run_tfft("shard", f"--input={big}", f"--output={tmp_path / 'out' / 'train'}", "--num_shards=500",
                   cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "The input has 200 rows: wrote 200 shards, not 500" in result.stderr
    assert "\x1b[" not in result.stdout + result.stderr  # no progress bar redrawn into a log (output is a pipe)
    assert len(list((tmp_path / "out").iterdir())) == 200
    for i in range(2):  # empty shards, as other tools (or older tfft) write them
        tf.io.TFRecordWriter(str(tmp_path / "out" / f"train-empty-{i}.tfrecord")).close()
    make_config(f"data.train={tmp_path / 'out'}/train-*.tfrecord", "data.validation=", "train.epochs=1",
                "train.batch_size=50").save(tmp_path / "c.yaml")
    result = run_tfft("train", f"--config={tmp_path / 'c.yaml'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Skipped 2 training file(s) that hold no rows" in result.stderr
    assert "\x1b[" not in result.stdout  # the pre-pass's bar is for terminals only
    assert "4 steps/epoch" in result.stderr  # 200 rows in batches of 50: every row of the 200 shards streamed


def test_shard_refuses_an_existing_set_and_leaves_nothing_behind_on_errors(tmp_path):
    from tfft import shard

    big = write_csv(tmp_path / "big.csv", ROWS[:30])
    first = shard.shard_file(str(big), str(tmp_path / "out" / "train"), num_shards=4, progress=False)
    with pytest.raises(ConfigError, match=r"`--output` names shards that exist already: .*train-00000-of-00004"):
        shard.shard_file(str(big), str(tmp_path / "out" / "train"), num_shards=2, progress=False)
    assert sorted(str(p) for p in (tmp_path / "out").iterdir()) == first  # the first set, untouched
    names = shard.shard_file(str(big), str(tmp_path / "j" / "train"), num_shards=50, format="jsonl", progress=False)
    assert len(names) == 30 and sorted(p.name for p in (tmp_path / "j").iterdir()) == sorted(
        pathlib.Path(n).name for n in names)  # no .tmp left, no empty shard
    (tmp_path / "bad.csv").write_text("text,label\n\"unclosed,pos\nfine,neg\n")
    with pytest.raises(DataError):
        shard.shard_file(str(tmp_path / "bad.csv"), str(tmp_path / "b" / "train"), num_shards=2, progress=False)
    assert not (tmp_path / "b").exists() or list((tmp_path / "b").iterdir()) == []


def test_on_bad_row_skip_skips_lines_that_are_no_row_and_the_stream_drops_them_too(tmp_path):
    """Issue 26: a line with too many fields or an unclosed quote failed the run under `on_bad_row: skip`."""
    shard = write_csv(tmp_path / "train-0.csv", ROWS[:40])
    lines = shard.read_text().splitlines()
    lines[10] = "the cast was fine,pos,extra"  # file line 11
    lines[20] = '"the cast was fine,pos'  # file line 21: a quote nothing closes
    shard.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"train-0.csv`: line 11 has 3 fields where the header has 2"):
        _scan(str(shard))
    lines[10] = ROWS[9][0] + "," + ROWS[9][1]
    shard.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"train-0.csv`: line 21 has an unclosed quote"):  # not "has 1 fields"
        _scan(str(shard))
    lines[10] = "the cast was fine,pos,extra"
    shard.write_text("\n".join(lines) + "\n")
    config = _config(f"data.train={shard}", "data.on_bad_row=skip")
    task = tasks.create(config)
    scanned = streaming.scan([str(shard)], task, config.data, progress=False)
    assert (scanned.rows, scanned.skipped) == (38, 2)  # 40 rows, 2 of them replaced by bad lines
    assert [e.split(": it ")[0] for e in scanned.skipped_examples] == [f"{shard}, line 11", f"{shard}, line 21"]
    task.fit_vocabulary(streaming.data_lib.Examples(str(shard), [], labels=scanned.labels))
    streamed = list(streaming._rows([str(shard)], [str(shard)], config.data, task.stream_targets()))
    assert len(streamed) == scanned.rows  # the stream drops the same lines: epochs hold what the pre-pass counted
