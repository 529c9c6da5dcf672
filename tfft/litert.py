"""LiteRT (TensorFlow Lite) export that takes raw text, and the interpreter that runs it.

`convert` turns a trained task model into one `.tflite` file: raw strings
(`text`, and `text_pair` for pair tasks) in, the task's numeric outputs out
(`Task.litert_outputs`; for classification `probabilities`, `label_id` and
`label`), with `truncated_tokens` as the SavedModel has it. The tokenizer is
inside: TensorFlow Text's `FastBertTokenizer`, whose TFLite kernels
`tensorflow_text.tflite_registrar` registers (`tfft.backbones.litert.LitePacker`). Weights can be quantized:
`dynamic_range` stores int8 weights (about a quarter of the float32 size),
`float16` half-precision ones.

`LiteRTModel` runs a `.tflite` file with the LiteRT interpreter
(`ai-edge-litert`) and TensorFlow Text's kernels: no keras, keras-hub or
tfft model code.

Example:

```python
blob = convert(model, packer, task, quantize="dynamic_range")
pathlib.Path("model.tflite").write_bytes(blob)
outputs = LiteRTModel("model.tflite")(text=["a fine film"])
```
"""

from __future__ import annotations

import logging
import pathlib
import tempfile

import numpy as np

logger = logging.getLogger(__name__)

LITERT_FILE = "model.tflite"
QUANTIZATIONS = ("none", "dynamic_range", "float16")

__all__ = ["convert", "LiteRTModel", "LITERT_FILE", "QUANTIZATIONS"]


def convert(model, packer, task, quantize: str = "none") -> bytes:
    """The `.tflite` file's bytes for a trained task model.

    Args:
        model: `tfft.tasks.TaskModel`. The trained model.
        packer: `tfft.backbones.TextPacker`. Its training packer, mirrored
            with TFLite-compatible ops.
        task: `tfft.tasks.Task`. Gives the inputs and `litert_outputs`.
        quantize: str. `none`, `dynamic_range` (int8 weights) or `float16`.

    Raises:
        ConfigError: for a task or tokenizer family LiteRT export does not support.
    """
    import keras
    import tensorflow as tf

    from tfft.errors import ConfigError
    from tfft.tasks.base import truncated_tokens

    if quantize not in QUANTIZATIONS:
        raise ConfigError(f"Argument `export.quantize` must be one of {QUANTIZATIONS}. Received: quantize={quantize!r}")
    lite_packer = check(task, packer)
    names = task.input_names()
    kept = task.litert_outputs

    def serve(*texts):
        inputs = dict(zip(names, texts, strict=True))
        outputs = task.outputs(model, lite_packer, inputs)
        return {**{name: outputs[name] for name in kept}, "truncated_tokens": truncated_tokens(lite_packer, inputs)}

    archive = keras.export.ExportArchive()
    # The endpoint tracks the variables it uses; tracking the model too would save each weight twice.
    archive.add_endpoint("serving_default", serve, [tf.TensorSpec([None], tf.string, name=n) for n in names])
    # Converting from a SavedModel freezes the Keras variables into the file; from a concrete function it does not.
    with tempfile.TemporaryDirectory(prefix="tfft_litert_") as tmp:
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serving_default"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.allow_custom_ops = True  # TensorFlow Text's tokenizer kernels, registered at load time
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        blob = converter.convert()
    logger.info("Converted to LiteRT (%s): %.1f MB", quantize, len(blob) / 1e6)
    return blob


def check(task, packer):
    """Fails with a `ConfigError` if this task or tokenizer family has no LiteRT export; else its packer.

    `tfft train` calls it with the other checks, before anything is written, when `export.formats` has `litert`.
    """
    from tfft.backbones.litert import LitePacker
    from tfft.errors import ConfigError

    if task.litert_outputs is None:
        raise ConfigError(
            f"`task.type: {task.type}` has no LiteRT export: {task.litert_unsupported}. "
            "Export with `export.formats: [saved_model]`."
        )
    return LitePacker(packer)


class LiteRTModel:
    """A `.tflite` file exported by tfft, run by the LiteRT interpreter with TensorFlow Text's kernels.

    Args:
        path: str or path. The `.tflite` file.
        num_threads: int or None. Interpreter threads (None: LiteRT's default).

    Call it with the input names as keywords, each a list of strings; it
    returns the outputs as numpy arrays.
    """

    def __init__(self, path: str | pathlib.Path, num_threads: int | None = None):
        import tensorflow_text as tf_text

        try:
            from ai_edge_litert.interpreter import InterpreterWithCustomOps
        except ImportError:  # pragma: no cover - the LiteRT wheel is missing on this platform
            from tensorflow.lite.python.interpreter import InterpreterWithCustomOps

        self.path = pathlib.Path(path)
        self.interpreter = InterpreterWithCustomOps(
            model_path=str(self.path),
            custom_op_registerers=tf_text.tflite_registrar.SELECT_TFTEXT_OPS,
            num_threads=num_threads,
        )
        self.runner = self.interpreter.get_signature_runner("serving_default")
        self.input_names = tuple(self.interpreter.get_signature_list()["serving_default"]["inputs"])

    def __call__(self, **inputs) -> dict[str, np.ndarray]:
        arrays = {name: np.asarray(list(values), dtype=object) for name, values in inputs.items()}
        return {name: np.asarray(value) for name, value in self.runner(**arrays).items()}
