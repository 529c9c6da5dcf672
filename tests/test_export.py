import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import SERVING_PROCESS, classification_task, run_python
from tfft import export
from tfft.tasks import TaskModel

pytestmark = pytest.mark.slow

HELD_OUT = [
    "the soundtrack was superb and the meal was fine",
    "the ending was dull and the cast was fine",
    "",  # empty
    "the movie was great " * 40,  # 160 words: 10x the 32-token sequence length... and more
    "Le café était excellent, très bien! 映画は素晴らしかった 🎬",  # non-ASCII
]

# Runs in a fresh process that has only TensorFlow and TF Text, as a serving process.
SERVE = SERVING_PROCESS + """
model = tf.saved_model.load(sys.argv[1])
serve = model.signatures["serving_default"]
texts = json.loads(sys.argv[2])
out = serve(text=tf.constant(texts))
np.save(sys.argv[3], out["probabilities"].numpy())
print(json.dumps({
    "labels": [s.decode() for s in out["label"].numpy()],
    "label_ids": out["label_id"].numpy().tolist(),
    "truncated_tokens": out["truncated_tokens"].numpy().tolist(),
    "dtypes": {k: v.dtype.name for k, v in out.items()},
    "modules": sorted(m for m in ("keras_hub", "tfft", "tf_keras") if m in sys.modules),
}))
"""


@pytest.fixture(scope="module")
def exported(trained_run):
    config, result = trained_run
    assert result.export_path is not None
    return config, result, pathlib.Path(result.export_path)


def test_export_lands_in_a_versioned_folder(exported):
    config, _, path = exported
    assert path == pathlib.Path(config.export.base_dir) / "tiny" / "1"
    assert (path / "saved_model.pb").is_file() and (path / "variables").is_dir()
    assert (path / "assets" / "labels.txt").read_text().splitlines() == ["neg", "pos"]


def test_served_predictions_equal_the_in_memory_model(exported, tmp_path):
    _, result, path = exported
    out = run_python(SERVE, str(path), json.dumps(HELD_OUT), str(tmp_path / "p.npy"))
    assert out.returncode == 0, out.stderr[-3000:]
    served = json.loads(out.stdout.strip().splitlines()[-1])
    assert served["modules"] == []  # nothing of keras-hub or tfft was needed
    assert served["dtypes"] == {"probabilities": "float32", "label": "string", "label_id": "int64",
                                "truncated_tokens": "int32"}
    # What the model did not read: the 160-word text's pieces past the sequence length, none of the others'.
    pieces = [len(np.asarray(result.packer.tokenizer(text))) for text in HELD_OUT]
    length = result.packer.sequence_length
    assert served["truncated_tokens"] == [max(n + 2 - length, 0) for n in pieces]  # + [CLS] and [SEP]
    assert served["truncated_tokens"][3] > 100 and served["truncated_tokens"][:3] == [0, 0, 0]
    expected = tf.nn.softmax(result.model.predict(result.packer(tf.constant(HELD_OUT)), verbose=0)).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, atol=1e-5)
    assert served["label_ids"] == expected.argmax(-1).tolist()
    assert served["labels"] == [result.labels.names[i] for i in expected.argmax(-1)]


def test_token_id_signature_matches_the_text_signature(exported):
    _, result, path = exported
    import tensorflow_text  # noqa: F401

    loaded = tf.saved_model.load(str(path))
    by_text = loaded.signatures["serving_default"](text=tf.constant(HELD_OUT))
    by_ids = loaded.signatures["serve_token_ids"](**result.packer(tf.constant(HELD_OUT)))
    np.testing.assert_allclose(by_ids["probabilities"], by_text["probabilities"], atol=1e-6)


def test_saved_model_cli_lists_both_signatures(exported):
    _, _, path = exported
    cli = pathlib.Path(sys.executable).with_name("saved_model_cli")
    command = [str(cli)] if cli.exists() else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    shown = subprocess.run([*command, "show", "--all", "--dir", str(path)], capture_output=True, text=True, check=True).stdout
    default = shown[shown.index("signature_def['serving_default']") :]
    token_ids = shown[shown.index("signature_def['serve_token_ids']") :]
    for section, inputs in [(default, ["text"]), (token_ids, ["token_ids", "segment_ids", "padding_mask"])]:
        block = section[: section.index("Method name")]
        for name in inputs:
            assert f"inputs['{name}']" in block
        dtype = "DT_STRING" if inputs == ["text"] else "DT_INT32"
        assert block.count(dtype) >= len(inputs)
        assert "outputs['probabilities'] tensor_info:\n        dtype: DT_FLOAT" in block
        assert "outputs['label'] tensor_info:\n        dtype: DT_STRING" in block
        assert "outputs['label_id'] tensor_info:\n        dtype: DT_INT64" in block


def test_warmup_records_are_predict_requests_for_serving_default(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    _, _, path = exported
    records = list(tf.data.TFRecordDataset(str(path / export.WARMUP_FILE)).as_numpy_iterator())
    assert len(records) == 3
    import tensorflow_text  # noqa: F401

    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    expected_inputs = set(signature.structured_input_signature[1])
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record)
        request = log.predict_log.request
        assert request.model_spec.name == "tiny"
        assert request.model_spec.signature_name == "serving_default"
        assert set(request.inputs) == expected_inputs
        texts = tf.make_ndarray(request.inputs["text"])
        signature(text=tf.constant(texts))  # the recorded request is answerable


@pytest.fixture(scope="module")
def untrained(tiny_preset):
    from tfft.backbones import resolve
    from tfft.config import ModelConfig

    source = resolve(ModelConfig(backbone=str(tiny_preset), sequence_length=16))
    source.prepare(None, None)
    return TaskModel(source.backbone(), classification_task()), source.packer()


TASK = classification_task()


def test_each_export_is_a_new_version(untrained, tmp_path):
    model, packer = untrained
    first = export.write_saved_model(model, packer, TASK, tmp_path / "m", warmup_requests=0)
    (tmp_path / "m" / "notes").mkdir()  # non-integer folders are ignored
    second = export.write_saved_model(model, packer, TASK, tmp_path / "m", warmup_requests=0)
    assert (first.name, second.name) == ("1", "2")
    assert export.versions(tmp_path / "m") == [1, 2]


def test_crash_during_export_leaves_no_partial_version(untrained, tmp_path, monkeypatch):
    model, packer = untrained
    base = tmp_path / "m"
    export.write_saved_model(model, packer, TASK, base, warmup_requests=0)
    before = (base / "1" / "saved_model.pb").read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full (injected)")

    monkeypatch.setattr(export, "write_warmup_requests", crash)
    with pytest.raises(OSError, match="injected"):
        export.write_saved_model(model, packer, TASK, base, warmup_requests=2)
    assert sorted(p.name for p in base.iterdir()) == ["1"]  # no version 2, no staging folder
    assert (base / "1" / "saved_model.pb").read_bytes() == before


def test_pair_task_signature(untrained, tmp_path):
    model, packer = untrained
    path = export.write_saved_model(model, packer, classification_task(pair=True), tmp_path / "pairs", warmup_requests=1)
    import tensorflow_text  # noqa: F401

    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    first, second = tf.constant(["the movie", "", "ü"]), tf.constant(["was great", "dull", ""])
    got = serve(text=first, text_pair=second)["probabilities"]
    np.testing.assert_allclose(got, tf.nn.softmax(model(packer(first, second))), atol=1e-5)


def test_remote_base_dir_gets_versions_with_saved_model_pb_last(untrained, monkeypatch):
    """`gs://` goes through tf.io.gfile; TF's in-memory `ram://` filesystem stands in for it."""
    model, packer = untrained
    copied = []
    real_copy = tf.io.gfile.copy
    monkeypatch.setattr(tf.io.gfile, "copy", lambda src, dst, *a, **k: (copied.append(dst), real_copy(src, dst, *a, **k)))
    base = "ram://exports/tiny"
    first = export.write_saved_model(model, packer, TASK, base, warmup_requests=1)
    second = export.write_saved_model(model, packer, TASK, base, warmup_requests=1)
    assert (first, second) == (f"{base}/1", f"{base}/2")
    assert export.versions(base) == [1, 2]
    assert copied[-1].endswith("/2/saved_model.pb")  # TF Serving waits for this file: it goes last
    assert any(path.endswith("/2/assets/labels.txt") for path in copied)
    assert tf.io.gfile.exists(f"{base}/2/{export.WARMUP_FILE}")


def test_token_id_signature_defines_its_edge_cases(untrained, tmp_path):
    """0 rows give empty outputs; too long a sequence or an id out of the vocabulary fails with a message."""
    model, packer = untrained
    path = export.write_saved_model(model, packer, TASK, tmp_path / "ids", warmup_requests=0)
    import tensorflow_text  # noqa: F401

    serve = tf.saved_model.load(str(path)).signatures["serve_token_ids"]

    def call(token_ids):
        token_ids = tf.constant(token_ids, tf.int32, shape=np.shape(token_ids))
        return serve(token_ids=token_ids, segment_ids=tf.zeros_like(token_ids), padding_mask=tf.ones_like(token_ids))

    empty = call(np.zeros([0, 4], np.int32))
    assert empty["probabilities"].shape == (0, 3) and empty["label"].shape == (0,)
    with pytest.raises(tf.errors.InvalidArgumentError, match="more positions than the model takes, sequence_length \\(16\\)"):
        call(np.full([1, 17], 5))
    with pytest.raises(tf.errors.InvalidArgumentError, match="negative id"):
        call([[2, -5, 3]])
    with pytest.raises(tf.errors.InvalidArgumentError, match="id >= the vocabulary size"):
        call([[2, 99999, 3]])
    np.testing.assert_allclose(call([[2, 5, 3]])["probabilities"], tf.nn.softmax(model(packer.check_token_ids(
        {"token_ids": tf.constant([[2, 5, 3]]), "segment_ids": tf.zeros([1, 3], tf.int32),
         "padding_mask": tf.ones([1, 3], tf.int32)}))), atol=1e-5)


def test_export_holds_each_weight_once(exported):
    _, result, path = exported
    saved = {name for name, _ in tf.train.list_variables(str(path / "variables" / "variables"))}
    assert not [name for name in saved if "optimizer" in name.lower()]  # no AdamW state either
    size = sum(p.stat().st_size for p in (path / "variables").iterdir())
    weights = sum(int(np.prod(w.shape)) * 4 for w in result.model.weights)
    assert size < 1.2 * weights
