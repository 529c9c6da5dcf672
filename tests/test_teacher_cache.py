"""`tfft.teacher_cache`: a teacher's outputs computed once follow each element through shuffling, grouping and
trimming, and equal what the teacher computes on the training batch itself."""

import random

import numpy as np
import pytest
import tensorflow as tf

from conftest import NOUNS, POSITIVE, TASK_DATA, write_csv
from tfft import backbones, data, distill, tasks
from tfft.model import build_model
from tfft.teacher_cache import TEACHER_LOGITS, attach_teacher_outputs, teacher_logits
from tfft.training_data import read_training_data


def prepared(config):
    """The task, its in-memory training split prepared for the backbone's packer, the packer and a teacher model."""
    task = tasks.create(config)
    train_data = read_training_data(task, config)
    task.fit_vocabulary(train_data.labelled)
    source = backbones.resolve(config.model)
    source.prepare(train_data.sample_texts(), None)
    packer = source.packer()
    train_data.prepare(packer)
    return task, train_data, packer, build_model(config, source, task)


def varied_lengths(folder) -> list[str]:
    """Classification rows of 2 to 20 words, so that training batches are trimmed to many lengths."""
    rng = random.Random(0)
    rows = [(" ".join(rng.choice(NOUNS + POSITIVE) for _ in range(rng.randint(2, 20))), rng.choice("ab"))
            for _ in range(96)]
    return [f"data.train={write_csv(folder / 'varied.csv', rows)}"]


@pytest.mark.parametrize("task_type", ["classification", "regression", "token_classification", "extractive_qa"])
def test_cached_outputs_are_the_teachers_on_every_training_batch(task_type, make_config, data_dir, tmp_path):
    # Per-example (classification, regression) and per-token (NER, QA: -1e9 on padding) logits; two epochs, each
    # shuffled and grouped by length, batches trimmed to their longest element.
    task_data = varied_lengths(tmp_path) if task_type == "classification" else TASK_DATA[task_type](data_dir)
    config = make_config(*task_data, "data.max_train_examples=96")
    task, train_data, packer, teacher = prepared(config)
    train_data.attach(lambda ds: attach_teacher_outputs(ds, teacher, train_data.elements))
    batching = data.Batching(8)
    steps = data.steps_per_epoch(train_data.elements, 8)
    batches = list(train_data.dataset(packer, batching, seed=0, epochs=2).take(2 * steps))
    lengths = {int(b[0]["token_ids"].shape[1]) for b in batches}
    assert len(lengths) > 1 or task_type == "regression"  # trimmed to several lengths (the pairs are all alike)
    for features, *_ in batches:
        in_graph = teacher(features, training=False)  # TaskModel reads its own inputs and ignores TEACHER_LOGITS
        assert in_graph.shape == teacher({n: features[n] for n in teacher.feature_names}).shape
        cached = teacher_logits(features, in_graph)
        np.testing.assert_allclose(cached.numpy(), in_graph.numpy(), rtol=1e-4, atol=1e-4)
        if in_graph.shape.rank == 3:  # the cache's own values, not the student's, at every real token
            real = features["padding_mask"].numpy().astype(bool)
            np.testing.assert_allclose(features[TEACHER_LOGITS].numpy()[real], in_graph.numpy()[real], atol=1e-4)


def test_the_soft_loss_on_cached_outputs_equals_the_teacher_run_in_the_step(make_config, data_dir):
    config = make_config(*TASK_DATA["token_classification"](data_dir), "data.max_train_examples=32")
    task, train_data, packer, teacher = prepared(config)
    student = build_model(config, backbones.resolve(config.model), task)
    train_data.attach(lambda ds: attach_teacher_outputs(ds, teacher, train_data.elements))
    features, _, weights = next(iter(train_data.dataset(packer, data.Batching(8), seed=0, epochs=1)))
    objective = distill.SoftTargets(teacher, task, alpha=1.0, temperature=2.0)
    y_pred = student(features, training=False)
    loss = tf.constant(0.0)
    plain = {name: value for name, value in features.items() if name != TEACHER_LOGITS}
    assert float(objective(features, None, y_pred, weights, lambda y: loss)) == pytest.approx(
        float(objective(plain, None, y_pred, weights, lambda y: loss)), rel=1e-5)
