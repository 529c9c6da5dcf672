"""Versioned SavedModels that TF Serving loads as they are: raw text in, labels out.

`export_model` writes `<export.base_dir>/<name>/<version>/`, where `version`
is one above the highest integer folder present. The SavedModel is written to
a hidden temporary folder first and renamed into place, so a crash never
leaves a half-written version for TF Serving to load, and an existing
version is never overwritten.

Signatures:

- `serving_default`: `text` (and `text_pair` for pair tasks), `string[batch]`
  -> `probabilities` `float32[batch, classes]`, `label` `string[batch]`,
  `label_id` `int64[batch]`. The tokenizer runs inside the graph.
- `serve_token_ids`: the packer's int32 inputs (`token_ids`, `segment_ids`,
  `padding_mask` for BERT) -> the same outputs, for clients that tokenize.

The folder also holds `assets/labels.txt` and
`assets.extra/tf_serving_warmup_requests` (PredictRequest records).

The tokenizer's ops live in TensorFlow Text: a Python process that loads the
export must `import tensorflow_text` first (the official TF Serving binary
includes them).
"""

from __future__ import annotations

import logging
import os
import pathlib
import shutil
import tempfile
import uuid

import keras
import tensorflow as tf

logger = logging.getLogger(__name__)

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
LABELS_FILE = "assets/labels.txt"
WARMUP_TEXTS = [
    "tfft warmup request.",
    "",
    "A somewhat longer warmup request, so that TF Serving also traces a batch of a few dozen tokens "
    "before the first real request arrives.",
]


def export_model(model: keras.Model, packer, label_names: list[str], config) -> pathlib.Path | str:
    """Exports a trained classifier to `<export.base_dir>/<name>/<next version>/`.

    Args:
        model: keras.Model. The trained `TextClassifier`.
        packer: `TextPacker`. The in-graph tokenizer it was trained with.
        label_names: list of str. Label names in id order.
        config: `tfft.config.Config`. Uses `name`, `export.*` and whether
            `data.text_pair_column` is set.

    Returns:
        The path of the new version folder (a string for remote paths).
    """
    return write_saved_model(
        model,
        packer,
        label_names,
        f"{config.export.base_dir.rstrip('/')}/{config.name}",
        pair=bool(config.data.text_pair_column),
        model_name=config.name,
        warmup_requests=config.export.warmup_requests,
    )


def is_remote(path: str | pathlib.Path) -> bool:
    """Whether `path` is on a TF filesystem such as `gs://` rather than local disk."""
    return "://" in str(path)


def versions(base_dir: str | pathlib.Path) -> list[int]:
    """The integer version folders under `base_dir`, ascending."""
    base_dir = str(base_dir)
    if not tf.io.gfile.isdir(base_dir):
        return []
    names = [name.rstrip("/") for name in tf.io.gfile.listdir(base_dir)]
    return sorted(int(name) for name in names if name.isdigit())


def write_saved_model(
    model: keras.Model,
    packer,
    label_names: list[str],
    base_dir: str | pathlib.Path,
    *,
    pair: bool = False,
    model_name: str = "model",
    warmup_requests: int = 3,
) -> pathlib.Path | str:
    """Writes the next version of `base_dir` atomically; see the module docstring.

    A remote `base_dir` (`gs://...`) is written locally first, then copied
    with `saved_model.pb` last: TF Serving loads a version only once that
    file exists, and object stores have no atomic rename.
    """
    if is_remote(base_dir):
        with tempfile.TemporaryDirectory(prefix="tfft_export_") as local:
            version = write_saved_model(
                model, packer, label_names, local, pair=pair, model_name=model_name, warmup_requests=warmup_requests
            )
            return _upload(version, str(base_dir))
    base_dir = pathlib.Path(base_dir)
    base_dir.mkdir(parents=True, exist_ok=True)
    staging = base_dir / f".staging-{uuid.uuid4().hex}"  # TF Serving skips non-integer names.
    try:
        archive = build_archive(model, packer, label_names, pair=pair)
        archive.write_out(str(staging), verbose=False)
        labels_path = staging / LABELS_FILE
        labels_path.parent.mkdir(parents=True, exist_ok=True)
        labels_path.write_text("".join(name + "\n" for name in label_names), encoding="utf-8")
        if warmup_requests:
            write_warmup_requests(staging / WARMUP_FILE, model_name, pair=pair, count=warmup_requests)
        final = _publish(staging, base_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("Exported SavedModel %s", final)
    return final


def _upload(local_version: pathlib.Path, base_dir: str) -> str:
    version = (versions(base_dir) or [0])[-1] + 1
    final = f"{base_dir.rstrip('/')}/{version}"
    if tf.io.gfile.exists(final):
        raise FileExistsError(f"`{final}` appeared while exporting; export again to get the next version.")
    files = sorted(p for p in local_version.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.name == "saved_model.pb")  # The file TF Serving waits for goes last.
    for path in files:
        target = f"{final}/{path.relative_to(local_version).as_posix()}"
        tf.io.gfile.makedirs(target.rsplit("/", 1)[0])
        tf.io.gfile.copy(str(path), target)
    logger.info("Exported SavedModel %s", final)
    return final


def _publish(staging: pathlib.Path, base_dir: pathlib.Path) -> pathlib.Path:
    """Renames `staging` to the next free integer version, never replacing one."""
    for _ in range(100):
        version = (versions(base_dir) or [0])[-1] + 1
        final = base_dir / str(version)
        try:
            os.mkdir(final)  # Claims the number; fails if another exporter took it.
        except FileExistsError:
            continue
        os.rename(staging, final)  # Replaces only the empty folder just claimed.
        return final
    raise RuntimeError(f"Could not claim a new version folder under {base_dir}.")


def build_archive(model: keras.Model, packer, label_names: list[str], pair: bool = False):
    """A `keras.export.ExportArchive` with the two serving signatures."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(packer.preprocessor)
    names = tf.constant(label_names)

    def outputs(features):
        features = trim_to_longest(features)
        probabilities = tf.cast(model(features, training=False), tf.float32)
        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {"probabilities": probabilities, "label": tf.gather(names, label_id), "label_id": label_id}

    text_spec = tf.TensorSpec([None], tf.string, name="text")
    if pair:
        pair_spec = tf.TensorSpec([None], tf.string, name="text_pair")
        archive.add_endpoint(
            "serving_default", lambda text, text_pair: outputs(packer(text, text_pair)), [text_spec, pair_spec]
        )
    else:
        archive.add_endpoint("serving_default", lambda text: outputs(packer(text)), [text_spec])

    token_specs = {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in packer.input_names}
    archive.add_endpoint("serve_token_ids", outputs, [token_specs])
    return archive


def trim_to_longest(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Cuts a padded batch down to its longest sequence (at least one position)."""
    longest = tf.maximum(tf.reduce_max(tf.reduce_sum(tf.cast(features["padding_mask"], tf.int32), axis=1)), 1)
    return {name: value[:, :longest] for name, value in features.items()}


def write_warmup_requests(path: pathlib.Path, model_name: str, pair: bool = False, count: int = 3) -> None:
    """Writes `count` PredictRequests for `serving_default` as TF Serving warmup records."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(count):
            texts = [WARMUP_TEXTS[j % len(WARMUP_TEXTS)] for j in range(i, i + 2)]
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name="serving_default")
            )
            request.inputs["text"].CopyFrom(tf.make_tensor_proto(texts, dtype=tf.string))
            if pair:
                request.inputs["text_pair"].CopyFrom(tf.make_tensor_proto(texts[::-1], dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def run(config) -> pathlib.Path:
    """`tfft export`: exports the model trained in `config.output_dir` as a new version."""
    from tfft import train as train_lib

    model, packer, labels = train_lib.load_trained(config)
    return export_model(model, packer, labels.names, config)
