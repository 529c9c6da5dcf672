"""Strategies: MirroredStrategy on 2 logical CPUs, two local workers, TPU errors, mixed precision."""

import json
import pathlib
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, TASK_DATA, run_python, write_tiny_preset
from tfft import distribute, train
from tfft.config import TrainConfig, load_config

pytestmark = pytest.mark.slow


def _base_overrides(tmp_path, data_dir, tiny_preset, *extra):
    return [
        "name=dist",
        f"model.backbone={tiny_preset}",
        "model.sequence_length=32",
        "model.dropout=0.0",
        "model.freeze_layers=1",
        f"data.train={data_dir / 'train.csv'}",
        f"data.validation={data_dir / 'validation.csv'}",
        "data.max_train_examples=320",
        "train.epochs=2",
        "train.batch_size=16",
        "train.learning_rate=1e-2",
        f"export.base_dir={tmp_path / 'saved_models'}",
        *extra,
    ]


MIRRORED = """
import json, logging, sys
import numpy as np
logging.basicConfig(level=logging.INFO)
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tfft import distill, train
from tfft.config import load_config
base, root = json.loads(sys.argv[1]), sys.argv[2]
out, weights = {}, {}
for strategy in ["default", "mirrored"]:
    config = load_config(None, base + [f"train.strategy={strategy}", f"output_dir={root}/{strategy}"])
    result = (distill.run if config.distill.teacher else train.run)(config)
    weights[strategy] = {w.path: w.numpy() for w in result.model.trainable_weights}
    out[strategy] = {
        "loss": result.history["loss"], "monitored": float(result.metrics[result.task.monitor[0]]),
        "replicas": result.model.distribute_strategy.num_replicas_in_sync,
    }
out["gaps"] = {path: float(np.abs(w - weights["mirrored"][path]).max()) for path, w in weights["default"].items()}
print("RESULT " + json.dumps(out))
"""


def _train_both(overrides, tmp_path):
    """Trains `overrides` on one device, then MirroredStrategy on 2 logical CPUs, in a child process."""
    result = run_python(MIRRORED, json.dumps(overrides), str(tmp_path))
    assert result.returncode == 0, result.stderr[-4000:]
    out = json.loads(result.stdout.split("RESULT ")[-1])
    assert (out["default"]["replicas"], out["mirrored"]["replicas"]) == (1, 2)
    assert "Strategy: MirroredStrategy, 2 replica(s) in sync" in result.stderr
    return out


def test_mirrored_on_two_cpus_matches_one_device(tmp_path, data_dir, deterministic_preset):
    out = _train_both(_base_overrides(tmp_path, data_dir, deterministic_preset, "export.enabled=false"), tmp_path)
    # Same global batch and seed: the same losses, up to float summation order.
    np.testing.assert_allclose(out["mirrored"]["loss"], out["default"]["loss"], rtol=1e-4)
    assert max(gap for path, gap in out["gaps"].items() if path.startswith("head/")) < 1e-4


@pytest.mark.parametrize("task_type", sorted(TASK_DATA))
def test_every_task_trains_the_same_under_mirrored_as_on_one_device(tmp_path, data_dir, deterministic_preset,
                                                                     task_type):
    # Each task's loss, sample weights and metrics under 2 replicas: a loss averaged per replica over
    # different counts (NER's real tokens, masked-LM's predicted pieces) would part from the default, and
    # so would clipping each replica's share of the gradient (the small clipnorm clips every step).
    out = _train_both(_base_overrides(tmp_path, data_dir, deterministic_preset, "export.enabled=false",
                                      "data.max_train_examples=48", "train.epochs=1", "train.learning_rate=1e-3",
                                      "train.clipnorm=0.05", *TASK_DATA[task_type](data_dir)), tmp_path)
    np.testing.assert_allclose(out["mirrored"]["loss"], out["default"]["loss"], rtol=1e-4)
    assert max(out["gaps"].values()) < 1e-3  # a tenth of one step at lr 1e-3 on Adam's unit scale
    # Scores that pick an argmax (spans, tags) may flip on a near-tie between the two summation orders.
    assert out["mirrored"]["monitored"] == pytest.approx(out["default"]["monitored"], rel=0.02)


@pytest.mark.parametrize("recipe", [
    ("train.gradient_accumulation_steps=2",),
    ("train.layer_decay=0.5", "train.unfreeze.every=2", "train.unfreeze.unit=steps", "model.freeze_layers=0"),
    ("model.lora_rank=2", "model.freeze_layers=0"),
], ids=["accumulation", "layer_decay_and_unfreezing", "lora"])
def test_recipes_train_the_same_under_mirrored_as_on_one_device(tmp_path, data_dir, deterministic_preset, recipe):
    # Accumulation: Keras' own puts its all-reduce in a `cond`, which tf.distribute refuses (keras-team/keras#20582);
    # the small clipnorm clips every update, so clipping a replica's share instead of the sum would show too.
    out = _train_both(_base_overrides(tmp_path, data_dir, deterministic_preset, "export.enabled=false",
                                      "data.max_train_examples=64", "train.epochs=1", "train.learning_rate=1e-3",
                                      "train.clipnorm=0.05", *recipe), tmp_path)
    np.testing.assert_allclose(out["mirrored"]["loss"], out["default"]["loss"], rtol=1e-4)
    assert max(out["gaps"].values()) < 1e-3


@pytest.mark.parametrize("student", ["kept layer", "another width"])
def test_a_student_matching_hidden_states_trains_the_same_under_mirrored_as_on_one_device(tmp_path, data_dir,
                                                                                          deterministic_preset, student):
    # Each replica's step is traced in a thread of its own: each must read its own layers' outputs. Another width:
    # the 32-wide student's projection to a 16-wide teacher is a variable of the strategy's, its gradient summed too.
    base = _base_overrides(tmp_path, data_dir, deterministic_preset, "export.enabled=false",
                           "data.max_train_examples=64", "train.epochs=1", "train.learning_rate=1e-3",
                           "train.clipnorm=0.05")
    teacher = base if student == "kept layer" else [
        *base, f"model.backbone={write_tiny_preset(tmp_path / 'narrow', dropout=0.0, hidden_dim=16)}"]
    train.run(load_config(None, [*teacher, f"output_dir={tmp_path / 'teacher'}"]))
    out = _train_both([*base, f"distill.teacher={tmp_path / 'teacher'}", "distill.hidden_weight=5",
                       "model.keep_layers=1" if student == "kept layer" else "model.keep_layers=null"], tmp_path)
    np.testing.assert_allclose(out["mirrored"]["loss"], out["default"]["loss"], rtol=1e-4)
    assert max(out["gaps"].values()) < 1e-3
    assert any(path.startswith("hidden_state_projection") for path in out["gaps"]) == (student == "another width")


@pytest.mark.parametrize("family", ["electra", "deberta-v3", "modernbert"])
def test_converted_families_train_the_same_under_mirrored_as_on_one_device(tmp_path, data_dir, family_checkpoints,
                                                                           family):
    out = _train_both(_base_overrides(tmp_path, data_dir, family_checkpoints[family], "export.enabled=false",
                                      "data.max_train_examples=48", "train.epochs=1", "train.learning_rate=1e-3",
                                      "train.clipnorm=0.05"), tmp_path)
    np.testing.assert_allclose(out["mirrored"]["loss"], out["default"]["loss"], rtol=1e-4)
    assert max(out["gaps"].values()) < 1e-3


WORKER = """
import json, logging, os, sys
import numpy as np
logging.basicConfig(level=logging.INFO)
from tfft import distill, train
from tfft.config import load_config
base, weights_path = json.loads(sys.argv[1]), sys.argv[2]
config = load_config(None, base)
result = (distill.run if config.distill.teacher else train.run)(config)
np.savez(weights_path, *[w.numpy() for w in result.model.weights])
print("RESULT " + json.dumps({"output_dir": result.output_dir, "export": result.export_path}))
"""


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.parametrize("data", ["one file", "streamed shards", "a student on streamed shards and unlabelled rows"])
def test_two_workers_train_identical_weights_and_only_the_chief_writes(tmp_path, data_dir, deterministic_preset, data):
    import os

    import pandas as pd

    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    base = _base_overrides(
        tmp_path, data_dir, deterministic_preset, "train.strategy=multi_worker", f"output_dir={tmp_path / 'run'}"
    )
    if data != "one file":  # 4 shards of the same 320 rows: each worker streams 2 (by file; by row beside unlabelled rows)
        rows = pd.read_csv(data_dir / "train.csv").head(320)
        for i in range(4):
            rows.iloc[i::4].to_csv(tmp_path / f"train-{i}.csv", index=False)
        base = [o for o in base if not o.startswith(("data.train=", "data.max_train_examples="))]
        base.append(f"data.train={tmp_path}/train-*.csv")
    if data.startswith("a student"):  # the teacher labels 40 unlabelled rows in the step; every row is sharded by row
        teacher = load_config(None, [*base, "train.strategy=default", f"output_dir={tmp_path / 'teacher'}",
                                     "export.enabled=false"])
        train.run(teacher)
        rows.head(40)[["text"]].to_csv(tmp_path / "more.csv", index=False)
        base += [f"distill.teacher={tmp_path / 'teacher'}", f"distill.unlabeled={tmp_path / 'more.csv'}"]
    workers = []
    for index in range(2):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        workers.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, json.dumps(base), str(tmp_path / f"weights_{index}.npz")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
        ))
    outputs, logs = [], []
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr[-4000:]
        outputs.append(json.loads(stdout.split("RESULT ")[-1]))
        logs.append(stderr)
    chief, other = outputs
    with np.load(tmp_path / "weights_0.npz") as a, np.load(tmp_path / "weights_1.npz") as b:
        assert len(a.files) == len(b.files) > 0
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])
    # Only the chief wrote: metrics, checkpoints and one export; the worker's folder is gone.
    assert chief["output_dir"] == str(tmp_path / "run")
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert chief["export"] and other["export"] is None
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    if data == "streamed shards":
        assert all("4 file(s) over 2 workers, sharded by file" in log for log in logs)
        assert metrics["training_data"] == {"files": 4, "rows": 320, "skipped_rows": 0}
    if data.startswith("a student"):
        assert all("4 file(s) over 2 workers, sharded by row" in log for log in logs)
        assert metrics["training_data"] == {"files": 4, "rows": 320, "skipped_rows": 0, "unlabeled_rows": 40,
                                            "skipped_unlabeled_rows": 0}
        assert "accuracy" in metrics["teacher"]
    assert sorted(p.name for p in (tmp_path / "saved_models" / "dist").iterdir()) == ["1"]
    assert not pathlib.Path(other["output_dir"]).exists()


@pytest.mark.parametrize("tpu, where", [("", "the local/Colab TPU"), ("grpc://127.0.0.1:1", "grpc://127.0.0.1:1")])
def test_tpu_strategy_without_a_tpu_fails_fast(tpu, where):
    import time

    started = time.time()
    with pytest.raises(distribute.StrategyError, match=f"No TPU was found at '{where}'"):
        distribute.create_strategy(TrainConfig(strategy="tpu", tpu=tpu))
    assert time.time() - started < 30


def test_multi_worker_without_tf_config_is_explained(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(distribute.StrategyError, match="needs TF_CONFIG"):
        distribute.create_strategy(TrainConfig(strategy="multi_worker"))


def test_auto_picks_default_on_a_cpu_machine(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("COLAB_TPU_ADDR", raising=False)
    monkeypatch.delenv("TPU_NAME", raising=False)
    strategy = distribute.create_strategy(TrainConfig(strategy="auto"))
    assert strategy.num_replicas_in_sync == 1 and distribute.is_chief(strategy)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_keeps_the_head_float32(make_config, policy):
    config = make_config(f"train.mixed_precision={policy}", "train.epochs=1", "data.max_train_examples=64", "model.freeze_layers=0")
    result = train.run(config)
    model = result.model
    compute = "bfloat16" if policy == "mixed_bfloat16" else "float16"
    assert model.backbone.get_layer("transformer_layer_1").compute_dtype == compute
    assert model.get_layer("head").compute_dtype == "float32"
    assert model.outputs[0].dtype == "float32"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (policy == "mixed_float16")
    assert np.isfinite(result.history["loss"]).all()
    assert keras.mixed_precision.global_policy().name == "float32"  # restored for the caller


def test_jit_compile_and_steps_per_execution(make_config):
    result = train.run(make_config("train.jit_compile=true", "train.steps_per_execution=4", "train.pad_to=buckets",
                                   "train.epochs=1", "data.max_train_examples=128"))
    assert np.isfinite(result.history["loss"]).all()
    assert result.model.jit_compile


def test_an_empty_tpu_name_tries_local_first(monkeypatch):
    """TPU VMs (Kaggle, Colab's TPU VM runtime) resolve as `local`; older Colab runtimes from the environment."""
    tried = []

    def resolver(tpu=None, **kwargs):
        tried.append(tpu)
        raise ValueError(f"no TPU {tpu!r} here")

    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", resolver)
    with pytest.raises(distribute.StrategyError, match="local: ValueError: no TPU 'local' here; from the environment"):
        distribute.create_strategy(TrainConfig(strategy="tpu", tpu=""))
    assert tried == ["local", None]
