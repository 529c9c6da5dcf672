"""`tfft distill`: a smaller model (the student) trained on a finished run's outputs (the teacher).

The student is the run's own config: its `model` section (often the
teacher's backbone with `model.keep_layers`), data, task and training keys.
The teacher is `distill.teacher`, a finished tfft run of the same task type
whose backbone tokenizes the same way (`RunTeacher`), or an export of one
(`tfft.export_teacher.ExportTeacher`: tasks with one output per row, any
tokenizer). Distillation is composed into
`tfft.train.run` through its `RunHooks`; everything else (resume, scores,
SavedModel and LiteRT export, `tfft evaluate` and `tfft predict`) is a
run's as usual.

- **Start.** A student on the teacher's backbone (the same `model.backbone`)
  starts from the teacher's fine-tuned weights: embeddings, the kept encoder
  layers (`model.keep_layers`), pooler and head. Any other backbone starts
  from its own pretrained weights and a new head.
- **Loss.** `alpha * soft + (1 - alpha) * hard` in every training step: hard
  is the task's loss on the labels, soft the task's `Task.soft_loss` from the
  student's logits to the teacher's (`SoftTargets`). For a split held in
  memory and two epochs or more, the teacher's logits are computed once,
  before training, and ride with each element (`tfft.teacher_cache`,
  `distill.teacher_outputs`); otherwise the teacher computes them in the same
  step, on the batch.
- **More text.** `distill.unlabeled` names tables of texts without labels
  (paths and glob patterns, comma-separated, as `data.train`). Held in
  memory, the teacher labels each row (`Task.pseudo_labels`) before
  training, and the rows join the training split, soft targets and all
  (the cache keeps the outputs that labelled them: one pass per row).
  Beside a streamed split they are streamed too (`TrainingData.add_unlabeled`),
  and the teacher labels them in the training step (`SoftTargets`).
- **Scores.** The teacher is scored on the same validation split; its main
  scores and the share of them the student keeps go to `metrics.json`
  (`teacher`, `retained`).

```python
config = tfft.config.load_config("configs/sst2_minilm.yaml", [
    "distill.teacher=runs/sst2_minilm", "model.keep_layers=3", "output_dir=runs/sst2_student"])
result = tfft.distill.run(config)
print(result.metrics["retained"])
```
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import random

import numpy as np
import tensorflow as tf

from tfft import (
    backbones,
    evaluate,
    export_teacher,
    hidden_states,
    streaming,
    tasks,
    teacher_cache,
    train,
)
from tfft.config import Config, ConfigError, check, load_config
from tfft.freezing import count_parameters
from tfft.model import build_model
from tfft.predict import SAVED_MODEL_FILE
from tfft.run_dir import BACKBONE_DIR, CONFIG_FILE, WEIGHTS_FILE

__all__ = ["run", "write_first_stage", "Distillation", "RunTeacher", "SoftTargets", "open_teacher", "read_teacher"]

logger = logging.getLogger(__name__)


def run(config: Config, strategy: tf.distribute.Strategy | None = None, callbacks=None) -> train.TrainResult:
    """Trains `config`'s model on `config.data`'s labels and on the outputs of the run `distill.teacher`.

    Args:
        config: `tfft.config.Config`. The student's run; `distill.teacher`
            must be set.
        strategy, callbacks: as `tfft.train.run`.

    Returns:
        A `tfft.train.TrainResult`, whose `metrics` hold `teacher` and
        `retained` beside the student's scores. With `distill.hidden_only`,
        the student's backbone is also written to `<output_dir>/backbone`
        (`write_first_stage`).
    """
    return train.run(config, strategy=strategy, callbacks=callbacks, hooks=Distillation())


def write_first_stage(result: train.TrainResult) -> pathlib.Path:
    """Writes a `distill.hidden_only` run's trained backbone as the preset folder `<output_dir>/backbone`.

    Its tokenizer is the run's own: the second stage, a `tfft distill` with
    `model.backbone` set to the folder, tokenizes as the teacher does. Called
    on the chief alone (`Distillation.finished`).
    """
    folder = pathlib.Path(result.output_dir) / BACKBONE_DIR
    backbones.save_preset(result.model.backbone, result.packer, folder)
    logger.info("First stage done (`distill.hidden_only`): the student's backbone, its states trained toward the "
                "teacher's, is in %s; its head is untrained, so ignore its validation scores. Second stage: "
                "`tfft distill` with `model.backbone: %s` and `distill.hidden_only: false`.", folder, folder)
    return folder


def open_teacher(config: Config):
    """The teacher `distill.teacher` names: a `RunTeacher` for a run folder, an `ExportTeacher` for an export.

    Raises:
        ConfigError: no teacher, a task that is not distilled, or what
            `read_teacher` and `ExportTeacher` refuse.
    """
    spec = config.distill.teacher
    check(bool(spec), "distill.teacher", spec, "must name a finished tfft run folder, or an export of one, to learn from")
    reason = tasks.TASKS[config.task.type].distill_unsupported
    check(reason is None, "task.type", config.task.type, f"cannot be distilled: {reason}")
    if export_teacher.is_export(spec):
        return export_teacher.ExportTeacher(config)
    return RunTeacher(config)


def read_teacher(config: Config) -> Config:
    """The config of the run `distill.teacher` names, its `output_dir` set to that folder; checked against `config`.

    Raises:
        ConfigError: not a finished run, the student's own `output_dir`, or
            another task type.
    """
    spec = config.distill.teacher
    folder = pathlib.Path(spec)
    check((folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file(), "distill.teacher", spec,
          f"must be a tfft run folder whose training finished (with {CONFIG_FILE} and {WEIGHTS_FILE}), or a "
          f"SavedModel version folder that `tfft export` wrote (with {SAVED_MODEL_FILE}); train the "
          "teacher first with `tfft train`")
    check(os.path.realpath(folder) != os.path.realpath(config.output_dir), "distill.teacher", spec,
          "must not be the student's own `output_dir`: set a new `output_dir` for the student")
    teacher = load_config(folder / CONFIG_FILE)
    teacher.output_dir = str(folder)
    check(teacher.task.type == config.task.type, "distill.teacher", spec,
          f"must be a run of this config's task type, `{config.task.type}`; it is a `{teacher.task.type}` run")
    return teacher


class Distillation(train.RunHooks):
    """The `RunHooks` of `tfft distill`: opens the teacher, starts the student from it, trains on its outputs.

    What differs between a run folder and an export as teacher is the
    teacher's (`RunTeacher`, `tfft.export_teacher.ExportTeacher`): both check
    the student, give their outputs on rows, attach their outputs to the
    training elements, and say what the training step runs.
    """

    teacher = None  # a `RunTeacher` or `ExportTeacher`, once checked

    def check(self, config: Config, task: tasks.Task) -> None:
        self.teacher = open_teacher(config)
        check(config.distill.hidden_weight == 0.0 or self.teacher.has_layers, "distill.hidden_weight",
              config.distill.hidden_weight, "needs a run folder as `distill.teacher`: an export gives no hidden states")
        if config.distill.unlabeled:
            check(task.pseudo_labels_unsupported is None, "distill.unlabeled", config.distill.unlabeled,
                  f"cannot be labelled by a `{task.type}` teacher: {task.pseudo_labels_unsupported}; "
                  "it works for classification, multi-label and regression")

    def prepare(self, config: Config, task: tasks.Task, train_data, packer) -> None:
        """Refuses a teacher with other labels or another tokenizer; adds the rows it labels (`distill.unlabeled`)."""
        self.teacher.check_student(config, task, packer)
        if train_data is None:  # trained before: no rows to label, no outputs to cache
            return
        if config.distill.unlabeled:
            train_data.add_unlabeled(config.distill.unlabeled, lambda rows: self.label_unlabeled(task, packer, rows))
        if config.distill.alpha > 0.0 and self.teacher.caches(config, train_data):
            train_data.attach(lambda ds: self.teacher.attach(config, ds, train_data, self.unlabeled_logits))

    #: The teacher's logits on `distill.unlabeled`'s rows held in memory (`[rows, 1, n]`), from their labelling.
    unlabeled_logits = None

    def label_unlabeled(self, task: tasks.Task, packer, rows):
        """`distill.unlabeled`'s rows held in memory, labelled by the teacher (its label, labels or score for each).

        The outputs that labelled them are kept as logits
        (`Task.logits_from_outputs`), the last rows of the teacher's cache:
        the teacher answers each row once.
        """
        outputs = self.teacher.outputs(packer, rows)
        rows.labels = task.pseudo_labels(outputs)
        self.unlabeled_logits = self.teacher.task.logits_from_outputs(outputs)[:, np.newaxis, :]
        logger.info("The teacher labelled %d rows of %s; they join the training split.", len(rows), rows.source)
        return rows

    def built(self, config: Config, model: tasks.TaskModel, inputs: train.Inputs) -> None:
        """Starts the student from the teacher where it can, and sets the loss."""
        in_step = self.teacher.built(config, model)
        hidden = None
        if config.distill.hidden_weight > 0.0:
            hidden = self.teacher.hidden_state_match(config, model, inputs.source)
        model.objective = SoftTargets(in_step, self.teacher.task, config.distill.alpha, config.distill.temperature,
                                      hidden, config.distill.hidden_only)

    def scores(self, task: tasks.Task, inputs: train.Inputs, metrics: dict) -> dict:
        """The teacher's main scores on the same validation split, and the share of each the student keeps."""
        outputs = self.teacher.outputs(inputs.packer, inputs.validation)
        teacher_task = self.teacher.task
        teacher = teacher_task.logged_scores(teacher_task.score(inputs.validation, outputs))
        student = task.logged_scores(metrics)
        retained = {name: student[name] / value for name, value in teacher.items() if name in student and value}
        logger.info("Teacher on the validation split: %s; the student keeps %s.",
                    ", ".join(f"{k} {v:.4f}" for k, v in teacher.items()),
                    ", ".join(f"{k} {100 * v:.1f}%" for k, v in retained.items()))
        return {"teacher": teacher, "retained": retained}

    def finished(self, config: Config, result: train.TrainResult) -> None:
        """With `distill.hidden_only`, writes the first stage's backbone folder (`write_first_stage`)."""
        if config.distill.hidden_only:
            write_first_stage(result)


class RunTeacher:
    """A finished run folder as the teacher: its task model, built from its config and weights.

    Args:
        config: `tfft.config.Config`. The student's; `distill.teacher` names the folder.
    """

    #: A Keras task model: its encoder layers' hidden states can be matched (`distill.hidden_weight`).
    has_layers = True

    def __init__(self, config: Config):
        self.config, self.folder = read_teacher(config), config.distill.teacher
        self.model = None  # the teacher task model, once built
        self.unscoped = None  # a copy built outside any strategy, for labelling and the cache (`unscoped_model`)

    def check_student(self, config: Config, task: tasks.Task, packer) -> None:
        """Refuses a teacher with other labels or another tokenizer, before anything is built or written."""
        folder = self.folder
        self.task = tasks.create(self.config)
        self.task.load_vocabulary(folder)
        if self.task.label_names != task.label_names:
            raise ConfigError(
                f"Argument `distill.teacher` must be a run with this run's labels. Received: teacher={folder!r}, "
                f"whose labels are {self.task.label_names}; this run's data have {task.label_names}."
            )
        self.source = backbones.resolve(self.config.model)
        self.source.prepare(None, folder)
        difference = packer.difference(self.source.packer())
        if difference is not None:
            raise ConfigError(
                f"Argument `distill.teacher` must be a run whose backbone tokenizes as the student's "
                f"(`model.backbone: {config.model.backbone}`) does: {difference}. Received: teacher={folder!r}. "
                "Distil into a backbone with the teacher's tokenizer, e.g. its own with `model.keep_layers`."
            )

    def caches(self, config: Config, train_data) -> bool:
        return caches_outputs(config, train_data)

    def attach(self, config: Config, ds, train_data, known=None):
        """The packed training elements `ds` with the teacher's outputs (`tfft.teacher_cache`).

        `known`: the logits of the last elements, computed already (the
        labelled `distill.unlabeled` rows), or None.
        """
        self.model = self.unscoped_model()  # it never runs in a training step
        return teacher_cache.attach_teacher_outputs(ds, self.model, train_data.elements, known)

    def outputs(self, packer, rows) -> dict:
        """The teacher's task outputs on `rows`; before `built`, from the copy outside any strategy."""
        model = self.model if self.model is not None else self.unscoped_model()
        return evaluate.predict_outputs(self.task, model, packer, rows, self.config.train.batch_size)

    def unscoped_model(self) -> tasks.TaskModel:
        """The teacher built outside any strategy, once: labelling `distill.unlabeled` and the cache share it."""
        if self.unscoped is None:
            self.unscoped = self.load()
        return self.unscoped

    def built(self, config: Config, student: tasks.TaskModel):
        """Starts `student` from the teacher where it is the teacher's backbone; returns the model the step runs.

        Built here, the teacher is inside the strategy's scope: it runs in
        the training step. The cache's teacher was built outside it, in
        phase 1, and never runs in a step.
        """
        self.unscoped = None  # labelling's copy, if the cache did not keep it: the step's teacher is built in scope
        if self.model is None:
            self.model = self.load()
        if same_backbone(config, self.config):
            start_from_teacher(config, student, self.model, self.source)
        else:
            logger.info("The student (`%s`) starts from its own pretrained weights: it is not the teacher's backbone "
                        "(`%s`).", config.model.backbone, self.config.model.backbone)
        return self.model

    def hidden_state_match(self, config: Config, student: tasks.TaskModel, source) -> hidden_states.HiddenStateMatch:
        """The hidden-state term (`distill.hidden_weight`) between `student` and this teacher, once both are built.

        A student of another width learns a projection to the teacher's
        (`hidden_states.projection`, seeded by `train.seed`).

        Raises:
            ConfigError: a backbone's layers cannot give their outputs
                (`HiddenStateMatch`).
        """
        widths = [model.backbone.output["sequence_output"].shape[-1] for model in (student, self.model)]
        match = hidden_states.HiddenStateMatch(source.layer_groups(student.backbone),
                                               self.source.layer_groups(self.model.backbone), config.distill.hidden_weight,
                                               hidden_states.projection(*widths, seed=config.train.seed))
        size = count_parameters(match.trainable_weights)
        projected = (f", through a learnt {widths[0]} -> {widths[1]} projection ({size:,} weights, trained, not "
                     "exported)" if match.projection else "")
        logger.info("Hidden-state matching (weight %g): student layer i learns teacher layer %s%s.",
                    match.weight, ", ".join(f"{i}->{j}" for i, j in enumerate(match.pairs)), projected)
        return match

    def load(self) -> tasks.TaskModel:
        """The teacher task model, built without drawing from the random state the student's build draws from."""
        with random_state_kept():  # a student built after it draws what it draws without a teacher before it
            teacher = build_model(self.config, self.source, self.task)
        teacher.load_weights(pathlib.Path(self.folder) / WEIGHTS_FILE)
        teacher.trainable = False
        return teacher


@contextlib.contextmanager
def random_state_kept():
    """Python's and numpy's random state, restored on exit: Keras draws layer and initializer seeds from them.

    Not `keras.utils.set_random_seed` again: its `tf.random.set_seed` clears
    TensorFlow's kernel caches, which drops resources a tokenizer's ops
    already made (TF Text's `SentencepieceOp`).
    """
    state, numpy_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(state)
        np.random.set_state(numpy_state)


def caches_outputs(config: Config, train_data) -> bool:
    """Whether the teacher's outputs are computed once before training (`distill.teacher_outputs`), else in the step."""
    choice = config.distill.teacher_outputs
    if choice == "auto" and config.distill.hidden_weight > 0.0:
        logger.info("The teacher runs in every training step: its hidden states (`distill.hidden_weight`) are not "
                    "cached.")
        return False
    if choice == "auto":
        choice = "cached" if config.train.epochs > 1 else "in_step"
    if choice == "cached" and not train_data.can_attach:
        logger.info("The training split is streamed: the teacher runs in every training step (cached outputs need "
                    "the split in memory).")
        return False
    return choice == "cached"


def same_backbone(student: Config, teacher: Config) -> bool:
    """Whether the student's `model.backbone` is the teacher's (the same preset, recipe or folder)."""
    def where(config: Config) -> str:
        spec = config.model.backbone
        return os.path.realpath(spec) if os.path.exists(spec) else spec

    return where(student) == where(teacher) and student.model.source == teacher.model.source


def start_from_teacher(config: Config, student: tasks.TaskModel, teacher: tasks.TaskModel, source) -> None:
    """Copies the teacher's weights into the student: every weight, with `model.keep_layers`' encoder layers only."""
    keep = config.model.keep_layers
    layers = len(source.layer_groups(teacher.backbone).encoder)
    indices = backbones.base.kept_layer_indices(keep, layers) if keep is not None else None
    try:
        copied = backbones.copy_weights(teacher, student, indices)
    except ValueError as err:
        raise ConfigError(
            f"The student cannot start from the teacher `{config.distill.teacher}`: {err} Check `model.*` against "
            "the teacher's config.yaml (the head's labels, `model.pooling`)."
        ) from None
    kept = f"encoder layers {', '.join(map(str, indices))} of {layers}" if indices is not None else f"all {layers} layers"
    logger.info("The student starts from the teacher's weights (%d arrays): %s, embeddings and head.", copied, kept)


class SoftTargets:
    """The distillation loss, as `TaskModel.objective`: `alpha * soft + (1 - alpha) * hard`.

    The teacher's logits are the batch's own (`teacher_cache.TEACHER_LOGITS`),
    or else the teacher runs on the student's batch in the same training
    step (`training=False`, no gradient). Its logits and the student's go to
    `task.soft_loss`; under a distribution strategy the soft loss is divided
    by the replica count, as Keras divides the compiled loss, so the summed
    gradients are the global batch's. Rows a streamed batch marks as
    `distill.unlabeled`'s (`streaming.UNLABELED`) take the teacher's labels
    as their hard targets (`Task.teacher_targets`), as `Task.pseudo_labels`
    gives rows held in memory before training; the teacher then runs even at
    alpha 0. With `hidden` (`distill.hidden_weight`), its term is added
    too, from the two models' forward passes in this step; with
    `hidden_only` (`distill.hidden_only`) it is the whole loss (the head's
    gradient is then zero, not missing).

    Args:
        teacher: `tfft.tasks.TaskModel` (not trainable), or None where
            every batch carries the teacher's logits (an export's).
        task: `tfft.tasks.Task`. Its `soft_loss` and `teacher_targets`.
        alpha: float. `distill.alpha`; 0 runs no teacher, but for unlabeled rows.
        temperature: float. `distill.temperature`.
        hidden: `tfft.hidden_states.HiddenStateMatch` or None.
        hidden_only: bool. The loss is `hidden`'s term alone.
    """

    def __init__(self, teacher: tasks.TaskModel | None, task: tasks.Task, alpha: float, temperature: float,
                 hidden: hidden_states.HiddenStateMatch | None = None, hidden_only: bool = False):
        if hidden_only and hidden is None:
            raise ValueError("Argument `hidden_only` needs a `hidden` term to train. Received: hidden=None")
        self.teacher, self.task, self.alpha, self.temperature, self.hidden = teacher, task, alpha, temperature, hidden
        self.hidden_only = hidden_only
        self.input_names = list(teacher.input) if teacher is not None else []

    @property
    def trainable_weights(self) -> list:
        """Weights this loss trains beside the student's: the hidden-state projection's, if one is learnt."""
        return [] if self.hidden is None else self.hidden.trainable_weights

    def __call__(self, x: dict, y, y_pred, sample_weight, hard_loss):
        unlabeled = x.get(streaming.UNLABELED)
        if self.alpha == 0.0 and unlabeled is None and self.hidden is None:
            return hard_loss(y)
        student = tf.cast(y_pred, tf.float32)
        teacher = self.teacher_logits(x, student)
        if unlabeled is not None:
            y = with_teacher_targets(y, self.task.teacher_targets(teacher), unlabeled)
        loss = (0.0 if self.hidden_only else 1.0 - self.alpha) * hard_loss(y)
        terms = []  # summed over the global batch by the strategy: divided by the replicas, as Keras' own loss
        if self.alpha > 0.0 and not self.hidden_only:
            terms.append(self.alpha * self.task.soft_loss(student, teacher, sample_weight, self.temperature))
        if self.hidden is not None:
            terms.append(self.hidden.loss(x["padding_mask"]))
        if not terms:
            return loss
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context is not None else 1
        return loss + tf.cast(tf.add_n(terms), loss.dtype) / replicas

    def teacher_logits(self, x: dict, student: tf.Tensor) -> tf.Tensor:
        """The teacher's float32 logits on the batch: carried with it, or computed now (no gradient)."""
        if teacher_cache.TEACHER_LOGITS in x:
            return teacher_cache.teacher_logits(x, student)
        logits = self.teacher({name: x[name] for name in self.input_names}, training=False)
        return tf.stop_gradient(tf.cast(logits, tf.float32))


def with_teacher_targets(y: tf.Tensor, teacher: tf.Tensor, unlabeled: tf.Tensor) -> tf.Tensor:
    """`y`, with the rows `unlabeled` marks (`[batch, 1]`, 1.0) replaced by the teacher's targets."""
    marked = tf.reshape(unlabeled > 0.5, tf.concat([[-1], tf.ones([tf.rank(y) - 1], tf.int32)], axis=0))
    return tf.where(marked, tf.cast(teacher, y.dtype), y)
