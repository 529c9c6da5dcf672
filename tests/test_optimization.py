import math

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from tfft import optimization
from tfft.config import TrainConfig


@pytest.mark.parametrize("decay", ["linear", "cosine"])
def test_schedule_at_start_end_of_warmup_and_last_step(decay):
    schedule = optimization.create_schedule(
        TrainConfig(learning_rate=1e-3, warmup_ratio=0.1, schedule=decay), total_steps=200
    )
    assert schedule.warmup_steps == 20
    assert float(schedule(0)) == 0.0
    assert float(schedule(10)) == pytest.approx(5e-4)
    assert float(schedule(20)) == pytest.approx(1e-3)  # peak at the end of warmup
    halfway = 1e-3 * (0.5 if decay == "linear" else 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert float(schedule(110)) == pytest.approx(halfway, rel=1e-5)
    last = 1e-3 * ((1 / 180) if decay == "linear" else 0.5 * (1 + math.cos(math.pi * 179 / 180)))
    assert float(schedule(199)) == pytest.approx(last, rel=1e-4)
    assert float(schedule(200)) == pytest.approx(0.0, abs=1e-12)
    assert float(schedule(500)) == pytest.approx(0.0, abs=1e-12)  # clamped past the end


def test_no_warmup_starts_at_peak():
    schedule = optimization.WarmupDecay(1e-3, warmup_steps=0, total_steps=10)
    assert float(schedule(0)) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="Argument `warmup_steps` must be between 0 and total_steps=10"):
        optimization.WarmupDecay(1e-3, warmup_steps=11, total_steps=10)


def test_schedule_serializes():
    schedule = optimization.WarmupDecay(2e-5, 3, 30, "cosine")
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert again.get_config() == schedule.get_config()


@pytest.fixture(scope="module")
def bert():
    keras.utils.set_random_seed(0)
    return keras_hub.models.BertBackbone(
        vocabulary_size=20, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=8
    )


def test_biases_and_norms_are_excluded_from_decay(bert):
    excluded = {v.path for v in bert.trainable_variables if optimization.excluded_from_decay(v)}
    decayed = {v.path for v in bert.trainable_variables} - excluded
    assert "embeddings_layer_norm/gamma" in excluded and "embeddings_layer_norm/beta" in excluded
    assert "transformer_layer_0/self_attention_layer/query/bias" in excluded
    assert "transformer_layer_0/feedforward_layer_norm/gamma" in excluded
    assert "token_embedding/embeddings" in decayed
    assert "transformer_layer_0/self_attention_layer/query/kernel" in decayed
    assert "pooled_dense/kernel" in decayed
    assert not any(p.endswith(("bias", "gamma", "beta")) for p in decayed)
    assert not any(p.endswith(("kernel", "embeddings")) for p in excluded)


def test_optimizer_decays_only_the_decayed_variables(bert):
    variables = bert.trainable_variables
    optimizer = optimization.create_optimizer(
        TrainConfig(learning_rate=0.1, warmup_ratio=0.0, weight_decay=0.5, clipnorm=1.0), 10, variables
    )
    before = {v.path: v.numpy().copy() for v in variables}
    # Zero gradients: Adam's step is zero, so any change is weight decay alone.
    optimizer.apply_gradients([(np.zeros(v.shape, "float32"), v) for v in variables])
    for v in variables:
        changed = not np.array_equal(before[v.path], v.numpy())
        nonzero = np.any(before[v.path] != 0)
        if optimization.excluded_from_decay(v):
            assert not changed, v.path
        elif nonzero:
            np.testing.assert_allclose(v.numpy(), before[v.path] * (1 - 0.1 * 0.5), rtol=1e-5, err_msg=v.path)


@pytest.mark.parametrize("epsilon, first_step", [(1e-6, 0.03065), (1e-8, 0.7597)])
def test_adam_epsilon_is_added_to_sqrt_v_before_bias_correction(epsilon, first_step):
    # Keras' first step is lr * sqrt(1 - b2) / (1 - b1) * m / (sqrt(v) + eps), m = 0.1 g, sqrt(v) = sqrt(0.001) g:
    # for g = 1e-6 that is lr * 0.0316 / (0.0316 + eps / g). The BERT recipe's 1e-6 shrinks this small gradient's
    # step to 3% of the learning rate; the Trainer's 1e-8 leaves it at 76%.
    variable = keras.Variable(np.zeros([1], "float32"), name="kernel")
    config = TrainConfig(learning_rate=0.1, warmup_ratio=0.0, weight_decay=0.0, clipnorm=0.0, adam_epsilon=epsilon)
    optimizer = optimization.create_optimizer(config, 10, [variable])
    assert optimizer.epsilon == epsilon
    optimizer.apply_gradients([(np.array([1e-6], "float32"), variable)])
    np.testing.assert_allclose(-variable.numpy(), [0.1 * first_step], rtol=1e-3)


def _adam_steps(start: int, updates: int, sparse: bool = False) -> np.ndarray:
    """A variable starting at update `start`, after `updates` of its own: the same gradients, a constant rate."""
    rng = np.random.default_rng(0)
    grads = rng.standard_normal((updates, 8, 4)).astype("float32")
    variable = keras.Variable(np.ones((8, 4), "float32"), name="kernel")
    other = keras.Variable(np.ones([2], "float32"), name="other")  # trains from update 0, so updates are counted
    optimizer = optimization.AdamW(learning_rate=1e-2, weight_decay=0.1, epsilon=1e-6)
    optimizer.set_variable_rates([variable, other], [(1.0, start), (1.0, 0)])
    step = tf.function(lambda g: optimizer.apply([g, tf.ones([2])], [variable, other]))
    for i in range(start + updates):
        g = tf.constant(grads[max(i - start, 0)])
        step(tf.IndexedSlices(g, tf.range(8), tf.constant([8, 4])) if sparse else g)
    return variable.numpy()


@pytest.mark.parametrize("sparse", [False, True])
def test_a_variable_starting_late_is_bias_corrected_from_its_own_first_update(sparse):
    # Adam's bias correction counts a variable's own updates (PyTorch keeps a step per parameter). Counted from the
    # run's start, a layer that gradual unfreezing starts at update 300 would move 3x too far at its first update
    # (m = 0.1 g, sqrt(v) = 0.03 |g|, and no correction left) and up to 6.6x in the updates after.
    np.testing.assert_allclose(_adam_steps(start=300, updates=3, sparse=sparse), _adam_steps(start=0, updates=3),
                               atol=1e-6)


def test_a_sparse_gradient_with_repeated_rows_is_adam_on_their_sum():
    # An embedding table's gradient repeats a row for each time its token is in the batch. Adam sees the row's summed
    # gradient, as PyTorch's dense embedding gradient gives it; Keras' own sparse Adam squared each slice instead.
    def first_step(gradient):
        variable = keras.Variable(np.zeros((3, 2), "float32"), name="embeddings")
        optimization.AdamW(learning_rate=0.1, weight_decay=0.0, epsilon=1e-12).apply([gradient], [variable])
        return variable.numpy()

    slices = tf.IndexedSlices(tf.constant([[1.0, 2.0], [3.0, -4.0], [1.0, 1.0]]), tf.constant([0, 0, 2]), tf.constant([3, 2]))
    np.testing.assert_allclose(first_step(slices), first_step(tf.convert_to_tensor(slices)), atol=1e-7)
    np.testing.assert_allclose(first_step(slices), [[-0.1, 0.1], [0.0, 0.0], [-0.1, -0.1]], atol=1e-6)


def _torch_adamw_steps(grads, lr, weight_decay, epsilon):
    import torch

    variable = torch.nn.Parameter(torch.ones(grads.shape[1:]))
    optimizer = torch.optim.AdamW([variable], lr=lr, betas=(0.9, 0.999), eps=epsilon, weight_decay=weight_decay)
    for g in grads:
        variable.grad = torch.from_numpy(g)
        optimizer.step()
    return variable.detach().numpy()


def _tfft_adamw_steps(grads, lr, weight_decay, epsilon, placement):
    variable = keras.Variable(np.ones(grads.shape[1:], "float32"), name="kernel")
    config = TrainConfig(learning_rate=lr, warmup_ratio=0.0, schedule="cosine", weight_decay=weight_decay, clipnorm=0.0,
                         adam_epsilon=epsilon, adam_epsilon_placement=placement)
    optimizer = optimization.create_optimizer(config, 10**9, [variable])  # cosine over 1e9 steps: lr constant to 1e-15
    step = tf.function(lambda g: optimizer.apply([g], [variable]))
    for g in grads:
        step(tf.constant(g))
    return variable.numpy()


@pytest.mark.parametrize("epsilon", [1e-6, 1e-8])
def test_epsilon_after_bias_correction_is_pytorchs_adamw(epsilon):
    # Gradients near 1e-6, where epsilon decides the step: `after_bias_correction` is `torch.optim.AdamW` (the
    # Trainer's optimizer) over ten steps with weight decay; Keras' placement is not.
    grads = (np.random.default_rng(0).standard_normal((10, 16)) * 1e-6).astype("float32")
    want = _torch_adamw_steps(grads, lr=1e-2, weight_decay=0.1, epsilon=epsilon)
    got = _tfft_adamw_steps(grads, 1e-2, 0.1, epsilon, "after_bias_correction")
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    keras_placement = _tfft_adamw_steps(grads, 1e-2, 0.1, epsilon, "before_bias_correction")
    assert np.abs(keras_placement - want).max() > 1e-3


def test_epsilon_after_bias_correction_is_refused_with_amsgrad():
    # AMSGrad takes Keras' own update, which places epsilon as Keras does.
    with pytest.raises(ValueError, match="Argument `epsilon_after_bias_correction` does not apply with `amsgrad`"):
        optimization.AdamW(amsgrad=True, epsilon_after_bias_correction=True)


def test_gradients_are_clipped_by_global_norm():
    variable = keras.Variable(np.zeros([2], "float32"), name="kernel")
    optimizer = keras.optimizers.SGD(learning_rate=1.0, global_clipnorm=1.0)
    config = TrainConfig(learning_rate=0.5, warmup_ratio=0.0, weight_decay=0.0, clipnorm=1.0)
    assert optimization.create_optimizer(config, 10, [variable]).global_clipnorm == 1.0
    optimizer.apply_gradients([(np.array([30.0, 40.0], "float32"), variable)])
    np.testing.assert_allclose(variable.numpy(), [-0.6, -0.8], rtol=1e-6)


def _ten_steps(optimizer_class, sparse, weight_decay=0.1):
    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.standard_normal((64, 32)).astype("float32"), name="kernel"),
                 keras.Variable(rng.standard_normal((32,)).astype("float32"), name="bias")]
    optimizer = optimizer_class(learning_rate=1e-2, weight_decay=weight_decay, epsilon=1e-6,
                                global_clipnorm=None if sparse else 1.0)  # Keras clips no IndexedSlices
    optimizer.exclude_from_weight_decay(var_list=[variables[1]])
    step = tf.function(lambda grads: optimizer.apply(grads, variables))
    for _ in range(10):
        grads = [rng.standard_normal(v.shape).astype("float32") for v in variables]
        step([tf.IndexedSlices(tf.constant(grads[0]), tf.range(64), tf.constant([64, 32])), tf.constant(grads[1])] if sparse
             else [tf.constant(g) for g in grads])
    return [v.numpy() for v in variables]


@pytest.mark.parametrize("sparse", [False, True])
def test_fused_update_is_keras_adamw(sparse):
    # tfft's AdamW decays and updates each variable with one fused kernel apiece; Keras' does the same arithmetic in
    # about fifteen ops. Ten steps with decay, an excluded bias and clipping agree to float rounding. A sparse
    # gradient (a training embedding table) takes Keras' own update.
    expected = _ten_steps(keras.optimizers.AdamW, sparse)
    for got, want in zip(_ten_steps(optimization.AdamW, sparse), expected, strict=True):
        np.testing.assert_allclose(got, want, atol=5e-6)
    assert np.abs(expected[0] - _ten_steps(optimization.AdamW, sparse, weight_decay=0.0)[0]).max() > 1e-3


def _update_op_kinds(weight_decay: float) -> list[str]:
    variable = keras.Variable(np.ones((4, 4), "float32"), name="kernel")
    optimizer = optimization.create_optimizer(TrainConfig(weight_decay=weight_decay, clipnorm=0.0), 10, [variable])
    graph = tf.function(lambda g: optimizer.apply([g], [variable])).get_concrete_function(tf.ones((4, 4))).graph
    return [op.type for op in graph.get_operations()]


def test_the_dense_update_is_one_fused_adam_kernel_and_one_decay_assignment_per_variable():
    kinds, undecayed = _update_op_kinds(0.01), _update_op_kinds(0.0)
    assert kinds.count("ResourceApplyAdam") == 1
    assert kinds.count("AssignVariableOp") == undecayed.count("AssignVariableOp") + 1  # the decay: one assignment
    # Keras' unfused update assigns m, v and the variable op by op; decaying in place copies the variable first.
    assert "AssignSubVariableOp" not in kinds and "ResourceApplyGradientDescent" not in kinds


def test_clip_by_global_norm_matches_keras_and_reads_each_gradient_once():
    from keras.src.optimizers.base_optimizer import clip_by_global_norm as keras_clip

    rng = np.random.default_rng(0)
    grads = [tf.constant(rng.normal(0, 1, s), tf.float32) for s in ((4, 3), (3,), (2, 2, 2))]
    for clip in (0.5, 1e3):  # clipping, and a norm under the limit
        for ours, theirs in zip(optimization.clip_by_global_norm(grads, clip), keras_clip(grads, clip), strict=True):
            np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)
    poisoned = optimization.clip_by_global_norm([grads[0], tf.constant([np.inf, 1.0])], 1.0)
    assert np.isnan(poisoned[0].numpy()).all()  # as Keras: a non-finite norm poisons every gradient
    sparse = tf.IndexedSlices(tf.constant([[3.0, 0.0], [0.0, 4.0]]), tf.constant([1, 1]), tf.constant([3, 2]))
    clipped = optimization.clip_by_global_norm([sparse], 1.0)[0]
    np.testing.assert_allclose(tf.convert_to_tensor(clipped).numpy(), [[0, 0], [0.6, 0.8], [0, 0]], rtol=1e-6)
    graph = tf.function(lambda g: optimization.clip_by_global_norm(g, 1.0)).get_concrete_function(grads).graph
    kinds = [op.type for op in graph.get_operations()]
    assert kinds.count("L2Loss") == 3 and "Square" not in kinds


def _accumulated_run(make_config, deterministic_preset, tmp_path, *overrides):
    from tfft import train

    config = make_config(
        f"model.backbone={deterministic_preset}", "model.freeze_layers=0", "train.group_by_length=false",
        "train.pad_to=max", "data.max_train_examples=320", "data.validation=", "train.epochs=1",
        # Adam divides by |g|: where a gradient is near zero, the summation order (one mean of 32 against four of
        # 8) would turn float noise into a whole step. A larger epsilon keeps the comparison about accumulation.
        "train.learning_rate=1e-3", "train.clipnorm=0.5", "train.adam_epsilon=1e-3", f"output_dir={tmp_path / '_'.join(overrides)}", *overrides,
    )
    return train.run(config)


@pytest.mark.slow
def test_four_batches_of_8_accumulated_are_one_batch_of_32(make_config, deterministic_preset, tmp_path):
    # 10 updates each, warmup and decay counted in updates, the 0.5 clip acting on the accumulated gradient.
    whole = _accumulated_run(make_config, deterministic_preset, tmp_path, "train.batch_size=32")
    accumulated = _accumulated_run(make_config, deterministic_preset, tmp_path, "train.batch_size=8",
                                   "train.gradient_accumulation_steps=4")
    assert int(whole.model.optimizer.iterations) == int(accumulated.model.optimizer.iterations) == 10
    moved = 0.0
    for a, b in zip(whole.model.trainable_weights, accumulated.model.trainable_weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.path)
    untrained = _accumulated_run(make_config, deterministic_preset, tmp_path, "train.batch_size=8")
    for a, b in zip(whole.model.trainable_weights, untrained.model.trainable_weights, strict=True):
        moved = max(moved, float(np.abs(a.numpy() - b.numpy()).max()))
    assert moved > 1e-3  # 40 updates of 8 are not 10 of 32: the comparison above can fail


def test_accumulation_clips_the_mean_of_the_accumulated_gradient():
    variable = keras.Variable(np.zeros(2, "float32"))
    optimizer = optimization.AdamW(learning_rate=1.0, weight_decay=0.0, global_clipnorm=1.0,
                                   gradient_accumulation_steps=2)
    optimizer.build([variable])
    seen = []
    original = optimization.AdamW.update_step
    optimization.AdamW.update_step = lambda self, g, v, lr: seen.append(np.asarray(g)) or original(self, g, v, lr)
    try:
        optimizer.apply([tf.constant([3.0, 0.0])], [variable])
        assert not variable.numpy().any() and not seen  # accumulated, not applied
        optimizer.apply([tf.constant([1.0, 0.0])], [variable])
    finally:
        optimization.AdamW.update_step = original
    np.testing.assert_allclose(seen[0], [1.0, 0.0])  # mean (2, 0), clipped to norm 1
    assert int(optimizer.iterations) == 1 and int(optimizer.batches_seen) == 2
    assert not optimizer._accumulated_gradients[0].numpy().any()


@pytest.mark.slow
def test_accumulation_counts_batches_with_steps_per_execution_and_backs_up_its_partial_sums(
        make_config, deterministic_preset, tmp_path):
    import signal

    from conftest import KILLED_MID_EPOCH, run_python

    straight = _accumulated_run(make_config, deterministic_preset, tmp_path, "train.batch_size=8",
                                "train.gradient_accumulation_steps=4")
    batched = _accumulated_run(make_config, deterministic_preset, tmp_path, "train.batch_size=8",
                               "train.gradient_accumulation_steps=4", "train.steps_per_execution=3")
    for a, b in zip(straight.model.weights, batched.model.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=a.path)

    # Killed after batch 30, backed up at batch 25: one batch into an update, its partial sum in the backup.
    from tfft import train

    overrides = (f"model.backbone={deterministic_preset}", "model.freeze_layers=0", "data.max_train_examples=320",
                 "data.validation=", "train.epochs=1", "train.batch_size=8", "train.gradient_accumulation_steps=4",
                 "train.adam_epsilon=1e-3")
    config = make_config(*overrides, "train.backup_every_steps=25", f"output_dir={tmp_path / 'killed'}")
    config.save(tmp_path / "config.yaml")
    child = run_python(KILLED_MID_EPOCH, str(tmp_path / "config.yaml"), "30")
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    resumed = train.run(config)
    never_stopped = train.run(make_config(*overrides, f"output_dir={tmp_path / 'never_stopped'}"))
    for a, b in zip(never_stopped.model.weights, resumed.model.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=a.path)


def test_retarget_changes_the_weight_decay_only_between_values_other_than_zero():
    config = TrainConfig(weight_decay=0.01)
    optimizer = optimization.create_optimizer(config, total_batches=10, variables=[])
    optimizer.retarget(TrainConfig(weight_decay=0.5, learning_rate=1e-3), total_batches=20)
    assert optimizer.weight_decay == 0.5  # what the traced step reads: the warm run's test (tests/test_warm_runs.py)
    assert float(optimizer.learning_rate) == 0.0  # step 0 of the new schedule's warmup
    with pytest.raises(ValueError, match="Argument `weight_decay` can change in place only between values other "
                                         "than 0. Received: weight_decay=0.0 for an optimizer built with "
                                         "weight_decay=0.5"):
        optimizer.retarget(TrainConfig(weight_decay=0.0), total_batches=20)


def test_tffts_adamw_round_trips_through_keras_serialization():
    optimizer = optimization.create_optimizer(TrainConfig(learning_rate=3e-4), total_batches=100, variables=[])
    again = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(again, optimization.AdamW)  # registered: Keras' own AdamW refuses tfft's arguments
    assert again.get_config()["learning_rate"] == optimizer.get_config()["learning_rate"]  # the schedule's config
