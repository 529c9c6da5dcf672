"""Layer-wise recipes: learning-rate decay by layer, gradual unfreezing, re-initialized top layers."""

import logging
import pathlib

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from tfft import layerwise, tasks, train
from tfft.config import ConfigError

#: Every backbone weight trains, so every group is there: embeddings, layers 0 and 1, head and pooler.
ALL_TRAIN = ("model.freeze_layers=0", "model.freeze_embeddings=false")
#: One Adam step then moves every weight with a gradient by its learning rate, up to epsilon.
ONE_STEP_IS_THE_RATE = ("train.weight_decay=0", "train.clipnorm=0", "train.adam_epsilon=1e-12", "train.warmup_ratio=0",
                        "train.learning_rate=1e-3")


def _built(config):
    """The model and pipeline `train.run` would train, before any step."""
    task = tasks.create(config)
    strategy = tf.distribute.get_strategy()
    inputs = train.prepare_data(config, task, strategy, kept=None)
    model = train.build(config, task, inputs, strategy)
    rates = layerwise.layer_rates(model, inputs.source.layer_groups(model.backbone), config.train, inputs.steps)
    return model, inputs, {row.name: row.variables for row in rates}


def _snapshot(groups):
    return {name: [v.numpy().copy() for v in variables] for name, variables in groups.items()}


def _largest_change(groups, before):
    return {
        name: max(float(np.abs(v.numpy() - b).max()) for v, b in zip(variables, before[name], strict=True))
        for name, variables in groups.items()
    }


def _fit(model, inputs, steps):
    model.fit(inputs.train_ds, epochs=1, steps_per_epoch=steps, verbose=0)


def test_layer_decay_gives_each_group_the_rate_of_the_formula_in_one_step(make_config, caplog):
    caplog.set_level(logging.INFO, logger="tfft.layerwise")
    model, inputs, groups = _built(make_config(*ALL_TRAIN, *ONE_STEP_IS_THE_RATE, "train.layer_decay=0.5"))
    before = _snapshot(groups)
    _fit(model, inputs, 1)
    moved = _largest_change(groups, before)
    # L = 2 layers: layer i at 0.5^(2 - i), the embeddings at 0.5^3, the head at the full rate.
    expected = {"embeddings": 1.25e-4, "encoder layer 0": 2.5e-4, "encoder layer 1": 5e-4, "head and pooler": 1e-3}
    assert moved == pytest.approx(expected, rel=1e-3)
    assert "Learning rates by layer group (peak):\n  embeddings: 0.000125\n  encoder layer 0: 0.00025" in caplog.text


def test_layer_decay_leaves_frozen_layers_alone(make_config):
    model, inputs, groups = _built(make_config("model.freeze_layers=1", *ONE_STEP_IS_THE_RATE, "train.layer_decay=0.5"))
    assert sorted(groups) == ["encoder layer 1", "head and pooler"]
    before = _snapshot(groups)
    _fit(model, inputs, 1)
    assert _largest_change(groups, before) == pytest.approx({"encoder layer 1": 5e-4, "head and pooler": 1e-3}, rel=1e-3)


def test_unfreezing_starts_each_layer_at_its_stage_in_one_trace(make_config, monkeypatch):
    traces = []
    original = tasks.TaskModel.train_step
    monkeypatch.setattr(tasks.TaskModel, "train_step", lambda self, data: traces.append(1) or original(self, data))
    config = make_config(*ALL_TRAIN, "train.unfreeze.every=2", "train.unfreeze.unit=steps")
    model, inputs, groups = _built(config)
    # The head from update 0, then layer 1 from update 2, layer 0 from 4, the embeddings from 6.
    before = _snapshot(groups)
    _fit(model, inputs, 3)
    moved = _largest_change(groups, before)
    assert moved["head and pooler"] > 0 and moved["encoder layer 1"] > 0
    assert moved["encoder layer 0"] == 0 and moved["embeddings"] == 0
    optimizer = model.optimizer
    waiting = groups["encoder layer 0"]
    assert all(not optimizer._momentums[optimizer._get_variable_index(v)].numpy().any() for v in waiting)

    _fit(model, inputs, 2)  # updates 3 and 4
    moved = _largest_change(groups, before)
    assert moved["encoder layer 0"] > 0 and moved["embeddings"] == 0
    assert len(traces) == 1


@pytest.mark.slow
def test_a_resumed_run_unfreezes_where_a_run_never_stopped_does(make_config, tmp_path):
    overrides = (*ALL_TRAIN, "train.unfreeze.every=1", "train.unfreeze.unit=epochs", "train.epochs=3",
                 "data.validation=", "data.max_train_examples=160")

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise KeyboardInterrupt("simulated crash after epoch 1")

    config = make_config(*overrides)
    with pytest.raises(KeyboardInterrupt):
        train.run(config, callbacks=[Crash()])
    resumed = train.run(config)
    straight = train.run(make_config(*overrides, f"output_dir={tmp_path / 'straight'}"))
    for a, b in zip(straight.model.weights, resumed.model.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=a.path)


def test_reinit_draws_the_top_layers_again_from_the_backbones_initializer(make_config, tiny_preset):
    pretrained = keras_hub.models.Backbone.from_preset(str(tiny_preset))
    model, _, _ = _built(make_config("model.reinit_layers=1", "train.seed=3"))
    again, _, _ = _built(make_config("model.reinit_layers=1", "train.seed=3"))
    backbone = model.backbone
    for name in ["token_embedding", "transformer_layer_0"]:
        for before, after in zip(pretrained.get_layer(name).weights, backbone.get_layer(name).weights, strict=True):
            assert np.array_equal(before.numpy(), after.numpy()), f"{after.path} was re-initialized"
    for name in ["transformer_layer_1", "pooled_dense"]:  # the head reads the pooler
        kernels = [w for w in backbone.get_layer(name).weights if w.path.endswith("kernel")]
        for kernel in kernels:
            old = pretrained.get_layer(name)
            assert not np.allclose(kernel.numpy(), [w for w in old.weights if w.path == kernel.path][0].numpy())
            # keras-hub BERT's initializer: truncated normal, stddev 0.02 (0.0176 after truncation)
            assert 0.012 < float(np.std(kernel.numpy())) < 0.022, kernel.path
    norms = [w for w in backbone.get_layer("transformer_layer_1").weights if w.path.endswith("gamma")]
    assert all(np.array_equal(w.numpy(), np.ones(w.shape)) for w in norms)
    for a, b in zip(backbone.weights, again.backbone.weights, strict=True):
        assert np.array_equal(a.numpy(), b.numpy()), f"{a.path} differs between two runs with one seed"
    # Every re-drawn kernel got its own seed: the query and key kernels differ.
    query, key = (backbone.get_layer("transformer_layer_1")._self_attention_layer._query_dense,
                  backbone.get_layer("transformer_layer_1")._self_attention_layer._key_dense)
    assert not np.allclose(query.kernel.numpy(), key.kernel.numpy())


def test_reinit_leaves_the_pooler_when_the_head_does_not_read_it(make_config, tiny_preset):
    pretrained = keras_hub.models.Backbone.from_preset(str(tiny_preset))
    model, _, _ = _built(make_config("model.reinit_layers=1", "model.pooling=mean"))
    for before, after in zip(pretrained.get_layer("pooled_dense").weights,
                             model.backbone.get_layer("pooled_dense").weights, strict=True):
        assert np.array_equal(before.numpy(), after.numpy())


@pytest.mark.parametrize("override, message", [
    ("model.reinit_layers=3", r"Argument `model.reinit_layers` must be at most 2, the backbone's number of encoder "
                              r"layers. Received: reinit_layers=3"),
    ("train.unfreeze.start=5", r"Argument `train.unfreeze.start` must be at most 2"),
])
def test_more_layers_than_the_backbone_has_fails_before_anything_is_written(make_config, no_fit, override, message):
    config = make_config(override)
    with pytest.raises(ConfigError, match=message):
        train.run(config)
    out = pathlib.Path(config.output_dir)
    assert not out.exists()  # no config.yaml, no lock file


@pytest.mark.parametrize("override, message", [
    ("train.layer_decay=0", r"Argument `train.layer_decay` must be in \(0, 1\] \(1: no decay\). Received: layer_decay=0"),
    ("train.layer_decay=1.2", r"Received: layer_decay=1.2"),
    ("train.unfreeze.every=-1", r"Argument `train.unfreeze.every` must be >= 0"),
    ("model.reinit_layers=-1", r"Argument `model.reinit_layers` must be >= 0"),
])
def test_bad_values_name_the_key(make_config, override, message):
    with pytest.raises(ConfigError, match=message):
        make_config(override)


def test_stages_count_from_the_top_and_start_lets_the_top_layers_train_at_once():
    class Layer:
        def __init__(self, name):
            self.trainable_weights = [keras.Variable(0.0, name=name)]

    class Groups:
        embeddings = [Layer("e")]
        encoder = [Layer(f"l{i}") for i in range(4)]

    class Model:
        trainable_variables = [v for layer in [*Groups.embeddings, *Groups.encoder] for v in layer.trainable_weights]

        def objective_weights(self):
            return []

    from tfft.config import TrainConfig, UnfreezeConfig

    train_config = TrainConfig(unfreeze=UnfreezeConfig(every=1, unit="epochs", start=2), layer_decay=0.5)
    rates = layerwise.layer_rates(Model(), Groups(), train_config, updates_per_epoch=10)
    assert [(r.name, r.multiplier, r.start_step) for r in rates] == [
        ("embeddings", 0.5**5, 30), ("encoder layer 0", 0.5**4, 20), ("encoder layer 1", 0.5**3, 10),
        ("encoder layer 2", 0.25, 0), ("encoder layer 3", 0.5, 0),
    ]


def test_the_losss_own_weights_train_at_the_full_rate_in_a_group_of_their_own_not_the_heads():
    # A distillation's hidden-state projection is trained with the model but is no part of it (not its head).
    projection, head = keras.Variable(0.0, name="projection"), keras.Variable(0.0, name="head")

    class Groups:
        embeddings = []
        encoder = []

    class Model:
        trainable_variables = [head, projection]

        def objective_weights(self):
            return [projection]

    from tfft.config import TrainConfig

    rates = layerwise.layer_rates(Model(), Groups(), TrainConfig(layer_decay=0.5), updates_per_epoch=10)
    assert [(r.name, r.multiplier, r.start_step, r.variables) for r in rates] == [
        ("head and pooler", 1.0, 0, [head]), ("the loss's own", 1.0, 0, [projection]),
    ]
    assert "the loss's own: 0.001" in layerwise.describe(rates, 1e-3)
