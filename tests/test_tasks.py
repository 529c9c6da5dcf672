import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import classification_task
from tfft import tasks
from tfft.backbones import resolve
from tfft.config import ConfigError, ModelConfig, load_config
from tfft.tasks import TaskModel, count_parameters, freeze


@pytest.fixture
def parts(tiny_preset):
    source = resolve(ModelConfig(backbone=str(tiny_preset), sequence_length=16))
    source.prepare(None, None)
    backbone = source.backbone()
    return source, backbone, TaskModel(backbone, classification_task(), dropout=0.1)


def test_head_outputs_logits_that_the_task_turns_into_probabilities(parts):
    source, _, model = parts
    logits = model(source.packer()(tf.constant(["the movie was great", "dull"])))
    assert logits.shape == (2, 3) and logits.dtype == "float32"
    probabilities = classification_task().postprocess(logits)["probabilities"]
    np.testing.assert_allclose(tf.reduce_sum(probabilities, axis=-1), [1.0, 1.0], rtol=1e-6)
    assert model.get_layer("head").dtype_policy.compute_dtype == "float32"


@pytest.mark.parametrize("n, trainable", [(0, [True, True]), (1, [False, True]), (2, [False, False]), (-1, [False, False])])
def test_freeze_lower_layers(parts, n, trainable):
    source, backbone, model = parts
    groups = source.layer_groups(backbone)
    freeze(backbone, groups, n)
    trainable_names = {w.path.split("/")[0] for w in model.trainable_weights}
    assert [layer.name in trainable_names for layer in groups.encoder] == trainable
    assert not any(layer.name in trainable_names for layer in groups.embeddings)
    assert "head" in trainable_names
    assert ("pooled_dense" in trainable_names) == (n != -1)  # -1 freezes the pooler too


def test_freeze_minus_one_leaves_only_the_head(parts):
    source, backbone, model = parts
    freeze(backbone, source.layer_groups(backbone), -1)
    assert backbone.trainable_weights == []
    assert {w.path.split("/")[0] for w in model.trainable_weights} == {"head"}


def test_nothing_frozen(parts):
    source, backbone, model = parts
    freeze(backbone, source.layer_groups(backbone), 0, freeze_embeddings=False)
    assert count_parameters(model.trainable_weights) == count_parameters(model.weights)


def test_freeze_too_many_layers_is_a_keras_style_error(parts):
    source, backbone, _ = parts
    with pytest.raises(ConfigError) as err:
        freeze(backbone, source.layer_groups(backbone), 20)
    assert str(err.value).startswith("Argument `model.freeze_layers` must be between -1 and 2")
    assert str(err.value).endswith("Received: freeze_layers=20")


def test_count_parameters():
    layer = keras.layers.Dense(3)
    layer.build((None, 4))
    assert count_parameters(layer.weights) == 15


def test_mean_pooling_averages_the_real_tokens_and_freezes_the_pooler(tiny_preset, make_config):
    from tfft import model as model_lib

    config = make_config("model.pooling=mean")
    source = resolve(config.model)
    source.prepare(None, None)
    model = model_lib.build_model(config, source, classification_task())
    packer = source.packer()
    features = packer(tf.constant(["the movie was great", "dull"]))
    sequence = model.backbone(features)["sequence_output"].numpy()
    mask = features["padding_mask"].numpy()[..., None]
    expected = (sequence * mask).sum(1) / mask.sum(1)
    pooled = model.get_layer("mean_pooling")(tf.constant(sequence), tf.constant(features["padding_mask"]))
    np.testing.assert_allclose(pooled, expected, rtol=1e-5, atol=1e-6)
    assert not any("pooled_dense" in w.path for w in model.trainable_weights)  # unused: no gradient reaches it


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["task.type=classification", "task.label_columns=a,b"],
         "Argument `task.label_columns` applies to `task.type: multi_label` only. Received: label_columns=['a', 'b']"),
        (["task.type=regression", "task.label_names_file=names.txt"],
         "Argument `task.label_names_file` applies to `task.type: multi_label` only"),
        (["task.type=regression", "train.class_weight=balanced"],
         "Argument `train.class_weight` applies to `task.type: classification` only. Received: class_weight='balanced'"),
        (["task.type=extractive_qa", "model.sequence_length=32", "task.max_question_length=8", "task.doc_stride=21"],
         "model.sequence_length - task.max_question_length - 3 = 21. Received: doc_stride=21"),
        (["task.type=extractive_qa", "task.n_best=0"], "Argument `task.n_best` must be between 1 and 100"),
        (["task.type=masked_lm", "task.mask_rate=1.5"], "Argument `task.mask_rate` must be in (0, 1). Received: mask_rate=1.5"),
        (["task.type=masked_lm", "model.sequence_length=32", "task.max_predictions=40"],
         "Argument `task.max_predictions` must be between 1 and model.sequence_length (32)"),
    ],
)
def test_each_task_checks_its_own_keys_when_created(overrides, message):
    config = load_config(None, ["data.train=x.csv", *overrides])  # the generic checks pass: the keys are the task's
    with pytest.raises(ConfigError) as err:
        tasks.create(config)
    assert message in str(err.value)


def test_a_task_takes_its_own_exclusive_keys():
    config = load_config(None, ["data.train=x.csv", "task.type=multi_label", "task.label_columns=a,b"])
    assert tasks.create(config).target_columns() == [("task.label_columns", "a"), ("task.label_columns", "b")]
    config = load_config(None, ["data.train=x.csv", "train.class_weight=balanced"])
    assert tasks.create(config).type == "classification"
