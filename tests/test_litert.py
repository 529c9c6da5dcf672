"""LiteRT export (`tfft.litert`, `tfft.backbones.litert`): raw text in, the SavedModel's answers out."""

import json
import pathlib

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import hf_checkpoints
from conftest import SERVING_ONLY, SHARED_DATA, run_python, write_csv
from tfft import backbones, litert, predict, train
from tfft.backbones.litert import LitePacker
from tfft.config import ConfigError, load_config

MINILM = SHARED_DATA / "all_minilm_l6_v2"

HELD_OUT = [
    "the soundtrack was superb and the meal was fine",
    "",  # empty
    "the movie was great " * 40,  # 10x the 16-token sequence length
    "Le café était excellent, très bien! 映画は素晴らしかった 🎬 Straße",  # non-ASCII
]

# A process with the LiteRT interpreter and TensorFlow Text's kernels only: no keras, keras-hub or tfft.
LITERT_PROCESS = SERVING_ONLY + """
import numpy as np
import tensorflow_text
from ai_edge_litert.interpreter import InterpreterWithCustomOps
interpreter = InterpreterWithCustomOps(model_path=sys.argv[1],
                                       custom_op_registerers=tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS)
runner = interpreter.get_signature_runner("serving_default")
texts = json.loads(sys.argv[2])
rows = [runner(text=np.array([t], dtype=object)) for t in texts]  # one request per text, as a server would
batch = runner(text=np.array(texts, dtype=object))
np.save(sys.argv[3], np.concatenate([r["probabilities"] for r in rows]))
np.save(sys.argv[4], batch["probabilities"])
print(json.dumps({"label_ids": batch["label_id"].tolist(), "labels": [s.decode() for s in batch["label"]],
                  "inputs": list(interpreter.get_signature_list()["serving_default"]["inputs"]),
                  "modules": sorted(m for m in ("keras_hub", "tfft", "tf_keras") if m in sys.modules)}))
"""


@pytest.fixture(scope="module")
def hf_bert(tmp_path_factory):
    """A tiny Hugging Face BERT checkpoint: tfft's Hugging Face WordPiece tokenizer (lowercase, no accents)."""
    return hf_checkpoints.write_bert(tmp_path_factory.mktemp("hf") / "bert")


def _packer(backbone, sequence_length=48):
    config = load_config(None, ["data.train=x.csv", f"model.backbone={backbone}",
                                f"model.sequence_length={sequence_length}"])
    source = backbones.resolve(config.model)
    source.prepare(hf_checkpoints.parity_sentences(400, seed=1), None)
    return source.packer()


# Where TF Text's FastBertNormalizer (the only normalizer with a TFLite kernel) and Hugging Face's BERT tokenizer
# differ: it case-folds "ß" to "ss" and maps compatibility characters ("x²" -> "x2"), where Python's lowercasing
# keeps them. The README lists these.
KNOWN_DIFFERENCES = ("ß", "²")


def _assert_same_ids(packer, texts, pairs=None, allowed=()):
    """The LiteRT packer's inputs equal the training packer's, except on texts holding an `allowed` character."""
    expected = packer(tf.constant(texts), tf.constant(pairs) if pairs is not None else None)
    got = LitePacker(packer)(tf.constant(texts), tf.constant(pairs) if pairs is not None else None)
    assert sorted(got) == sorted(expected)
    for name in expected:
        differ = np.flatnonzero((expected[name].numpy() != got[name].numpy()).any(axis=1))
        unexplained = [texts[i] for i in differ if not any(c in texts[i] for c in allowed)]
        assert not unexplained, f"{name} differs on {len(unexplained)} texts, first {unexplained[0]!r}"
    return len(differ)


def test_lite_tokenizer_gives_the_training_ids_on_1000_sentences(hf_bert):
    sentences = hf_checkpoints.parity_sentences(1000)  # accents, CJK, emoji, whitespace runs, over-long texts
    _assert_same_ids(_packer(hf_bert), sentences)


def test_lite_packer_packs_pairs_as_the_training_packer(hf_bert):
    sentences = hf_checkpoints.parity_sentences(600)
    # Short and over-long texts on either side: round-robin truncation in every combination.
    _assert_same_ids(_packer(hf_bert, sequence_length=24), sentences[:300], sentences[300:])


def test_lite_tokenizer_on_minilm_vocabulary_and_sst2_sentences():
    if not (MINILM / "vocab.txt").is_file():
        pytest.skip(f"{MINILM} is missing")
    dev = pd.read_csv(SHARED_DATA / "sst2" / "dev.tsv", sep="\t", quoting=3, keep_default_na=False)
    train_rows = pd.read_csv(SHARED_DATA / "sst2" / "train.tsv", sep="\t", quoting=3, keep_default_na=False)
    sentences = dev.sentence.tolist() + train_rows.sentence.tolist()[: 1000 - len(dev)]
    packer = _packer(MINILM, sequence_length=128)
    assert _assert_same_ids(packer, sentences) == 0  # every id of 1,000 SST-2 sentences
    # The stress corpus: only texts with the documented characters differ.
    stress = hf_checkpoints.parity_sentences(1000)
    assert _assert_same_ids(packer, stress, allowed=KNOWN_DIFFERENCES) < 200


def test_recipe_tokenizer_converts_too():
    _assert_same_ids(_packer("tiny-bert"), hf_checkpoints.parity_sentences(300))


def test_tokenizer_families_without_tflite_kernels_fail_clearly(tmp_path, tiny_preset):
    # keras-hub's own BertTokenizer(lowercase=True) case-folds without stripping accents: no TFLite equivalent.
    with pytest.raises(ConfigError, match="lowercases and strips accents together.*BertTokenizer"):
        LitePacker(_packer(tiny_preset, sequence_length=32))
    roberta = hf_checkpoints.write_roberta(tmp_path / "roberta")
    with pytest.raises(ConfigError, match="WordPiece tokenizers .* only.*`RobertaTokenizer`"):
        LitePacker(_packer(roberta, sequence_length=32))


def test_token_classification_fails_before_training(make_config, data_dir, hf_bert, no_fit):
    config = make_config(
        "task.type=token_classification", f"data.train={data_dir / 'ner_train.txt'}",
        f"data.validation={data_dir / 'ner_validation.txt'}", f"model.backbone={hf_bert}",
        "export.enabled=true", "export.formats=saved_model,litert",
    )
    with pytest.raises(ConfigError, match="token_classification` has no LiteRT export.*regex_split_with_offsets"):
        train.run(config)
    assert not (pathlib.Path(config.output_dir) / "config.yaml").exists()


@pytest.fixture(scope="module")
def litert_run(tmp_path_factory, data_dir, hf_bert):
    root = tmp_path_factory.mktemp("litert")
    overrides = [
        "name=tiny", f"output_dir={root / 'run'}", f"model.backbone={hf_bert}", "model.sequence_length=16",
        "model.dropout=0.0", "model.freeze_layers=0", f"data.train={data_dir / 'train.csv'}",
        f"data.validation={data_dir / 'validation.csv'}", "train.epochs=2", "train.batch_size=16",
        "train.learning_rate=5e-3", f"export.base_dir={root / 'saved_models'}", "export.formats=saved_model,litert",
    ]
    config = load_config(None, overrides)
    return config, train.run(config), root


@pytest.mark.slow
def test_litert_file_answers_raw_text_as_the_saved_model_does(litert_run, tmp_path):
    config, result, _ = litert_run
    version = pathlib.Path(result.export_path)
    assert result.metrics["accuracy"] >= 0.8  # it learned: agreement below is not agreement on noise
    out = run_python(LITERT_PROCESS, str(version / litert.LITERT_FILE), json.dumps(HELD_OUT),
                     str(tmp_path / "rows.npy"), str(tmp_path / "batch.npy"))
    assert out.returncode == 0, out.stderr[-3000:]
    served = json.loads(out.stdout.strip().splitlines()[-1])
    assert served["modules"] == [] and served["inputs"] == ["text"]

    saved_model = tf.saved_model.load(str(version)).signatures["serving_default"](text=tf.constant(HELD_OUT))
    expected = saved_model["probabilities"].numpy()
    np.testing.assert_allclose(np.load(tmp_path / "rows.npy"), expected, atol=1e-4)
    np.testing.assert_allclose(np.load(tmp_path / "batch.npy"), expected, atol=1e-4)
    assert served["label_ids"] == saved_model["label_id"].numpy().tolist()
    assert served["labels"] == [s.decode() for s in saved_model["label"].numpy()]  # the same label order


@pytest.mark.slow
def test_dynamic_range_file_is_smaller_and_close(litert_run, tmp_path):
    _, result, _ = litert_run
    float32 = pathlib.Path(result.export_path) / litert.LITERT_FILE
    quantized = tmp_path / "q.tflite"
    quantized.write_bytes(litert.convert(result.model, result.packer, result.task, quantize="dynamic_range"))
    # The tiny model's file is mostly the tokenizer's tables; MiniLM's shrinks to 28% (README).
    assert quantized.stat().st_size < float32.stat().st_size
    texts = ["the soundtrack was superb", "the ending was dull", "the meal was awful and the plot was bland"]
    expected = litert.LiteRTModel(float32)(text=texts)["probabilities"]
    np.testing.assert_allclose(litert.LiteRTModel(quantized)(text=texts)["probabilities"], expected, atol=0.05)


@pytest.mark.slow
def test_predict_writes_the_same_columns_from_the_litert_file(litert_run, tmp_path):
    _, result, _ = litert_run
    version = pathlib.Path(result.export_path)
    write_csv(tmp_path / "in.csv", [(text, "") for text in HELD_OUT], header=("text", "note"))
    from_saved_model = predict.predict_file(version, tmp_path / "in.csv", tmp_path / "a.csv", progress=False)
    from_litert = predict.predict_file(version / "model.tflite", tmp_path / "in.csv", tmp_path / "b.csv",
                                       batch_size=3, progress=False)
    assert list(from_litert.columns) == list(from_saved_model.columns)
    assert from_litert["predicted_label"].tolist() == from_saved_model["predicted_label"].tolist()
    assert from_litert["truncated_tokens"].tolist() == from_saved_model["truncated_tokens"].tolist()
    assert from_saved_model["truncated_tokens"].max() > 0  # HELD_OUT's long text
    for column in ("probability_neg", "probability_pos"):
        np.testing.assert_allclose(from_litert[column], from_saved_model[column], atol=1e-4)


@pytest.mark.slow
def test_export_command_adds_a_litert_file_to_a_new_version(litert_run):
    from absl.testing import flagsaver

    from tfft import cli

    config, result, root = litert_run
    config_path = root / "config_float16.yaml"
    config.save(config_path)
    with flagsaver.flagsaver(config=str(config_path), set=["export.quantize=float16"], format=["litert"]):
        assert cli.main(["tfft", "export"]) == 0
    version = pathlib.Path(result.export_path).parent / "2"
    assert (version / "saved_model.pb").is_file() and (version / "model.tflite").is_file()
    outputs = litert.LiteRTModel(version / "model.tflite")(text=HELD_OUT[:2])
    assert outputs["probabilities"].shape == (2, 2)


@pytest.mark.slow
@pytest.mark.parametrize("task_type", ["multi_label", "regression"])
def test_other_text_tasks_export_to_litert_with_the_same_predictions(task_type, make_config, data_dir, hf_bert,
                                                                     tmp_path):
    from conftest import TASK_DATA

    config = make_config(*TASK_DATA[task_type](data_dir), f"model.backbone={hf_bert}", "train.epochs=1",
                         "model.sequence_length=16", "export.enabled=true", "export.formats=saved_model,litert")
    version = pathlib.Path(train.run(config).export_path)
    rows = pd.read_csv(config.data.validation).head(20)
    rows.to_csv(tmp_path / "in.csv", index=False)
    pair = {"text_pair_column": "text_pair"} if task_type == "regression" else {}
    a = predict.predict_file(version, tmp_path / "in.csv", tmp_path / "a.csv", progress=False, **pair)
    b = predict.predict_file(version / "model.tflite", tmp_path / "in.csv", tmp_path / "b.csv", progress=False, **pair)
    assert list(a.columns) == list(b.columns)
    for column in a.columns:
        if column.startswith("probability_") or column == "predicted_score":
            np.testing.assert_allclose(b[column], a[column], atol=1e-4)
        else:
            assert b[column].tolist() == a[column].tolist(), column
