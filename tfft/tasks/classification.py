"""Single-label classification: one label per row, softmax over the labels."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfft import data, metrics
from tfft.tasks.base import decode, log_mean_softmax
from tfft.tasks.table import StreamTargets, TableTask, id_table

#: The smallest probability `logits_from_outputs` takes the log of: a float32 softmax's smallest normal number.
TINY = float(np.finfo(np.float32).tiny)


class Classification(TableTask):
    """`task.type: classification`. One label per row, from `data.label_column`.

    Labels may be strings or integers; the vocabulary is taken from the
    training split (integers in numeric order, strings sorted) and saved as
    `labels.txt`. Serving returns `probabilities` `float32[batch, labels]`,
    `label` `string[batch]` and `label_id` `int64[batch]`.
    """

    type = "classification"
    monitor = ("accuracy", "max")
    monitor_in_keras = True
    litert_outputs = ("probabilities", "label_id", "label")
    exclusive_keys = ("train.class_weight",)

    def __init__(self, config):
        super().__init__(config)
        self.vocabulary: data.LabelVocabulary | None = None

    def read_targets(self, frame, examples):
        return data.checked_column(frame, self.config.data.label_column, examples.source, "label",
                                   examples.lines[0] if examples.lines else None)

    def stream_targets(self):
        table = id_table(self.vocabulary.names)
        column = self.config.data.label_column
        ids = lambda row: table.lookup(tf.strings.strip(row[column]))  # noqa: E731
        return StreamTargets([column], ids, lambda row: ids(row) >= 0)

    def fit_vocabulary(self, train):
        self.vocabulary = data.LabelVocabulary.from_labels(train.labels)

    @property
    def label_names(self):
        return self.vocabulary.names if self.vocabulary is not None else None

    def load_vocabulary(self, output_dir):
        self.vocabulary = data.LabelVocabulary.load(output_dir)

    def encode(self, examples):
        return self.vocabulary.encode(examples)

    def strata(self, examples):
        return [str(label).strip() for label in examples.labels]

    def class_weight(self, targets):
        if self.config.train.class_weight == "balanced":
            return self.vocabulary.class_weights(targets)
        return None

    @property
    def num_outputs(self):
        return len(self.vocabulary)

    def loss(self):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def combine_logits(self, logits):
        return log_mean_softmax(logits)

    def pseudo_labels(self, outputs):
        return decode(outputs["label"])

    def teacher_targets(self, logits):
        return tf.argmax(logits, axis=-1, output_type=tf.int64)

    def logits_from_outputs(self, outputs):
        """The log of each probability: the logits up to a shift per row, which a softmax at any temperature drops."""
        return np.log(np.maximum(np.asarray(outputs["probabilities"], np.float64), TINY)).astype(np.float32)

    def postprocess(self, logits):
        probabilities = tf.nn.softmax(logits, axis=-1)
        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {
            "probabilities": probabilities,
            "label": tf.gather(tf.constant(self.vocabulary.names), label_id),
            "label_id": label_id,
        }

    def score(self, examples, outputs):
        return metrics.classification_metrics(self.encode(examples), outputs["label_id"], self.vocabulary.names)

    def report(self, scores):
        return metrics.format_metrics(scores)

    def logged_scores(self, scores):
        return {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"]}

    @classmethod
    def prediction_columns(cls, outputs, metadata, inputs):
        labels = metadata["labels"]
        columns = {"predicted_label": decode(outputs["label"]), "predicted_label_id": np.asarray(outputs["label_id"])}
        for i, name in enumerate(labels):
            columns[f"probability_{name}"] = np.asarray(outputs["probabilities"])[:, i]
        return columns
