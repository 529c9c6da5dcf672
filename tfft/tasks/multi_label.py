"""Multi-label classification: any number of labels per row, one sigmoid per label."""

from __future__ import annotations

import collections
import json
import logging
import math
import pathlib
import re

import keras
import numpy as np
import tensorflow as tf

from tfft import data, metrics
from tfft.config import check
from tfft.errors import DataError
from tfft.tasks.base import decode
from tfft.tasks.table import StreamTargets, TableTask, id_table

logger = logging.getLogger(__name__)

_TRUE, _FALSE = ("1", "1.0", "true"), ("0", "0.0", "false", "")
_UNIT = "\x1f"  # splits a streamed JSON list's entries: no label name holds it


class MultiLabel(TableTask):
    """`task.type: multi_label`. Labels come in one of three forms:

    - one column (`data.label_column`) whose cells list label names separated
      by `task.label_separator` (`joy,love`), or 0-based ids into
      `task.label_names_file` (GoEmotions: `8,20`);
    - in JSONL, a JSON list (`"labels": ["joy", "love"]`) in that column;
    - one 0/1 column per label, named by `task.label_columns`.

    Rows with no label are allowed. Sigmoid outputs with binary
    cross-entropy; a label is predicted when its probability is at least
    `task.threshold`. Serving returns `probabilities` `float32[batch,
    labels]`, `predicted` `int32[batch, labels]` (0/1) and `labels`
    `string[batch]`, the predicted names joined by `task.label_separator`.
    """

    type = "multi_label"
    monitor = ("macro_f1", "max")
    # `labels` joins strings with `reduce_join`, which TFLite lacks: `tfft predict` joins them from `predicted`.
    litert_outputs = ("probabilities", "predicted")
    exclusive_keys = ("task.label_columns", "task.label_names_file")

    @classmethod
    def check_config(cls, config):
        columns = config.task.label_columns
        if columns is not None:
            check(len(columns) >= 1 and all(columns), "task.label_columns", columns, "must name at least one column")

    def __init__(self, config):
        super().__init__(config)
        self.names: list[str] | None = None

    # --- Reading ---------------------------------------------------------

    def _names_file(self) -> list[str] | None:
        path = self.config.task.label_names_file
        if not path:
            return None
        path = pathlib.Path(path)
        if not path.is_file():
            raise DataError(
                f"`task.label_names_file` `{path}` does not exist. It must list one label name per line."
            )
        names = [line.strip() for line in data.read_text(path).splitlines()]
        while names and not names[-1]:
            names.pop()
        return names

    def target_columns(self):
        columns = self.config.task.label_columns
        if columns:
            return [("task.label_columns", column) for column in columns]
        return super().target_columns()

    def read_targets(self, frame, examples):
        columns = self.config.task.label_columns
        if columns:
            return self._from_indicator_columns(frame, columns, examples)
        return self._from_label_cells(frame[self.config.data.label_column].tolist(), examples)

    def stream_targets(self):
        """Multi-hot targets in the graph, read as `examples_from_frame` reads the row's label cells."""
        columns = self.config.task.label_columns
        if columns:
            def cells(row):
                return tf.strings.lower(tf.strings.strip(tf.stack([row[c] for c in columns])))

            def targets(row):
                return tf.cast(tf.reduce_any(tf.expand_dims(cells(row), -1) == _TRUE, axis=-1), tf.float32)

            def valid(row):
                return tf.reduce_all(tf.reduce_any(tf.expand_dims(cells(row), -1) == _TRUE + _FALSE, axis=-1))

            return StreamTargets(list(columns), targets, valid)
        names = self._names_file()
        keys = [str(i) for i in range(len(names))] if names is not None else self.names
        table = id_table(keys)
        column, separator, size = self.config.data.label_column, self.config.task.label_separator, len(self.names)

        def ids(row):
            cell = tf.strings.strip(row[column])
            inner = tf.strings.strip(tf.strings.regex_replace(cell, r"^\[|\]$", ""))
            # A JSON list of strings splits between quotes (`"a, b", "c"`), one of numbers at its commas.
            quoted = tf.strings.regex_full_match(inner, r'".*"')
            strings = tf.strings.regex_replace(tf.strings.regex_replace(inner, r'^"|"$', ""), r'"\s*,\s*"', _UNIT)
            listed = tf.strings.split(tf.where(quoted, strings, tf.strings.regex_replace(inner, ",", _UNIT)), _UNIT)
            listed = tf.strings.regex_replace(tf.strings.strip(listed), r"\\(.)", "\\1")  # \" and \\ unescaped
            parts = tf.cond(tf.strings.regex_full_match(cell, r"\[.*\]"), lambda: listed,
                            lambda: tf.strings.strip(tf.strings.split(cell, separator)))
            return table.lookup(tf.boolean_mask(parts, tf.strings.length(parts) > 0))

        def targets(row):
            return tf.minimum(tf.reduce_sum(tf.one_hot(ids(row), size, dtype=tf.float32), axis=0), 1.0)

        return StreamTargets([column], targets, lambda row: tf.reduce_all(ids(row) >= 0))

    def check_stream_rows(self, frame, examples):
        if self.config.task.label_columns:
            return
        bad = [(examples.where(i), cell) for i, cell in enumerate(frame[self.config.data.label_column].tolist())
               if str(cell).strip().startswith("[") and set(re.findall(r"\\(.)", str(cell))) - set('"\\/')]
        if bad:
            raise data.rows_error(
                examples.source, "has JSON label cells with escapes that streamed data cannot read", bad,
                'Streamed JSON lists may escape only \\" and \\\\: write the characters themselves '
                "(`json.dumps(labels, ensure_ascii=False)`), or set `data.streaming: false`.",
            )

    def _from_indicator_columns(self, frame, columns, examples) -> list[list[str]]:
        labels: list[list[str]] = [[] for _ in range(len(frame))]
        for column in columns:
            bad = []
            for i, cell in enumerate(frame[column].tolist()):
                value = str(cell).strip().lower()
                if value in _TRUE:
                    labels[i].append(column)
                elif value not in _FALSE:
                    bad.append((examples.where(i), cell))
            if bad:
                raise data.rows_error(
                    examples.source, f"has cells in the label column `{column}` that are not 0 or 1", bad,
                    "Each of `task.label_columns` holds 1 where the row has that label and 0 (or empty) where not.",
                )
        return labels

    def _from_label_cells(self, cells, examples) -> list[list[str]]:
        separator = self.config.task.label_separator
        names = self._names_file()
        labels, bad = [], []
        for i, cell in enumerate(cells):
            cell = str(cell).strip()
            if cell.startswith(("[", "{")):
                entries = _json_entries(cell, ids=names is not None)
                if entries is None:
                    bad.append((examples.where(i), cell))
                    continue
            else:
                entries = [part.strip() for part in cell.split(separator)]
            entries = [e for e in entries if e]
            if names is not None:
                ids = [int(e) if e.isdigit() else -1 for e in entries]
                if any(not 0 <= j < len(names) for j in ids):
                    bad.append((examples.where(i), cell))
                    continue
                entries = [names[j] for j in ids]
            labels.append(sorted(set(entries), key=entries.index))
        if bad:
            why = (
                f"hold 0-based ids into `task.label_names_file` ({len(names)} names), separated by {separator!r}"
                if names is not None
                else f"hold label names separated by {separator!r} (`task.label_separator`), or a JSON list of "
                "names (`[\"joy\", \"love\"]`)"
            )
            raise data.rows_error(
                examples.source, "has label cells that cannot be read", bad, f"Label cells must {why}."
            )
        return labels

    def strata(self, examples):
        """Each example's rarest label over `examples` (`<none>` for an example without one).

        The closest simple rule to iterative stratification: every rare
        label's examples spread over the folds.
        """
        counts = collections.Counter(label for row in examples.labels for label in row)
        return [min(row, key=lambda label: (counts[label], label)) if row else "<none>" for row in examples.labels]

    # --- Vocabulary and targets -------------------------------------------

    def fit_vocabulary(self, train):
        names = self.config.task.label_columns or self._names_file()
        if names is None:
            seen = {label for row in train.labels for label in row}
            if not seen:
                raise DataError(f"Data file `{train.source}` has no labels in any row: nothing to learn.")
            names = data.LabelVocabulary.from_labels(seen, minimum=1).names
        counts = dict.fromkeys(names, 0)
        for row in train.labels:
            for label in row:
                counts[label] = counts.get(label, 0) + 1
        unused = [name for name, count in counts.items() if count == 0]
        if unused:
            logger.warning("%d label(s) have no training example and will rarely be predicted: %s",
                           len(unused), ", ".join(unused))
        self.names = list(names)

    @property
    def label_names(self):
        return self.names

    def load_vocabulary(self, output_dir):
        self.names = data.LabelVocabulary.load(output_dir, minimum=1).names

    def describe(self):
        return f"{len(self.names)} labels (multi-label, threshold {self.config.task.threshold:g}): {', '.join(self.names)}"

    def encode(self, examples):
        ids = {name: i for i, name in enumerate(self.names)}
        targets = np.zeros([len(examples), len(self.names)], np.float32)
        unknown = []
        for i, row in enumerate(examples.labels):
            for label in row:
                if label in ids:
                    targets[i, ids[label]] = 1.0
                else:
                    unknown.append((examples.where(i), label))
        if unknown:
            raise data.rows_error(
                examples.source, "has labels that the training split never had", unknown,
                f"Known labels: {self.names}. Fix those rows or add examples of the label to the training data.",
            )
        return targets

    # --- Model and outputs -----------------------------------------------

    @property
    def num_outputs(self):
        return len(self.names)

    def loss(self):
        return keras.losses.BinaryCrossentropy(from_logits=True)

    def soft_loss(self, student, teacher, sample_weight, temperature):
        """Binary cross-entropy from the teacher's sigmoid at `temperature` to the student's, times its square."""
        del sample_weight
        targets = tf.sigmoid(teacher / temperature)
        per_label = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=student / temperature)
        return tf.reduce_mean(per_label) * temperature**2

    def metrics(self):
        t = self.config.task.threshold
        # On logits: probability >= t is logit >= log(t / (1 - t)).
        return [keras.metrics.BinaryAccuracy(name="binary_accuracy", threshold=math.log(t / (1 - t)))]

    def combine_logits(self, logits):
        """Logits whose sigmoid is the members' mean probability of each label."""
        mean = tf.clip_by_value(tf.add_n([tf.math.sigmoid(x) for x in logits]) / len(logits), 1e-7, 1 - 1e-7)
        return tf.math.log(mean) - tf.math.log1p(-mean)

    def pseudo_labels(self, outputs):
        return [[name for name, on in zip(self.names, row, strict=True) if on] for row in outputs["predicted"]]

    def teacher_targets(self, logits):
        return tf.cast(tf.math.sigmoid(logits) >= self.config.task.threshold, tf.float32)

    def logits_from_outputs(self, outputs):
        """The inverse sigmoid of each probability, clipped to [1e-7, 1 - 1e-7] (logits within +-16.1), as
        `combine_logits` clips: a float32 sigmoid rounds logits above about 17 to 1."""
        p = np.clip(np.asarray(outputs["probabilities"], np.float64), 1e-7, 1 - 1e-7)
        return (np.log(p) - np.log1p(-p)).astype(np.float32)

    def postprocess(self, logits):
        probabilities = tf.math.sigmoid(logits)
        predicted = probabilities >= self.config.task.threshold
        names = tf.broadcast_to(tf.constant(self.names), tf.shape(predicted))
        labels = tf.strings.reduce_join(
            tf.ragged.boolean_mask(names, predicted), axis=-1, separator=self.config.task.label_separator
        )
        return {"probabilities": probabilities, "predicted": tf.cast(predicted, tf.int32), "labels": labels}

    def score(self, examples, outputs):
        return metrics.multi_label_metrics(
            self.encode(examples), outputs["predicted"], self.names, self.config.task.threshold
        )

    def report(self, scores):
        return metrics.format_multi_label_metrics(scores)

    def logged_scores(self, scores):
        return {k: scores[k] for k in ("micro_f1", "macro_f1", "exact_match")}

    def metadata(self):
        return {**super().metadata(), "separator": self.config.task.label_separator,
                "threshold": self.config.task.threshold}

    @classmethod
    def prediction_columns(cls, outputs, metadata, inputs):
        if "labels" in outputs:
            names = decode(outputs["labels"])
        else:  # a LiteRT export
            separator = metadata.get("separator", ",")
            names = [separator.join(n for n, on in zip(metadata["labels"], row, strict=True) if on)
                     for row in np.asarray(outputs["predicted"])]
        columns = {"predicted_labels": names}
        probabilities = np.asarray(outputs["probabilities"])
        for i, name in enumerate(metadata["labels"]):
            columns[f"probability_{name}"] = probabilities[:, i]
        return columns


def _json_entries(cell: str, ids: bool) -> list[str] | None:
    """A JSON label cell's entries as strings: a flat list of names, or of ids with `task.label_names_file`.

    None for anything else: an object (`{"a": 1}`), nested lists (`[["joy"]]`), numbers mixed in with names
    (`[1, 2]` without a names file), or text that is not JSON.
    """
    try:
        values = json.loads(cell)
    except json.JSONDecodeError:
        return None
    kinds = (int, str) if ids else (str,)
    if not isinstance(values, list) or not all(isinstance(v, kinds) and not isinstance(v, bool) for v in values):
        return None
    return [str(v).strip() for v in values]
