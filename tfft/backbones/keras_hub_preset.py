"""keras-hub presets: names (`bert_tiny_en_uncased`, `kaggle://...`) and local preset folders."""

from __future__ import annotations

import pathlib

import keras
import keras_hub
import numpy as np

from tfft.backbones import electra, modernbert  # noqa: F401 - registers their classes, which saved presets name
from tfft.backbones.base import (
    ACTIVATION_FILE,
    ACTIVATIONS,
    MASKED_LM_HEAD_FILE,
    BackboneSource,
    LayerGroups,
    TextPacker,
    check_sequence_length,
    keras_hub_layer_groups,
    set_feedforward_activation,
    with_pooled_output,
)
from tfft.backbones.deberta import attend_within_reach
from tfft.config import ConfigError


class KerasHubPreset(BackboneSource):
    """A keras-hub preset, by name (downloaded by keras-hub) or as a local folder.

    The preprocessor comes from the same preset, with `sequence_length` set
    from the config (presets default to the model's maximum, e.g. 512).
    """

    name = "keras_hub"

    def prepare(self, train_texts, output_dir) -> None:
        """Refuses a `model.backbone` that is written as a local path (a `/`, no `scheme://`) but is not a folder."""
        del train_texts, output_dir
        spec = self.config.backbone
        if "/" in spec and "://" not in spec and not pathlib.Path(spec).expanduser().is_dir():
            raise ConfigError(
                f"Argument `model.backbone` must be a keras-hub preset name, a handle (`kaggle://`, `hf://`) or a "
                f"folder that exists; `{pathlib.Path(spec).expanduser().absolute()}` is not a folder. Check the "
                f"path (relative paths start at the working directory). Received: backbone={spec!r}"
            )

    def packer(self) -> TextPacker:
        preprocessor = keras_hub.models.TextClassifierPreprocessor.from_preset(
            self.config.backbone, sequence_length=self.config.sequence_length
        )
        return TextPacker(preprocessor)

    def backbone(self) -> keras.Model:
        backbone = keras_hub.models.Backbone.from_preset(self.config.backbone, load_weights=self.config.pretrained)
        check_sequence_length(self.config, getattr(backbone, "max_sequence_length", None))
        activation = pathlib.Path(self.config.backbone) / ACTIVATION_FILE  # a folder `tfft adapt` wrote
        if activation.is_file():
            name = activation.read_text(encoding="utf-8").strip()
            if name not in ACTIVATIONS:
                raise ConfigError(
                    f"`{activation}` names the activation {name!r}; expected one of {', '.join(ACTIVATIONS)}."
                )
            set_feedforward_activation(backbone, name)
        attend_within_reach(backbone)
        return with_pooled_output(backbone)

    def layer_groups(self, backbone: keras.Model) -> LayerGroups:
        return keras_hub_layer_groups(backbone)

    def masked_lm_head_weights(self):
        """The head that `tfft adapt` saved beside its preset, if this folder is one."""
        path = pathlib.Path(self.config.backbone) / MASKED_LM_HEAD_FILE
        if not path.is_file():
            return None
        with np.load(path) as saved:
            return {name: saved[name] for name in saved.files}
