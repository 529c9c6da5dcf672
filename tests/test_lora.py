"""LoRA: Keras' own factors on the encoder's projections, only they and the head train, merged on export."""

import logging
import pathlib

import numpy as np
import pytest
import tensorflow as tf

import hf_checkpoints
from tfft import backbones, lora, train
from tfft.config import ConfigError, load_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hf_bert(tmp_path_factory):
    """A tiny Hugging Face BERT folder, whose WordPiece tokenizer LiteRT can rebuild (seeded: one fixed checkpoint).

    Its biases and LayerNorm weights are moved off Hugging Face's initial zeros and ones, as a pretrained
    checkpoint's are: LiteRT's converter folds away an add of zeros or a multiply by ones, so with LoRA (which
    leaves them untouched) an untrained checkpoint would give a smaller LiteRT file than a full fine-tune.
    """
    import torch
    import transformers

    torch.manual_seed(0)
    path = hf_checkpoints.write_bert(tmp_path_factory.mktemp("hf") / "bert")
    model = transformers.BertModel.from_pretrained(path)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                weight.add_(0.1 * torch.randn_like(weight))
    model.save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, data_dir, hf_bert):
    root = tmp_path_factory.mktemp("lora")
    config = load_config(None, [
        "name=lora", f"output_dir={root / 'run'}", f"model.backbone={hf_bert}", "model.freeze_layers=0",
        "model.sequence_length=32", "model.pooling=mean", "model.lora_rank=4", "model.lora_targets=[query, value, feedforward]",
        f"data.train={data_dir / 'train.csv'}", f"data.validation={data_dir / 'validation.csv'}",
        "train.epochs=3", "train.batch_size=16", "train.learning_rate=1e-2", f"export.base_dir={root / 'exports'}",
        "export.formats=[saved_model, litert]",
    ])
    return config, train.run(config)


def test_only_the_factors_and_the_head_train_and_the_rest_is_untouched(lora_run):
    config, result = lora_run
    names = sorted({w.path.rsplit("/", 1)[-1] for w in result.model.trainable_weights})
    assert names == ["bias", "kernel", "lora_kernel_a", "lora_kernel_b"]
    assert all(w.path.startswith("head/") for w in result.model.trainable_weights if "lora" not in w.path)
    adapted = {w.path.rsplit("/", 2)[-2] for w in result.model.trainable_weights if "lora" in w.path}
    assert adapted == {"query", "value", "feedforward_intermediate_dense", "feedforward_output_dense"}
    source = backbones.resolve(config.model)
    source.prepare(None, config.output_dir)
    pretrained = source.backbone()
    # The run ends on its best checkpoint, which Keras loads with the factors merged into the kernels: each
    # adapted kernel moved by a product of rank 4, and every other backbone weight not at all.
    stored = {w.path: w for w in result.model.backbone.weights}
    for weight in pretrained.weights:
        before, after = weight.numpy(), stored[weight.path].numpy()
        layer = weight.path.rsplit("/", 2)[-2]
        if weight.path.endswith("kernel") and layer in adapted:
            assert np.linalg.matrix_rank((after - before).reshape(-1, before.shape[-1]), tol=1e-6) == 4, weight.path
        else:
            assert np.array_equal(before, after), weight.path
    assert result.metrics["accuracy"] >= 0.9


def test_the_export_holds_merged_kernels_and_no_factors(lora_run):
    config, result = lora_run
    loaded = tf.saved_model.load(result.export_path)
    names = [v.name for v in loaded.variables]
    assert not [n for n in names if "lora" in n]
    texts = tf.constant(["the movie was great", "the plot was awful"])
    served = loaded.signatures["serving_default"](text=texts)
    in_memory = result.task.outputs(result.model, result.packer, {"text": texts})
    for key, value in in_memory.items():
        if value.dtype.is_floating:
            np.testing.assert_allclose(served[key].numpy(), value.numpy(), atol=1e-5, err_msg=key)
    # The in-memory model still has its factors after the export.
    assert all(layer.lora_enabled for layer in result.model._flatten_layers() if hasattr(layer, "lora_enabled")
               and layer.name in ("query", "value"))


def test_the_export_is_the_size_of_a_full_fine_tunes(lora_run, make_config, tmp_path):
    config, result = lora_run
    # The same graph but for the factors: a LiteRT file keeps only the weights its graph reads (mean pooling
    # reads no pooler), so a plain run with another pooling would differ by the pooler's kernel.
    plain = train.run(make_config(f"model.backbone={config.model.backbone}", "model.freeze_layers=0",
                                  f"model.pooling={config.model.pooling}", "train.epochs=1", "export.enabled=true",
                                  "data.max_train_examples=32", "export.formats=[saved_model, litert]"))

    def sizes(folder):
        folder = pathlib.Path(folder)
        return (sum(p.stat().st_size for p in (folder / "variables").iterdir()),
                (folder / "model.tflite").stat().st_size)

    lora_sizes, plain_sizes = sizes(result.export_path), sizes(plain.export_path)
    assert lora_sizes[0] == pytest.approx(plain_sizes[0], rel=0.002)
    assert lora_sizes[1] == pytest.approx(plain_sizes[1], rel=0.002)


def test_evaluate_reloads_the_factors(lora_run):
    from tfft import evaluate

    config, result = lora_run
    assert evaluate.run(config)["accuracy"] == pytest.approx(result.metrics["accuracy"])


def test_merged_and_restored_factors_give_back_the_same_layer(lora_run):
    _, result = lora_run
    layer = lora.adapted_layers(result.model)[0]
    layer.lora_kernel_b.assign(np.random.default_rng(0).normal(size=layer.lora_kernel_b.shape))
    kernel, merged_kernel = layer._kernel.numpy().copy(), layer.kernel.numpy()
    with lora.merged(result.model):
        assert not layer.lora_enabled
        np.testing.assert_allclose(layer._kernel.numpy(), merged_kernel)
    assert layer.lora_enabled and np.array_equal(layer._kernel.numpy(), kernel)
    factors = lora.factor_arrays(result.model)
    layer._kernel.assign(merged_kernel)  # as Keras' load_weights leaves it
    layer.lora_kernel_a.assign(np.zeros(layer.lora_kernel_a.shape))
    layer.lora_kernel_b.assign(np.zeros(layer.lora_kernel_b.shape))
    lora.restore_factors(result.model, factors)
    np.testing.assert_allclose(layer._kernel.numpy(), kernel, atol=1e-5)
    np.testing.assert_allclose(layer.kernel.numpy(), merged_kernel, atol=1e-5)
    layer.lora_kernel_b.assign(np.zeros(layer.lora_kernel_b.shape))
    layer._kernel.assign(merged_kernel)


def test_a_run_killed_mid_epoch_resumes_with_its_factors(make_config, tmp_path):
    import signal

    from conftest import KILLED_MID_EPOCH, run_python

    overrides = ("model.freeze_layers=0", "model.lora_rank=2", "train.epochs=2", "train.backup_every_steps=5",
                 "data.validation=", "data.max_train_examples=160")
    config = make_config(*overrides)
    config.save(tmp_path / "config.yaml")
    child = run_python(KILLED_MID_EPOCH, str(tmp_path / "config.yaml"), str(10 + 7))  # epoch 2, batch 7
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    resumed = train.run(config)
    straight = train.run(make_config(*overrides, f"output_dir={tmp_path / 'straight'}"))
    for a, b in zip(straight.model.weights, resumed.model.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.path)


def test_lora_logs_the_trainable_share(make_config, caplog):
    caplog.set_level(logging.INFO, logger="tfft.train")
    result = train.run(make_config("model.freeze_layers=0", "model.lora_rank=2", "train.epochs=1",
                                   "data.max_train_examples=16", "data.validation="))
    trainable = sum(int(np.prod(w.shape)) for w in result.model.trainable_weights)
    assert f"{trainable:,} of " in caplog.text and "parameters trainable" in caplog.text


def test_a_backbone_without_keras_projections_is_refused_naming_the_key():
    import keras

    class Groups:
        encoder = [keras.layers.Activation("relu")]

    config = load_config(None, ["data.train=x.csv", "model.lora_rank=4", "model.freeze_layers=0"])
    with pytest.raises(ConfigError, match=r"Argument `model.lora_rank` needs Keras 3 Dense or EinsumDense .*"
                                          r"Received: lora_rank=4"):
        lora.enable(keras.Sequential([keras.layers.Dense(2)]), Groups(), config.model)


@pytest.mark.parametrize("override, message", [
    ("model.lora_rank=-1", r"Argument `model.lora_rank` must be >= 0"),
    ("model.lora_targets=[query, mlp]", r"Argument `model.lora_targets` must be a non-empty list of query, key"),
    ("model.freeze_layers=-1", r"Argument `model.lora_rank` needs `model.freeze_layers` >= 0"),
    ("train.unfreeze.every=1", r"Argument `train.unfreeze.every` cannot be combined with `model.lora_rank`"),
])
def test_bad_lora_values_name_the_key(make_config, override, message):
    with pytest.raises(ConfigError, match=message):
        make_config("model.lora_rank=4", override)
