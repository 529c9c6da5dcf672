"""Where a ModernBERT-base training step goes, by kernel kind, with tfft's backbone and AdamW.

Builds tfft's `ModernBertBackbone` at ModernBERT-base's width (768, 12 heads,
GeGLU 1,152, 50,368 tokens, global attention every third layer, a 128-position
window elsewhere) with `--layers` encoder layers and random weights, the word
embeddings frozen, a Dense head on the first token, and tfft's AdamW. It trains
on random batches of `--batch` texts padded to `--length` (the last fifth of
each text's positions padded at random), records `--profile_steps` steady steps
with TensorFlow's profiler, and prints the median step time and each kernel
kind's share of all kernel time (oneDNN's `_MklMatMul` is the dense layers'
matmuls, `_MklBatchMatMulV2` attention's).

    python benchmarks/family_profile.py                 # 6 of ModernBERT-base's 22 layers, batch 32 x 25
"""

from __future__ import annotations

import collections
import glob
import pathlib
import tempfile
import time

from absl import app, flags

import common

_LAYERS = flags.DEFINE_integer("layers", 6, "Encoder layers (ModernBERT-base has 22).")
_BATCH = flags.DEFINE_integer("batch", 32, "Texts per batch.")
_LENGTH = flags.DEFINE_integer("length", 25, "Padded length of every batch (SST-2's longest in a batch: about 25).")
_STEPS = flags.DEFINE_integer("steps", 30, "Training steps.")
_PROFILE_STEPS = flags.DEFINE_integer("profile_steps", 5, "Steady steps recorded by the profiler.")


def model_and_data(layers: int, batch: int, length: int, steps: int):
    import keras
    import numpy as np
    import tensorflow as tf

    from tfft.backbones import modernbert
    from tfft.optimization import AdamW

    backbone = modernbert.build_backbone(dict(
        vocab_size=50368, hidden_size=768, num_hidden_layers=layers, num_attention_heads=12, intermediate_size=1152,
        global_attn_every_n_layers=3, local_attention=128, global_rope_theta=160000.0, local_rope_theta=10000.0))
    backbone.token_embedding.trainable = False
    inputs = {name: keras.Input((None,), dtype="int32", name=name) for name in ("token_ids", "padding_mask")}
    model = keras.Model(inputs, keras.layers.Dense(2)(backbone(inputs)[:, 0]))
    model.compile(optimizer=AdamW(learning_rate=1e-4, weight_decay=0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    rows = batch * steps
    mask = np.ones((rows, length), "int32")
    mask[:, length - length // 5:] = rng.integers(0, 2, (rows, length // 5))
    mask = np.sort(mask, axis=1)[:, ::-1].copy()  # padding at the end, as packed
    x = {"token_ids": rng.integers(5, 50000, (rows, length)).astype("int32") * mask, "padding_mask": mask}
    return model, tf.data.Dataset.from_tensor_slices((x, rng.integers(0, 2, (rows,)))).batch(batch)


def kernel_kinds(logdir: str) -> collections.Counter:
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(pathlib.Path(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0]).read_bytes())
    kinds = collections.Counter()
    for plane in (p for p in space.planes if p.name == "/host:CPU"):
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in (line for line in plane.lines if line.name.startswith("tf_Compute")):
            for event in line.events:
                name = names[event.metadata_id]
                if ":" in name and not name.endswith(":Process") and "__inference" not in name:
                    kinds[name.rsplit(":", 1)[1]] += event.duration_ps / 1e12
    return kinds


def main(argv):
    del argv
    import keras
    import numpy as np
    import tensorflow as tf

    model, dataset = model_and_data(_LAYERS.value, _BATCH.value, _LENGTH.value, _STEPS.value)
    first, last, logdir, times = 10, 10 + _PROFILE_STEPS.value - 1, tempfile.mkdtemp(), []

    class Profile(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()
            if batch == first:
                tf.profiler.experimental.start(logdir)

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self.start)
            if batch == last:
                tf.profiler.experimental.stop()

    model.fit(dataset, epochs=1, callbacks=[Profile()], verbose=0)
    kinds = kernel_kinds(logdir)
    total = sum(kinds.values())
    rows = [{"kernel": kind, "share of kernel time": f"{100 * seconds / total:.1f}%"}
            for kind, seconds in kinds.most_common(12)]
    print(f"median step {1e3 * float(np.median(times[3:])):.0f} ms ({_LAYERS.value} layers, batch "
          f"{_BATCH.value} x {_LENGTH.value})")
    common.report("family_profile", rows, ["kernel", "share of kernel time"],
                  {"layers": _LAYERS.value, "batch": _BATCH.value, "length": _LENGTH.value})


if __name__ == "__main__":
    app.run(main)
