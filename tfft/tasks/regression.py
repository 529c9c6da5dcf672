"""Regression: one float per row (or per sentence pair), e.g. similarity scores."""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from tfft import data, metrics
from tfft.tasks.base import StreamTargets, Task, dense_head


class Regression(Task):
    """`task.type: regression`. A float target in `data.label_column`.

    A `Dense(1)` head on the pooled output, trained with MSE (or `task.loss:
    huber`). Scores: Pearson, Spearman, MSE and MAE; Pearson picks the best
    checkpoint. Serving returns `score` `float32[batch]`.
    """

    type = "regression"
    monitor = ("pearson", "max")
    litert_outputs = ("score",)

    def read(self, spec, split="train", labelled=True):
        dc = self.config.data
        frame = data.read_frame(spec, dc, split, [dc.label_column] if labelled else [])
        return data.limit_train_examples(self.examples_from_frame(frame, spec, labelled), dc, split)

    def examples_from_frame(self, frame, source, labelled=True, first_line=None):
        dc, spec = self.config.data, source
        data.require_columns(frame, spec, dc, {"label_column": dc.label_column if labelled else None})
        texts, pairs = data.text_columns(frame, spec, dc, first_line)
        examples = data.Examples(spec, texts, pairs, lines=data.line_numbers(len(texts), first_line))
        if labelled:
            cells = [str(v).strip() for v in frame[dc.label_column].tolist()]
            values, bad = [], []
            for i, cell in enumerate(cells):
                try:
                    value = float(cell)
                except ValueError:
                    value = math.nan
                if not math.isfinite(value):
                    bad.append((examples.where(i), cell))
                values.append(value)
            if bad:
                raise data.rows_error(
                    spec, f"has cells in the target column `{dc.label_column}` that are not finite numbers", bad,
                    "Regression targets must be numbers such as 3.5; fix or remove those rows.",
                )
            examples.labels = values
        return examples

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

    def head(self, backbone_outputs, dropout):
        return dense_head(backbone_outputs["pooled_output"], 1, dropout)

    def loss(self):
        if self.config.task.loss == "huber":
            return keras.losses.Huber()
        return keras.losses.MeanSquaredError()

    def metrics(self):
        return [keras.metrics.MeanAbsoluteError(name="mae")]

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
