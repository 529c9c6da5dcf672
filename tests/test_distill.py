"""`tfft distill` and `model.keep_layers`: kept layers carry their weights, the loss is its formula, bad configs fail
before training, a student resumes after kill -9. The contract test distils every task and serves the student."""

import json
import math
import pathlib
import signal

import keras
import keras_hub
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from conftest import KILLED_MID_EPOCH, VOCABULARY, run_python
from tfft import (
    backbones,
    data,
    distill,
    export,
    hidden_states,
    run_dir,
    streaming,
    tasks,
    teacher_cache,
    train,
)
from tfft.config import ConfigError, load_config
from tfft.distill import SoftTargets
from tfft.model import load_trained
from tfft.training_data import read_training_data


def tiny_bert(num_layers: int = 3) -> keras.Model:
    keras.utils.set_random_seed(3)
    return keras_hub.models.BertBackbone(vocabulary_size=len(VOCABULARY), num_layers=num_layers, num_heads=2,
                                         hidden_dim=16, intermediate_dim=32, max_sequence_length=32)


def layer_weights(model: keras.Model, name: str) -> list[np.ndarray]:
    return [w.numpy() for w in backbones.base.inner_backbone(model).get_layer(name).weights]


def test_kept_layers_carry_their_weights_in_their_new_places():
    full = tiny_bert(3)
    kept = backbones.base.keep_encoder_layers(full, [0, 2])
    inner = backbones.base.inner_backbone(kept)
    assert inner.num_layers == 2
    for new, old in ((0, 0), (1, 2)):
        for a, b in zip(layer_weights(kept, f"transformer_layer_{new}"), layer_weights(full, f"transformer_layer_{old}"),
                        strict=True):
            np.testing.assert_array_equal(a, b)
    for name in ("token_embedding", "embeddings_layer_norm", "pooled_dense"):
        for a, b in zip(layer_weights(kept, name), layer_weights(full, name), strict=True):
            np.testing.assert_array_equal(a, b)
    # And it computes what the full model computes with layer 1 removed: run both by hand on one input.
    features = {"token_ids": tf.constant([[2, 5, 6, 3, 0]]), "segment_ids": tf.zeros((1, 5), tf.int32),
                "padding_mask": tf.constant([[1, 1, 1, 1, 0]])}
    x = full.embeddings_layer_norm(full.embeddings_add(
        (full.token_embedding(features["token_ids"]), full.position_embedding(full.token_embedding(features["token_ids"])),
         full.segment_embedding(features["segment_ids"]))))
    for i in (0, 2):
        x = full.get_layer(f"transformer_layer_{i}")(x, padding_mask=features["padding_mask"])
    np.testing.assert_allclose(kept(features)["sequence_output"].numpy(), x.numpy(), atol=1e-5)


def test_a_count_keeps_the_lowest_layers_and_out_of_range_layers_are_refused_naming_the_key():
    full = tiny_bert(3)
    kept = backbones.base.keep_encoder_layers(full, 1)
    for a, b in zip(layer_weights(kept, "transformer_layer_0"), layer_weights(full, "transformer_layer_0"), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ConfigError, match=r"`model.keep_layers` must be .* between 0 and 2.*Received: keep_layers=\[0, 3\]"):
        backbones.base.keep_encoder_layers(full, [0, 3])
    with pytest.raises(ConfigError, match=r"between 1 and 3.*Received: keep_layers=4"):
        backbones.base.keep_encoder_layers(full, 4)


@pytest.mark.parametrize(("overrides", "match"), [
    (("distill.temperature=0",), "`distill.temperature` must be > 0"),
    (("distill.alpha=1.5",), r"`distill.alpha` must be in \[0, 1\]"),
    (("model.keep_layers=[1, 1]",), "`model.keep_layers` must list distinct layer indices"),
    (("model.keep_layers=0",), "`model.keep_layers` must be >= 1"),
    (("distill.hidden_weight=-1",), "`distill.hidden_weight` must be >= 0"),
    (("distill.hidden_weight=1", "distill.teacher_outputs=cached"),
     "`distill.hidden_weight` needs the teacher in the training step .* set `distill.teacher_outputs` to `auto`"),
    (("distill.hidden_only=true",), "`distill.hidden_weight` must be > 0 with `distill.hidden_only: true`"),
    (("distill.hidden_only=true", "distill.hidden_weight=1"),
     r"`train.restore_best` must be false with `distill.hidden_only: true`: that run trains no head.*"
     "Received: restore_best=True"),
    (("distill.hidden_only=true", "distill.hidden_weight=1", "train.restore_best=false"),
     "`export.enabled` must be false with `distill.hidden_only: true`"),
])
def test_bad_distill_values_are_refused_naming_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, ["data.train=unused.csv", *overrides])


def make_task(*overrides):
    return tasks.create(load_config(None, ["data.train=unused.csv", *overrides]))


def test_soft_losses_equal_their_formulas_on_a_hand_checked_batch():
    # Classification: teacher logits (ln 3, 0) are the distribution (3/4, 1/4); the student's (0, 0) is (1/2, 1/2).
    # KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.130812 at T = 1. At T = 2 the teacher's is (sqrt3, 1)/(1 + sqrt3):
    # 4 x (0.633975 ln 1.267949 + 0.366025 ln 0.732051) = 0.145363.
    student, teacher = tf.constant([[0.0, 0.0]]), tf.constant([[math.log(3.0), 0.0]])
    classification = make_task()
    assert float(classification.soft_loss(student, teacher, None, 1.0)) == pytest.approx(0.130812, abs=1e-5)
    assert float(classification.soft_loss(student, teacher, None, 2.0)) == pytest.approx(0.145363, abs=1e-5)
    # Multi-label: the teacher's logit 0 is p = 1/2; the student's ln 3 is q = 3/4: -(1/2 ln 3/4 + 1/2 ln 1/4) = 0.836988.
    multi = make_task("task.type=multi_label")
    assert float(multi.soft_loss(tf.constant([[math.log(3.0)]]), tf.constant([[0.0]]), None, 1.0)) == pytest.approx(
        0.836988, abs=1e-5)
    # Regression: the mean squared difference, whatever the temperature: ((1 - 3)^2 + (2 - 2)^2) / 2 = 2.
    regression = make_task("task.type=regression")
    assert float(regression.soft_loss(tf.constant([[1.0], [2.0]]), tf.constant([[3.0], [2.0]]), None, 5.0)) == 2.0
    # NER: per piece, averaged over the labelled pieces only: the unlabelled piece's large KL adds nothing.
    ner = make_task("task.type=token_classification")
    pieces_student = tf.constant([[[0.0, 0.0], [9.0, -9.0]]])
    pieces_teacher = tf.constant([[[math.log(3.0), 0.0], [-9.0, 9.0]]])
    loss = ner.soft_loss(pieces_student, pieces_teacher, tf.constant([[1.0, 0.0]]), 1.0)
    assert float(loss) == pytest.approx(0.130812, abs=1e-5)
    # QA: over positions, start and end averaged; padding at -1e9 in both adds nothing.
    qa = make_task("task.type=extractive_qa", "task.doc_stride=16")
    spans_student = tf.constant([[[0.0, 0.0], [0.0, 0.0], [-1e9, -1e9]]])
    spans_teacher = tf.constant([[[math.log(3.0), 0.0], [0.0, 0.0], [-1e9, -1e9]]])  # start (3/4, 1/4), end equal
    assert float(qa.soft_loss(spans_student, spans_teacher, None, 1.0)) == pytest.approx(0.130812 / 2, abs=1e-5)


def constant_teacher(calls: list | None = None) -> keras.Model:
    """A teacher whose logits are (ln 3, 0) on every row; each of its calls appends to `calls`, if given."""
    features = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    teacher = keras.Model({"token_ids": features}, keras.layers.Lambda(
        lambda x: tf.stack([tf.math.log(3.0) * tf.ones(tf.shape(x)[:1]), tf.zeros(tf.shape(x)[:1])], axis=1))(features))
    if calls is not None:
        original = teacher.call
        teacher.call = lambda *a, **k: calls.append(1) or original(*a, **k)
    return teacher


def test_the_objective_is_alpha_soft_plus_one_minus_alpha_hard_and_alpha_0_runs_no_teacher():
    calls = []
    teacher = constant_teacher(calls)
    task = make_task()
    x = {"token_ids": tf.zeros((1, 4), tf.int32), "padding_mask": tf.ones((1, 4), tf.int32)}
    student = tf.constant([[0.0, 0.0]])
    hard = lambda y: tf.constant(2.0)  # noqa: E731  the compiled loss, whatever the targets
    mixed = SoftTargets(teacher, task, alpha=0.25, temperature=1.0)(x, tf.constant([1]), student, None, hard)
    assert float(mixed) == pytest.approx(0.75 * 2.0 + 0.25 * 0.130812, abs=1e-5)
    assert calls
    calls.clear()
    assert float(SoftTargets(teacher, task, alpha=0.0, temperature=1.0)(x, tf.constant([1]), student, None, hard)) == 2.0
    assert not calls


def test_hidden_only_makes_the_hidden_state_term_the_whole_loss_and_still_runs_the_teacher():
    calls = []
    teacher = constant_teacher(calls)  # its layers' states feed the term: it must still run

    class Hidden:  # a hidden-state term of 0.5, whatever the states
        trainable_weights = []

        def loss(self, padding_mask):
            return tf.constant(0.5)

    x = {"token_ids": tf.zeros((1, 4), tf.int32), "padding_mask": tf.ones((1, 4), tf.int32)}
    student, hard = tf.constant([[0.0, 0.0]]), (lambda y: tf.constant(2.0))  # noqa: E731
    both = SoftTargets(teacher, make_task(), 0.25, 1.0, Hidden())(x, tf.constant([1]), student, None, hard)
    assert float(both) == pytest.approx(0.75 * 2.0 + 0.25 * 0.130812 + 0.5, abs=1e-5)
    calls.clear()
    alone = SoftTargets(teacher, make_task(), 0.25, 1.0, Hidden(), hidden_only=True)(x, tf.constant([1]), student,
                                                                                       None, hard)
    assert float(alone) == 0.5
    assert calls
    with pytest.raises(ValueError, match="`hidden_only` needs a `hidden` term"):
        SoftTargets(teacher, make_task(), 0.25, 1.0, None, hidden_only=True)


def test_rows_marked_unlabeled_take_the_teachers_labels_as_hard_targets_even_at_alpha_0():
    # The teacher's logits (ln 3, 0) on every row: label 0, probability 3/4; score ln 3 for regression.
    teacher = constant_teacher()
    features = teacher.input["token_ids"]  # the regression teacher below reads the same input
    x = {"token_ids": tf.zeros((3, 4), tf.int32), streaming.UNLABELED: tf.constant([[1.0], [0.0], [1.0]])}
    seen = []

    def hard(y):
        seen.append(y.numpy())
        return tf.constant(1.0)

    for alpha in (0.0, 0.5):
        seen.clear()
        SoftTargets(teacher, make_task(), alpha, 1.0)(x, tf.constant([1, 1, 1], tf.int64), tf.zeros((3, 2)), None, hard)
        np.testing.assert_array_equal(seen[0], [0, 1, 0])  # the marked rows' label 1 (a placeholder) became 0
    multi = make_task("task.type=multi_label", "task.threshold=0.6")  # sigmoid(ln 3) = 0.75 is on, sigmoid(0) off
    SoftTargets(teacher, multi, 0.0, 1.0)(x, tf.ones((3, 2)), tf.zeros((3, 2)), None, hard)
    np.testing.assert_array_equal(seen[-1], [[1, 0], [1, 1], [1, 0]])
    score = keras.Model({"token_ids": features}, keras.layers.Lambda(
        lambda x: tf.math.log(3.0) * tf.ones(tf.shape(x)[:1])[:, tf.newaxis])(features))
    regression = make_task("task.type=regression")
    SoftTargets(score, regression, 0.0, 1.0)(x, tf.fill((3, 1), 5.0), tf.zeros((3, 1)), None, hard)
    np.testing.assert_allclose(seen[-1], [[math.log(3.0)], [5.0], [math.log(3.0)]], rtol=1e-6)


def test_logits_from_an_exports_outputs_give_the_soft_targets_of_its_logits():
    rng = np.random.default_rng(0)
    logits = rng.uniform(-6.0, 6.0, (5, 3)).astype(np.float32)
    student = tf.constant(rng.normal(size=(5, 3)), tf.float32)
    # Classification serves probabilities: their log is the logits less a constant per row, which the soft loss drops.
    classification = make_task()
    recovered = classification.logits_from_outputs({"probabilities": tf.nn.softmax(logits).numpy()})
    assert recovered.shape == (5, 3) and recovered.dtype == np.float32
    assert not np.allclose(recovered, logits, atol=1e-2)  # not the logits themselves ...
    for temperature in (1.0, 2.0):  # ... but the same soft loss at every temperature
        assert float(classification.soft_loss(student, tf.constant(recovered), None, temperature)) == pytest.approx(
            float(classification.soft_loss(student, tf.constant(logits), None, temperature)), abs=1e-5)
    # Multi-label serves sigmoid probabilities: inverted, clipped where float32 rounds a probability to 0 or 1.
    multi = make_task("task.type=multi_label")
    saturated = np.array([[30.0, -30.0, 0.5]], np.float32)
    recovered = multi.logits_from_outputs({"probabilities": tf.sigmoid(np.concatenate([logits, saturated])).numpy()})
    np.testing.assert_allclose(recovered[:5], logits, atol=2e-3)
    np.testing.assert_allclose(recovered[5], [16.118, -16.118, 0.5], atol=1e-3)
    # Regression serves the score, which is the logit.
    regression = make_task("task.type=regression")
    np.testing.assert_array_equal(regression.logits_from_outputs({"score": logits[:, 0]}), logits[:, :1])
    with pytest.raises(NotImplementedError, match="spans or tags"):
        make_task("task.type=token_classification").logits_from_outputs({})


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, data_dir):
    """A finished classification run on a 3-layer BERT: the teacher of the tests below."""
    root = tmp_path_factory.mktemp("teacher")
    preset = root / "tiny3"
    tiny_bert(3).save_to_preset(str(preset))
    keras_hub.models.BertTokenizer(vocabulary=VOCABULARY, lowercase=True).save_to_preset(str(preset))
    base = [f"model.backbone={preset}", "model.freeze_layers=1", "model.sequence_length=32", "model.dropout=0.0",
            f"data.train={data_dir / 'train.csv'}", f"data.validation={data_dir / 'validation.csv'}",
            "data.max_train_examples=320", "train.epochs=2", "train.batch_size=16", "train.learning_rate=1e-2",
            f"export.base_dir={root / 'saved_models'}", "export.enabled=false"]
    result = train.run(load_config(None, [*base, "name=teacher", f"output_dir={root / 'teacher'}"]))
    return base, root / "teacher", result


def student_config(teacher_run, tmp_path, *overrides):
    base, folder, _ = teacher_run
    return load_config(None, [*base, "name=student", f"output_dir={tmp_path / 'student'}",
                              f"distill.teacher={folder}", "model.keep_layers=[0, 2]", *overrides])



def cached_and_in_step(teacher_run, tmp_path, *overrides):
    """The same student distilled twice: on the teacher's cached outputs, then with the teacher in the step."""
    cached = distill.run(student_config(teacher_run, tmp_path, *overrides, "distill.teacher_outputs=cached"))
    in_step = distill.run(student_config(teacher_run, tmp_path, *overrides, "distill.teacher_outputs=in_step",
                                         f"output_dir={tmp_path / 'in_step'}"))
    return cached, in_step


def assert_same_training(a, b):
    """Two runs' losses, epoch by epoch, and final weights agree (1e-5)."""
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-5)
    for x, y in zip(a.model.weights, b.model.weights, strict=True):
        np.testing.assert_allclose(x.numpy(), y.numpy(), atol=1e-5, err_msg=x.path)

@pytest.mark.slow
def test_a_student_starts_from_the_teachers_kept_layers_and_reports_the_teachers_score(teacher_run, tmp_path):
    _, _, teacher = teacher_run
    start = {}

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            start.update({w.path: w.numpy() for w in self.model.weights})

    result = distill.run(student_config(teacher_run, tmp_path, "train.epochs=1"), callbacks=[Record()])
    by_path = {w.path: w.numpy() for w in teacher.model.weights}
    renamed = {"transformer_layer_1/": "transformer_layer_2/"}
    for path, value in start.items():
        source = path
        for new, old in renamed.items():
            source = source.replace(new, old)
        np.testing.assert_array_equal(value, by_path[source], err_msg=path)
    assert len(start) < len(by_path)  # layer 1's weights were left out
    assert result.metrics["teacher"]["accuracy"] == pytest.approx(teacher.metrics["accuracy"], abs=1e-6)
    assert result.metrics["retained"]["accuracy"] == pytest.approx(
        result.metrics["accuracy"] / teacher.metrics["accuracy"])
    assert backbones.base.inner_backbone(result.model.backbone).num_layers == 2


@pytest.mark.slow
@pytest.mark.parametrize("student", ["kept layers", "another width, hidden states matched"])
def test_a_student_killed_mid_epoch_resumes_to_the_weights_of_one_never_stopped(teacher_run, tmp_path, tiny_preset,
                                                                                 student):
    overrides = ("train.backup_every_steps=5", "data.validation=", "data.max_train_examples=160")
    if student != "kept layers":  # the projection is not the student's: the backup keeps it beside the weights
        overrides += (f"model.backbone={tiny_preset}", "model.keep_layers=null", "distill.hidden_weight=10")
    config = student_config(teacher_run, tmp_path, *overrides)
    config.save(tmp_path / "config.yaml")
    child = run_python(KILLED_MID_EPOCH, str(tmp_path / "config.yaml"), str(10 + 7), "distill")  # epoch 2, batch 7
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    resumed = distill.run(config)
    straight = distill.run(student_config(teacher_run, tmp_path, *overrides, f"output_dir={tmp_path / 'straight'}"))
    for a, b in zip(straight.model.weights, resumed.model.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.path)


@pytest.mark.slow
def test_a_student_on_cached_teacher_outputs_ends_as_one_with_the_teacher_in_the_step(teacher_run, tmp_path):
    # Dropout on: the teacher built before the student (for the cache) must not change the student's random draws.
    overrides = ("train.epochs=2", "data.max_train_examples=96", "model.dropout=0.1")
    assert_same_training(*cached_and_in_step(teacher_run, tmp_path, *overrides))


def hidden_distance(student: tasks.TaskModel, teacher: tasks.TaskModel, packer, texts: list[str]) -> float:
    """The hidden-state term (weight 1) between the two models on `texts`, in inference mode."""
    groups = backbones.base.keras_hub_layer_groups
    match = hidden_states.HiddenStateMatch(groups(student.backbone), groups(teacher.backbone), 1.0)
    features = packer(tf.constant(texts))
    student(features)
    teacher(features)
    return float(match.loss(features["padding_mask"]))


@pytest.mark.slow
def test_hidden_state_matching_pulls_the_students_layers_toward_the_teachers(teacher_run, tmp_path, data_dir):
    # Student layers [0, 2] of 3 start as teacher layers 0 and 2 and match them (top to top): layer 1 starts far
    # from teacher layer 2, which read teacher layer 1's output. The same run but for the term moves it less.
    _, _, teacher = teacher_run
    texts = pd.read_csv(data_dir / "validation.csv")["text"].head(32).tolist()
    start = []

    class Start(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            start.append(hidden_distance(self.model, teacher.model, teacher.packer, texts))

    overrides = ("train.epochs=2", "data.max_train_examples=96", "distill.teacher_outputs=in_step")
    plain = distill.run(student_config(teacher_run, tmp_path, *overrides), callbacks=[Start()])
    matched = distill.run(student_config(teacher_run, tmp_path, *overrides, "distill.hidden_weight=10",
                                         f"output_dir={tmp_path / 'matched'}", "export.enabled=true"))
    drifted = hidden_distance(plain.model, teacher.model, teacher.packer, texts)  # 0.022 from 0.007 at the start
    pulled = hidden_distance(matched.model, teacher.model, teacher.packer, texts)  # 0.004
    assert pulled < start[0] < drifted
    assert pulled < drifted / 3
    # The layers' wrapped calls trace into the export as they are: the SavedModel answers raw text.
    served = tf.saved_model.load(matched.export_path).signatures["serving_default"](text=tf.constant(texts[:2]))
    np.testing.assert_allclose(served["probabilities"].numpy(),
                               tf.nn.softmax(matched.model(teacher.packer(tf.constant(texts[:2])))).numpy(), atol=1e-5)


def projected_term(model: tasks.TaskModel, packer, texts: list[str]) -> float:
    """A student's own hidden-state term (its projection and weight, its step's teacher) on `texts`, in inference mode."""
    features = packer(tf.constant(texts))
    model(features)
    model.objective.teacher(features)
    return float(model.objective.hidden.loss(features["padding_mask"]))


@pytest.mark.slow
def test_a_student_of_another_width_learns_a_projection_that_trains_but_is_neither_saved_nor_exported(
        teacher_run, tmp_path, tiny_preset, data_dir):
    # The teacher is 16 wide, tiny_preset's BERT 32: its states reach the teacher's width through a learnt map.
    _, _, teacher = teacher_run
    texts = pd.read_csv(data_dir / "validation.csv")["text"].head(32).tolist()
    start = {}

    class Start(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            start["projection"] = [w.numpy() for w in self.model.objective_weights()]
            start["term"] = projected_term(self.model, teacher.packer, texts)

    config = student_config(teacher_run, tmp_path, f"model.backbone={tiny_preset}", "model.keep_layers=null",
                            "distill.hidden_weight=10", "train.epochs=3", "data.max_train_examples=96",
                            "export.enabled=true")
    result = distill.run(config, callbacks=[Start()])
    projection = result.model.objective_weights()
    assert [tuple(w.shape) for w in projection] == [(32, 16), (16,)]
    assert all(np.abs(w.numpy() - before).max() > 1e-3 for w, before in zip(projection, start["projection"], strict=True))
    assert {id(w) for w in projection} <= {id(w) for w in result.model.trainable_weights}
    assert projected_term(result.model, result.packer, texts) < start["term"] / 2
    # The run's weights file is the student's alone: `tfft evaluate` rebuilds it without the projection.
    trained = load_trained(config)
    assert len(trained.model.weights) == len(result.model.weights)
    for a, b in zip(trained.model.weights, result.model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    served = tf.saved_model.load(result.export_path).signatures["serving_default"](text=tf.constant(texts[:2]))
    np.testing.assert_allclose(served["probabilities"].numpy(),
                               tf.nn.softmax(result.model(result.packer(tf.constant(texts[:2])))).numpy(), atol=1e-5)


@pytest.mark.slow
def test_a_hidden_only_first_stage_trains_no_head_and_writes_the_backbone_the_second_stage_starts_from(
        teacher_run, tmp_path, tiny_preset, data_dir):
    # TinyBERT's two stages as two runs: a 32-wide student of the 16-wide teacher learns its states alone, then the
    # task from that backbone. No weight decay: a weight without gradient then does not move at all.
    _, _, teacher = teacher_run
    texts = pd.read_csv(data_dir / "validation.csv")["text"].head(32).tolist()
    start = {}

    class Start(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            start["weights"] = {w.path: w.numpy() for w in self.model.weights}
            start["term"] = projected_term(self.model, teacher.packer, texts)

    first = distill.run(student_config(
        teacher_run, tmp_path, f"model.backbone={tiny_preset}", "model.keep_layers=null", "distill.hidden_weight=10",
        "distill.hidden_only=true", "train.restore_best=false", "train.weight_decay=0", "train.epochs=2",
        "data.max_train_examples=96", f"output_dir={tmp_path / 'first'}"), callbacks=[Start()])
    backbone_paths = {w.path for w in first.model.backbone.weights}
    moved = {w.path for w in first.model.weights if not np.array_equal(w.numpy(), start["weights"][w.path])}
    assert moved and moved <= backbone_paths  # the head and the pooler, untouched
    assert any("transformer_layer" in path for path in moved)
    assert projected_term(first.model, first.packer, texts) < start["term"] / 2
    folder = tmp_path / "first" / run_dir.BACKBONE_DIR
    second_start = {}

    class SecondStart(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            second_start.update({w.path: w.numpy() for w in self.model.backbone.weights})

    second = distill.run(student_config(teacher_run, tmp_path, f"model.backbone={folder}", "model.keep_layers=null",
                                        "train.epochs=1", f"output_dir={tmp_path / 'second'}"),
                         callbacks=[SecondStart()])
    trained = {w.path: w.numpy() for w in first.model.backbone.weights}
    assert sorted(second_start) == sorted(trained)
    for path, value in second_start.items():
        np.testing.assert_array_equal(value, trained[path], err_msg=path)
    assert second.metrics["teacher"]["accuracy"] == pytest.approx(teacher.metrics["accuracy"], abs=1e-6)


@pytest.mark.slow
def test_the_teacher_answers_each_unlabelled_row_once_and_the_cache_gives_the_step_teachers_training(
        teacher_run, tmp_path, monkeypatch):
    # Labelling `distill.unlabeled`'s rows held in memory runs the teacher on them; its cache must not run it again,
    # and the outputs it keeps (log-probabilities) must train the student as the teacher's logits in the step do.
    texts = [f"the {noun} was {adjective}" for noun in ("plot", "meal") for adjective in ("great", "awful")] * 6
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "more.csv", index=False)
    overrides = ("train.epochs=2", "data.max_train_examples=96", f"distill.unlabeled={tmp_path / 'more.csv'}")
    answered = []
    teacher_outputs = teacher_cache.teacher_outputs

    def counted(ds, teacher, elements):
        answered.append(elements)
        return teacher_outputs(ds, teacher, elements)

    monkeypatch.setattr(teacher_cache, "teacher_outputs", counted)
    loads = []
    load = distill.RunTeacher.load
    monkeypatch.setattr(distill.RunTeacher, "load", lambda self: loads.append(1) or load(self))
    cached = distill.run(student_config(teacher_run, tmp_path, *overrides, "distill.teacher_outputs=cached"))
    assert answered == [96]  # the labelled rows only: the unlabelled 24 were answered when labelled
    assert len(loads) == 1  # labelling and the cache share one teacher, built outside the strategy
    in_step = distill.run(student_config(teacher_run, tmp_path, *overrides, "distill.teacher_outputs=in_step",
                                         f"output_dir={tmp_path / 'in_step'}"))
    assert len(loads) == 3  # labelling's, then the step's, built in the strategy's scope
    assert_same_training(cached, in_step)


@pytest.mark.slow
def test_a_student_whose_training_finished_before_runs_no_teacher_over_its_training_split(
        teacher_run, tmp_path, monkeypatch):
    # Killed after training (during evaluation or export): the rerun evaluates and exports only. It must not
    # cache the teacher's outputs, or label `distill.unlabeled`'s rows, for a training it will not run.
    pd.DataFrame({"text": ["the plot was great", "the meal was awful"] * 4}).to_csv(tmp_path / "more.csv", index=False)
    config = student_config(teacher_run, tmp_path, "train.epochs=2", "data.max_train_examples=64",
                            "distill.teacher_outputs=cached", f"distill.unlabeled={tmp_path / 'more.csv'}")
    first = distill.run(config)
    (pathlib.Path(config.output_dir) / run_dir.COMPLETE_FILE).unlink()  # as a kill before the run completed

    def refused(*args, **kwargs):
        raise AssertionError("a finished training needs no teacher outputs or labels")

    monkeypatch.setattr(teacher_cache, "attach_teacher_outputs", refused)
    monkeypatch.setattr(distill.Distillation, "label_unlabeled", refused)
    monkeypatch.setattr(keras.Model, "fit", refused)
    again = distill.run(config)
    assert again.metrics["accuracy"] == pytest.approx(first.metrics["accuracy"])
    assert again.metrics["teacher"] == pytest.approx(first.metrics["teacher"])


@pytest.mark.slow
def test_unlabelled_rows_join_the_training_split_with_the_teachers_labels(teacher_run, tmp_path, data_dir):
    _, _, teacher = teacher_run
    texts = [f"the {noun} was {adjective}" for noun in ("plot", "meal") for adjective in ("great", "awful", "fine")] * 8
    pd.DataFrame({"text": texts[:20]}).to_csv(tmp_path / "unlabelled-1.csv", index=False)
    pd.DataFrame({"text": texts[20:]}).to_csv(tmp_path / "unlabelled-2.csv", index=False)
    config = student_config(teacher_run, tmp_path, f"distill.unlabeled={tmp_path / 'unlabelled-*.csv'}", "train.epochs=1")
    task = tasks.create(config)
    train_data = read_training_data(task, config)
    task.fit_vocabulary(train_data.labelled)
    source = backbones.resolve(config.model)
    source.prepare(None, None)
    hooks = distill.Distillation()
    hooks.check(config, task)
    hooks.prepare(config, task, train_data, source.packer())
    added = train_data.examples.take(list(range(320, 320 + len(texts))))
    assert len(train_data.examples) == 320 + len(texts) and added.texts == texts
    logits = teacher.model(teacher.packer(tf.constant(texts)), training=False).numpy()
    assert added.labels == [teacher.task.label_names[i] for i in logits.argmax(axis=1)]

    steps = []

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            steps.append(self.params["steps"])

    distill.run(config, callbacks=[Record()])
    assert steps == [(320 + len(texts)) // 16]


@pytest.mark.slow
def test_a_student_of_the_teachers_export_ends_as_one_of_its_run_folder(teacher_run, tmp_path, tiny_preset):
    base, folder, teacher = teacher_run
    config = load_config(None, [*base, "name=teacher", f"output_dir={folder}", f"export.base_dir={tmp_path / 'exported'}"])
    exported = export.export_model(teacher.model, teacher.packer, teacher.task, config)
    # Unlabelled rows too: each teacher labels them, and its cache keeps those outputs rather than asking again.
    pd.DataFrame({"text": ["the plot was great", "the meal was awful", "the cast was fine"] * 8}).to_csv(
        tmp_path / "more.csv", index=False)
    # Another backbone (2 layers, 32 wide): both students start from its pretrained weights, not the teacher's.
    overrides = ("train.epochs=2", "data.max_train_examples=96", f"model.backbone={tiny_preset}",
                 "model.keep_layers=null", "distill.teacher_outputs=cached", f"distill.unlabeled={tmp_path / 'more.csv'}")
    from_run = distill.run(student_config(teacher_run, tmp_path, *overrides))
    from_export = distill.run(student_config(teacher_run, tmp_path, *overrides, f"distill.teacher={exported}",
                                             f"output_dir={tmp_path / 'from_export'}"))
    assert from_export.metrics["teacher"] == pytest.approx(teacher.task.logged_scores(teacher.metrics), abs=1e-6)
    assert from_export.metrics["teacher"] == pytest.approx(from_run.metrics["teacher"], abs=1e-6)
    assert_same_training(from_export, from_run)


@pytest.mark.slow
def test_a_student_on_a_streamed_split_trains_on_streamed_unlabelled_rows_too(teacher_run, tmp_path, monkeypatch):
    texts = [f"the {noun} was {adjective}" for noun in ("plot", "meal") for adjective in ("great", "awful", "fine")] * 8
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "more.csv", index=False)
    steps, relabelled = [], []
    original = distill.with_teacher_targets
    monkeypatch.setattr(distill, "with_teacher_targets", lambda *a: relabelled.append(1) or original(*a))

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            steps.append(self.params["steps"])

    config = student_config(teacher_run, tmp_path, "data.streaming=true", "data.max_train_examples=null",
                            "train.epochs=1", f"distill.unlabeled={tmp_path / 'more.csv'}")
    result = distill.run(config, callbacks=[Record()])
    assert steps == [-(-(960 + len(texts)) // 16)]
    assert relabelled  # the training step saw the marks and gave the marked rows the teacher's labels
    assert result.metrics["training_data"]["unlabeled_rows"] == len(texts)
    assert (pathlib.Path(config.output_dir) / streaming.UNLABELED_SCAN_FILE).is_file()
    assert np.isfinite(result.history["loss"]).all()


def fake_export(folder: pathlib.Path, task_type: str = "classification", inputs=("text",),
                labels=("neg", "pos")) -> pathlib.Path:
    """A SavedModel version folder with its `tfft_task.json` and an empty graph: enough for every check before use."""
    (folder / "assets").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"")
    metadata = {"type": task_type, "inputs": list(inputs), "labels": list(labels) if labels else None}
    (folder / "assets" / "tfft_task.json").write_text(json.dumps(metadata))
    return folder


@pytest.mark.usefixtures("no_fit")
def test_bad_export_teachers_are_refused_before_training_naming_the_key(make_config, tmp_path, data_dir):
    other_type = fake_export(tmp_path / "regression" / "1", "regression", labels=None)
    with pytest.raises(ConfigError, match="`distill.teacher` must be an export of this config's task type, "
                                          "`classification`; it is a `regression` model"):
        distill.run(make_config(f"distill.teacher={other_type}"))
    ner = fake_export(tmp_path / "ner" / "1", "token_classification", labels=("O", "B-PER"))
    with pytest.raises(ConfigError, match="must be a run folder for a `token_classification` task: an export teaches "
                                          "only tasks with one output per row"):
        distill.run(make_config("task.type=token_classification", f"data.train={data_dir / 'ner_train.txt'}",
                                "data.validation=", f"distill.teacher={ner}"))
    pairs = fake_export(tmp_path / "pairs" / "1", inputs=("text", "text_pair"))
    with pytest.raises(ConfigError, match="must take the inputs this run's data have: it was trained on pairs"):
        distill.run(make_config(f"distill.teacher={pairs}"))
    single = fake_export(tmp_path / "single" / "1")
    with pytest.raises(ConfigError, match="and this one is streamed: set `data.streaming=false`"):
        distill.run(make_config(f"distill.teacher={single}", "data.streaming=true"))
    with pytest.raises(ConfigError, match="`distill.hidden_weight` needs a run folder as `distill.teacher`: an export "
                                          "gives no hidden states"):
        distill.run(make_config(f"distill.teacher={single}", "distill.hidden_weight=1"))
    other_labels = fake_export(tmp_path / "labels" / "1", labels=("bad", "good"))
    with pytest.raises(ConfigError, match=r"an export with this run's labels: its labels are \['bad', 'good'\]"):
        distill.run(make_config(f"distill.teacher={other_labels}"))
    assert not (tmp_path / "run").exists()  # nothing written for the student


def fake_teacher(folder: pathlib.Path, *overrides: str) -> pathlib.Path:
    """A run folder with a config, labels and an empty weights file: enough for every check before the build."""
    folder.mkdir(parents=True)
    load_config(None, ["data.train=unused.csv", f"output_dir={folder}", *overrides]).save(folder / "config.yaml")
    (folder / "model.weights.h5").write_bytes(b"")
    (folder / "labels.txt").write_text("neg\npos\n")
    return folder


@pytest.mark.usefixtures("no_fit")
def test_bad_teachers_are_refused_before_training_naming_the_key(make_config, tmp_path, data_dir):
    with pytest.raises(ConfigError, match="`distill.teacher` must name a finished tfft run folder"):
        distill.run(make_config())
    with pytest.raises(ConfigError, match="`distill.teacher` must be a tfft run folder whose training finished"):
        distill.run(make_config(f"distill.teacher={tmp_path}"))
    other_type = fake_teacher(tmp_path / "regression", "task.type=regression")
    with pytest.raises(ConfigError, match="must be a run of this config's task type, `classification`; it is a "
                                          "`regression` run"):
        distill.run(make_config(f"distill.teacher={other_type}"))
    with pytest.raises(ConfigError, match="must not be the student's own `output_dir`"):
        distill.run(make_config(f"distill.teacher={other_type}", f"output_dir={other_type}"))
    other_tokenizer = fake_teacher(tmp_path / "recipe", "model.backbone=tiny-bert")
    (other_tokenizer / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n")
    with pytest.raises(ConfigError, match="tokenizes as the student's .* their vocabularies differ"):
        distill.run(make_config(f"distill.teacher={other_tokenizer}"))
    other_labels = fake_teacher(tmp_path / "labels")
    (other_labels / "labels.txt").write_text("bad\ngood\n")
    with pytest.raises(ConfigError, match=r"with this run's labels.*\['bad', 'good'\].*\['neg', 'pos'\]"):
        distill.run(make_config(f"distill.teacher={other_labels}"))
    ner = fake_teacher(tmp_path / "ner", "task.type=token_classification")
    with pytest.raises(ConfigError, match="`distill.unlabeled` cannot be labelled by a `token_classification` teacher"):
        distill.run(make_config("task.type=token_classification", f"data.train={data_dir / 'ner_train.txt'}",
                                "data.validation=", f"distill.teacher={ner}", "distill.unlabeled=more.txt"))
    masked = fake_teacher(tmp_path / "masked", "task.type=masked_lm")
    with pytest.raises(ConfigError, match="`task.type` cannot be distilled"):
        distill.run(make_config("task.type=masked_lm", f"data.train={data_dir / 'corpus.txt'}",
                                "data.validation=", f"distill.teacher={masked}"))
    with pytest.raises(ConfigError, match=r"`model.keep_layers` must be .* between 0 and 1.*keep_layers=\[0, 5\]"):
        train.run(make_config("model.keep_layers=[0, 5]"))
    # Nothing was written for the student, not even a lock file or its folder (`tfft.run_dir.locked`).
    assert not (tmp_path / "run").exists()


def test_unlabelled_files_stream_beside_a_streamed_split_marked_and_with_zero_targets(make_config, tmp_path):
    texts = [f"the {noun} was {adjective}" for noun in ("plot", "meal") for adjective in ("great", "awful")] * 10
    pd.DataFrame({"text": texts[:15]}).to_csv(tmp_path / "more-1.csv", index=False)
    pd.DataFrame({"text": texts[15:]}).to_csv(tmp_path / "more-2.csv", index=False)
    config = make_config("data.streaming=true", "data.shuffle_buffer=8")
    task = tasks.create(config)
    streamed = read_training_data(task, config)
    labelled = streamed.elements
    streamed.add_unlabeled(str(tmp_path / "more-*.csv"), lambda rows: pytest.fail("a streamed split labels no rows"))
    assert streamed.elements == labelled + 40
    task.fit_vocabulary(streamed.labelled)
    source = backbones.resolve(config.model)
    source.prepare(None, None)
    batches = streamed.dataset(source.packer(), data.Batching(16), seed=0, epochs=1).take(-(-streamed.elements // 16))
    marks, targets = [], []
    for features, y in batches:
        marks += features[streaming.UNLABELED].numpy()[:, 0].tolist()
        targets += y.numpy().tolist()
    assert len(marks) == labelled + 40 and sum(marks) == 40
    assert all(t == 0 for m, t in zip(marks, targets, strict=True) if m)
    assert 0 < marks[: len(marks) // 2].count(1.0) < 40  # drawn among the labelled rows, not all at one end
    assert streamed.scores()["training_data"]["unlabeled_rows"] == 40
