"""`tfft distill`: a smaller model (the student) trained on a finished run's outputs (the teacher).

The student is the run's own config: its `model` section (often the
teacher's backbone with `model.keep_layers`), data, task and training keys.
The teacher is `distill.teacher`, a finished tfft run of the same task type
whose backbone tokenizes the same way. Distillation is composed into
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
- **More text.** `distill.unlabeled` names a table of texts without labels:
  the teacher labels each row (`Task.pseudo_labels`) before training, and
  the rows join the training split, soft targets and all.
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

from tfft import backbones, evaluate, tasks, teacher_cache, train
from tfft.config import Config, ConfigError, check, load_config
from tfft.model import build_model
from tfft.run_dir import CONFIG_FILE, WEIGHTS_FILE

__all__ = ["run", "Distillation", "SoftTargets", "read_teacher"]

logger = logging.getLogger(__name__)


def run(config: Config, strategy: tf.distribute.Strategy | None = None, callbacks=None) -> train.TrainResult:
    """Trains `config`'s model on `config.data`'s labels and on the outputs of the run `distill.teacher`.

    Args:
        config: `tfft.config.Config`. The student's run; `distill.teacher`
            must be set.
        strategy, callbacks: as `tfft.train.run`.

    Returns:
        A `tfft.train.TrainResult`, whose `metrics` hold `teacher` and
        `retained` beside the student's scores.
    """
    return train.run(config, strategy=strategy, callbacks=callbacks, hooks=Distillation())


def read_teacher(config: Config) -> Config:
    """The config of the run `distill.teacher` names, its `output_dir` set to that folder; checked against `config`.

    Raises:
        ConfigError: no teacher, not a finished run, the student's own
            `output_dir`, another task type, or a task that is not distilled.
    """
    spec = config.distill.teacher
    check(bool(spec), "distill.teacher", spec, "must name a finished tfft run folder to learn from")
    folder = pathlib.Path(spec)
    check((folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file(), "distill.teacher", spec,
          f"must be a tfft run folder whose training finished (with {CONFIG_FILE} and {WEIGHTS_FILE}); "
          "train the teacher first with `tfft train`")
    check(os.path.realpath(folder) != os.path.realpath(config.output_dir), "distill.teacher", spec,
          "must not be the student's own `output_dir`: set a new `output_dir` for the student")
    teacher = load_config(folder / CONFIG_FILE)
    teacher.output_dir = str(folder)
    check(teacher.task.type == config.task.type, "distill.teacher", spec,
          f"must be a run of this config's task type, `{config.task.type}`; it is a `{teacher.task.type}` run")
    reason = tasks.TASKS[config.task.type].distill_unsupported
    check(reason is None, "task.type", config.task.type, f"cannot be distilled: {reason}")
    return teacher


class Distillation(train.RunHooks):
    """The `RunHooks` of `tfft distill`: reads the teacher, starts the student from it, trains on its outputs."""

    teacher = None  # the teacher task model, once built

    def check(self, config: Config, task: tasks.Task) -> None:
        self.teacher_config = read_teacher(config)
        if config.distill.unlabeled:
            check(task.pseudo_labels_unsupported is None, "distill.unlabeled", config.distill.unlabeled,
                  f"cannot be labelled by a `{task.type}` teacher: {task.pseudo_labels_unsupported}; "
                  "it works for classification, multi-label and regression")

    def prepare(self, config: Config, task: tasks.Task, train_data, packer) -> None:
        """Refuses a teacher with other labels or another tokenizer; adds the rows it labels (`distill.unlabeled`)."""
        self.check_teacher(config, task, packer)
        if train_data is None:  # trained before: no rows to label, no outputs to cache
            return
        if config.distill.unlabeled:
            train_data.add(lambda: self.label_unlabeled(config, task, packer), "distill.unlabeled")
        if config.distill.alpha > 0.0 and caches_outputs(config, train_data):
            train_data.attach(lambda ds: self.attach_outputs(config, ds, train_data.elements))

    def attach_outputs(self, config: Config, ds, elements: int):
        """The packed training elements `ds` with the teacher's outputs (`tfft.teacher_cache`)."""
        with random_state_kept():  # the student, built next, draws the seeds it draws without the cache
            self.teacher = self.load_teacher(config)  # outside any strategy: it never runs in a training step
        return teacher_cache.attach_teacher_outputs(ds, self.teacher, elements)

    def check_teacher(self, config: Config, task: tasks.Task, packer) -> None:
        """Refuses a teacher with other labels or another tokenizer, before anything is built or written."""
        teacher, folder = self.teacher_config, config.distill.teacher
        self.teacher_task = tasks.create(teacher)
        self.teacher_task.load_vocabulary(folder)
        if self.teacher_task.label_names != task.label_names:
            raise ConfigError(
                f"Argument `distill.teacher` must be a run with this run's labels. Received: teacher={folder!r}, "
                f"whose labels are {self.teacher_task.label_names}; this run's data have {task.label_names}."
            )
        self.source = backbones.resolve(teacher.model)
        self.source.prepare(None, folder)
        difference = packer.difference(self.source.packer())
        if difference is not None:
            raise ConfigError(
                f"Argument `distill.teacher` must be a run whose backbone tokenizes as the student's "
                f"(`model.backbone: {config.model.backbone}`) does: {difference}. Received: teacher={folder!r}. "
                "Distil into a backbone with the teacher's tokenizer, e.g. its own with `model.keep_layers`."
            )

    def label_unlabeled(self, config: Config, task: tasks.Task, packer):
        """The rows of `distill.unlabeled`, labelled by the teacher (its label, labels or score for each)."""
        spec = config.distill.unlabeled
        rows = task.read(spec, split="unlabeled", labelled=False)
        teacher = self.load_teacher(config)  # a copy outside any strategy, dropped after labelling
        outputs = evaluate.predict_outputs(self.teacher_task, teacher, packer, rows, self.teacher_config.train.batch_size)
        rows.labels = task.pseudo_labels(outputs)
        logger.info("The teacher labelled %d rows of %s; they join the training split.", len(rows), spec)
        return rows

    def load_teacher(self, config: Config) -> tasks.TaskModel:
        teacher = build_model(self.teacher_config, self.source, self.teacher_task)
        teacher.load_weights(pathlib.Path(config.distill.teacher) / WEIGHTS_FILE)
        teacher.trainable = False
        return teacher

    def built(self, config: Config, model: tasks.TaskModel, inputs: train.Inputs) -> None:
        """Starts the student from the teacher and sets the loss; builds the teacher here unless the cache did.

        Built here, the teacher is inside the strategy's scope: it runs in
        the training step. The cache's teacher was built outside it, in
        phase 1, and never runs in a step.
        """
        if self.teacher is None:
            self.teacher = self.load_teacher(config)
        if same_backbone(config, self.teacher_config):
            start_from_teacher(config, model, self.teacher, self.source)
        else:
            logger.info("The student (`%s`) starts from its own pretrained weights: it is not the teacher's backbone "
                        "(`%s`).", config.model.backbone, self.teacher_config.model.backbone)
        model.objective = SoftTargets(self.teacher, self.teacher_task, config.distill.alpha, config.distill.temperature)

    def scores(self, task: tasks.Task, inputs: train.Inputs, metrics: dict) -> dict:
        """The teacher's main scores on the same validation split, and the share of each the student keeps."""
        outputs = evaluate.predict_outputs(
            self.teacher_task, self.teacher, inputs.packer, inputs.validation, self.teacher_config.train.batch_size
        )
        teacher = self.teacher_task.logged_scores(self.teacher_task.score(inputs.validation, outputs))
        student = task.logged_scores(metrics)
        retained = {name: student[name] / value for name, value in teacher.items() if name in student and value}
        logger.info("Teacher on the validation split: %s; the student keeps %s.",
                    ", ".join(f"{k} {v:.4f}" for k, v in teacher.items()),
                    ", ".join(f"{k} {100 * v:.1f}%" for k, v in retained.items()))
        return {"teacher": teacher, "retained": retained}


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
    gradients are the global batch's.

    Args:
        teacher: `tfft.tasks.TaskModel`. Not trainable.
        task: `tfft.tasks.Task`. Its `soft_loss`.
        alpha: float. `distill.alpha`; 0 runs no teacher at all.
        temperature: float. `distill.temperature`.
    """

    def __init__(self, teacher: tasks.TaskModel, task: tasks.Task, alpha: float, temperature: float):
        self.teacher, self.task, self.alpha, self.temperature = teacher, task, alpha, temperature
        self.input_names = list(teacher.input)

    def __call__(self, x: dict, y_pred, sample_weight, loss):
        if self.alpha == 0.0:
            return loss
        student = tf.cast(y_pred, tf.float32)
        if teacher_cache.TEACHER_LOGITS in x:
            teacher = teacher_cache.teacher_logits(x, student)
        else:
            logits = self.teacher({name: x[name] for name in self.input_names}, training=False)
            teacher = tf.stop_gradient(tf.cast(logits, tf.float32))
        soft = self.task.soft_loss(student, teacher, sample_weight, self.temperature)
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context is not None else 1
        return (1.0 - self.alpha) * loss + self.alpha * tf.cast(soft, loss.dtype) / replicas
