"""Backbone sources behind one interface (see `tfft.backbones.base`).

`resolve(config)` picks the adapter from `model.source` and `model.backbone`:

| `model.backbone` | adapter |
|---|---|
| `tiny-bert`, `mini-bert`, `base-bert` | `recipes.Recipe` (built by tfft) |
| `hf://<id>` or a folder with a Hugging Face `config.json` | `huggingface.HuggingFaceCheckpoint` |
| a keras-hub preset name or preset folder | `keras_hub_preset.KerasHubPreset` |
| anything, with `model.source: transformers` | `transformers_tf.TransformersModel` |
"""

from __future__ import annotations

from tfft.backbones.base import (
    BackboneSource,
    LayerGroups,
    TextPacker,
    copy_weights,
    save_preset,
    token_embedding,
)
from tfft.backbones.huggingface import HuggingFaceCheckpoint, is_huggingface_checkpoint
from tfft.backbones.keras_hub_preset import KerasHubPreset
from tfft.backbones.recipes import RECIPES, Recipe
from tfft.config import ConfigError, ModelConfig

__all__ = ["BackboneSource", "LayerGroups", "TextPacker", "copy_weights", "resolve", "save_preset", "token_embedding"]


def resolve(config: ModelConfig) -> BackboneSource:
    """The `BackboneSource` for `config.backbone` and `config.source`."""
    source = config.source
    if source == "auto":
        if config.backbone in RECIPES:
            source = "recipe"
        elif is_huggingface_checkpoint(config.backbone):
            source = "huggingface"
        else:
            source = "keras_hub"
    if source == "recipe":
        if config.backbone not in RECIPES:
            raise ConfigError(
                f"Argument `model.backbone` must name a recipe ({', '.join(RECIPES)}) when "
                f"`model.source` is recipe. Received: backbone={config.backbone!r}"
            )
        return Recipe(config)
    if source == "huggingface":
        return HuggingFaceCheckpoint(config)
    if source == "transformers":
        from tfft.backbones.transformers_tf import TransformersModel

        return TransformersModel(config)
    return KerasHubPreset(config)
