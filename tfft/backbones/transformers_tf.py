"""Hugging Face `transformers` TF models (`TFAutoModel`) behind tfft's backbone interface.

These are Keras 2 (`tf_keras`) models, so they cannot be layers of a Keras 3
model. `TransformersEncoder` is a Keras 3 layer that calls one and exposes its
variables as Keras 3 weights sharing the same storage, grouped as
embeddings / encoder layer i / pooler. The head, freezing, AdamW, `fit` and
export then treat it like any keras-hub backbone.

Needs `pip install tfft[transformers]` (`transformers>=4.57,<5`, `tf-keras`).
Weights come from `tf_model.h5` or `model.safetensors`; `transformers` 4.57
cannot read a PyTorch-format safetensors file into a TF model ("'safe_open'
object is not iterable"), so tfft reads the tensors with `safetensors.numpy`
and maps them itself. Pickled weights and remote code are never loaded.
"""

from __future__ import annotations

import os

import keras
import keras_hub

from tfft.backbones.base import (
    BackboneSource,
    LayerGroups,
    TextPacker,
    check_sequence_length,
    reinitialize_layers,
)
from tfft.backbones.huggingface import checkpoint_config, read_checkpoint_file, wordpiece_tokenizer
from tfft.config import ConfigError

#: `model_type` -> attribute path of (embeddings, encoder layers, pooler) in the TF model.
SUPPORTED_MODEL_TYPES = {
    "bert": ("bert.embeddings", "bert.encoder.layer", "bert.pooler"),
}


def _import_transformers():
    # Importing transformers' TF code sets TF_USE_LEGACY_KERAS=1 for the whole process tree: every process the
    # user starts afterwards would get Keras 2 as `tf.keras`. Its models import tf_keras themselves and need
    # none of it, so the variable is put back as it was.
    before = os.environ.get("TF_USE_LEGACY_KERAS")
    try:
        import tf_keras  # noqa: F401
        import transformers
        import transformers.modeling_tf_utils  # noqa: F401  (the module that sets it, imported once)
    except ImportError as err:
        raise ConfigError(
            "`model.source: transformers` needs the `transformers` extra: pip install 'tfft[transformers]' "
            f"(transformers>=4.57,<5 and tf-keras). ({err})"
        ) from None
    finally:
        if before is None:
            os.environ.pop("TF_USE_LEGACY_KERAS", None)
        else:
            os.environ["TF_USE_LEGACY_KERAS"] = before
    return transformers


def _attribute(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def load_tf_model(spec: str, pretrained: bool = True):
    """A built `TFAutoModel` with the checkpoint's weights, never from pickles.

    Args:
        spec: str. A checkpoint folder or `hf://<id>`; files of an id are
            fetched one by one (`read_checkpoint_file`), then loaded locally.
        pretrained: bool. False builds the checkpoint's architecture with
            random weights and reads no weight file.
    """
    transformers = _import_transformers()
    from transformers.modeling_tf_pytorch_utils import load_pytorch_state_dict_in_tf2_model

    config = transformers.AutoConfig.from_pretrained(str(read_checkpoint_file(spec, "config.json")))
    if not pretrained:
        model = transformers.TFAutoModel.from_config(config)
        model(model.dummy_inputs, training=False)  # builds the variables
        return model
    h5_path = read_checkpoint_file(spec, "tf_model.h5")
    if h5_path is not None:
        # `use_safetensors=False`: beside tf_model.h5, transformers would prefer a PyTorch-format
        # model.safetensors, which it cannot read into a TF model.
        return transformers.TFAutoModel.from_pretrained(
            str(h5_path.parent), config=config, use_safetensors=False, trust_remote_code=False
        )
    safetensors_path = read_checkpoint_file(spec, "model.safetensors")
    if safetensors_path is None:
        raise ConfigError(
            f"Hugging Face checkpoint `{spec}` has neither tf_model.h5 nor model.safetensors. tfft does not "
            "unpickle pytorch_model.bin; save the model with `save_pretrained(..., safe_serialization=True)`."
        )
    from safetensors.numpy import load_file

    model = transformers.TFAutoModel.from_config(config)
    load_pytorch_state_dict_in_tf2_model(model, load_file(str(safetensors_path)), allow_missing_keys=False)
    return model


class _WeightGroup(keras.layers.Layer):
    """Keras 3 weights over existing `tf.Variable`s (same storage), so `trainable` works per group."""

    def __init__(self, source_layer, **kwargs):
        super().__init__(**kwargs)
        self.source_layer = [source_layer]  # In a list: Keras 3 must not try to track a Keras 2 layer.
        for variable in source_layer.weights:
            self._track_variable(
                keras.Variable(
                    initializer=variable,  # wraps this very tf.Variable, no copy
                    trainable=True,
                    dtype=variable.dtype,
                    shape=variable.shape,
                    name=variable.name.split(":")[0].replace("/", "_"),
                )
            )
        self.built = True


class TransformersEncoder(keras.layers.Layer):
    """Calls a `transformers` TF encoder on tfft's int32 inputs.

    Args:
        hf_model: a built `TFAutoModel` (a `tf_keras` model).
        model_type: str. Its `config.model_type`, one of `SUPPORTED_MODEL_TYPES`.

    Returns `{"sequence_output", "pooled_output"}` like a keras-hub backbone.
    """

    def __init__(self, hf_model, model_type: str, **kwargs):
        super().__init__(**kwargs)
        self._hf_model = [hf_model]  # In a list: Keras 3 must not try to track a Keras 2 model.
        embeddings, layers, pooler = (_attribute(hf_model, p) for p in SUPPORTED_MODEL_TYPES[model_type])
        self.embeddings = _WeightGroup(embeddings, name="embeddings")
        self.encoder_layers = [_WeightGroup(layer, name=f"encoder_layer_{i}") for i, layer in enumerate(layers)]
        self.pooler = _WeightGroup(pooler, name="pooler")
        self.max_sequence_length = int(hf_model.config.max_position_embeddings)
        self.built = True

    def call(self, inputs, training=False):
        outputs = self._hf_model[0](
            input_ids=inputs["token_ids"],
            attention_mask=inputs["padding_mask"],
            token_type_ids=inputs.get("segment_ids"),
            training=training,
        )
        return {"sequence_output": outputs.last_hidden_state, "pooled_output": outputs.pooler_output}

    def compute_output_spec(self, inputs, training=False):
        batch, length = inputs["token_ids"].shape
        hidden = self._hf_model[0].config.hidden_size
        return {
            "sequence_output": keras.KerasTensor((batch, length, hidden), dtype="float32"),
            "pooled_output": keras.KerasTensor((batch, hidden), dtype="float32"),
        }


class TransformersModel(BackboneSource):
    """`model.source: transformers`: a `TFAutoModel` from a folder or `hf://<id>`."""

    name = "transformers"

    def prepare(self, train_texts, output_dir) -> None:
        del train_texts, output_dir
        _import_transformers()
        spec = self.config.backbone
        self.model_type = checkpoint_config(spec).get("model_type")
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ConfigError(
                f"`model.source: transformers` supports model types {', '.join(SUPPORTED_MODEL_TYPES)}; "
                f"`{spec}` is {self.model_type!r}. Its keras-hub conversion may work: `model.source: huggingface`."
            )

    def packer(self) -> TextPacker:
        tokenizer = wordpiece_tokenizer(self.config.backbone, self.model_type)
        preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
            tokenizer=tokenizer, sequence_length=self.config.sequence_length
        )
        return TextPacker(preprocessor)

    def backbone(self) -> keras.Model:
        hf_model = load_tf_model(self.config.backbone, pretrained=self.config.pretrained)
        encoder = TransformersEncoder(hf_model, self.model_type, name="transformers_encoder")
        check_sequence_length(self.config, encoder.max_sequence_length)
        inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in ("token_ids", "segment_ids", "padding_mask")}
        return keras.Model(inputs, encoder(inputs), name="transformers_backbone")

    def keep_layers(self, backbone, keep):
        raise ConfigError(
            f"`model.keep_layers` is not implemented for `model.source: transformers`. Received: keep_layers={keep}. "
            "Load the same checkpoint folder with `model.source: huggingface` (keras-hub), which keeps layers."
        )

    def reinitialize(self, layers: list, seed: int) -> None:
        """Re-draws the `transformers` layers behind `layers` from their tf-keras initializers."""
        reinitialize_layers([layer.source_layer[0] for layer in layers], seed)

    def layer_groups(self, backbone: keras.Model) -> LayerGroups:
        encoder = backbone.get_layer("transformers_encoder")
        return LayerGroups(embeddings=[encoder.embeddings], encoder=list(encoder.encoder_layers), pooler=[encoder.pooler],
                           called_once=False)  # weight groups: the transformers model's own call runs them
