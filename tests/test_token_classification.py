"""Token classification: CoNLL/JSONL reading, errors, word-piece alignment, serving's word split, learning."""

import json

import keras_hub
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from conftest import TASK_DATA, write_conll
from tfft import data, tasks, train
from tfft.backbones import TextPacker
from tfft.config import load_config
from tfft.data import DataError
from tfft.tasks.token_classification import TokenClassification, split_words

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "new", "york", "##er", "##s", "a", ".", "in", "lives"]


def _task(*overrides) -> TokenClassification:
    return tasks.create(load_config(None, ["data.train=unused.txt", "task.type=token_classification", *overrides]))


@pytest.fixture(scope="module")
def packer():
    """Sequence length 8: [CLS] + six pieces + [SEP]."""
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCABULARY, lowercase=True)
    return TextPacker(keras_hub.models.BertTextClassifierPreprocessor(tokenizer=tokenizer, sequence_length=8))


def test_reads_conll_sentences(tmp_path):
    (tmp_path / "c.txt").write_text(
        "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n \t\nPeter NNP B-NP B-PER\n\n\n"
        "-DOCSTART- -X- -X- O\nBlackburn NNP B-NP B-PER\n"  # whitespace-only line, blank runs, no final blank
    )
    examples = _task().read(str(tmp_path / "c.txt"))
    assert examples.words == [["EU", "rejects"], ["Peter"], ["Blackburn"]]
    assert examples.labels == [["B-ORG", "O"], ["B-PER"], ["B-PER"]]
    assert examples.lines == [3, 6, 10]
    chunks = _task("task.tag_column=2").read(str(tmp_path / "c.txt"))
    assert chunks.labels[0] == ["B-NP", "B-VP"]


def test_reads_jsonl(tmp_path):
    (tmp_path / "n.jsonl").write_text(json.dumps({"tokens": ["New", "York"], "tags": ["B-LOC", "I-LOC"]}) + "\n")
    examples = _task().read(str(tmp_path / "n.jsonl"))
    assert (examples.words, examples.labels) == ([["New", "York"]], [["B-LOC", "I-LOC"]])


@pytest.mark.parametrize(
    "content, suffix, message",
    [
        ("EU B-ORG\nrejects\n", ".txt", r"line 2: 'rejects' has 1 column\(s\), so it has no tag"),
        (json.dumps({"tokens": ["a", "b"], "tags": ["O"]}) + "\n", ".jsonl", r"line 1: '2 tokens but 1 tags'"),
        ("EU B-ORG\nrejects X-MISC\n\nPeter PER\n", ".txt",
         r"tags outside the IOB2 scheme \(line 2: 'X-MISC', line 4: 'PER'\).*Tags must be O or B-TYPE, I-TYPE"),
    ],
)
def test_bad_files_name_the_line(tmp_path, content, suffix, message):
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        _task().read(str(path))


def test_iobes_tags_need_the_iobes_scheme(tmp_path):
    (tmp_path / "e.txt").write_text("New B-LOC\nYork E-LOC\n")
    with pytest.raises(DataError, match="outside the IOB2 scheme"):
        _task().read(str(tmp_path / "e.txt"))
    assert _task("task.tag_scheme=iobes").read(str(tmp_path / "e.txt")).labels == [["B-LOC", "E-LOC"]]


def test_an_inside_tag_that_starts_an_entity_under_iob2_is_warned_about(tmp_path, caplog):
    """Issue 26: `I-PER` right after `O` under iob2 got no warning."""
    write_conll(tmp_path / "t.txt", [[("met", "O"), ("Angela", "I-PER"), ("Merkel", "I-PER")],
                                     [("in", "O"), ("Berlin", "B-LOC"), ("Mitte", "I-LOC"), ("Sept", "I-MISC")]])
    with caplog.at_level("WARNING"):
        _task().read(str(tmp_path / "t.txt"))
    assert "has 2 I- tags that start an entity (line 4: 'I-PER', line 10: 'I-MISC')" in caplog.text
    assert "set `task.tag_scheme: iob1`" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        _task("task.tag_scheme=iob1").read(str(tmp_path / "t.txt"))  # IOB1: I- starts entities
    assert "start an entity" not in caplog.text


@pytest.mark.parametrize("token", ["", "  ", "\u200b"])
def test_tokens_with_no_visible_character_are_refused(tmp_path, token):
    """Issue 26: empty or zero-width tokens were accepted, got no prediction and were counted as truncated."""
    rows = [{"tokens": ["Angela", "Merkel"], "tags": ["B-PER", "I-PER"]},
            {"tokens": ["in", token, "Berlin"], "tags": ["O", "O", "B-LOC"]}]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"has tokens with no visible character \(line 2, word 2: "):
        _task().read(str(tmp_path / "t.jsonl"))


def test_unseen_validation_tag_fails_before_training(make_config, data_dir, no_fit, tmp_path):
    write_conll(tmp_path / "dev.txt", [[("the", "O"), ("movie", "B-THING")], [("great", "B-TITLE")]])
    config = make_config(*TASK_DATA["token_classification"](data_dir), f"data.validation={tmp_path / 'dev.txt'}")
    with pytest.raises(DataError, match=r"dev.txt` has tags that the training split never had \(line 6: 'B-TITLE'\)"):
        train.run(config)


def _packed(packer, sentences, tags):
    task = _task()
    task.tags = ["O", "B-LOC", "I-LOC", "B-PER"]
    examples = data.Examples("mem", [" ".join(s) for s in sentences], labels=tags, words=sentences)
    features, labels, weights = task.pack(packer, task.inputs(examples), task.encode(examples))
    return task, examples, features["token_ids"].numpy(), labels.numpy(), weights.numpy()


def test_each_word_labels_its_first_piece_only(packer):
    sentences = [["Yorkers", "lives", "in", "New", "York"], ["a"]]
    tags = [["B-PER", "O", "O", "B-LOC", "I-LOC"], ["O"]]
    _, _, token_ids, labels, weights = _packed(packer, sentences, tags)
    # [CLS] york ##er ##s lives in new york: 7 pieces, cut to 6, so "York" falls off.
    assert token_ids[0].tolist() == [2, 6, 7, 8, 12, 11, 5, 3]
    assert weights[0].tolist() == [0, 1, 0, 0, 1, 1, 1, 0]  # one labelled piece per word; [CLS]/[SEP] masked
    assert labels[0][weights[0] > 0].tolist() == [3, 0, 0, 1]  # B-PER, O, O, B-LOC
    assert weights[1].tolist() == [0, 1, 0, 0, 0, 0, 0, 0]  # padding masked


def test_words_cut_by_the_sequence_length_are_counted(packer):
    task, examples, *_ = _packed(packer, [["Yorkers", "lives", "in", "New", "York"], ["a"]],
                                 [["B-PER", "O", "O", "B-LOC", "I-LOC"], ["O"]])
    stats = task.prepare(examples, packer).truncation
    assert (stats.truncated, stats.longest, stats.words, stats.truncated_words) == (1, 9, 6, 1)
    assert "1 of 6 words are cut off" in stats.message("train")


def test_serving_splits_words_at_spaces_and_punctuation():
    words, starts, ends = split_words(tf.constant(["U.N. official Ekeus heads for Baghdad.", "Café  Müller!"]))
    assert [w.decode() for w in words[0].numpy()] == ["U", ".", "N", ".", "official", "Ekeus", "heads", "for",
                                                      "Baghdad", "."]
    assert [w.decode() for w in words[1].numpy()] == ["Café", "Müller", "!"]
    assert (starts[1].numpy().tolist(), ends[1].numpy().tolist()) == ([0, 7, 14], [5, 14, 15])  # UTF-8 bytes


def test_predict_writes_entity_spans_with_character_offsets():
    text = "Café Müller met Angela Merkel ."
    outputs = {
        "word_count": np.array([6]),
        "tags": np.array([[b"B-ORG", b"I-ORG", b"O", b"B-PER", b"I-PER", b"O"]]),
        "word_starts": np.array([[0, 6, 14, 18, 25, 32]]),  # bytes: "é" and "ü" take two each
        "word_ends": np.array([[5, 13, 17, 24, 31, 33]]),
    }
    columns = TokenClassification.prediction_columns(outputs, {}, {"text": [text]})
    assert json.loads(columns["entities"][0]) == [
        {"text": "Café Müller", "type": "ORG", "start": 0, "end": 11},
        {"text": "Angela Merkel", "type": "PER", "start": 16, "end": 29},
    ]
    assert columns["tags"] == ["B-ORG I-ORG O B-PER I-PER O"]


@pytest.mark.slow
def test_learns_to_tag(make_config, data_dir):
    config = make_config(*TASK_DATA["token_classification"](data_dir), "train.epochs=8")
    result = train.run(config)
    assert result.metrics["f1"] >= 0.9 and result.metrics["token_accuracy"] >= 0.95
    assert result.metrics["truncated_words"] == 0
    # The pooler is frozen: the head reads sequence_output alone.
    assert not any("pooled_dense" in w.path for w in result.model.trainable_weights)


@pytest.mark.slow
def test_predict_flags_rows_whose_words_were_cut(make_config, data_dir, tmp_path, caplog):
    """Issue 26: `tfft predict` on a NER export returned words past the length limit as `O`, with no flag."""
    from tfft import predict

    config = make_config(*TASK_DATA["token_classification"](data_dir), "data.max_train_examples=32", "train.epochs=1",
                         "export.enabled=true", "model.sequence_length=16")
    result = train.run(config)
    texts = ["Angela Merkel met Kofi Annan .", " ".join(["word"] * 40)]  # the second: 40 words, 16 pieces at most
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "in.csv", index=False)
    with caplog.at_level("WARNING"):
        frame = predict.predict_file(result.export_path, tmp_path / "in.csv", tmp_path / "out.csv", progress=False)
    assert frame["truncated_words"].tolist()[0] == 0 and frame["truncated_words"].tolist()[1] > 20
    assert pd.read_csv(tmp_path / "out.csv")["truncated_words"].tolist() == frame["truncated_words"].tolist()
    assert "1 of 2 rows have truncated_words > 0" in caplog.text


def test_eager_pack_words_calls_share_one_trace(packer, monkeypatch):
    # Each eager call wrapped `pack_words` in a new `tf.function`: a retrace (the tokenizer's too) per call.
    traces = []
    tokenize = packer.tokenize

    def counted(strings):
        traces.append(1)  # runs once per trace, never per call of a traced graph
        return tokenize(strings)

    monkeypatch.setattr(packer, "tokenize", counted)
    batches = [[["new", "york"]], [["a"], ["lives", "in", "new", "york"]], [["york"], ["a", "."], ["new"]]]
    for _ in range(2):
        for words in batches:
            features, first, _ = packer.pack_words(tf.ragged.constant(words))
            assert features["token_ids"].shape[0] == len(words) and first.shape[0] == len(words)
    assert len(traces) <= 2  # six calls, three batch shapes: one trace, and a relaxed one at most
