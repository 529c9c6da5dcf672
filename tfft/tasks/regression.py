"""Regression: one float per row (or per sentence pair), e.g. similarity scores."""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from tfft import data, metrics
from tfft.tasks.table import StreamTargets, TableTask

_FLOAT32_MAX = float(np.finfo(np.float32).max)


class Regression(TableTask):
    """`task.type: regression`. A float target in `data.label_column`.

    A `Dense(1)` head on the pooled output, trained with MSE (or `task.loss:
    huber`). Scores: Pearson, Spearman, MSE and MAE; Pearson picks the best
    checkpoint. Serving returns `score` `float32[batch]`.
    """

    type = "regression"
    monitor = ("pearson", "max")
    litert_outputs = ("score",)

    num_outputs = 1

    def read_targets(self, frame, examples):
        column = self.config.data.label_column
        values, bad = [], []
        for i, cell in enumerate(str(v).strip() for v in frame[column].tolist()):
            try:
                value = float(cell)
            except ValueError:
                value = math.nan
            if not math.isfinite(value) or abs(value) > _FLOAT32_MAX:
                bad.append((examples.where(i), cell))
            values.append(value)
        if bad:
            raise data.rows_error(
                examples.source, f"has cells in the target column `{column}` that are not finite float32 numbers", bad,
                "Regression targets must be numbers such as 3.5, at most 3.4e38 in size; fix or remove those rows.",
            )
        return values

    def stream_targets(self):
        pattern = r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*"  # what float() reads, less inf and nan

        column = self.config.data.label_column

        def number(row):
            cell = row[column]
            return tf.strings.to_number(tf.where(tf.strings.regex_full_match(cell, pattern), cell, "nan"))

        return StreamTargets([column], lambda row: tf.expand_dims(number(row), -1),
                             lambda row: tf.math.is_finite(number(row)))

    def describe(self):
        return "a float target"

    def encode(self, examples):
        return np.asarray(examples.labels, dtype=np.float32).reshape(-1, 1)

    def loss(self):
        if self.config.task.loss == "huber":
            return keras.losses.Huber()
        return keras.losses.MeanSquaredError()

    def soft_loss(self, student, teacher, sample_weight, temperature):
        """The mean squared difference from the teacher's score (`temperature` does not apply)."""
        del sample_weight, temperature
        return tf.reduce_mean(tf.square(student - teacher))

    def metrics(self):
        return [keras.metrics.MeanAbsoluteError(name="mae")]

    def pseudo_labels(self, outputs):
        return [float(score) for score in outputs["score"]]

    def teacher_targets(self, logits):
        return logits

    def logits_from_outputs(self, outputs):
        return np.asarray(outputs["score"], np.float32).reshape(-1, 1)

    def postprocess(self, logits):
        return {"score": logits[:, 0]}

    def score(self, examples, outputs):
        return metrics.regression_metrics(examples.labels, outputs["score"])

    def report(self, scores):
        return metrics.format_regression_metrics(scores)

    def logged_scores(self, scores):
        return {k: scores[k] for k in ("pearson", "spearman", "mse", "mae")}

    @classmethod
    def prediction_columns(cls, outputs, metadata, inputs):
        return {"predicted_score": np.asarray(outputs["score"], np.float32)}
