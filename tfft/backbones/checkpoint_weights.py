"""Copying a Hugging Face `model.safetensors` into a Keras backbone, tensor by tensor, for the families tfft converts.

keras-hub converts BERT, DistilBERT, RoBERTa, XLM-RoBERTa and ALBERT
checkpoints itself; for ELECTRA and DeBERTa-v3 it has the backbones but no
converter, and it has no ModernBERT, so `tfft.backbones.electra`, `deberta`
and `modernbert` name each tensor here. A missing tensor or one of another shape fails naming the key and
the file, and every tensor of the encoder must be used: a checkpoint with
weights tfft would drop is refused rather than silently half-loaded.

Example:

```python
weights = CheckpointWeights(path, prefix="electra.")
weights.assign(backbone.token_embedding.embeddings, "embeddings.word_embeddings.weight")
weights.check_all_used(ignore=("discriminator_predictions.",))
```
"""

from __future__ import annotations

import pathlib

import numpy as np

from tfft.errors import ConfigError


def transposed(tensor: np.ndarray, shape) -> np.ndarray:
    """A PyTorch `Linear` weight (`[out, in]`) as a Keras kernel of `shape` (`[in, ...]`)."""
    return np.reshape(tensor.T, shape)


def reshaped(tensor: np.ndarray, shape) -> np.ndarray:
    return np.reshape(tensor, shape)


class CheckpointWeights:
    """The tensors of one `model.safetensors`, by their names below the model's prefix.

    Args:
        path: path of the `model.safetensors`.
        prefix: str. The base model's prefix in task checkpoints (`electra.`,
            `deberta.`); keys are looked up with and without it, so a bare
            `AutoModel` checkpoint and a `...ForPreTraining` one both load.
    """

    def __init__(self, path: str | pathlib.Path, prefix: str):
        from safetensors import safe_open

        self.path = pathlib.Path(path)
        self.prefix = prefix
        self._file = safe_open(str(self.path), framework="np")
        self.keys = set(self._file.keys())
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        for key in (self.prefix + name, name):
            if key in self.keys:
                return key
        raise ConfigError(
            f"`{self.path}` has no tensor `{self.prefix}{name}` (nor `{name}`), which this model type needs. "
            "Is the checkpoint complete and of the model_type its config.json names?"
        )

    def has(self, name: str) -> bool:
        return self.prefix + name in self.keys or name in self.keys

    def get(self, name: str) -> np.ndarray:
        key = self.key(name)
        self.used.add(key)
        return self._file.get_tensor(key)

    def assign(self, variable, name: str, transform=None) -> None:
        """Sets `variable` to the tensor `name`, through `transform(tensor, shape)` (e.g. `transposed`)."""
        tensor = self.get(name)
        shape = tuple(variable.shape)
        if transform is not None:
            tensor = transform(tensor, shape)
        if tuple(tensor.shape) != shape:
            raise ConfigError(
                f"Tensor `{self.key(name)}` of `{self.path}` has shape {tuple(tensor.shape)}, but the backbone "
                f"built from config.json needs {shape} for `{variable.path}`. Does config.json match the weights?"
            )
        variable.assign(tensor.astype(np.float32))

    def check_all_used(self, ignore: tuple[str, ...] = ()) -> None:
        """Fails naming the first tensor of the base model that nothing loaded (a setting tfft does not implement)."""
        left = sorted(key for key in self.keys - self.used if not key.startswith(ignore) and
                      not key.endswith("position_ids"))
        if left:
            raise ConfigError(
                f"`{self.path}` holds {len(left)} tensor(s) that tfft's backbone has no place for, first "
                f"`{left[0]}`: the checkpoint uses a setting tfft does not implement, so it would not compute what "
                "it was trained to."
            )


def assign_dense(weights: CheckpointWeights, layer, name: str, kernel_transform=transposed) -> None:
    """A PyTorch `Linear` `name` (`name.weight`, `name.bias`) into a Keras Dense or EinsumDense `layer`."""
    weights.assign(layer.kernel, f"{name}.weight", kernel_transform)
    if getattr(layer, "bias", None) is not None:
        weights.assign(layer.bias, f"{name}.bias", reshaped)


def assign_layer_norm(weights: CheckpointWeights, layer, name: str) -> None:
    """A PyTorch `LayerNorm` `name` into a Keras `LayerNormalization` (without `name.bias` when it has no offset)."""
    weights.assign(layer.gamma, f"{name}.weight")
    if layer.beta is not None:
        weights.assign(layer.beta, f"{name}.bias")


def assign_post_norm_block(weights: CheckpointWeights, block, name: str, attention: dict) -> None:
    """A Hugging Face BERT-style post-norm block `name` into a keras-hub encoder block (`TransformerEncoder`,
    DeBERTa-v3's `DisentangledAttentionEncoder`).

    Args:
        attention: dict. The block's attention projections by their name under
            `name.attention.` (`self.query`, ..., `output.dense`).
    """
    for key, layer in attention.items():
        assign_dense(weights, layer, f"{name}.attention.{key}")
    assign_layer_norm(weights, block._self_attention_layer_norm, f"{name}.attention.output.LayerNorm")
    assign_dense(weights, block._feedforward_intermediate_dense, f"{name}.intermediate.dense")
    assign_dense(weights, block._feedforward_output_dense, f"{name}.output.dense")
    assign_layer_norm(weights, block._feedforward_layer_norm, f"{name}.output.LayerNorm")


def setting_error(spec: str, family: str, key: str, value, implemented: str) -> ConfigError:
    """The error for a config.json setting that tfft's `family` backbone does not compute."""
    return ConfigError(
        f"Hugging Face checkpoint `{spec}` has {key}={value!r} in config.json; tfft's {family} implements "
        f"{implemented}."
    )


def masked_lm_head(weights: CheckpointWeights, dense: str, norm: str, output_bias: str) -> dict | None:
    """A masked-LM head (dense, activation, LayerNorm, tied decoder and its bias) by
    `tfft.backbones.base.MASKED_LM_HEAD_WEIGHTS` name: None if the checkpoint has no `<dense>.weight`.

    A bias the checkpoint leaves out (ModernBERT's head has none by default) is zeros, which is what it computes.
    """
    if not weights.has(f"{dense}.weight"):
        return None
    kernel = weights.get(f"{dense}.weight").T  # PyTorch stores [out, in]
    gamma = weights.get(f"{norm}.weight")
    optional = lambda name, size: weights.get(name) if weights.has(name) else np.zeros([size], gamma.dtype)  # noqa: E731
    return {"dense_kernel": kernel, "dense_bias": optional(f"{dense}.bias", kernel.shape[1]),
            "norm_gamma": gamma, "norm_beta": optional(f"{norm}.bias", gamma.shape[0]),
            "output_bias": weights.get(output_bias)}
