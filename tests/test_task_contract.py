"""One contract for every registered task, as keras-hub's `run_task_test`: build, fit two steps, evaluate,
export, answer raw text from a process that has only TensorFlow and TensorFlow Text, predict a CSV, and distil
into a one-layer student that serves as well."""

import json
import pathlib

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from conftest import SERVING_PROCESS, TASK_DATA, run_python
from tfft import distill, evaluate, predict, run_dir, train
from tfft.config import ConfigError
from tfft.tasks import TASKS

pytestmark = pytest.mark.slow

# Raw requests for each task's `serving_default`, held out from training, with the inputs servers get wrong:
# an empty string, non-ASCII text, and text far past the sequence length.
REQUESTS = {
    "text": ["the plot was [MASK] and the meal was fine", "", "Le café était excellent 映画 🎬",
             "the movie was great . " * 30],
    "text_pair": ["the cast was dull", "the ending was lovely", "", "ok"],
    "question": ["the plot was", "who won ?", "the café was", "the movie was"],
    "context": ["the plot was superb . the meal was dull .", "", "Le café était excellent 映画 🎬 the café was great",
                "the movie was great . " * 30],
}

SERVE = SERVING_PROCESS + """
loaded = tf.saved_model.load(sys.argv[1])
inputs = json.loads(sys.argv[2])
outputs = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in inputs.items()})
np.savez(sys.argv[3], **{k: v.numpy() for k, v in outputs.items()})
print(json.dumps({"signatures": sorted(loaded.signatures), "modules": sorted(m for m in ("keras_hub", "tfft") if m in sys.modules)}))
"""


@pytest.mark.parametrize("task_type", sorted(TASKS))
def test_task_runs_every_stage(task_type, make_config, data_dir, tmp_path):
    config = make_config(*TASK_DATA[task_type](data_dir), "data.max_train_examples=32", "train.epochs=1",
                         "export.enabled=true")
    result = train.run(config)
    task = result.task

    # Fit: two steps of 16.
    assert len(result.history["loss"]) == 1 and np.isfinite(result.history["loss"]).all()
    saved = json.loads((pathlib.Path(config.output_dir) / "metrics.json").read_text())
    assert task.monitor[0] in saved and "truncation" in saved
    assert f"val_{task.monitor[0]}" in result.history  # the monitored score is logged per epoch

    # Evaluate: the reloaded run scores the validation split as training did.
    again = evaluate.run(config)
    assert again[task.monitor[0]] == pytest.approx(saved[task.monitor[0]], abs=1e-6)
    assert again["train_seconds"] == saved["train_seconds"]  # training's fields are kept
    # The run folder holds only what tfft writes: starting over there removes exactly these (run_dir.OWN_ENTRIES).
    assert [p.name for p in pathlib.Path(config.output_dir).iterdir() if not run_dir.is_own_entry(p.name)] == []

    # Serve: a separate process with TensorFlow and TensorFlow Text only gives the in-memory model's outputs.
    assert_served_as_in_memory(result, tmp_path / "served.npz")
    names = task.input_names()

    # Predict: a CSV in, the input columns plus the task's columns out.
    pd.DataFrame({name: REQUESTS[name] for name in names}).to_csv(tmp_path / "in.csv", index=False)
    frame = predict.predict_file(result.export_path, tmp_path / "in.csv", tmp_path / "out.csv",
                                 text_pair_column="text_pair" if "text_pair" in names else None, progress=False)
    written = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert len(written) == len(REQUESTS["text"]) and list(written.columns) == list(frame.columns)
    assert list(written.columns)[: len(names)] == list(names) and len(written.columns) > len(names)

    # Distil: a one-layer student of this run trains on its outputs, exports, and serves raw text as well.
    student_config = make_config(*TASK_DATA[task_type](data_dir), "data.max_train_examples=32", "train.epochs=1",
                                 "export.enabled=true", f"distill.teacher={config.output_dir}", "model.keep_layers=1",
                                 f"output_dir={tmp_path / 'student'}", "name=student")
    if task.distill_unsupported:
        with pytest.raises(ConfigError, match="`task.type` cannot be distilled"):
            distill.run(student_config)
        return
    student = distill.run(student_config)
    assert set(student.metrics["teacher"]) == set(task.logged_scores(saved))
    assert student.model.count_params() < result.model.count_params()
    assert_served_as_in_memory(student, tmp_path / "student_served.npz")


@pytest.mark.parametrize("family", ["electra", "deberta-v3", "modernbert"])
@pytest.mark.parametrize("task_type", sorted(TASKS))
def test_every_task_trains_and_serves_on_each_converted_family(task_type, family, family_checkpoints, make_config,
                                                               data_dir, tmp_path):
    # Frozen embeddings and lowest layer, every recipe key, export with raw text in (LiteRT where the tokenizer
    # allows: ELECTRA's WordPiece; extractive QA on SentencePiece and BPE too). A LiteRT export that the tokenizer
    # cannot have is refused before training.
    run = (*TASK_DATA[task_type](data_dir), f"model.backbone={family_checkpoints[family]}", "data.max_train_examples=32",
           "train.epochs=1", "model.freeze_layers=1", "train.layer_decay=0.8", "model.reinit_layers=1",
           "model.lora_rank=2", "train.gradient_accumulation_steps=2", "export.enabled=true")
    if family != "electra" and task_type == "classification":  # SentencePiece, byte-level BPE: no TFLite kernels
        with pytest.raises(ConfigError, match="supports WordPiece tokenizers.*`(DebertaV3|ModernBert)Tokenizer`"):
            train.run(make_config(*run, "export.formats=[saved_model,litert]"))
        assert not (pathlib.Path(make_config(*run).output_dir) / "config.yaml").exists()  # refused before training
    litert = family == "electra" and task_type == "classification"
    config = make_config(*run, "export.formats=[saved_model,litert]" if litert else "export.formats=[saved_model]")
    result = train.run(config)
    assert np.isfinite(result.history["loss"]).all()
    backbone = {id(w) for w in result.model.backbone.weights}
    trained = [w.path for w in result.model.trainable_weights if id(w) in backbone]
    # LoRA: only the factors of the unfrozen layers train in the backbone; the head trains besides.
    assert trained and all("lora_kernel" in path and "layer_0/" not in path for path in trained), trained
    assert len(result.model.trainable_weights) > len(trained)
    if task_type == "classification":  # in a process without tfft or keras-hub: the tokenizer's ops are TF Text's
        assert_served_as_in_memory(result, tmp_path / "served.npz")
    else:
        loaded = assert_loaded_as_in_memory(result)
        assert not [v.name for v in loaded.variables if "lora" in v.name]  # the factors are merged into the kernels
    if litert:
        assert (pathlib.Path(result.export_path) / "model.tflite").is_file()


def assert_served_as_in_memory(result, npz: pathlib.Path) -> None:
    """A separate process with TensorFlow and TensorFlow Text only gives the in-memory model's outputs."""
    task = result.task
    requests = {name: REQUESTS[name] for name in task.input_names()}
    function, specs = task.serving_signatures(result.model, result.packer)["serving_default"]
    expected = function(*[tf.constant(requests[spec.name]) for spec in specs])
    out = run_python(SERVE, result.export_path, json.dumps(requests), str(npz))
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["modules"] == []
    assert set(report["signatures"]) == set(task.serving_signatures(result.model, result.packer))
    served = np.load(npz, allow_pickle=True)  # string outputs are object arrays
    assert set(served.files) == set(expected)
    for name, value in expected.items():
        if value.dtype.is_floating:
            np.testing.assert_allclose(served[name], value.numpy(), atol=1e-5, err_msg=name)
        else:
            np.testing.assert_array_equal(served[name], value.numpy(), err_msg=name)


@pytest.mark.parametrize("task_type", sorted(TASKS))
def test_gradual_unfreezing_with_the_other_recipes_trains_every_task(task_type, make_config, data_dir, tmp_path):
    # LoRA, which unfreezing excludes, trains and exports every task in the converted-family test above.
    recipes = (*TASK_DATA[task_type](data_dir), "data.max_train_examples=32", "train.epochs=2",
               "model.freeze_layers=0", "train.layer_decay=0.8", "model.reinit_layers=1",
               "train.gradient_accumulation_steps=2")
    unfrozen = train.run(make_config(*recipes, "train.unfreeze.every=1", "train.unfreeze.unit=steps",
                                     f"output_dir={tmp_path / 'unfreeze'}"))
    assert np.isfinite(unfrozen.history["loss"]).all()


def assert_loaded_as_in_memory(result):
    """The export, loaded in this process, gives the in-memory model's floating outputs; returns the loaded object."""
    requests = {name: REQUESTS[name] for name in result.task.input_names()}
    function, specs = result.task.serving_signatures(result.model, result.packer)["serving_default"]
    expected = function(*[tf.constant(requests[spec.name]) for spec in specs])
    loaded = tf.saved_model.load(result.export_path)
    served = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in requests.items()})
    for name, value in expected.items():
        if value.dtype.is_floating:
            np.testing.assert_allclose(served[name].numpy(), value.numpy(), atol=1e-5, err_msg=name)
    return loaded
