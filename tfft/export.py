"""Versioned SavedModels that TF Serving loads as they are: raw text in, the task's outputs out.

`export_model` writes `<export.base_dir>/<name>/<version>/`, where `version`
is one above the highest integer folder present. The SavedModel is written to
a hidden temporary folder first and renamed into place, so a crash never
leaves a half-written version for TF Serving to load, and an existing
version is never overwritten.

The task gives the signatures (`Task.serving_signatures`). Text tasks have:

- `serving_default`: `text` (and `text_pair` for pair tasks), `string[batch]`
  -> the task's outputs, e.g. `probabilities` `float32[batch, classes]`,
  `label` `string[batch]` and `label_id` `int64[batch]` for classification.
  The tokenizer runs inside the graph.
- `serve_token_ids`: the packer's int32 inputs (`token_ids`, `segment_ids`,
  `padding_mask` for BERT) -> the same outputs, for clients that tokenize.

Token classification serves `serving_default` (raw text) and `serve_words`.

The folder also holds `assets/labels.txt` (label or tag names, for tasks
that have them), `assets/tfft_task.json` (what `tfft predict` needs) and
`assets.extra/tf_serving_warmup_requests` (PredictRequest records). With
`export.formats: [saved_model, litert]` it holds `model.tflite` too, a
LiteRT file that takes raw text (`tfft.litert`).

The tokenizer's ops live in TensorFlow Text: a Python process that loads the
export must `import tensorflow_text` first (the official TF Serving binary
includes them).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pathlib
import shutil
import tempfile
import uuid

import keras
import tensorflow as tf

from tfft.errors import ConfigError
from tfft.tasks.base import METADATA_FILE

logger = logging.getLogger(__name__)

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
LABELS_FILE = "assets/labels.txt"
TASK_FILE = f"assets/{METADATA_FILE}"
STAGING_PREFIX = ".staging-"


def export_model(model: keras.Model, packer, task, config) -> pathlib.Path | str:
    """Exports a trained model to `<export.base_dir>/<name>/<next version>/`.

    Args:
        model: keras.Model. The trained `tfft.tasks.TaskModel`.
        packer: `TextPacker`. The in-graph tokenizer it was trained with.
        task: `tfft.tasks.Task`. Gives the signatures, outputs and warmup requests.
        config: `tfft.config.Config`. Uses `name` and `export.*`.

    Returns:
        The path of the new version folder (a string for remote paths).

    LoRA factors (`model.lora_rank`) are merged into the kernels first.
    """
    from tfft import lora

    with lora.merged(model):
        return write_saved_model(
            model,
            packer,
            task,
            f"{config.export.base_dir.rstrip('/')}/{config.name}",
            model_name=config.name,
            warmup_requests=config.export.warmup_requests,
            litert_quantize=config.export.quantize if "litert" in config.export.formats else None,
        )


def check_destination(base_dir: str, key: str = "export.base_dir") -> None:
    """Fails with a one-line `ConfigError` when `base_dir` cannot be reached or written: checked before training.

    A remote folder (`gs://...`) must be reachable (credentials, network, bucket); a local one must be, or be
    creatable under, a folder this process may write.
    """
    if is_remote(base_dir):
        try:
            tf.io.gfile.exists(base_dir)
        except tf.errors.OpError as err:
            reason = err.message.splitlines()[0]
            raise ConfigError(f"Argument `{key}` cannot be reached: {reason}. Check the path, the credentials "
                              f"and the network. Received: {key.split('.')[-1]}={base_dir!r}") from None
        return
    existing = pathlib.Path(base_dir).absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"Argument `{key}` must be a folder this process can write: `{existing}` is "
                          f"{'not a folder' if not existing.is_dir() else 'not writable'}. Received: "
                          f"{key.split('.')[-1]}={base_dir!r}")


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
    task,
    base_dir: str | pathlib.Path,
    *,
    model_name: str = "model",
    warmup_requests: int = 3,
    litert_quantize: str | None = None,
) -> pathlib.Path | str:
    """Writes the next version of `base_dir` atomically; see the module docstring.

    With `litert_quantize` (`none`, `dynamic_range` or `float16`) the version
    also holds `model.tflite` (`tfft.litert`), written before the folder is
    published like every other file in it.

    A remote `base_dir` (`gs://...`) is written locally first, then copied
    with `saved_model.pb` last: TF Serving loads a version only once that
    file exists, and object stores have no atomic rename.
    """
    if is_remote(base_dir):
        with tempfile.TemporaryDirectory(prefix="tfft_export_") as local:
            version = write_saved_model(
                model, packer, task, local, model_name=model_name, warmup_requests=warmup_requests,
                litert_quantize=litert_quantize,
            )
            return _upload(version, str(base_dir))
    base_dir = pathlib.Path(base_dir)
    base_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(base_dir)
    # TF Serving skips non-integer names; the process id tells a later export whether its writer still lives.
    staging = base_dir / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex}"
    try:
        archive = build_archive(model, packer, task)
        archive.write_out(str(staging), verbose=False)
        (staging / TASK_FILE).parent.mkdir(parents=True, exist_ok=True)
        (staging / TASK_FILE).write_text(json.dumps(task.metadata(), indent=2) + "\n", encoding="utf-8")
        if task.label_names is not None:
            (staging / LABELS_FILE).write_text("".join(name + "\n" for name in task.label_names), encoding="utf-8")
        if warmup_requests:
            write_warmup_requests(staging / WARMUP_FILE, model_name, task.warmup_inputs(warmup_requests))
        if litert_quantize is not None:
            from tfft import litert

            (staging / litert.LITERT_FILE).write_bytes(litert.convert(model, packer, task, quantize=litert_quantize))
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
    """Renames the complete `staging` folder to the next integer version, in one step.

    Exporters of the same model take turns under an `flock` on the
    `base_dir` folder itself, so two never pick the same number, and the
    version folder appears whole or not at all: no empty or partial folder
    is ever visible to TF Serving.
    """
    fd = os.open(base_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        final = base_dir / str((versions(base_dir) or [0])[-1] + 1)
        os.rename(staging, final)  # `final` does not exist: nothing is replaced
        return final
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def remove_stale_staging(base_dir: pathlib.Path) -> None:
    """Removes staging folders that exports killed mid-write left behind; never one a live process is writing."""
    for path in base_dir.glob(f"{STAGING_PREFIX}*"):
        pid = path.name[len(STAGING_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            logger.info("Removing %s, left by export process %s, which is no longer running.", path, pid)
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def build_archive(model: keras.Model, packer, task):
    """A `keras.export.ExportArchive` with the task's serving signatures."""
    archive = keras.export.ExportArchive()
    # Not `archive.track(model)`: the endpoints track the variables they use themselves, and tracking the model
    # too saved every weight twice (Keras' variable and the tf.Variable inside it): 174 MB for MiniLM, not 87.
    for name, (function, specs) in task.serving_signatures(model, packer).items():
        archive.add_endpoint(name, function, specs)
    for resource in packer.resources():  # after the endpoints, whose tracing may build an offsets tokenizer
        archive.track(resource)
    return archive


def write_warmup_requests(path: pathlib.Path, model_name: str, requests: list[dict[str, list[str]]]) -> None:
    """Writes PredictRequests for `serving_default` as TF Serving warmup records."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for inputs in requests:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name="serving_default")
            )
            for name, values in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(values, dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def run(config) -> pathlib.Path:
    """`tfft export`: exports the model trained in `config.output_dir` as a new version.

    Holds the run folder's lock meanwhile: a training run on the same folder
    is refused, and so is this export while one trains.
    """
    from tfft import run_dir
    from tfft.model import load_trained

    with run_dir.locked(pathlib.Path(config.output_dir), "export", create=False):
        trained = load_trained(config)
        return export_model(trained.model, trained.packer, trained.task, config)
