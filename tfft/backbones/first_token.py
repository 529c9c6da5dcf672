"""The top encoder block computing the first token alone, for heads that read `pooled_output` only.

A classification, regression or multi-label head on `pooled_output` reads
one row of the top encoder block's output: the first token's (`[CLS]`),
through the pooler (BERT) or as it is (RoBERTa, ELECTRA). A full block
computes every token's row all the same: the attention queries, the
attention output projection and the feed-forward layers of every token,
about 10 of the block's 12 matmul units per token (the keys and values of
every token are still needed), forward and backward. On a 6-layer encoder
at 15 tokens a sentence that is 13% of the encoder's matmul work
(`benchmarks/utilization.py`'s count). `compute_first_token_only`
makes that block attend from the first token alone: the same first row (a
matmul's other rows do not change it), so the same `pooled_output`, logits
and gradients for every weight, in training and in the export.

The block's output, and so the backbone's `sequence_output`, is then
`[batch, 1, width]`: `tfft.model.build_model` asks for it only where the
head reads `pooled_output` alone. Whatever reads the block's per-token
output later (hidden-state distillation, `tfft.hidden_states`) calls
`every_token` on it first.

```python
groups = source.layer_groups(backbone)
first_token.compute_first_token_only(groups)   # True for keras-hub's BERT-style blocks
first_token.every_token(groups.encoder[-1])    # back to every token
```
"""

from __future__ import annotations

import types

import keras
import keras_hub

from tfft.backbones.base import LayerGroups

__all__ = ["compute_first_token_only", "computes_first_token_only", "every_token", "first_token_call"]


def compute_first_token_only(groups: LayerGroups) -> bool:
    """Makes the top encoder block of `groups` compute the first token's output alone; returns whether it could.

    Only a keras-hub `TransformerEncoder` (BERT, RoBERTa, DistilBERT,
    ELECTRA, XLM-RoBERTa) called once per forward pass: ALBERT's shared
    block runs at every depth, and other block classes (DeBERTa-v3's,
    ModernBERT's, `transformers` models') keep their own call (a DeBERTa-v3
    form was tried: no faster over whole runs, docs/performance.md). The
    block keeps its class, weights and config; only its `call` is replaced,
    on the instance, as `fast_layers.use_fast_layers` does.
    """
    block = groups.encoder[-1] if groups.encoder else None
    if not groups.called_once or type(block) is not keras_hub.layers.TransformerEncoder:
        return False
    block.call = types.MethodType(first_token_call, block)
    return True


def computes_first_token_only(layer: keras.layers.Layer) -> bool:
    """Whether `compute_first_token_only` changed `layer`'s call."""
    return getattr(layer.call, "__func__", None) is first_token_call


def every_token(layer: keras.layers.Layer) -> None:
    """Gives `layer` back its class's call (every token's output), where `compute_first_token_only` changed it."""
    if computes_first_token_only(layer):
        layer.call = types.MethodType(type(layer).call, layer)


def first_token_call(self, inputs, padding_mask=None, attention_mask=None, training=None):
    """keras-hub's `TransformerEncoder.call` for the first token's query only: `[batch, 1, width]` out.

    The keys and values are every token's, masked as keras-hub masks them
    (`padding_mask`, and `attention_mask`'s first row); the residuals,
    norms, feed-forward layers and dropouts act on the first token's row.
    """
    mask = _first_row_mask(padding_mask, attention_mask)
    residual = inputs[:, :1]
    x = self._self_attention_layer_norm(inputs) if self.normalize_first else inputs
    x = self._self_attention_layer(query=x[:, :1], value=x, attention_mask=mask, training=training)
    x = self._self_attention_dropout(x, training=training) + residual
    if not self.normalize_first:
        x = self._self_attention_layer_norm(x)
    residual = x
    if self.normalize_first:
        x = self._feedforward_layer_norm(x)
    x = self._feedforward_output_dense(self._feedforward_intermediate_dense(x))
    x = self._feedforward_dropout(x, training=training) + residual
    if not self.normalize_first:
        x = self._feedforward_layer_norm(x)
    return x


def _first_row_mask(padding_mask, attention_mask):
    """The first query's `[batch, 1, length]` int32 mask, as keras-hub merges `padding_mask` and `attention_mask`."""
    mask = None
    if padding_mask is not None:
        mask = keras.ops.cast(keras.ops.expand_dims(padding_mask, axis=1), "int32")
    if attention_mask is not None:
        first = keras.ops.cast(attention_mask[:, :1, :], "int32")
        mask = first if mask is None else keras.ops.minimum(mask, first)
    return mask
