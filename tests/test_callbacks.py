"""`tfft.callbacks`: what the callbacks of a `fit` add to it."""

import numpy as np

from conftest import CountingTask
from tfft import callbacks


class ScoringTask(CountingTask):
    """`CountingTask`, scored: the mean of its doubled token ids."""

    def score(self, examples, outputs):
        return {"mean": float(outputs["doubled"].mean())}

    def logged_scores(self, scores):
        return scores


def test_validation_scores_put_the_tasks_scores_in_each_epochs_logs_tracing_once_a_run():
    task = ScoringTask()
    scores = callbacks.ValidationScores(task, packer=None, examples=2, batch_size=4)
    scores.set_model(object())
    for epoch in range(3):
        logs = {"loss": 1.0}
        scores.on_epoch_end(epoch, logs)
        assert logs == {"loss": 1.0, "val_mean": float((np.arange(30).reshape(10, 3)[:, :2] * 2).mean())}
    assert task.traces == 1  # one trace for the run, not one an epoch
