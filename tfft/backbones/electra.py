"""ELECTRA discriminator checkpoints (`model_type: electra`) in keras-hub's `ElectraBackbone`.

keras-hub has the backbone but no converter from Hugging Face folders. The
weights map one to one (embeddings, the projection when `embedding_size` is
not `hidden_size`, BERT-style blocks); the generator and the discriminator's
prediction head are not part of the encoder and are left out. ELECTRA has no
pooler: heads on one vector read the first token's state, as Hugging Face's
ELECTRA heads do (`base.with_pooled_output`). The tokenizer is BERT's
WordPiece, with offsets and LiteRT support.
"""

from __future__ import annotations

import keras
import keras_hub

from tfft.backbones import checkpoint_weights as cw

#: config.json settings whose other values tfft does not implement: key -> the value keras-hub's backbone computes.
FIXED_SETTINGS = {"position_embedding_type": "absolute", "layer_norm_eps": 1e-12}
#: The base model's prefix in task checkpoints (`ElectraForPreTraining`).
WEIGHT_PREFIX = "electra."
#: Tensors of an ELECTRA checkpoint outside its encoder.
NOT_ENCODER = ("discriminator_predictions.", "generator_", "classifier.", "qa_outputs.", "sequence_summary.")


def check_settings(spec: str, settings: dict) -> None:
    """Refuses config.json values that `ElectraBackbone` does not compute, naming the key."""
    for key, value in FIXED_SETTINGS.items():
        if settings.get(key, value) != value:
            raise cw.setting_error(spec, "ELECTRA", key, settings[key], f"{key}={value!r} only")


def build_backbone(settings: dict) -> keras_hub.models.ElectraBackbone:
    """An `ElectraBackbone` of the checkpoint's shape, with fresh weights."""
    return keras_hub.models.ElectraBackbone(
        vocab_size=settings["vocab_size"],
        num_layers=settings["num_hidden_layers"],
        num_heads=settings["num_attention_heads"],
        hidden_dim=settings["hidden_size"],
        embedding_dim=settings.get("embedding_size", settings["hidden_size"]),
        intermediate_dim=settings["intermediate_size"],
        dropout=settings.get("hidden_dropout_prob", 0.1),
        max_sequence_length=settings["max_position_embeddings"],
        num_segments=settings.get("type_vocab_size", 2),
    )


def load_weights(backbone, weights: cw.CheckpointWeights) -> None:
    """Copies every encoder tensor of the checkpoint into `backbone`."""
    weights.assign(backbone.token_embedding.embeddings, "embeddings.word_embeddings.weight")
    weights.assign(backbone.position_embedding.position_embeddings, "embeddings.position_embeddings.weight")
    weights.assign(backbone.segment_embedding.embeddings, "embeddings.token_type_embeddings.weight")
    cw.assign_layer_norm(weights, backbone.embeddings_layer_norm, "embeddings.LayerNorm")
    if hasattr(backbone, "embeddings_projection"):
        cw.assign_dense(weights, backbone.embeddings_projection, "embeddings_project")
    for i, block in enumerate(backbone.transformer_layers):
        attention = block._self_attention_layer
        cw.assign_post_norm_block(weights, block, f"encoder.layer.{i}", {
            "self.query": attention.query_dense, "self.key": attention.key_dense,
            "self.value": attention.value_dense, "output.dense": attention.output_dense,
        })
    weights.check_all_used(ignore=NOT_ENCODER)


@keras.saving.register_keras_serializable(package="tfft")
class ElectraTextClassifierPreprocessor(keras_hub.models.BertTextClassifierPreprocessor):
    """BERT's packing for ELECTRA (keras-hub has none), so that keras-hub finds it for a saved ELECTRA preset."""

    backbone_cls = keras_hub.models.ElectraBackbone
