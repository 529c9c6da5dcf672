"""Freezing the embeddings and the lowest encoder layers, and counting parameters."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tfft.errors import ConfigError

if TYPE_CHECKING:
    import keras

    from tfft.backbones.base import LayerGroups


def freeze(
    backbone: keras.Model,
    groups: LayerGroups,
    freeze_layers: int,
    freeze_embeddings: bool = True,
    freeze_pooler: bool = False,
) -> None:
    """Freezes the embeddings and the lowest `freeze_layers` encoder layers.

    Args:
        backbone: keras.Model. The backbone the groups belong to.
        groups: `LayerGroups`. The backbone's embedding and encoder layers.
        freeze_layers: int. Encoder layers to freeze from the bottom; `-1`
            freezes the whole backbone, pooler included (only the head trains).
        freeze_embeddings: bool. Whether the embeddings are frozen too
            (always, when `freeze_layers` is -1).
        freeze_pooler: bool. Freeze the pooler too: for heads on
            `sequence_output`, which never use it.
    """
    num_layers = len(groups.encoder)
    if not -1 <= freeze_layers <= num_layers:
        raise ConfigError(
            f"Argument `model.freeze_layers` must be between -1 and {num_layers}, the backbone's number "
            f"of encoder layers. Received: freeze_layers={freeze_layers}"
        )
    backbone.trainable = freeze_layers != -1
    for layer in groups.unused:
        layer.trainable = False
    if freeze_layers == -1:
        return
    frozen = freeze_layers
    for layer in groups.embeddings:
        layer.trainable = not freeze_embeddings
    for i, layer in enumerate(groups.encoder):
        layer.trainable = i >= frozen
    for layer in groups.pooler:
        layer.trainable = not freeze_pooler


def count_parameters(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))
