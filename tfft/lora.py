"""LoRA (`model.lora_rank`): Keras 3's own `enable_lora` on the encoder's projections, merged for serving.

Each adapted kernel `W` becomes `W + (lora_alpha / lora_rank) * A @ B`, with
`A` He-uniform and `B` zero at the start, so training starts from the
pretrained model. Only `A`, `B` and the task's head train: every other
backbone weight (embeddings, norms, biases, the pooler) is frozen, as in
PEFT's defaults. The export (`merged`) writes `A @ B` into the kernels, so a
SavedModel or LiteRT file is the size and speed of a full fine-tune's.

Keras' `save_weights` stores an adapted kernel with its factors merged in
(the run folder's `model.weights.h5` is a merged model), and `load_weights`
zeroes the factors; tfft's backups keep the factors beside the weights
(`factor_arrays`), so a resumed run goes on with them.

Keras' LoRA on an `EinsumDense` kernel of shape `[hidden, heads, head_dim]`
factors it as `[hidden, heads, rank] @ [rank, head_dim]`: the attention
projections' factors are `heads` times larger than a 2-D kernel's.

```python
adapted = enable(backbone, source.layer_groups(backbone), config.model)
with merged(model):
    export.write_saved_model(model, ...)
```
"""

from __future__ import annotations

import contextlib

import keras

from tfft.config import ConfigError, ModelConfig

#: `model.lora_targets` -> the names keras-hub's encoder blocks give those projections.
TARGET_LAYERS = {
    "query": ("query",),
    "key": ("key",),
    "value": ("value",),
    "attention_output": ("attention_output",),
    "feedforward": ("feedforward_intermediate_dense", "feedforward_output_dense"),
}


def enable(backbone: keras.Model, groups, config: ModelConfig) -> list:
    """Enables LoRA on `config.lora_targets` in the trained encoder layers; freezes the backbone's other weights.

    Args:
        backbone: keras.Model. Built, and frozen as `model.freeze_layers` says.
        groups: its `LayerGroups`.
        config: `ModelConfig`. `lora_rank`, `lora_alpha`, `lora_targets`,
            `freeze_layers` (frozen layers get no LoRA).

    Returns:
        The adapted layers.
    """
    names = {name for target in config.lora_targets for name in TARGET_LAYERS[target]}
    trained = groups.encoder[config.freeze_layers:]
    adapted = [
        sublayer for layer in trained for sublayer in layer._flatten_layers()
        if isinstance(sublayer, (keras.layers.Dense, keras.layers.EinsumDense)) and sublayer.name in names
    ]
    if not adapted:
        raise ConfigError(
            f"Argument `model.lora_rank` needs Keras 3 Dense or EinsumDense projections named {sorted(names)} in "
            f"the trained encoder layers (`model.lora_targets`); backbone `{backbone.name}` has none. Use a keras-hub "
            f"or Hugging Face folder backbone (`model.source: auto`), or set `model.lora_rank=0`. "
            f"Received: lora_rank={config.lora_rank}"
        )
    for layer in adapted:
        layer.enable_lora(config.lora_rank, lora_alpha=config.lora_alpha)
    factors = {id(w) for layer in adapted for w in (layer.lora_kernel_a, layer.lora_kernel_b)}
    for weight in backbone.weights:
        if id(weight) not in factors:
            weight.trainable = False
    return adapted


def adapted_layers(model: keras.Model) -> list:
    """The layers of `model` with LoRA enabled, in a fixed order."""
    return [layer for layer in model._flatten_layers() if getattr(layer, "lora_enabled", False)]


def factor_arrays(model: keras.Model) -> dict:
    """Every LoRA factor's value, as `lora_<i>_a` / `lora_<i>_b` -> array (empty without LoRA).

    Keras' `save_weights` stores each adapted kernel with its factors merged
    in, and its `load_weights` zeroes the factors: a backup keeps them here,
    for `restore_factors`.
    """
    arrays = {}
    for i, layer in enumerate(adapted_layers(model)):
        arrays[f"lora_{i}_a"], arrays[f"lora_{i}_b"] = layer.lora_kernel_a.numpy(), layer.lora_kernel_b.numpy()
    return arrays


def restore_factors(model: keras.Model, arrays: dict) -> None:
    """Puts back the factors of `factor_arrays`, after `load_weights` merged them: each kernel loses them again."""
    for i, layer in enumerate(adapted_layers(model)):
        if f"lora_{i}_a" not in arrays:
            continue
        layer.lora_kernel_a.assign(arrays[f"lora_{i}_a"])
        layer.lora_kernel_b.assign(arrays[f"lora_{i}_b"])
        scale = layer.lora_alpha / layer.lora_rank
        layer._kernel.assign(layer._kernel - scale * keras.ops.matmul(layer.lora_kernel_a, layer.lora_kernel_b))


@contextlib.contextmanager
def merged(model: keras.Model):
    """Inside: every LoRA layer of `model` is a plain layer whose kernel holds the merged weights.

    Functions traced inside (an export's signatures) neither read nor save the
    factors. On leaving, the kernels and the factors are as they were.
    """
    layers = adapted_layers(model)
    kept = [layer._kernel.numpy() for layer in layers]
    for layer in layers:
        layer._kernel.assign(layer.kernel)
        layer.lora_enabled = False
    try:
        yield model
    finally:
        for layer, kernel in zip(layers, kept, strict=True):
            layer._kernel.assign(kernel)
            layer.lora_enabled = True
