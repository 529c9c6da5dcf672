"""`tfft.callbacks`: what the callbacks of a `fit` add to it."""

import numpy as np

from conftest import TASK_DATA, CountingTask, texts_of_lengths
from tfft import callbacks, evaluate


class ScoringTask(CountingTask):
    """`CountingTask`, scored: how many texts are longer than their row number."""

    def score(self, examples, outputs):
        return {"longer": int(np.sum(outputs["length"] > np.arange(len(examples))))}

    def logged_scores(self, scores):
        return scores


def test_validation_scores_put_the_tasks_scores_in_each_epochs_logs_tracing_once_a_run():
    task = ScoringTask()
    predictor = evaluate.OutputPredictor(task, model=None, packer=None, batch_size=2)
    scores = callbacks.ValidationScores(predictor, texts_of_lengths([5, 0, 4, 1, 3]))
    for epoch in range(3):
        logs = {"loss": 1.0}
        scores.on_epoch_end(epoch, logs)
        assert logs == {"loss": 1.0, "val_longer": 2}  # rows 0 and 2: scored in row order
    assert task.traces == 1  # one trace for the run, not one an epoch


def test_keras_validates_where_one_pass_cannot_score_a_batch_and_on_tpus(make_config, data_dir):
    from unittest import mock

    import tensorflow as tf

    from tfft import tasks

    tpu = mock.create_autospec(tf.distribute.TPUStrategy, instance=True)
    default = tf.distribute.get_strategy()
    for task_type, one_pass in [("classification", True), ("regression", True), ("extractive_qa", True),
                                ("masked_lm", False)]:
        task = tasks.create(make_config(*TASK_DATA[task_type](data_dir)))
        assert callbacks.keras_validates(task, default) is not one_pass, task_type
        assert callbacks.keras_validates(task, tpu) is True, task_type
