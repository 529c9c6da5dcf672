"""A head on `pooled_output` alone gets a top encoder block that computes the first token only: the same logits and
gradients, without the other tokens' rows."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import build_untrained
from tfft import backbones
from tfft.backbones import first_token

TEXTS = ["a fine film", "the plot is thin but the cast is not and the music is good", "bad"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tiny_preset):
    """A keras-hub preset and Hugging Face folders of the block classes tfft's builds meet."""
    pytest.importorskip("torch")
    import torch

    import hf_checkpoints

    root = tmp_path_factory.mktemp("first_token")
    torch.manual_seed(0)
    return {
        "bert-preset": tiny_preset,
        "distilbert": hf_checkpoints.write_bert(root / "distilbert", distil=True),
        "roberta": hf_checkpoints.write_roberta(root / "roberta"),
        "electra": hf_checkpoints.write_electra(root / "electra"),
        "albert": hf_checkpoints.write_albert(root / "albert"),
        "deberta-v3": hf_checkpoints.write_deberta_v3(root / "deberta_v3"),
    }


def built(make_config, backbone, *overrides):
    """A regression model (a head on `pooled_output`, no label vocabulary) on `backbone`, its top block, its packer."""
    config = make_config(f"model.backbone={backbone}", "task.type=regression", "model.freeze_layers=0", *overrides)
    model, source = build_untrained(config)
    return model, source.layer_groups(model.backbone).encoder[-1], source.packer()


def outputs_and_gradients(model, features):
    with tf.GradientTape() as tape:
        y = model(features, training=False)
        loss = tf.reduce_sum(tf.sin(3.0 * y) * y)  # a non-uniform upstream gradient
    gradients = tape.gradient(loss, model.trainable_weights)
    return y.numpy(), [g.numpy() for g in gradients]


@pytest.mark.parametrize("normalize_first", [False, True])
@pytest.mark.parametrize("with_attention_mask", [False, True])
def test_the_first_token_call_is_the_blocks_own_first_row(normalize_first, with_attention_mask):
    """Pre- and post-norm blocks, with `padding_mask` alone or with an `attention_mask` whose first row hides a key."""
    import keras_hub

    block = keras_hub.layers.TransformerEncoder(16, 2, normalize_first=normalize_first, dropout=0.0)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(3, 5, 8)), tf.float32)
    padding = tf.constant([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], tf.int32)
    attention = tf.constant(rng.integers(0, 2, (3, 5, 5)) | np.eye(5, dtype=int), tf.int32) if with_attention_mask else None
    full = block(x, padding_mask=padding, attention_mask=attention)
    first = first_token.first_token_call(block, x, padding_mask=padding, attention_mask=attention)
    assert first.shape == (3, 1, 8)
    np.testing.assert_allclose(first.numpy(), full.numpy()[:, :1], atol=1e-6)


@pytest.mark.parametrize("arch", ["bert-preset", "distilbert", "roberta", "electra"])
def test_the_top_block_computes_the_first_token_alone_with_the_same_outputs_and_gradients(folders, make_config, arch):
    model, block, packer = built(make_config, folders[arch])
    features = packer(tf.constant(TEXTS))
    assert features["padding_mask"].numpy().min() == 0  # padded rows: the mask is the one the block must apply
    assert first_token.computes_first_token_only(block)
    assert model.backbone(features)["sequence_output"].shape[1] == 1  # the other tokens' rows are not computed
    fast, fast_gradients = outputs_and_gradients(model, features)

    first_token.every_token(block)
    assert model.backbone(features)["sequence_output"].shape[1] == features["token_ids"].shape[1]
    full, full_gradients = outputs_and_gradients(model, features)
    np.testing.assert_allclose(fast, full, atol=1e-5, rtol=1e-5)
    assert len(fast_gradients) == len(full_gradients) > 0
    for weight, ours, theirs in zip(model.trainable_weights, fast_gradients, full_gradients, strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-4, err_msg=weight.path)


@pytest.mark.parametrize("arch,overrides", [
    ("bert-preset", ["model.pooling=mean"]),  # the head reads every token's output
    ("albert", []),                           # one shared block, called at every depth
    ("deberta-v3", []),                       # a block class of its own: its call is kept
])
def test_blocks_whose_every_token_is_read_or_that_are_not_keras_hubs_encoder_are_left_as_they_are(
        folders, make_config, arch, overrides):
    model, block, packer = built(make_config, folders[arch], *overrides)
    assert not first_token.computes_first_token_only(block)
    features = packer(tf.constant(TEXTS))
    assert model.backbone(features)["sequence_output"].shape[1] == features["token_ids"].shape[1]


def test_a_trained_classifier_has_the_first_token_block_on_top_only(trained_run):
    config, result = trained_run
    groups = backbones.resolve(config.model).layer_groups(result.model.backbone)
    assert first_token.computes_first_token_only(groups.encoder[-1])
    assert not any(first_token.computes_first_token_only(layer) for layer in groups.encoder[:-1])
