"""The task interface: all that differs between classification, multi-label, regression, tagging, QA and masked LM.

`train`, `evaluate`, `export` and `predict` call a `Task` and never ask which
one they have. A task owns:

| stage | hooks |
|---|---|
| config | `check_config` (the task's own keys), `exclusive_keys` |
| data | `read` (targets checked, errors name the file and row), `fit_vocabulary`, `save_vocabulary` / `load_vocabulary`, `encode`, `inputs`, `pack`, `prepare` (element count, truncation); table tasks (`TableTask`) also stream |
| model | `head` (float32 logits), `loss`, `metrics`, `weighted_metrics`, `monitor`, `class_weight` |
| outputs | `outputs` (raw inputs -> named outputs, in the graph; serving and evaluation share it), `serving_signatures`, `warmup_inputs` |
| scores | `calibrate` (post-processing chosen on validation), `score` (`metrics.json`), `report` (the printed table), `summary` (one line), `logged_scores` |
| predict | `metadata` (saved in the export), `prediction_frame`, `prediction_columns` (classmethods: `tfft predict` needs no config) |

Example:

```python
task = tfft.tasks.create(config)
train = task.read(config.data.train, split="train")
task.fit_vocabulary(train)
model = TaskModel(backbone, task, dropout=0.1)   # float32 logits
outputs = task.outputs(model, packer, task.inputs(train))
print(task.report(task.score(train, outputs)))
```
"""

from __future__ import annotations

import abc
import pathlib
from typing import Any, ClassVar, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from tfft import data
from tfft.config import Config
from tfft.distribute import replica_context_with_peers

#: Name of the JSON file in an export's `assets/` that tells `tfft predict` which task wrote it.
METADATA_FILE = "tfft_task.json"


class TaskModel(keras.Model):
    """A backbone with a task's head: the packer's int32 inputs in, float32 logits out.

    Built by composition, as keras-hub's task models: the head is added on
    `backbone(inputs)`, and computes in float32 under mixed precision.

    Args:
        backbone: keras.Model. Returns a dict with `pooled_output` and
            `sequence_output`.
        task: `Task`. Builds the head (`task.head`).
        dropout: float. Dropout rate before the head's Dense layer.
        pooling: str. `pooled` keeps the backbone's `pooled_output`; `mean`
            replaces it with the mean of `sequence_output` over the tokens
            that `padding_mask` marks.

    Example:

    ```python
    model = TaskModel(backbone, task, dropout=0.1)
    logits = model(packer(tf.constant(["a fine film"])))
    ```
    """

    def __init__(self, backbone: keras.Model, task: Task, dropout: float = 0.1, pooling: str = "pooled", **kwargs):
        inputs = backbone.input
        outputs = dict(backbone(inputs))
        if pooling == "mean":
            outputs["pooled_output"] = MaskedMeanPooling(name="mean_pooling")(
                outputs["sequence_output"], inputs["padding_mask"]
            )
        extra = task.extra_inputs()  # e.g. the masked-LM head's `mask_positions`
        outputs.update(extra)
        outputs["padding_mask"] = inputs["padding_mask"]
        logits = task.head(outputs, dropout, backbone)
        super().__init__(inputs={**inputs, **extra}, outputs=logits, **kwargs)
        self.backbone = backbone
        self.objective = None
        self.feature_names = sorted({**inputs, **extra})

    def call(self, inputs, training=None, mask=None, **kwargs):
        """The functional graph on this model's own inputs.

        A batch may carry features the model does not read (a teacher's
        outputs, `tfft.teacher_cache`); they are dropped here, where Keras
        would match a dict's values to the inputs by sorted position.
        """
        if isinstance(inputs, dict) and len(inputs) > len(self.feature_names):
            inputs = {name: inputs[name] for name in self.feature_names}
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def save_weights(self, filepath, overwrite=True, max_shard_size=None, with_optimizer=False):
        """Keras' `save_weights`, without the optimizer's state unless `with_optimizer=True`.

        A run's weights files (`model.weights.h5`, the best checkpoint) hold
        the model alone: AdamW's two moments per trained weight would nearly
        double them, and nothing reads them back after training. A backup,
        which resumes training, keeps them (`tfft.backup`).
        """
        optimizer = getattr(self, "optimizer", None)  # none before `compile`
        skipped = None if with_optimizer or optimizer is None else [optimizer]
        keras.saving.save_weights(self, filepath, overwrite=overwrite, max_shard_size=max_shard_size,
                                  objects_to_skip=skipped)

    def load_weights(self, filepath, skip_mismatch=False, with_optimizer=False, **kwargs):
        """Keras' `load_weights`, leaving the optimizer's state as it is unless `with_optimizer=True`.

        A weights file of an earlier tfft, which holds the optimizer's state,
        loads the same way: that state is ignored.
        """
        optimizer = getattr(self, "optimizer", None)  # none before `compile`
        if not with_optimizer and optimizer is not None:
            kwargs["objects_to_skip"] = [optimizer]
        super().load_weights(filepath, skip_mismatch=skip_mismatch, **kwargs)

    def objective_weights(self) -> list:
        """The weights `objective` trains beside this model's (a distillation's hidden-state projection), or [].

        They are trained with the model's (`trainable_weights` lists them
        last) and kept by `tfft.backup`, but are not this model's: Keras'
        `save_weights`, the run's weights file and the export leave them out.
        """
        return list(getattr(self.objective, "trainable_weights", []))

    @property
    def trainable_weights(self):
        """The trainable weights of the model's layers, then `objective_weights()`: what `fit` trains."""
        return super().trainable_weights + self.objective_weights() if self.trainable else []

    trainable_variables = trainable_weights

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled (task) loss; in training, what `objective` makes of it, where one is set (`tfft.distill`).

        `objective` is called as `objective(x, y, y_pred, sample_weight,
        hard_loss)`, where `hard_loss(targets)` is the compiled loss on
        `targets` (`y`, or targets it chose), and returns the loss to
        minimize. It is a plain object, not a Keras layer, so whatever it
        holds (a teacher model) is neither trained nor saved with this
        model's weights; weights it lists as its own `trainable_weights`
        train with the model's (`objective_weights`).
        """
        if self.objective is None or not training:
            return super().compute_loss(x, y, y_pred, sample_weight, training)

        def hard_loss(targets):
            return super(TaskModel, self).compute_loss(x, targets, y_pred, sample_weight, training)

        return self.objective(x, y, y_pred, sample_weight, hard_loss)


class MaskedMeanPooling(keras.layers.Layer):
    """The mean of `[batch, length, hidden]` vectors over the positions a `[batch, length]` mask marks."""

    def call(self, sequence, mask):
        mask = keras.ops.cast(keras.ops.expand_dims(mask, -1), sequence.dtype)
        total = keras.ops.sum(sequence * mask, axis=1)
        return total / keras.ops.maximum(keras.ops.sum(mask, axis=1), keras.ops.cast(1.0, sequence.dtype))

    def compute_output_spec(self, sequence, mask):
        return keras.KerasTensor((sequence.shape[0], sequence.shape[-1]), dtype=sequence.dtype)


def dense_head(x, units: int, dropout: float):
    """Dropout, then a float32 Dense layer named `head` that outputs logits."""
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    return keras.layers.Dense(
        units,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        dtype="float32",
        name="head",
    )(x)


class WeightedTokenCrossentropy(keras.losses.Loss):
    """Sparse cross-entropy from logits, averaged over the weighted positions of the whole global batch.

    Keras' `mean_with_sample_weight` divides each replica's sum by that
    replica's own weights, so under a distribution strategy a replica with
    fewer labelled positions counts for more than on one device. Here the
    weights are summed over the replicas first, and each replica returns its
    sum over that global count: the replicas' gradients, summed by the
    optimizer, are the global batch's, and Keras' loss tracker (which
    multiplies by the replica count) reports the global mean.

    Example:

    ```python
    loss = WeightedTokenCrossentropy()
    loss(labels, logits, sample_weight=mask)  # labels [batch, n], logits [batch, n, classes]
    ```
    """

    def __init__(self, name: str = "sparse_categorical_crossentropy", **kwargs):
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="sum", **kwargs)

    def call(self, y_true, y_pred):
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)

    def __call__(self, y_true, y_pred, sample_weight=None):
        total = super().__call__(y_true, y_pred, sample_weight)
        weights = (tf.cast(tf.size(y_true), tf.float32) if sample_weight is None
                   else tf.reduce_sum(tf.cast(sample_weight, tf.float32)))
        context = replica_context_with_peers()
        if context is not None:
            weights = context.all_reduce(tf.distribute.ReduceOp.SUM, weights)
        return tf.math.divide_no_nan(total, tf.cast(weights, total.dtype))


class LabelledBatch(NamedTuple):
    """One validation batch as Keras' validation step scores it (`Task.labelled_outputs`)."""

    features: dict
    targets: Any
    sample_weight: Any
    logits: tf.Tensor


def trim_to_longest(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Cuts a padded batch down to its longest sequence (at least one position)."""
    longest = tf.maximum(tf.reduce_max(tf.reduce_sum(tf.cast(features["padding_mask"], tf.int32), axis=1)), 1)
    return {name: value[:, :longest] for name, value in features.items()}


class Task(abc.ABC):
    """One kind of prediction. Subclasses set the class attributes and fill in the hooks.

    Args:
        config: `tfft.config.Config`. The task reads `config.task` and
            `config.data` (columns, header).
    """

    #: `task.type` in the config.
    type: ClassVar[str] = ""
    #: The score that picks the best checkpoint and drives early stopping, and its direction.
    monitor: ClassVar[tuple[str, str]] = ("loss", "min")
    #: Whether Keras' own validation metric is the monitored score: where Keras' pass scores validation (TPUs,
    #: `one_validation_pass` false), no second pass for the task's scores.
    monitor_in_keras: ClassVar[bool] = False
    #: Whether `labelled_outputs` scores a validation batch in one forward pass: its outputs, and what Keras' loss
    #: and metrics read. If not, a run whose monitored score is no Keras metric passes over the split twice an
    #: epoch (Keras' pass, then the task's scores).
    one_validation_pass: ClassVar[bool] = True
    #: Whether targets are per token: they are then trimmed with the features.
    sequence_targets: ClassVar[bool] = False
    #: Whether the head reads `pooled_output`; if not, the pooler is frozen (it would get no gradient).
    uses_pooled_output: ClassVar[bool] = True
    #: The outputs a LiteRT export keeps (`tfft.litert`): those made by ops TFLite has. None: no LiteRT export.
    litert_outputs: ClassVar[tuple[str, ...] | None] = None
    #: Why there is no LiteRT export, when `litert_outputs` is None.
    litert_unsupported: ClassVar[str] = "not implemented for this task"
    #: Why the task's training data cannot stream (`tfft.streaming`); None for the tasks that can (`TableTask`).
    stream_unsupported: ClassVar[str | None] = "its targets are not built in the graph"
    #: Why `tfft distill` cannot train this task; None for the tasks that define `soft_loss`.
    distill_unsupported: ClassVar[str | None] = None
    #: Why the task cannot take a teacher's labels for unlabelled rows (`distill.unlabeled`); None where `pseudo_labels` works.
    pseudo_labels_unsupported: ClassVar[str | None] = "its targets are spans or tags, not one label per row"
    #: Config keys that only this task type reads: set under another type, they are refused (`tfft.tasks.create`).
    exclusive_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Config):
        self.config = config

    @classmethod
    def check_config(cls, config: Config) -> None:
        """Checks the values of the task's own keys; raises `ConfigError` naming the key (`tfft.config.check`)."""
        del config

    # --- Data ------------------------------------------------------------

    @abc.abstractmethod
    def read(self, spec: str, split: str = "train", labelled: bool = True) -> data.Examples:
        """Reads and checks one split; a bad target fails naming the file and row."""

    def fit_vocabulary(self, train: data.Examples) -> None:
        """Learns the label or tag names from the training split (if the task has any)."""
        del train

    @property
    def label_names(self) -> list[str] | None:
        """Label or tag names in id order; None for tasks without a vocabulary."""
        return None

    def save_vocabulary(self, output_dir: str | pathlib.Path) -> None:
        if self.label_names is not None:
            data.LabelVocabulary(self.label_names, minimum=1).save(output_dir)

    def load_vocabulary(self, output_dir: str | pathlib.Path) -> None:
        """Reads back what `save_vocabulary` wrote (`tfft evaluate`, `tfft export`)."""
        del output_dir

    @abc.abstractmethod
    def encode(self, examples: data.Examples) -> Any:
        """The targets as arrays for `tf.data`; a label the vocabulary lacks fails naming its row."""

    def describe(self) -> str:
        """What the task learns, for the log."""
        names = self.label_names
        return f"{len(names)} labels: {', '.join(names)}" if names is not None else "no labels"

    def inputs(self, examples: data.Examples) -> dict:
        """The model inputs of `examples`, as `tf.data.Dataset.from_tensor_slices` takes them."""
        return data.text_inputs(examples)

    def pack(self, packer, inputs: dict, targets=None):
        """Packs a batch of `inputs` (and targets) in the graph: `features`, `(features, y)` or `(features, y, w)`."""
        return data.pack_texts(packer, inputs, targets)

    def check_packer(self, packer) -> None:
        """Fails with a `ConfigError` before training when the backbone's tokenizer cannot serve this task."""
        del packer

    def prepare(self, examples: data.Examples, packer) -> data.PreparedSplit:
        """Makes a split ready for `packer`, once: how many model inputs `pack` makes, and what is truncated."""
        return data.PreparedSplit(examples, len(examples), data.truncation_stats(examples, packer, self.inputs(examples)))

    def strata(self, examples: data.Examples) -> list[str] | None:
        """What a stratified split keeps the share of in every part (`tfft.folds`), one value per example; None: none."""
        del examples
        return None

    def split_groups(self, examples: data.Examples) -> list[str] | None:
        """Examples a split must keep together (one value per example: the same value, the same part); None: none."""
        del examples
        return None

    def class_weight(self, targets) -> dict[int, float] | None:
        """Keras `class_weight` for `train.class_weight: balanced`, where the task supports it."""
        del targets
        return None

    # --- Model -----------------------------------------------------------

    def extra_inputs(self) -> dict:
        """Model inputs beside the packer's, as `keras.Input`s that `pack` fills (the masked-LM positions)."""
        return {}

    @abc.abstractmethod
    def head(self, backbone_outputs: dict, dropout: float, backbone: keras.Model):
        """The head on the backbone's outputs (with `extra_inputs` and the `padding_mask` input); float32 logits.

        Args:
            backbone_outputs: dict. The backbone's outputs, the task's `extra_inputs` and `padding_mask`.
            dropout: float. `model.dropout`.
            backbone: keras.Model. The model's backbone, for a head tied to its weights (masked LM).
        """

    def load_head(self, model: keras.Model, source) -> None:
        """Sets pretrained head weights from the backbone source, where the task has such a head (masked LM)."""
        del model, source

    @abc.abstractmethod
    def loss(self) -> keras.losses.Loss:
        """The training loss on the head's logits."""

    def soft_loss(self, student: tf.Tensor, teacher: tf.Tensor, sample_weight, temperature: float) -> tf.Tensor:
        """How far the student's float32 logits are from the teacher's, on one batch: a scalar (`tfft distill`).

        Here the KL divergence from the teacher's softmax to the student's at
        `temperature`, times its square, averaged over the batch
        (`softened_kl`), for heads with one softmax per example.
        """
        del sample_weight
        return tf.reduce_mean(softened_kl(student, teacher, temperature))

    def pseudo_labels(self, outputs: dict[str, np.ndarray]) -> list:
        """Targets, as `read` stores them, from a model's outputs on unlabelled rows (a teacher's labels)."""
        raise NotImplementedError(self.pseudo_labels_unsupported)

    def teacher_targets(self, logits: tf.Tensor) -> tf.Tensor:
        """The targets a batch's teacher logits give, in the graph, as `pseudo_labels` gives them from outputs
        (a streamed `distill.unlabeled` row's, labelled in the training step)."""
        raise NotImplementedError(self.pseudo_labels_unsupported)

    def logits_from_outputs(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """Float32 logits `[rows, num_outputs]` that `soft_loss` reads as it reads those `postprocess` made `outputs` of.

        An export's teacher (`tfft.export_teacher`) serves `postprocess`'s
        outputs, not its logits. Tasks with one output per row recover them,
        exactly or up to what `soft_loss` ignores (a softmax's shift).
        """
        raise NotImplementedError(self.pseudo_labels_unsupported)

    def metrics(self) -> list[keras.metrics.Metric]:
        """Keras metrics shown during `fit` (on logits)."""
        return []

    def weighted_metrics(self) -> list[keras.metrics.Metric]:
        """Keras metrics that honour the sample weights (masked tokens)."""
        return []

    # --- Outputs ---------------------------------------------------------

    @abc.abstractmethod
    def postprocess(self, logits: tf.Tensor) -> dict[str, tf.Tensor]:
        """Logits -> named outputs (probabilities, labels, scores), in the graph."""

    def combine_logits(self, logits: list[tf.Tensor]) -> tf.Tensor:
        """One model's logits from several models' (an ensemble, `tfft.ensemble`): here their mean.

        Tasks whose outputs are probabilities override it so that
        `postprocess` of the result gives the mean of the members' probabilities.
        """
        return tf.add_n(logits) / len(logits)

    def outputs(self, model: keras.Model, packer, inputs: dict) -> dict[str, tf.Tensor]:
        """Raw inputs -> named outputs, in the graph. Serving and evaluation both call this."""
        features = trim_to_longest(packer(inputs["text"], inputs.get("text_pair")))
        return self.postprocess(tf.cast(model(features, training=False), tf.float32))

    def labelled_outputs(self, model: keras.Model, packer, inputs: dict, targets) -> tuple[dict, LabelledBatch]:
        """`outputs` of a labelled batch, and what Keras' validation step scores, from one forward pass.

        Args:
            model: keras.Model. The task model.
            packer: `TextPacker`.
            inputs: dict. A batch of `inputs`.
            targets: a batch of `encode`'s targets, for the same rows.

        Returns:
            The named outputs, and a `LabelledBatch`: the packed features,
            targets, sample weights and float32 logits, as `pack` and
            `tfft.data.make_dataset` give Keras' validation step.
        """
        features, *rest = self.pack(packer, inputs, targets)
        features = trim_to_longest(features)
        if self.sequence_targets:
            rest = [value[:, : tf.shape(features["padding_mask"])[1]] for value in rest]
        logits = tf.cast(model(features, training=False), tf.float32)
        return self.postprocess(logits), LabelledBatch(features, rest[0], rest[1] if len(rest) > 1 else None, logits)

    def input_names(self) -> tuple[str, ...]:
        """The `serving_default` inputs of this run: `text`, plus `text_pair` for pair data."""
        return ("text", "text_pair") if self.config.data.text_pair_column else ("text",)

    def serving_signatures(self, model: keras.Model, packer) -> dict[str, tuple[Any, list]]:
        """Signature name -> (function, input specs) for the export.

        Text tasks serve `serving_default` (raw strings) and `serve_token_ids`
        (the packer's int32 inputs, for clients that tokenize; checked by
        `TextPacker.check_token_ids`). `serving_default` also returns
        `truncated_tokens` (the function of that name): how much of each text
        the model did not read, so that no client meets a silent truncation.
        """
        names = self.input_names()
        specs = [tf.TensorSpec([None], tf.string, name=name) for name in names]

        def serving_default(*texts):
            inputs = dict(zip(names, texts, strict=True))
            return {**self.outputs(model, packer, inputs), "truncated_tokens": truncated_tokens(packer, inputs)}

        def serve_token_ids(features):
            features = trim_to_longest(packer.check_token_ids(features))
            return self.postprocess(tf.cast(model(features, training=False), tf.float32))

        token_specs = {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in packer.input_names}
        return {"serving_default": (serving_default, specs), "serve_token_ids": (serve_token_ids, [token_specs])}

    WARMUP_TEXTS: ClassVar[list[str]] = [
        "tfft warmup request.",
        "",
        "A somewhat longer warmup request, so that TF Serving also traces a batch of a few dozen tokens "
        "before the first real request arrives.",
    ]

    def warmup_inputs(self, count: int) -> list[dict[str, list[str]]]:
        """`count` requests for `serving_default`, as input name -> strings."""
        requests = []
        for i in range(count):
            texts = [self.WARMUP_TEXTS[j % len(self.WARMUP_TEXTS)] for j in range(i, i + 2)]
            request = {"text": texts}
            if "text_pair" in self.input_names():
                request["text_pair"] = texts[::-1]
            requests.append(request)
        return requests

    def collect(self, batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Joins per-batch outputs (numpy) into one dict of arrays, in example order."""
        if not batches:
            return {}
        return {name: np.concatenate([b[name] for b in batches], axis=0) for name in batches[0]}

    # --- Scores ----------------------------------------------------------

    def calibrate(self, examples: data.Examples, outputs: dict[str, np.ndarray]) -> None:
        """Sets post-processing from the final validation outputs (QA's no-answer threshold); saved with the vocabulary."""
        del examples, outputs

    def uncalibrated(self) -> None:
        """Undoes `calibrate`: post-processing as the config sets it, for a run that reuses this task (`tfft.warm_runs`)."""
        return None  # nothing to undo where `calibrate` sets nothing

    @abc.abstractmethod
    def score(self, examples: data.Examples, outputs: dict[str, np.ndarray]) -> dict:
        """Scores `outputs` against the targets of `examples`: the dict in `metrics.json`."""

    @abc.abstractmethod
    def report(self, scores: dict) -> str:
        """The scores as a plain-text table."""

    @abc.abstractmethod
    def logged_scores(self, scores: dict) -> dict[str, float]:
        """The main scalar scores: the per-epoch logs (`val_<name>`) and the CLI's summary line."""

    def summary(self, scores: dict) -> str:
        """One line of the main scores, for the CLI."""
        return "  ".join(f"{k} {v:.4f}" for k, v in self.logged_scores(scores).items())

    # --- Predict ---------------------------------------------------------

    def metadata(self) -> dict:
        """What `tfft predict` needs to write an export's outputs as columns."""
        return {"type": self.type, "inputs": list(self.input_names()), "labels": self.label_names}

    @classmethod
    def prediction_frame(cls, path: str):
        """`tfft predict`'s input rows when the task reads a format of its own (SQuAD JSON); None reads a table."""
        del path
        return None

    @classmethod
    @abc.abstractmethod
    def prediction_columns(cls, outputs: dict[str, np.ndarray], metadata: dict, inputs: dict[str, list[str]]) -> dict:
        """Column name -> values, from a batch of `serving_default` outputs (numpy)."""


def truncated_tokens(packer, inputs: dict) -> tf.Tensor:
    """Tokens of each example past the packer's `sequence_length`, special tokens counted: int32 `[batch]`, 0 for
    an example that fits. `packer` is a `TextPacker` or a `LitePacker`; `inputs` holds `text` (and `text_pair`)."""
    counts = packer.token_counts(inputs["text"], inputs.get("text_pair"))
    return tf.maximum(counts - packer.sequence_length, 0)


def softened_kl(student: tf.Tensor, teacher: tf.Tensor, temperature: float, axis: int = -1) -> tf.Tensor:
    """`T^2 * KL(softmax(teacher / T) || softmax(student / T))` along `axis`, per row (Hinton et al. 2015).

    Positions whose teacher logit is -1e9 (masked padding) add nothing.
    """
    t = tf.nn.log_softmax(teacher / temperature, axis=axis)
    s = tf.nn.log_softmax(student / temperature, axis=axis)
    return tf.reduce_sum(tf.exp(t) * (t - s), axis=axis) * temperature**2


def log_mean_softmax(logits: list[tf.Tensor]) -> tf.Tensor:
    """Logits whose softmax is the mean of the softmaxes of `logits` (soft voting, for `Task.combine_logits`)."""
    return tf.math.log(tf.add_n([tf.nn.softmax(x, axis=-1) for x in logits]) / len(logits))


def decode(values) -> list[str]:
    """Byte strings from TensorFlow as Python strings."""
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.asarray(values).reshape(-1)]
