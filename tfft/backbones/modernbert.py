"""ModernBERT checkpoints (`model_type: modernbert`) as a Keras 3 backbone, with the byte-level BPE tokenizer in the graph.

keras-hub has no ModernBERT (its PR 2518 is open), and `transformers` has no
TensorFlow one, so tfft builds it from `config.json`:

- token embeddings, a LayerNorm (no bias when `norm_bias` is false), dropout;
- pre-LayerNorm blocks (the first block has no attention norm): rotary position
  embeddings on queries and keys, with `global_rope_theta` in the global layers
  and `local_rope_theta` in the local ones; every `global_attn_every_n_layers`-th
  layer (0, N, 2N, ...) attends globally, the others within a sliding window of
  `local_attention // 2` positions each side; a GeGLU feed-forward
  (`act(x W_in) * (x W_gate)`); biases where `attention_bias`/`mlp_bias` say;
- a final LayerNorm.

Padded positions never change the real ones: they are masked out as keys, in
the local window too. `Wqkv` is split into `query`, `key` and `value` Dense
layers, so LoRA and freezing name them as in every other backbone.

Example:

```python
backbone = build_backbone(json.loads(pathlib.Path(folder, "config.json").read_text()))
load_weights(backbone, CheckpointWeights(pathlib.Path(folder, "model.safetensors"), prefix=WEIGHT_PREFIX))
```
"""

from __future__ import annotations

import json
import pathlib

import keras
import keras_hub
import numpy as np
from keras import ops

from tfft.backbones import checkpoint_weights as cw
from tfft.backbones import fast_layers
from tfft.errors import ConfigError

#: The base model's prefix in task checkpoints (`ModernBertForMaskedLM`).
WEIGHT_PREFIX = "model."
#: Tensors of a ModernBERT checkpoint outside its encoder (masked-LM and task heads).
NOT_ENCODER = ("head.", "decoder.", "classifier.", "drop.")
#: `hidden_activation` -> whether GELU is the tanh approximation.
ACTIVATIONS = {"gelu": False, "gelu_new": True, "gelu_pytorch_tanh": True}


def check_settings(spec: str, settings: dict) -> None:
    """Refuses config.json values this backbone does not compute, naming the key."""
    def refuse(key, supported):
        raise cw.setting_error(spec, "ModernBERT", key, settings[key], supported)

    if settings.get("hidden_activation", "gelu") not in ACTIVATIONS:
        refuse("hidden_activation", f"hidden_activation in {sorted(ACTIVATIONS)}")
    if settings.get("rope_scaling"):
        refuse("rope_scaling", "plain rotary embeddings (rope_scaling=None)")
    if settings.get("global_attn_every_n_layers", 3) < 1:
        refuse("global_attn_every_n_layers", "global_attn_every_n_layers >= 1")
    if settings.get("local_attention", 128) % 2:
        refuse("local_attention", "an even local_attention window")


def build_backbone(settings: dict) -> ModernBertBackbone:
    """A `ModernBertBackbone` of the checkpoint's shape, with fresh weights."""
    every = settings.get("global_attn_every_n_layers", 3)
    return ModernBertBackbone(
        vocabulary_size=settings["vocab_size"],
        num_layers=settings["num_hidden_layers"],
        num_heads=settings["num_attention_heads"],
        hidden_dim=settings["hidden_size"],
        intermediate_dim=settings["intermediate_size"],
        max_sequence_length=settings.get("max_position_embeddings", 8192),
        local_layers=[i % every != 0 for i in range(settings["num_hidden_layers"])],
        local_window=settings.get("local_attention", 128),
        global_rope_theta=settings.get("global_rope_theta", 160000.0),
        local_rope_theta=settings.get("local_rope_theta") or settings.get("global_rope_theta", 160000.0),
        norm_epsilon=settings.get("norm_eps", 1e-5),
        norm_bias=settings.get("norm_bias", False),
        attention_bias=settings.get("attention_bias", False),
        mlp_bias=settings.get("mlp_bias", False),
        embedding_dropout=settings.get("embedding_dropout", 0.0),
        attention_dropout=settings.get("attention_dropout", 0.0),
        mlp_dropout=settings.get("mlp_dropout", 0.0),
        approximate_gelu=ACTIVATIONS[settings.get("hidden_activation", "gelu")],
    )


def load_weights(backbone: ModernBertBackbone, weights: cw.CheckpointWeights) -> None:
    """Copies every encoder tensor of the checkpoint into `backbone`; `Wqkv` is split into query, key and value."""
    weights.assign(backbone.token_embedding.embeddings, "embeddings.tok_embeddings.weight")
    cw.assign_layer_norm(weights, backbone.embeddings_layer_norm, "embeddings.norm")
    for i, block in enumerate(backbone.transformer_layers):
        name = f"layers.{i}"
        if block.attention_norm is not None:
            cw.assign_layer_norm(weights, block.attention_norm, f"{name}.attn_norm")
        qkv = weights.get(f"{name}.attn.Wqkv.weight")
        bias = weights.get(f"{name}.attn.Wqkv.bias") if weights.has(f"{name}.attn.Wqkv.bias") else None
        for part, layer in enumerate((block.query, block.key, block.value)):
            rows = slice(part * qkv.shape[1], (part + 1) * qkv.shape[1])
            layer.kernel.assign(qkv[rows].T)
            if bias is not None:
                layer.bias.assign(bias[rows])
        cw.assign_dense(weights, block.attention_output, f"{name}.attn.Wo")
        cw.assign_layer_norm(weights, block.feedforward_norm, f"{name}.mlp_norm")
        cw.assign_dense(weights, block.feedforward_intermediate_dense, f"{name}.mlp.Wi")
        cw.assign_dense(weights, block.feedforward_output_dense, f"{name}.mlp.Wo")
    cw.assign_layer_norm(weights, backbone.final_norm, "final_norm")
    weights.check_all_used(ignore=NOT_ENCODER)


def masked_lm_head_weights(weights: cw.CheckpointWeights) -> dict | None:
    """`ModernBertForMaskedLM`'s head (`head.dense`, `head.norm`, `decoder.bias`); None for a checkpoint without it."""
    return cw.masked_lm_head(weights, "head.dense", "head.norm", "decoder.bias")


def rotary_tables(positions, head_dim: int, theta: float):
    """Hugging Face's rotary `cos` and `sin`, `[positions, head_dim]` float32: each frequency on both halves."""
    inverse = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    angles = ops.cast(ops.arange(positions), "float32")[:, None] * ops.convert_to_tensor(inverse)[None, :]
    angles = ops.concatenate([angles, angles], axis=-1)
    return ops.cos(angles), ops.sin(angles)


def rotate(x, cos, sin):
    """`x * cos + rotate_half(x) * sin` for `x` `[batch, positions, heads, head_dim]`."""
    first, second = ops.split(x, 2, axis=-1)
    cos, sin = ops.cast(cos, x.dtype)[None, :, None, :], ops.cast(sin, x.dtype)[None, :, None, :]
    return x * cos + ops.concatenate([-second, first], axis=-1) * sin


@keras.saving.register_keras_serializable(package="tfft")
class ModernBertEncoderLayer(keras.layers.Layer):
    """One ModernBERT block: pre-norm rotary attention (global or windowed) and a pre-norm GeGLU feed-forward.

    Args:
        num_heads: int. Attention heads.
        intermediate_dim: int. Width of the GeGLU's gated half.
        rope_theta: float. The rotary base of this layer.
        window: int or None. Local attention span (positions each side are
            `window // 2`); None attends globally.
        attention_norm: bool. Whether the block normalizes its input before
            attention (all but the first block).
        norm_epsilon, norm_bias, attention_bias, mlp_bias: as in config.json.
        attention_dropout, mlp_dropout: float. Dropout rates.
        approximate_gelu: bool. The tanh form of GELU.
    """

    def __init__(self, num_heads, intermediate_dim, rope_theta, window=None, attention_norm=True, norm_epsilon=1e-5,
                 norm_bias=False, attention_bias=False, mlp_bias=False, attention_dropout=0.0, mlp_dropout=0.0,
                 approximate_gelu=False, **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.intermediate_dim, self.rope_theta, self.window = num_heads, intermediate_dim, rope_theta, window
        self.norm_epsilon, self.norm_bias, self.attention_bias, self.mlp_bias = norm_epsilon, norm_bias, attention_bias, mlp_bias
        self.attention_dropout, self.mlp_dropout, self.approximate_gelu = attention_dropout, mlp_dropout, approximate_gelu
        self.uses_attention_norm = attention_norm

    def _norm(self, name):
        return keras.layers.LayerNormalization(epsilon=self.norm_epsilon, center=self.norm_bias, dtype=self.dtype_policy,
                                               name=name)

    def _dense(self, units, bias, name):
        return keras.layers.Dense(units, use_bias=bias, dtype=self.dtype_policy, name=name)

    def build(self, input_shape):
        hidden = input_shape[-1]
        self.attention_norm = self._norm("attention_norm") if self.uses_attention_norm else None
        self.query, self.key, self.value = (self._dense(hidden, self.attention_bias, n) for n in ("query", "key", "value"))
        self.attention_output = self._dense(hidden, self.attention_bias, "attention_output")
        self.feedforward_norm = self._norm("feedforward_norm")
        self.feedforward_intermediate_dense = self._dense(2 * self.intermediate_dim, self.mlp_bias,
                                                          "feedforward_intermediate_dense")
        self.feedforward_output_dense = self._dense(hidden, self.mlp_bias, "feedforward_output_dense")
        self.attention_dropout_layer = keras.layers.Dropout(self.attention_dropout, dtype=self.dtype_policy)
        self.mlp_dropout_layer = keras.layers.Dropout(self.mlp_dropout, dtype=self.dtype_policy)
        for layer in (self.attention_norm, self.query, self.key, self.value, self.feedforward_norm,
                      self.feedforward_intermediate_dense):
            if layer is not None:
                layer.build(input_shape)
        self.attention_output.build(input_shape)
        self.feedforward_output_dense.build((*input_shape[:-1], self.intermediate_dim))
        self.built = True

    def call(self, x, padding_mask, training=None):
        h = x if self.attention_norm is None else self.attention_norm(x)
        x = x + self.attention_dropout_layer(self.attention_output(self._attend(h, padding_mask, training)),
                                             training=training)
        gate_input, gate = ops.split(self.feedforward_intermediate_dense(self.feedforward_norm(x)), 2, axis=-1)
        gelu = fast_layers.gelu_approximate if self.approximate_gelu else fast_layers.gelu
        gated = gelu(gate_input) * gate
        return x + self.feedforward_output_dense(self.mlp_dropout_layer(gated, training=training))

    def _attend(self, h, padding_mask, training):
        batch, positions, hidden = ops.shape(h)[0], ops.shape(h)[1], h.shape[-1]
        head_dim = hidden // self.num_heads
        split = lambda t: ops.reshape(t, (batch, positions, self.num_heads, head_dim))  # noqa: E731
        cos, sin = rotary_tables(positions, head_dim, self.rope_theta)
        query = rotate(split(self.query(h)), cos, sin)
        key = rotate(split(self.key(h)), cos, sin)
        scores = ops.einsum("bqhd,bkhd->bhqk", query, key) / np.sqrt(head_dim).astype("float32")
        visible = ops.cast(padding_mask, "bool")[:, None, None, :]
        if self.window is not None:
            index = ops.arange(positions)
            visible = visible & (ops.abs(index[:, None] - index[None, :]) <= self.window // 2)[None, None]
        scores = ops.where(visible, ops.cast(scores, "float32"), -1e30)
        probabilities = ops.cast(ops.softmax(scores, axis=-1), h.dtype)
        probabilities = self.attention_dropout_layer(probabilities, training=training)
        out = ops.einsum("bhqk,bkhd->bqhd", probabilities, split(self.value(h)))
        return ops.reshape(out, (batch, positions, hidden))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(), "num_heads": self.num_heads, "intermediate_dim": self.intermediate_dim,
            "rope_theta": self.rope_theta, "window": self.window, "attention_norm": self.uses_attention_norm,
            "norm_epsilon": self.norm_epsilon, "norm_bias": self.norm_bias, "attention_bias": self.attention_bias,
            "mlp_bias": self.mlp_bias, "attention_dropout": self.attention_dropout, "mlp_dropout": self.mlp_dropout,
            "approximate_gelu": self.approximate_gelu,
        }


@keras.saving.register_keras_serializable(package="tfft")
class ModernBertBackbone(keras_hub.models.Backbone):
    """ModernBERT's encoder: `token_ids` and `padding_mask` in, the final-norm hidden states out.

    Args:
        vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim,
        max_sequence_length: the checkpoint's shape.
        local_layers: list of bool, one per layer. Whether it attends within
            the local window (else globally). A list, not a period, so that a
            student keeping layers `[1, 2]` (`model.keep_layers`) keeps their kinds.
        first_layers: list of bool or None. Which layers were the checkpoint's
            first (no attention norm); defaults to layer 0 only.
        local_window, global_rope_theta, local_rope_theta, norm_epsilon,
        norm_bias, attention_bias, mlp_bias, embedding_dropout,
        attention_dropout, mlp_dropout, approximate_gelu: as in config.json.
    """

    def __init__(self, vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim, max_sequence_length=8192,
                 local_layers=None, first_layers=None, local_window=128, global_rope_theta=160000.0,
                 local_rope_theta=10000.0, norm_epsilon=1e-5, norm_bias=False, attention_bias=False, mlp_bias=False,
                 embedding_dropout=0.0, attention_dropout=0.0, mlp_dropout=0.0, approximate_gelu=False, dtype=None,
                 **kwargs):
        local_layers = list(local_layers if local_layers is not None else [i % 3 != 0 for i in range(num_layers)])
        first_layers = list(first_layers if first_layers is not None else [i == 0 for i in range(num_layers)])
        self.token_embedding = keras_hub.layers.ReversibleEmbedding(vocabulary_size, hidden_dim, dtype=dtype,
                                                                    name="token_embedding")
        self.embeddings_layer_norm = keras.layers.LayerNormalization(epsilon=norm_epsilon, center=norm_bias, dtype=dtype,
                                                                     name="embeddings_layer_norm")
        self.embeddings_dropout = keras.layers.Dropout(embedding_dropout, dtype=dtype, name="embeddings_dropout")
        self.transformer_layers = [
            ModernBertEncoderLayer(
                num_heads, intermediate_dim, local_rope_theta if local else global_rope_theta,
                window=local_window if local else None, attention_norm=not first, norm_epsilon=norm_epsilon,
                norm_bias=norm_bias, attention_bias=attention_bias, mlp_bias=mlp_bias,
                attention_dropout=attention_dropout, mlp_dropout=mlp_dropout, approximate_gelu=approximate_gelu,
                dtype=dtype, name=f"transformer_layer_{i}",
            )
            for i, (local, first) in enumerate(zip(local_layers[:num_layers], first_layers[:num_layers], strict=True))
        ]
        self.final_norm = keras.layers.LayerNormalization(epsilon=norm_epsilon, center=norm_bias, dtype=dtype,
                                                          name="final_norm")
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        padding_mask = keras.Input(shape=(None,), dtype="int32", name="padding_mask")
        x = self.embeddings_dropout(self.embeddings_layer_norm(self.token_embedding(token_ids)))
        for layer in self.transformer_layers:
            x = layer(x, padding_mask=padding_mask)
        x = self.final_norm(x)
        super().__init__(inputs={"token_ids": token_ids, "padding_mask": padding_mask}, outputs=x, dtype=dtype,
                         **kwargs)
        self.settings = {
            "vocabulary_size": vocabulary_size, "num_layers": num_layers, "num_heads": num_heads,
            "hidden_dim": hidden_dim, "intermediate_dim": intermediate_dim, "max_sequence_length": max_sequence_length,
            "local_layers": local_layers[:num_layers], "first_layers": first_layers[:num_layers],
            "local_window": local_window, "global_rope_theta": global_rope_theta, "local_rope_theta": local_rope_theta,
            "norm_epsilon": norm_epsilon, "norm_bias": norm_bias, "attention_bias": attention_bias,
            "mlp_bias": mlp_bias, "embedding_dropout": embedding_dropout, "attention_dropout": attention_dropout,
            "mlp_dropout": mlp_dropout, "approximate_gelu": approximate_gelu,
        }
        self.num_layers, self.max_sequence_length = num_layers, max_sequence_length

    def get_config(self):
        return {**super().get_config(), **self.settings}

    def keep_layer_settings(self, indices: list[int]) -> dict:
        """This backbone's config with only the layers `indices`, each keeping its kind (`model.keep_layers`)."""
        return {
            **self.get_config(), "num_layers": len(indices),
            "local_layers": [self.settings["local_layers"][i] for i in indices],
            "first_layers": [self.settings["first_layers"][i] for i in indices],
        }


@keras.saving.register_keras_serializable(package="tfft")
class ModernBertTokenizer(keras_hub.tokenizers.BytePairTokenizer):
    """ModernBERT's byte-level BPE, with its special tokens `[CLS]`, `[SEP]`, `[PAD]`, `[MASK]`."""

    def __init__(self, vocabulary=None, merges=None, **kwargs):
        self._add_special_token("[CLS]", "start_token")
        self._add_special_token("[SEP]", "end_token")
        self._add_special_token("[PAD]", "pad_token")
        self._add_special_token("[MASK]", "mask_token")
        kwargs.setdefault("unsplittable_tokens", ["[CLS]", "[SEP]", "[PAD]", "[MASK]"])
        super().__init__(vocabulary=vocabulary, merges=merges, **kwargs)


@keras.saving.register_keras_serializable(package="tfft")
class ModernBertPreprocessor(keras_hub.models.TextClassifierPreprocessor):
    """`[CLS] a [SEP] (b [SEP])`, padded with `[PAD]`; no segment ids (ModernBERT has no token types)."""

    backbone_cls = ModernBertBackbone  # so that keras-hub finds it for a saved preset (`tfft adapt`'s folder)
    tokenizer_cls = ModernBertTokenizer

    def call(self, x, y=None, sample_weight=None):
        output = super().call(x, y=y, sample_weight=sample_weight)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(output)
        x = {name: value for name, value in x.items() if name != "segment_ids"}
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)


def tokenizer(spec: str, tokenizer_file: pathlib.Path | None) -> ModernBertTokenizer:
    """The checkpoint's `tokenizer.json` (byte-level BPE) as a keras-hub tokenizer; other kinds are refused."""
    if tokenizer_file is None:
        raise ConfigError(f"Hugging Face checkpoint `{spec}` (modernbert) has no tokenizer.json.")
    spec_json = json.loads(tokenizer_file.read_text(encoding="utf-8"))
    model = spec_json.get("model") or {}
    pre = spec_json.get("pre_tokenizer") or {}
    checks = [
        ("model.type", model.get("type"), "BPE"),
        ("pre_tokenizer", pre.get("type"), "ByteLevel"),
        ("pre_tokenizer.add_prefix_space", pre.get("add_prefix_space"), False),
        ("normalizer", spec_json.get("normalizer"), None),
    ]
    for key, value, supported in checks:
        if value != supported:
            raise ConfigError(
                f"`{tokenizer_file}` has {key}={value!r}; tfft's ModernBERT tokenizer implements byte-level BPE "
                f"only ({key}={supported!r})."
            )
    vocabulary = dict(model["vocab"])
    vocabulary.update({token["content"]: token["id"] for token in spec_json.get("added_tokens", [])})
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return ModernBertTokenizer(vocabulary=vocabulary, merges=merges)
