"""Text classification head: backbone pooled output -> Dropout -> Dense softmax."""

from __future__ import annotations

import keras
import numpy as np

from tfft.backbones.base import LayerGroups
from tfft.config import ConfigError


class TextClassifier(keras.Model):
    """A backbone with a dropout + softmax classification head.

    Built by composition, as keras-hub's `BertTextClassifier`: the task gets
    a backbone instance and adds layers on `backbone(inputs)["pooled_output"]`.
    The head computes in float32 under mixed precision.

    Args:
        backbone: keras.Model. Takes the packer's int32 inputs and returns a
            dict with `pooled_output`.
        num_classes: int. Number of labels.
        dropout: float. Dropout rate on the pooled output.

    Example:

    ```python
    model = TextClassifier(backbone, num_classes=2, dropout=0.1)
    probabilities = model(packer(tf.constant(["a fine film"])))
    ```
    """

    def __init__(self, backbone: keras.Model, num_classes: int, dropout: float = 0.1, **kwargs):
        inputs = backbone.input
        pooled = backbone(inputs)["pooled_output"]
        x = keras.layers.Dropout(dropout, name="head_dropout")(pooled)
        outputs = keras.layers.Dense(
            num_classes,
            activation="softmax",
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            dtype="float32",
            name="head",
        )(x)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.backbone = backbone
        self.num_classes = num_classes
        self.dropout = dropout


def freeze(backbone: keras.Model, groups: LayerGroups, freeze_layers: int, freeze_embeddings: bool = True) -> None:
    """Freezes the embeddings and the lowest `freeze_layers` encoder layers.

    Args:
        backbone: keras.Model. The backbone the groups belong to.
        groups: `LayerGroups`. The backbone's embedding and encoder layers.
        freeze_layers: int. Encoder layers to freeze from the bottom; `-1`
            freezes the whole backbone, pooler included (only the head trains).
        freeze_embeddings: bool. Whether the embeddings are frozen too
            (always, when `freeze_layers` is -1).
    """
    num_layers = len(groups.encoder)
    if not -1 <= freeze_layers <= num_layers:
        raise ConfigError(
            f"Argument `model.freeze_layers` must be between -1 and {num_layers}, the backbone's number "
            f"of encoder layers. Received: freeze_layers={freeze_layers}"
        )
    backbone.trainable = freeze_layers != -1
    if freeze_layers == -1:
        return
    frozen = freeze_layers
    for layer in groups.embeddings:
        layer.trainable = not freeze_embeddings
    for i, layer in enumerate(groups.encoder):
        layer.trainable = i >= frozen


def count_parameters(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))
