"""DeBERTa-v3 checkpoints (`model_type: deberta-v2` with v3's settings) in keras-hub's `DebertaV3Backbone`.

keras-hub has the backbone and the SentencePiece tokenizer but no converter
from Hugging Face folders. Its backbone computes one configuration of
DeBERTa-v2's disentangled attention, the one every DeBERTa-v3 checkpoint uses:
relative attention over log-bucketed positions with keys shared between
content and position (`share_att_key`), content-to-position and
position-to-content terms, a LayerNorm on the relative embeddings, no absolute
positions and no token types. A config.json that asks for anything else
(DeBERTa-v2's convolution layer, `pos_att_type: c2p` alone, ...) is refused
naming the key. Heads on one vector read the first token's state, as
keras-hub's DeBERTa-v3 classifier does (Hugging Face's `ContextPooler` is a
head weight, absent from the pretrained checkpoints).
"""

from __future__ import annotations

import keras_hub

from tfft.backbones import checkpoint_weights as cw

#: config.json settings DebertaV3Backbone computes: key -> its only value.
FIXED_SETTINGS = {
    "relative_attention": True,
    "share_att_key": True,
    "norm_rel_ebd": "layer_norm",
    "position_biased_input": False,
    "type_vocab_size": 0,
    "conv_kernel_size": 0,
    "layer_norm_eps": 1e-7,
    "hidden_act": "gelu",
    "attention_head_size": None,
}
#: The base model's prefix in task checkpoints (`DebertaV2ForMaskedLM`).
WEIGHT_PREFIX = "deberta."
#: Tensors of a DeBERTa checkpoint outside its encoder (masked-LM and task heads).
NOT_ENCODER = ("cls.", "lm_predictions.", "mask_predictions.", "pooler.", "classifier.", "qa_outputs.")


def check_settings(spec: str, settings: dict) -> None:
    """Refuses config.json values that `DebertaV3Backbone` does not compute, naming the key."""
    def refuse(key, supported):
        raise cw.setting_error(spec, "DeBERTa", key, settings[key], f"DeBERTa-v3's setting only, {key}={supported!r}")

    for key, value in FIXED_SETTINGS.items():
        if key in settings and settings[key] != value:
            refuse(key, value)
    pos_att_type = settings.get("pos_att_type")
    kinds = pos_att_type.split("|") if isinstance(pos_att_type, str) else list(pos_att_type or [])
    if sorted(kinds) != ["c2p", "p2c"]:
        refuse("pos_att_type", ["p2c", "c2p"])
    if settings.get("position_buckets", -1) <= 0:
        refuse("position_buckets", "a number of buckets > 0 (256 in the v3 checkpoints)")
    if settings.get("embedding_size", settings["hidden_size"]) != settings["hidden_size"]:
        refuse("embedding_size", settings["hidden_size"])


def build_backbone(settings: dict) -> keras_hub.models.DebertaV3Backbone:
    """A `DebertaV3Backbone` of the checkpoint's shape, with fresh weights, attending `attend_within_reach`.

    keras-hub's `max_sequence_length` is the span its log buckets are scaled
    to: Hugging Face's `max_relative_positions`, or `max_position_embeddings`
    when that is below 1.
    """
    span = settings.get("max_relative_positions", -1)
    backbone = keras_hub.models.DebertaV3Backbone(
        vocabulary_size=settings["vocab_size"],
        num_layers=settings["num_hidden_layers"],
        num_heads=settings["num_attention_heads"],
        hidden_dim=settings["hidden_size"],
        intermediate_dim=settings["intermediate_size"],
        dropout=settings.get("hidden_dropout_prob", 0.1),
        max_sequence_length=span if span >= 1 else settings["max_position_embeddings"],
        bucket_size=settings["position_buckets"],
    )
    attend_within_reach(backbone)
    return backbone


def load_weights(backbone, weights: cw.CheckpointWeights) -> None:
    """Copies every encoder tensor of the checkpoint into `backbone`."""
    weights.assign(backbone.token_embedding.embeddings, "embeddings.word_embeddings.weight")
    cw.assign_layer_norm(weights, backbone.embeddings_layer_norm, "embeddings.LayerNorm")
    weights.assign(backbone.relative_embeddings.rel_embeddings, "encoder.rel_embeddings.weight")
    cw.assign_layer_norm(weights, backbone.relative_embeddings.layer_norm, "encoder.LayerNorm")
    for i, block in enumerate(backbone.transformer_layers):
        attention = block._self_attention_layer
        cw.assign_post_norm_block(weights, block, f"encoder.layer.{i}", {
            "self.query_proj": attention._query_dense, "self.key_proj": attention._key_dense,
            "self.value_proj": attention._value_dense, "output.dense": attention._output_dense,
        })
    weights.check_all_used(ignore=NOT_ENCODER)


def attend_within_reach(backbone) -> None:
    """Makes each attention layer of a `DebertaV3Backbone` project only the relative positions its input can reach.

    Any other backbone is left as it is. Called wherever tfft builds one: from
    a Hugging Face folder, a keras-hub preset, or with `model.keep_layers`.

    keras-hub's `DisentangledSelfAttention` projects all `2 * bucket_size`
    relative embeddings (512 in DeBERTa-v3) for every example of the batch and
    drops them out per example. A text of L pieces reaches only the buckets of
    distances below L: this projects those rows, once per batch, and gathers
    from them, which is what Hugging Face computes (its position projections
    and dropout are shared by the batch too). Each attention layer's
    `_compute_attention` is replaced on the instance; the weights and outputs
    are keras-hub's (`tests/test_backbones.py` compares with `transformers`).
    A training step of DeBERTa-v3-small on 30-piece texts took a third of the
    time (`benchmarks/families_speed.py`).
    """
    import types

    if not isinstance(backbone, keras_hub.models.DebertaV3Backbone):
        return
    for block in backbone.transformer_layers:
        attention = block._self_attention_layer
        attention._compute_attention = types.MethodType(_attention_within_reach, attention)


def _attention_within_reach(self, query, key, value, rel_embeddings, attention_mask=None, training=None):
    """`DisentangledSelfAttention._compute_attention`, with the relative terms over the reachable buckets only."""
    from keras import ops

    scores = ops.multiply(ops.einsum("aecd,abcd->acbe", key, query), self.scale_factor)
    span = self.bucket_size
    positions = ops.shape(query)[1]
    rel_pos = self._get_rel_pos(positions)[0, 0]  # [L, L], bucketed
    c2p = ops.clip(rel_pos + span, 0, span * 2 - 1)
    p2c = ops.clip(-rel_pos + span, 0, span * 2 - 1)
    low = ops.minimum(ops.min(c2p), ops.min(p2c))
    high = ops.maximum(ops.max(c2p), ops.max(p2c))
    table = ops.slice(rel_embeddings[0], [low, 0], [high - low + 1, ops.shape(rel_embeddings)[-1]])
    table = self._position_dropout_layer(table, training=training)
    pos_query = self._query_dense(table[None])[0]  # [R, heads, head_size]
    pos_key = self._key_dense(table[None])[0]
    c2p_scores = ops.einsum("ecd,abcd->acbe", pos_key, query)  # [B, heads, L, R]
    p2c_scores = ops.einsum("ecd,abcd->acbe", pos_query, key)
    scores += ops.multiply(ops.take_along_axis(c2p_scores, _expand(c2p - low, c2p_scores), axis=3), self.scale_factor)
    p2c_scores = ops.take_along_axis(p2c_scores, _expand(p2c - low, p2c_scores), axis=3)
    scores += ops.multiply(ops.transpose(p2c_scores, [0, 1, 3, 2]), self.scale_factor)
    probabilities = self._attn_dropout_layer(self._masked_softmax(scores, attention_mask), training=training)
    return ops.einsum("acbe,aecd->abcd", probabilities, value), probabilities


def _expand(indices, like):
    """`[L, L]` gather indices broadcast to `like`'s `[batch, heads, L, L]`."""
    from keras import ops

    shape = ops.shape(like)
    return ops.broadcast_to(indices[None, None], (shape[0], shape[1], shape[2], shape[2]))


def masked_lm_head_weights(weights: cw.CheckpointWeights) -> dict | None:
    """`DebertaV2ForMaskedLM`'s head: `cls.predictions.*` (transformers' layout) or `lm_predictions.lm_head.*`
    (the layout of the released DeBERTa-v3 files); None for a checkpoint without either."""
    for dense, norm, bias in (("cls.predictions.transform.dense", "cls.predictions.transform.LayerNorm",
                               "cls.predictions.bias"),
                              ("lm_predictions.lm_head.dense", "lm_predictions.lm_head.LayerNorm",
                               "lm_predictions.lm_head.bias")):
        head = cw.masked_lm_head(weights, dense, norm, bias)
        if head is not None:
            return head
    return None
