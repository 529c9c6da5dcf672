"""Distribution strategies: default/CPU, MirroredStrategy, MultiWorkerMirroredStrategy, TPUStrategy.

`create_strategy(config.train)` returns the strategy and logs its replicas
and devices. `train.batch_size` is the global batch: the same config gives the
same learning-rate curve whatever the number of replicas.

Only the chief writes checkpoints, metrics and exports; other workers write
to temporary folders (`worker_dir`) that are removed at the end.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile

import tensorflow as tf

from tfft.config import TrainConfig
from tfft.errors import StrategyError

logger = logging.getLogger(__name__)


def replica_context_with_peers():
    """The replica context when the step runs on more than one replica (a strategy's `run`), else None."""
    context = tf.distribute.get_replica_context()
    return context if context is not None and context.num_replicas_in_sync > 1 else None

def create_strategy(config: TrainConfig) -> tf.distribute.Strategy:
    """The `tf.distribute.Strategy` that `config.strategy` asks for.

    `auto` picks a TPU when one resolves, `MirroredStrategy` when more than
    one GPU is visible, `MultiWorkerMirroredStrategy` when `TF_CONFIG` names
    several workers, and the default strategy otherwise.
    """
    kind = config.strategy
    if kind == "auto":
        kind = _auto_strategy(config)
    if kind == "tpu":
        strategy = _tpu_strategy(config.tpu)
    elif kind == "multi_worker":
        strategy = _multi_worker_strategy()
    elif kind == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    try:
        devices = list(strategy.extended.worker_devices)
    except RuntimeError:  # The default strategy has no device list.
        devices = [device.name for device in tf.config.list_logical_devices()[:1]]
    logger.info(
        "Strategy: %s, %d replica(s) in sync, devices: %s",
        type(strategy).__name__,
        strategy.num_replicas_in_sync,
        ", ".join(devices),
    )
    return strategy


def _auto_strategy(config: TrainConfig) -> str:
    if config.tpu or os.environ.get("COLAB_TPU_ADDR") or os.environ.get("TPU_NAME"):
        try:
            tf.distribute.cluster_resolver.TPUClusterResolver(tpu=config.tpu or None)
            return "tpu"
        except (ValueError, tf.errors.NotFoundError):
            pass
    if len(_tf_config().get("cluster", {}).get("worker", [])) > 1:
        return "multi_worker"
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return "mirrored"
    return "default"


def _tf_config() -> dict:
    try:
        return json.loads(os.environ.get("TF_CONFIG", "{}"))
    except json.JSONDecodeError as err:
        raise StrategyError(f"TF_CONFIG is not valid JSON: {err}") from None


def _tpu_strategy(tpu: str) -> tf.distribute.TPUStrategy:
    """The TPU at `tpu`; an empty `tpu` tries `local` first (TPU VMs, Kaggle and Colab's TPU VM runtimes,
    tensorflow/tensorflow#70827), then the address the environment names (older Colab runtimes)."""
    where = tpu or "the local/Colab TPU"
    errors = []
    for candidate in [tpu] if tpu else ["local", None]:
        try:
            if candidate and candidate.startswith("grpc://"):
                _check_reachable(candidate)  # TF would wait for a dead address for minutes.
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=candidate)
            if tpu:  # a named or remote TPU; a local one needs no connection
                tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            return tf.distribute.TPUStrategy(resolver)
        except (ValueError, tf.errors.OpError, RuntimeError, OSError) as err:
            errors.append(f"{candidate or 'from the environment'}: {type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}")
    raise StrategyError(
        f"No TPU was found at {where!r} ({'; '.join(errors)}). Set `train.tpu` to the TPU's name or grpc:// "
        "address, run on a TPU runtime, or use `train.strategy=auto` to fall back to the CPU/GPUs."
    )


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    host, _, port = address[len("grpc://") :].rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout):
        pass


def _multi_worker_strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
    if not _tf_config().get("cluster"):
        raise StrategyError(
            "`train.strategy=multi_worker` needs TF_CONFIG to name the cluster and this worker's task, e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}.'
        )
    patch_keras_for_multi_worker()
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files (always true off multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type in (None, "chief") or (task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict())


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """Hosts that each read their own share of the training data: the workers of `multi_worker`, else 1."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return 1
    cluster = resolver.cluster_spec().as_dict()
    return max(1, len(cluster.get("worker", [])) + len(cluster.get("chief", [])))


def worker_dir(output_dir: str, strategy: tf.distribute.Strategy) -> str:
    """`output_dir` for the chief, a fresh temporary folder for the other workers."""
    if is_chief(strategy):
        return output_dir
    return tempfile.mkdtemp(prefix="tfft_worker_")


def remove_worker_dir(path: str, strategy: tf.distribute.Strategy) -> None:
    if not is_chief(strategy):
        shutil.rmtree(path, ignore_errors=True)


# --- keras-team/keras#20585 -------------------------------------------------

_PATCHED = False


def patch_keras_for_multi_worker() -> None:
    """Works around keras-team/keras#20585: Keras 3 `fit` under MultiWorkerMirroredStrategy.

    Two spots in `keras.src.backend.tensorflow.trainer` fail with "Attempt to
    convert a value (PerReplica...)":

    1. `_maybe_symbolic_build` averages the first *data* batch across workers
       (`strategy.reduce("MEAN", batch)`) only to learn its shapes. We build
       from this worker's first local replica's batch instead.
    2. `reduce_per_replica(..., "mean")` reduces scalar metrics with `axis=0`
       in multi-worker mode. We reduce scalars with `axis=None`.

    Both are no-ops off multi-worker. Remove this once the issue is fixed.
    """
    global _PATCHED
    if _PATCHED:
        return
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original_reduce = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        # `fit` passes "auto", which means "mean" off TPUs.
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):
            def _mean(v):
                axis = None if v.shape.rank == 0 else 0
                return strategy.reduce("MEAN", v, axis=axis)

            return tf.nest.map_structure(_mean, values)
        return original_reduce(values, strategy, reduction)

    original_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is None or strategy is None or not tf_trainer._collective_all_reduce_multi_worker(strategy):
            return original_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            batch = next(it)
            data_batch = tf.nest.map_structure(
                lambda x: strategy.experimental_local_results(x)[0]
                if isinstance(x, tf.distribute.DistributedValues)
                else x,
                batch,
            )
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    tf_trainer.reduce_per_replica = reduce_per_replica
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    _PATCHED = True
