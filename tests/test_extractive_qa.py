"""Extractive QA (`tfft.tasks.extractive_qa`, `tfft.backbones.offsets`): windows, offsets, spans, scores, bad data."""

import json
import pathlib
import random
import zipfile

import numpy as np
import pandas as pd
import pytest
import squad_v1_1_official
import tensorflow as tf

import hf_checkpoints
from conftest import NEGATIVE, NOUNS, TASK_DATA, squad_questions
from tfft import backbones, metrics, predict, tasks, train
from tfft.backbones.base import vocabulary_by_id
from tfft.backbones.offsets import offsets_tokenizer
from tfft.config import ConfigError, load_config
from tfft.errors import DataError


def _task_and_packer(backbone, *overrides, sequence_length=32):
    config = load_config(None, ["data.train=x.json", "task.type=extractive_qa", f"model.backbone={backbone}",
                                f"model.sequence_length={sequence_length}", "task.doc_stride=8",
                                "task.max_question_length=8", *overrides])
    source = backbones.resolve(config.model)
    source.prepare(hf_checkpoints.parity_sentences(400, seed=1), None)
    return tasks.create(config), source.packer()


def _long_context(clauses: int, answer: str, at: int) -> tuple[str, int]:
    """`clauses` clauses after a non-ASCII prefix, `answer` as clause `at`'s adjective; returns (context, char start)."""
    rng = random.Random(clauses)
    parts = ["Ünïcödé café —"]
    for i in range(clauses):
        adjective = answer if i == at else rng.choice(NEGATIVE)
        parts.append(f"the {NOUNS[i % len(NOUNS)]} was {adjective} .")
    context = " ".join(parts)
    start = len(" ".join(parts[: at + 1])) + 1 + len(f"the {NOUNS[at % len(NOUNS)]} was ")
    assert context[start : start + len(answer)] == answer
    return context, start


@pytest.fixture(scope="module")
def offsets_backbones(tiny_preset, family_checkpoints, tmp_path_factory) -> dict[str, pathlib.Path]:
    """A backbone of each tokenizer family that has offsets: WordPiece, SentencePiece and byte-level BPE."""
    root = tmp_path_factory.mktemp("offsets")
    return {"bert": tiny_preset, "deberta-v3": family_checkpoints["deberta-v3"],
            "modernbert": family_checkpoints["modernbert"], "roberta": hf_checkpoints.write_roberta(root / "roberta"),
            "xlm-roberta": hf_checkpoints.write_xlm_roberta(root / "xlm_roberta")}


@pytest.mark.parametrize("family", ["bert", "deberta-v3", "modernbert", "roberta", "xlm-roberta"])
def test_windows_recover_a_known_answer_in_a_context_of_several_windows(family, offsets_backbones):
    # SentencePiece and BPE pieces carry the space before a word; the labelled offsets still start at the answer.
    # RoBERTa's and XLM-RoBERTa's windows hold </s></s> between question and context.
    task, packer = _task_and_packer(offsets_backbones[family])
    for at in range(12):  # the answer in every part of the context: window starts, ends and overlaps
        context, start = _long_context(12, "superb lovely", at)
        byte_start = len(context[:start].encode())
        byte_end = byte_start + len(b"superb lovely")
        w = task.windows(packer, tf.constant(["the plot was"]), tf.constant([context]),
                         tf.constant([[byte_start, byte_end]], tf.int64))
        starts, ends, labels = w["byte_start"].numpy(), w["byte_end"].numpy(), w["labels"].numpy()
        assert len(labels) >= 3  # 64 context tokens, 21 per window
        # Every context token is in some window, in order, and consecutive windows share doc_stride (8) tokens.
        pieces = [[(s, e) for s, e in zip(starts[i], ends[i], strict=True) if s >= 0] for i in range(len(labels))]
        for before, after in zip(pieces, pieces[1:], strict=False):
            assert before[-8:] == after[:8]
        covered = sorted({p for window in pieces for p in window})
        assert covered[0][0] == 0 and covered[-1][1] == len(context.encode())
        separators = packer.with_offsets("test", "").separator_ids
        ids, question = w["features"]["token_ids"].numpy(), int(w["question_length"][0])  # [CLS] the plot was
        first_context = 1 + question + len(separators)
        assert ids[:, 1 + question : first_context].tolist() == [list(separators)] * len(labels)
        assert (starts[:, first_context] >= 0).all() and (starts[:, first_context - 1] == -1).all()
        holding = [i for i in range(len(labels)) if labels[i][0] > 0]
        assert holding, f"no window labels the answer at clause {at}"
        for i in range(len(labels)):
            if i in holding:  # the labelled tokens are the answer's first and last, to the byte
                assert starts[i][labels[i][0]] == byte_start and ends[i][labels[i][1]] == byte_end
            else:  # a window without the whole answer points at [CLS]
                assert list(labels[i]) == [0, 0]
                window = pieces[i]
                assert not (window[0][0] <= byte_start and byte_end <= window[-1][1])


def _pointing_model(packer, first: str, last: str):
    """A stand-in model whose start logit peaks on `first`'s token and end logit on `last`'s."""
    first_id, last_id = (int(packer.tokenizer.token_to_id(t)) for t in (first, last))

    def model(features, training=False):
        ids = features["token_ids"]
        return tf.stack([tf.where(ids == first_id, 10.0, 0.0), tf.where(ids == last_id, 10.0, 0.0)], axis=-1)

    return model


def test_the_best_span_over_all_windows_comes_back_as_character_offsets(tiny_preset):
    task, packer = _task_and_packer(tiny_preset)
    contexts, expected = [], []
    for at in (0, 5, 11):  # the answer alone in one window, and in the overlap of two
        context, start = _long_context(12, "superb lovely", at)
        contexts.append(context)
        expected.append(start)
    contexts.append("")  # no context tokens: no span
    outputs = task.outputs(_pointing_model(packer, "superb", "lovely"), packer,
                           {"question": tf.constant(["the plot was"] * 4), "context": tf.constant(contexts)})
    answers = [a.decode() for a in outputs["answer"].numpy()]
    assert answers == ["superb lovely"] * 3 + [""]
    assert outputs["start"].numpy().tolist() == [*expected, -1]
    assert outputs["end"].numpy().tolist() == [s + len("superb lovely") for s in expected] + [-1]
    for i, context in enumerate(contexts[:3]):  # n-best: each span once, best first, offsets into the context
        starts, ends = outputs["nbest_starts"][i].numpy(), outputs["nbest_ends"][i].numpy()
        spans = [(s, e) for s, e in zip(starts, ends, strict=True) if s >= 0]
        assert len(spans) == len(set(spans)) == task.config.task.n_best
        scores = outputs["nbest_scores"][i].numpy()
        assert (np.diff(scores) <= 0).all()
        for text, s, e in zip(outputs["nbest_answers"][i].numpy(), starts, ends, strict=True):
            assert context[s:e] == text.decode()
            assert e - s <= 200  # at most max_answer_length tokens


def test_a_question_past_max_question_length_is_counted_not_cut_silently(tiny_preset):
    task, packer = _task_and_packer(tiny_preset)  # task.max_question_length=8
    context, _ = _long_context(12, "superb lovely", 5)
    questions = ["the plot was " * 4, "the plot was"]  # 12 word pieces, 3
    outputs = task.outputs(_pointing_model(packer, "superb", "lovely"), packer,
                           {"question": tf.constant(questions), "context": tf.constant([context] * 2)})
    assert outputs["truncated_question_tokens"].numpy().tolist() == [4, 0]
    assert [a.decode() for a in outputs["answer"].numpy()] == ["superb lovely"] * 2  # the context is read whole


def test_max_answer_length_bounds_the_span(tiny_preset):
    task, packer = _task_and_packer(tiny_preset, "task.max_answer_length=2")
    outputs = task.outputs(_pointing_model(packer, "superb", "lovely"), packer,
                           {"question": tf.constant(["the plot was"]),
                            "context": tf.constant(["the superb cast and lovely meal"])})
    assert outputs["answer"].numpy()[0].decode() != "superb cast and lovely"  # 4 tokens > 2


PREDICTIONS = [
    ("Denver Broncos", ["Denver Broncos", "The Denver Broncos"]),
    ("the Denver Broncos!", ["Denver Broncos"]),
    ("Broncos", ["Denver Broncos", "Carolina Panthers"]),
    ("", ["Santa Clara, California"]),
    ("Levi's Stadium in the San Francisco Bay Area", ["Levi's Stadium", "Santa Clara"]),
    ("an apple a day", ["apple"]),
    ("the", ["the"]),  # normalizes to nothing: EM 1, F1 0 in the official script
    ("Straße  in   Köln", ["straße in köln"]),
    ("1,000", ["1000"]),
    ("gold gold gold", ["gold"]),
    ("Beyoncé", ["Beyonce"]),
]


def test_a_missing_squad_file_names_the_folder_it_was_read_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"`dev.json` does not exist \(read from the current folder, .*\)\. Check the "
                       r"path in `data.train` / `data.validation`, a SQuAD JSON file"):
        tasks.extractive_qa.read_squad("dev.json")


def test_em_and_f1_equal_the_official_squad_script():
    dataset = [{"paragraphs": [{"qas": [{"id": str(i), "answers": [{"text": g} for g in golds]}
                                        for i, (_, golds) in enumerate(PREDICTIONS)]}]}]
    official = squad_v1_1_official.evaluate(dataset, {str(i): p for i, (p, _) in enumerate(PREDICTIONS)})
    ours = metrics.squad_metrics([g for _, g in PREDICTIONS], [p for p, _ in PREDICTIONS])
    assert ours["exact_match"] == pytest.approx(official["exact_match"], abs=1e-9)
    assert ours["f1"] == pytest.approx(official["f1"], abs=1e-9)
    for prediction, golds in PREDICTIONS:  # and question by question
        one = metrics.squad_metrics([golds], [prediction])
        assert one["f1"] / 100 == pytest.approx(
            squad_v1_1_official.metric_max_over_ground_truths(squad_v1_1_official.f1_score, prediction, golds))


def _write_squad(path: pathlib.Path, document: dict) -> pathlib.Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _broken(kind: str) -> dict:
    document = squad_questions(40, seed=3)
    qa = document["data"][0]["paragraphs"][17]["qas"][0]
    if kind == "offset":
        qa["answers"][0]["answer_start"] += 2
    elif kind == "no_answers":
        qa["answers"] = []
    elif kind == "empty_context":
        document["data"][0]["paragraphs"][17]["context"] = "  "
    else:
        qa["question"] = ""
    return document


@pytest.mark.parametrize("kind, message", [
    ("offset", "answer .* at answer_start="), ("no_answers", "no answers"),
    ("empty_context", "empty context"), ("empty_question", "empty question"),
])
def test_bad_squad_data_fails_before_training_naming_the_file_and_question(kind, message, make_config, data_dir,
                                                                          tmp_path, no_fit):
    bad = _write_squad(tmp_path / "bad.json", _broken(kind))
    config = make_config(*TASK_DATA["extractive_qa"](data_dir), f"data.train={bad}")
    with pytest.raises(DataError, match=rf"bad\.json.*question id 'q3-17'.*{message}"):
        train.run(config)
    out = tmp_path / "run"
    assert not out.exists()  # no config.yaml, no lock file, nothing


def test_zipped_squad_reads_as_the_plain_file(data_dir, tmp_path, tiny_preset):
    archive = tmp_path / "train.json.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(data_dir / "squad_train.json", "train.json")
    task, _ = _task_and_packer(tiny_preset)
    plain, zipped = task.read(str(data_dir / "squad_train.json")), task.read(str(archive))
    assert zipped.texts == plain.texts and zipped.pairs == plain.pairs and zipped.ids == plain.ids
    assert (task.encode(zipped) == task.encode(plain)).all()


def test_tokenizers_without_offsets_support_fail_before_training(make_config, data_dir, tmp_path, no_fit):
    albert = hf_checkpoints.write_albert(tmp_path / "albert")  # lowercases and strips accents before SentencePiece
    config = make_config(*TASK_DATA["extractive_qa"](data_dir), f"model.backbone={albert}")
    with pytest.raises(ConfigError, match="Extractive QA needs character offsets.*`AlbertNormalizingTokenizer`"):
        train.run(config)


def test_doc_stride_leaves_room_for_two_separators_on_roberta(offsets_backbones):
    # 32 - 8 - 3 = 21 context tokens with one [SEP]; RoBERTa's </s></s> leaves 20, so a stride of 20 is refused.
    task, packer = _task_and_packer(offsets_backbones["roberta"], "task.doc_stride=20")
    with pytest.raises(ConfigError, match=r"task.doc_stride.*- 4 = 20 \(this backbone puts 2 tokens"):
        task.check_packer(packer)


def test_doc_stride_must_leave_room_for_new_context_tokens():
    config = load_config(None, ["data.train=x.json", "task.type=extractive_qa", "model.sequence_length=32",
                                "task.max_question_length=8", "task.doc_stride=21"])
    with pytest.raises(ConfigError, match=r"task.doc_stride.*model.sequence_length - task.max_question_length - 3 = 21"):
        tasks.create(config)


@pytest.mark.parametrize("which", ["keras_hub_preset", "hf_checkpoint"])
def test_offsets_tokenizer_gives_the_packer_ids_with_true_offsets(which, tiny_preset, tmp_path):
    backbone = tiny_preset if which == "keras_hub_preset" else hf_checkpoints.write_bert(tmp_path / "bert")
    _, packer = _task_and_packer(backbone, sequence_length=48)
    offsets = offsets_tokenizer(packer, "test", "")
    texts = hf_checkpoints.parity_sentences(1000)  # accents, CJK, emoji, whitespace runs
    ids, starts, ends = offsets.tokenize_with_offsets(tf.constant(texts))
    expected = packer.tokenizer(tf.constant(texts))
    assert ids.to_list() == [list(map(int, row)) for row in expected]
    vocabulary = packer.tokenizer.get_vocabulary()
    checked = 0
    for text, row, row_starts, row_ends in zip(texts, ids.to_list(), starts.to_list(), ends.to_list(), strict=True):
        raw = text.encode()
        for piece, s, e in zip(row, row_starts, row_ends, strict=True):
            token = vocabulary[piece]
            assert 0 <= s < e <= len(raw)
            if token != "[UNK]" and raw[s:e].isascii():
                assert raw[s:e].decode().lower() == token.removeprefix("##")
                checked += 1
    assert checked > 5000


@pytest.mark.parametrize("family", ["deberta-v3", "modernbert", "roberta", "xlm-roberta"])
def test_sentencepiece_and_bpe_offsets_give_the_packer_ids_and_each_piece_in_the_raw_text(family, offsets_backbones):
    _, packer = _task_and_packer(offsets_backbones[family], sequence_length=48)
    offsets = offsets_tokenizer(packer, "test", "")
    texts = hf_checkpoints.parity_sentences(1000)  # accents, CJK, emoji, whitespace runs
    ids, starts, ends = offsets.tokenize_with_offsets(tf.constant(texts))
    expected = tf.function(packer.tokenizer)(tf.constant(texts))  # what training and serving pack
    assert ids.to_list() == expected.to_list()
    vocabulary = vocabulary_by_id(packer.tokenizer)
    byte_level = family in ("modernbert", "roberta")
    byte_of = {c: bytes([b]) for c, b in zip(hf_checkpoints.byte_level_alphabet(), range(256), strict=True)}
    checked = 0
    for text, row, row_starts, row_ends in zip(texts, ids.to_list(), starts.to_list(), ends.to_list(), strict=True):
        raw = text.encode()
        assert all(0 <= s <= e <= len(raw) for s, e in zip(row_starts, row_ends, strict=True))
        assert row_starts == sorted(row_starts) and row_ends == sorted(row_ends)
        for piece, s, e in zip(row, row_starts, row_ends, strict=True):
            token = vocabulary[piece]
            if byte_level:  # every piece spells its bytes exactly, less the space before a word
                spelled = b"".join(byte_of[c] for c in token).lstrip()
            elif raw[s:e].isascii() and token not in packer.tokenizer.special_tokens:  # SentencePiece NFKC-normalizes
                spelled = token.replace("\u2581", " ").lstrip().encode()
            else:
                continue
            assert raw[s:e] == spelled, (text, token)
            checked += 1
    assert checked > 5000


def test_unanswerable_questions_learn_no_answer_with_a_threshold_chosen_on_validation(make_config, tmp_path):
    for split, seed in (("train", 0), ("validation", 1)):
        _write_squad(tmp_path / f"{split}.json", squad_questions(960 if split == "train" else 96, seed, 0.3))
    config = make_config("task.type=extractive_qa", "task.doc_stride=8", "task.max_question_length=8",
                         f"data.train={tmp_path / 'train.json'}", f"data.validation={tmp_path / 'validation.json'}",
                         "train.learning_rate=5e-3")
    result = train.run(config)
    assert result.task.has_no_answer
    scores = result.metrics
    assert scores["no_answer_questions"] > 10 and scores["has_answer_questions"] > 10
    assert scores["f1"] > 50  # chance: about 1 in 6 for the answerable, 0 for the rest
    saved = json.loads((pathlib.Path(config.output_dir) / "qa.json").read_text())
    assert saved == {"has_no_answer": True, "null_threshold": scores["null_threshold"]}


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory, data_dir, tiny_preset):
    root = tmp_path_factory.mktemp("qa")
    config = load_config(None, [
        "name=qa", f"output_dir={root / 'run'}", f"model.backbone={tiny_preset}", "model.sequence_length=32",
        "model.dropout=0.0", *TASK_DATA["extractive_qa"](data_dir), "train.epochs=3", "train.batch_size=16",
        "train.learning_rate=5e-3", f"export.base_dir={root / 'saved_models'}",
    ])
    return config, train.run(config)


def test_trained_answers_beat_chance(qa_run):
    _, result = qa_run
    # Chance: picking one of the 3-8 adjectives, about 1 in 5.5.
    assert result.metrics["exact_match"] > 45 and result.metrics["f1"] > 45


@pytest.mark.slow
@pytest.mark.parametrize("family", ["deberta-v3", "modernbert"])
def test_sentencepiece_and_bpe_backbones_learn_to_answer(family, offsets_backbones, make_config, data_dir):
    config = make_config(*TASK_DATA["extractive_qa"](data_dir), f"model.backbone={offsets_backbones[family]}",
                         "model.sequence_length=32", "train.epochs=3", "train.batch_size=16", "train.learning_rate=5e-3")
    result = train.run(config)
    # Chance: picking one of the 3-8 adjectives, about 1 in 5.5.
    assert result.metrics["exact_match"] > 45 and result.metrics["f1"] > 45, result.metrics


def test_predict_answers_squad_json_and_csv_from_the_export(qa_run, data_dir, tmp_path):
    config, result = qa_run
    document = squad_questions(20, seed=7)
    for paragraph in document["data"][0]["paragraphs"]:
        paragraph["qas"][0]["answers"] = []  # an unlabelled file is enough
    first = document["data"][0]["paragraphs"][0]["qas"][0]
    first["question"] = " ".join([first["question"]] * 4)  # 12 word pieces, past task.max_question_length=8
    source = _write_squad(tmp_path / "questions.json", document)
    from_json = predict.predict_file(result.export_path, source, tmp_path / "out.jsonl", progress=False)
    assert list(from_json.columns[:3]) == ["id", "question", "context"]
    assert {"answer", "start", "end", "score", "nbest"} <= set(from_json.columns)
    for row in from_json.itertuples():
        assert row.context[row.start : row.end] == row.answer
        assert json.loads(row.nbest)[0]["text"] == row.answer
    assert from_json.truncated_question_tokens.tolist() == [4] + [0] * 19  # the pieces the model did not read
    rows = from_json[["question", "context"]]
    rows.to_csv(tmp_path / "questions.csv", index=False)
    from_csv = predict.predict_file(result.export_path, tmp_path / "questions.csv", tmp_path / "out.csv",
                                    progress=False)
    assert from_csv.answer.tolist() == from_json.answer.tolist()
    # The in-memory model, through the same outputs function, gives the same answers.
    outputs = result.task.outputs(result.model, result.packer, {"question": tf.constant(rows.question.tolist()),
                                                                "context": tf.constant(rows.context.tolist())})
    assert [a.decode() for a in outputs["answer"].numpy()] == from_json.answer.tolist()
    with pytest.raises(DataError, match="needs a `context` column"):
        pd.DataFrame({"question": ["q"]}).to_csv(tmp_path / "bad.csv", index=False)
        predict.predict_file(result.export_path, tmp_path / "bad.csv", tmp_path / "o.csv", progress=False)




def test_a_reloaded_model_answers_over_many_batches(qa_run, data_dir):
    """Regression: the offsets tokenizer, first built inside a trace, broke the next trace (a smaller last batch)."""
    from tfft import evaluate
    from tfft.model import load_trained

    config, result = qa_run
    trained = load_trained(config)
    examples = trained.task.read(str(data_dir / "squad_validation.json"), split="validation")
    outputs = evaluate.predict_outputs(trained.task, trained.model, trained.packer, examples, batch_size=10)
    assert len(outputs["answer"]) == 96
    assert trained.task.score(examples, outputs)["f1"] == pytest.approx(result.metrics["f1"], abs=1e-6)


def test_the_span_head_has_no_dropout_as_in_bert_run_squad():
    import keras

    from tfft import tasks
    from tfft.config import load_config

    task = tasks.create(load_config(None, ["data.train=unused.json", "task.type=extractive_qa", "model.sequence_length=384"]))
    tokens, mask = keras.Input((None, 8)), keras.Input((None,), dtype="int32")
    model = keras.Model([tokens, mask], task.head({"sequence_output": tokens, "padding_mask": mask}, 0.5, None))
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == [0.0]


def test_padding_takes_no_probability_so_the_loss_ignores_how_far_a_batch_is_padded(deterministic_preset):
    # Without the head's padding mask the start and end softmaxes spread over the padding too: the same window
    # padded to 64 rather than to its own length gives another loss, so length-sorted and random batches differ.
    task, packer = _task_and_packer(deterministic_preset, sequence_length=64)
    context, start = _long_context(3, "superb", 1)
    byte_start = len(context[:start].encode())
    w = task.windows(packer, tf.constant(["the plot was"]), tf.constant([context]),
                     tf.constant([[byte_start, byte_start + len(b"superb")]], tf.int64))
    features = w["features"]
    assert int(tf.reduce_sum(features["padding_mask"])) < 40  # the window is well short of its 64 positions
    backbone = backbones.resolve(task.config.model).backbone()
    model = tasks.TaskModel(backbone, task, dropout=0.0)
    padded, trimmed = model(features), model(tasks.base.trim_to_longest(features))
    loss = task.loss()
    assert loss(w["labels"], padded).numpy() == pytest.approx(loss(w["labels"], trimmed).numpy(), rel=1e-5)
    assert float(tf.reduce_max(tf.boolean_mask(padded, features["padding_mask"] == 0))) <= -1e8
