import json
import re

import numpy as np
import pytest
import tensorflow as tf

from conftest import sentiment_rows, write_csv
from tfft import data
from tfft.config import DataConfig


@pytest.fixture(scope="module")
def packer(tiny_preset):
    from tfft.backbones import resolve
    from tfft.config import ModelConfig

    source = resolve(ModelConfig(backbone=str(tiny_preset), sequence_length=16))
    source.prepare(None, None)
    return source.packer()


@pytest.fixture(scope="module")
def long_packer(tiny_preset):
    """Sequence length 64: three bucket lengths, 16, 32 and 64."""
    from tfft.backbones import resolve
    from tfft.config import ModelConfig

    source = resolve(ModelConfig(backbone=str(tiny_preset), sequence_length=64))
    source.prepare(None, None)
    return source.packer()


def test_reads_csv_tsv_jsonl(tmp_path):
    write_csv(tmp_path / "a.csv", [("hello, world", "pos"), ('say "hi"', "neg")])
    (tmp_path / "a.tsv").write_text('text\tlabel\nhello, "world\tpos\nbye\tneg\n', encoding="utf-8")
    (tmp_path / "a.jsonl").write_text(
        json.dumps({"text": "héllo", "label": 1}) + "\n" + json.dumps({"text": "bye", "label": 0}) + "\n"
    )
    assert data.read_split(str(tmp_path / "a.csv"), DataConfig()).texts == ["hello, world", 'say "hi"']
    tsv = data.read_split(str(tmp_path / "a.tsv"), DataConfig())
    assert tsv.texts == ['hello, "world', "bye"]  # stray quotes kept, as GLUE needs
    jsonl = data.read_split(str(tmp_path / "a.jsonl"), DataConfig())
    assert jsonl.texts == ["héllo", "bye"] and jsonl.labels == ["1", "0"]


def test_sentence_pairs_and_headerless_files(tmp_path):
    (tmp_path / "cola.tsv").write_text("src\t1\t\tgood sentence .\nsrc\t0\t*\tbad sentence .\n")
    cola = data.read_split(str(tmp_path / "cola.tsv"), DataConfig(has_header=False, text_column="3", label_column="1"))
    assert cola.texts == ["good sentence .", "bad sentence ."] and cola.labels == ["1", "0"]
    write_csv(tmp_path / "p.csv", [("a", "b", "1"), ("c", "d", "0")], header=("s1", "s2", "y"))
    pairs = data.read_split(str(tmp_path / "p.csv"), DataConfig(text_column="s1", text_pair_column="s2", label_column="y"))
    assert pairs.pairs == ["b", "d"]


def test_missing_file():
    with pytest.raises(data.DataError, match="Data file `nope.csv` does not exist"):
        data.read_split("nope.csv", DataConfig())


def test_a_missing_relative_path_names_the_folder_it_was_read_from(tmp_path, monkeypatch):
    # A config run from another folder than the one its relative paths assume: the message says where tfft looked.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(data.DataError, match=f"does not exist \\(read from the current folder, `{re.escape(str(tmp_path))}`\\)"):
        data.read_split("configs/data/demo/train.csv", DataConfig())
    with pytest.raises(data.DataError, match=r"`/nope/train.csv` does not exist. Check the path"):
        data.read_split("/nope/train.csv", DataConfig())


def test_missing_column_names_the_columns(tmp_path):
    write_csv(tmp_path / "a.csv", [("x", "1")], header=("sentence", "label"))
    with pytest.raises(data.DataError, match=r"has no column `text`. Its columns are: sentence, label. Set `data.text_column`"):
        data.read_split(str(tmp_path / "a.csv"), DataConfig())


@pytest.mark.parametrize("content, message", [("", "is empty: it has no rows"), ("text,label\n", "has a header but no rows")])
def test_empty_files(tmp_path, content, message):
    (tmp_path / "a.csv").write_text(content)
    with pytest.raises(data.DataError, match=message):
        data.read_split(str(tmp_path / "a.csv"), DataConfig())


def test_empty_text_rows_are_named(tmp_path):
    write_csv(tmp_path / "a.csv", [("fine", "1"), ("  ", "0"), ("ok", "1"), ("", "0")])
    with pytest.raises(data.DataError, match=r"text column `text` is empty in row\(s\) 2, 4"):
        data.read_split(str(tmp_path / "a.csv"), DataConfig())


def test_empty_label_is_named(tmp_path):
    write_csv(tmp_path / "a.csv", [("fine", "1"), ("bad", "")])
    with pytest.raises(data.DataError, match=r"label column `label` is empty in row\(s\) 2"):
        data.read_split(str(tmp_path / "a.csv"), DataConfig())


def test_non_utf8_names_the_line(tmp_path):
    (tmp_path / "a.csv").write_bytes("text,label\nfine,1\ncaf\xe9,0\n".encode("latin-1"))
    with pytest.raises(data.DataError, match=r"`.*a.csv` is not valid UTF-8: line 3, column 4"):
        data.read_split(str(tmp_path / "a.csv"), DataConfig())


def test_blank_lines_skipped_are_counted_and_a_quoted_blank_line_stays_in_its_cell(tmp_path, caplog):
    path = tmp_path / "train.csv"
    path.write_text('text,label\nfine,pos\n\nbad,neg\n\n\n"two\n\nlines",pos\n\n')  # the last blank ends the file
    with caplog.at_level("WARNING"):
        frame = data.read_table(path)
    assert frame["text"].tolist() == ["fine", "bad", "two\n\nlines"]
    assert f"Data file `{path}`: 3 blank line(s) skipped, as they hold no row; 3 rows read." in caplog.text


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_blank_lines_before_the_header_are_counted_and_the_file_still_reads(tmp_path, caplog, newline):
    # Counting them once parsed the file again from its first line, and pandas then found no header: a file that
    # read fine failed.
    path = tmp_path / "train.csv"
    path.write_bytes(newline.join(["", "", "text,label", "fine,pos", "", "bad,neg", ""]).encode())
    with caplog.at_level("WARNING"):
        frame = data.read_table(path)
    assert frame["text"].tolist() == ["fine", "bad"]
    assert f"Data file `{path}`: 3 blank line(s) skipped, as they hold no row; 2 rows read." in caplog.text


def test_a_file_without_blank_lines_logs_nothing(tmp_path, caplog):
    path = tmp_path / "train.csv"
    path.write_text("text,label\nfine,pos\n\n")
    with caplog.at_level("WARNING"):
        data.read_table(path)
    assert "blank line" not in caplog.text


def test_utf8_bom_is_accepted(tmp_path):
    (tmp_path / "a.csv").write_bytes("\ufefftext,label\nfine,1\n".encode())
    assert data.read_split(str(tmp_path / "a.csv"), DataConfig()).texts == ["fine"]


def test_unsupported_extension(tmp_path):
    (tmp_path / "a.parquet").write_text("x")
    with pytest.raises(data.DataError, match="unsupported extension `.parquet`"):
        data.read_split(str(tmp_path / "a.parquet"), DataConfig())


def test_label_vocabulary_orders_and_rejects_unseen_labels(tmp_path):
    ints = data.LabelVocabulary.from_labels(["10", "2", "1", "2"])
    assert ints.names == ["1", "2", "10"]  # numeric, not string, order
    strings = data.LabelVocabulary.from_labels(["pos", "neg", "neutral"])
    assert strings.names == ["neg", "neutral", "pos"]
    validation = data.Examples("dev.csv", ["a", "b", "c"], labels=["pos", "happy", "neg"])
    with pytest.raises(data.DataError, match=r"`dev.csv` has labels that the training split never had \(row 2: 'happy'\)"):
        strings.encode(validation)
    strings.save(tmp_path)
    assert data.LabelVocabulary.load(tmp_path).names == strings.names
    with pytest.raises(data.DataError, match="at least 2 labels"):
        data.LabelVocabulary.from_labels(["pos", "pos"])


def test_balanced_class_weights():
    labels = data.LabelVocabulary(["a", "b"])
    weights = labels.class_weights(np.array([0, 0, 0, 1]))
    assert weights == pytest.approx({0: 4 / 6, 1: 2.0})


def test_max_train_examples(tmp_path):
    write_csv(tmp_path / "a.csv", sentiment_rows(50))
    assert len(data.read_split(str(tmp_path / "a.csv"), DataConfig(max_train_examples=7))) == 7


def test_batches_are_padded_to_their_longest_sequence(packer):
    texts = ["the movie was great"] * 5 + ["the plot was dull and the cast was fine and the meal was poor"] * 5
    examples = data.Examples("mem", texts, labels=["pos"] * 5 + ["neg"] * 5)
    ds = data.make_dataset(examples, np.array([1] * 5 + [0] * 5), packer, batch_size=5)
    widths = [x["token_ids"].shape[1] for x, _ in ds]
    assert widths == [6, 16]  # [CLS] 4 words [SEP]; the long one is truncated to sequence_length
    for x, _ in ds:
        assert x["padding_mask"].dtype == tf.int32  # bool breaks MirroredStrategy ("AddN ... bool")
        assert tf.reduce_all(tf.reduce_max(tf.reduce_sum(x["padding_mask"], axis=1)) == x["token_ids"].shape[1])


def test_pipelines_run_without_the_autotuning_thread_that_stalls_their_deletion(packer):
    # With tf.data's autotuning on, deleting an iterator waits for its autotuning thread's sleep to end:
    # `model.fit` returned 18 s after its last step in about half of the 30-second runs measured.
    examples = data.Examples("mem", ["the movie was great", "the plot was dull"] * 4, labels=["pos", "neg"] * 4)
    pipelines = {
        "training": data.make_dataset(examples, np.array([1, 0] * 4), packer, batch_size=4, training=True,
                                      repeat=True, epochs=2),
        "validation": data.make_dataset(examples, np.array([1, 0] * 4), packer, batch_size=4),
        "prediction": data.batched_inputs(data.text_inputs(examples), 4),
        "scoring": data.batched_inputs(data.text_inputs(examples), 4, targets=np.array([1, 0] * 4)),  # with its loss
    }
    for name, ds in pipelines.items():
        assert ds.options().autotune.enabled is False, name
        assert ds.options().deterministic is True, name


def test_training_batches_group_similar_lengths_and_keep_labels(packer):
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for _ in range(64):
        n = int(rng.integers(1, 12))
        texts.append(" ".join(["great"] * n))
        labels.append(str(n))
    examples = data.Examples("mem", texts, labels=labels)
    ids = np.array([int(label) for label in labels])
    ds = data.make_dataset(examples, ids, packer, batch_size=8, training=True, seed=3)
    seen = 0
    for x, y in ds:
        lengths = tf.reduce_sum(x["padding_mask"], axis=1).numpy()
        np.testing.assert_array_equal(lengths, y.numpy() + 2)  # label == word count: features and labels stay paired
        assert x["token_ids"].shape[1] == lengths.max()
        seen += len(y)
    assert seen == 64  # one epoch, nothing dropped


def test_group_by_length_false_gives_random_batches(packer):
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 12, size=64)
    examples = data.Examples("mem", [" ".join(["great"] * int(n)) for n in counts], labels=[str(n) for n in counts])

    def spreads(group_by_length):
        ds = data.make_dataset(examples, counts, packer, batch_size=8, training=True, seed=3,
                               group_by_length=group_by_length)
        batches = [y.numpy() for _, y in ds]
        assert sorted(np.concatenate(batches)) == sorted(counts)  # one epoch, every example once
        return [int(b.max() - b.min()) for b in batches]

    # One megabatch holds the whole epoch here: sorted, each batch spans a word or two; random ones span most of 1-11.
    assert max(spreads(True)) <= 2
    assert np.mean(spreads(False)) >= 6


def test_megabatch_sets_how_many_batches_are_sorted_by_length_together(packer):
    rng = np.random.default_rng(1)
    counts = rng.integers(1, 12, size=64)
    examples = data.Examples("mem", [" ".join(["great"] * int(n)) for n in counts], labels=[str(n) for n in counts])

    def batches(**batching):
        ds = data.make_dataset(examples, counts, packer, batch_size=8, training=True, seed=3, **batching)
        return [sorted(y.numpy().tolist()) for _, y in ds]

    def padded_words(batch_list):
        return sum(max(b) * len(b) for b in batch_list)

    # One batch per megabatch: the random batches themselves, each only sorted inside.
    assert batches(megabatch=1) == batches(group_by_length=False)
    two, whole = batches(megabatch=2), batches(megabatch=8)
    assert sorted(np.concatenate(two)) == sorted(counts)
    assert padded_words(whole) < padded_words(two) < padded_words(batches(megabatch=1))


def test_static_bucket_shapes(packer):
    examples = data.Examples("mem", ["great"] * 3 + ["great " * 20] * 3, labels=["a"] * 6)
    ds = data.make_dataset(examples, np.zeros(6, np.int32), packer, batch_size=3, pad_to="buckets", drop_remainder=True)
    assert sorted(x["token_ids"].shape[1] for x, _ in ds) == [16, 16]  # bucket edges, never ragged
    ds = data.make_dataset(examples, np.zeros(6, np.int32), packer, batch_size=4, pad_to="max")
    assert [x["token_ids"].shape[1] for x, _ in ds] == [16, 16]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("pad_to", ["longest", "buckets", "max"])
def test_length_axis_is_unknown_to_the_graph(packer, pad_to, training):
    # A known length sends Keras' einsum down a slower path for EinsumDense's gradients (`finish_batches`).
    examples = data.Examples("mem", ["great"] * 3 + ["great " * 20] * 3, labels=["a"] * 6)
    ds = data.make_dataset(examples, np.zeros(6, np.int32), packer, batch_size=3, pad_to=pad_to, training=training)
    features, _ = ds.element_spec
    assert all(spec.shape.as_list() == [None, None] for spec in features.values())


@pytest.mark.parametrize("pad_to", ["longest", "buckets", "max"])
def test_prediction_batches_keep_row_order(long_packer, pad_to):
    words = (30, 1, 5, 12, 2, 70, 3)
    texts = [" ".join(["great"] * n) for n in words]
    ds = data.make_dataset(data.Examples("mem", texts), None, long_packer, batch_size=3, pad_to=pad_to)
    lengths = np.concatenate([tf.reduce_sum(x["padding_mask"], axis=1).numpy() for x in ds])
    np.testing.assert_array_equal(lengths, [min(n + 2, 64) for n in words])


@pytest.mark.parametrize("pad_to, drop_remainder", [("longest", False), ("buckets", True)])
def test_each_epoch_holds_every_example_once(long_packer, pad_to, drop_remainder):
    rng = np.random.default_rng(1)
    counts = rng.integers(1, 50, size=203)  # 203 = 12 batches of 16 + 11: a partial batch each epoch
    examples = data.Examples("mem", [" ".join(["great"] * int(n)) for n in counts], labels=["x"] * len(counts))
    ids = np.arange(len(counts))
    steps = data.steps_per_epoch(len(counts), 16, drop_remainder=drop_remainder)
    ds = data.make_dataset(examples, ids, long_packer, batch_size=16, training=True, seed=5, pad_to=pad_to,
                           repeat=True, drop_remainder=drop_remainder, epochs=2)
    batches = list(ds.take(2 * steps))
    padded = real = 0
    for epoch in range(2):
        seen = np.concatenate([y.numpy() for _, y in batches[epoch * steps : (epoch + 1) * steps]])
        if drop_remainder:
            assert len(seen) == 192 and len(set(seen)) == 192
        else:
            np.testing.assert_array_equal(np.sort(seen), ids)
    for x, y in batches:
        lengths = tf.reduce_sum(x["padding_mask"], axis=1).numpy()
        np.testing.assert_array_equal(lengths, counts[y.numpy()] + 2)  # features and labels stay paired
        width = x["token_ids"].shape[1]
        assert width == (lengths.max() if pad_to == "longest" else min(w for w in (16, 32, 64) if w >= lengths.max()))
        padded, real = padded + x["token_ids"].shape[0] * width, real + lengths.sum()
    if pad_to == "longest":
        assert real / padded > 0.9  # grouped by length: little padding (random batches: about 0.57)
    orders = [np.concatenate([y.numpy() for _, y in batches[e * steps : (e + 1) * steps]]) for e in range(2)]
    assert not np.array_equal(orders[0], orders[1])  # each epoch has its own order


def test_truncation_is_counted(packer):
    texts = ["great"] * 7 + ["great " * 14, "great " * 30, "great " * 15]
    stats = data.truncation_stats(data.Examples("mem", texts), packer)
    # 14 words + [CLS] + [SEP] = 16 fits; 15 and 30 words do not.
    assert (stats.examples, stats.truncated, stats.longest) == (10, 2, 32)
    assert "2 of 10 examples (20.00%) are longer than model.sequence_length=16" in stats.message("train")
    pairs = data.Examples("mem", ["great " * 7], pairs=["dull " * 7])
    assert data.truncation_stats(pairs, packer).longest == 17  # [CLS] a [SEP] b [SEP]


def test_tfds_source(monkeypatch):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6):
        examples = data.read_split("tfds:glue/sst2", DataConfig(text_column="sentence"), split="train")
    assert len(examples) == 6
    assert set(examples.labels) <= {"negative", "positive"}  # ClassLabel names, not ids


def test_tfds_bad_feature():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=2), pytest.raises(data.DataError, match="has no feature `text`"):
        data.read_split("tfds:glue/sst2:validation", DataConfig(), split="validation")


def test_tfds_download_path_imports_everything_it_needs():
    """TFDS imports `importlib_resources` lazily on its download path and does not declare it; tfft does.

    `url_infos` reads a builder's checksums, the first step of a download, with no network.
    """
    import tensorflow_datasets as tfds

    builder = tfds.builder_cls("glue")
    assert builder.url_infos is None or isinstance(builder.url_infos, dict)


def test_labels_written_as_the_same_number_several_ways_are_warned_about(caplog):
    with caplog.at_level("WARNING"):
        vocabulary = data.LabelVocabulary.from_labels(["1", "01", "1.0", "0", "0", "2"])
    assert vocabulary.names == ["0", "01", "1", "1.0", "2"]  # still three classes for 1: a warning, not a change
    assert "The labels 01, 1, 1.0 are the same number written 3 ways" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        data.LabelVocabulary.from_labels(["0", "1", "pos"])
    assert "same number" not in caplog.text


def test_length_order_puts_the_shortest_texts_and_pairs_first_keeping_ties_in_row_order():
    texts, pairs = ["abcd", "ab", "a", "abc"], ["", "xyz", "", "x"]  # 4, 5, 1, 4 characters
    np.testing.assert_array_equal(data.length_order(texts, pairs), [2, 0, 3, 1])
    np.testing.assert_array_equal(data.length_order(["abc", "a", "ab"], None), [1, 2, 0])


def test_restore_order_puts_arrays_and_lists_back_in_the_examples_order():
    order = np.array([2, 0, 3, 1])  # outputs[j] belongs to example order[j]
    outputs = {"scores": np.array([20.0, 0.0, 30.0, 10.0]), "tags": [["c"], ["a"], ["d"], ["b"]]}
    back = data.restore_order(outputs, order)
    np.testing.assert_array_equal(back["scores"], [0.0, 10.0, 20.0, 30.0])
    assert back["tags"] == [["a"], ["b"], ["c"], ["d"]]


def test_restore_order_refuses_an_output_that_is_not_one_per_example():
    with pytest.raises(ValueError, match=r"Output `total` has 1 entries for 3 examples"):
        data.restore_order({"total": np.array([6.0])}, np.array([1, 2, 0]))
