"""One typed config for a tfft run.

Values come from three layers, later ones winning: the dataclass defaults
below, a YAML file, then `key.path=value` overrides (the CLI's `--set`). The
result is validated once, before any work starts, and `train.run` writes it to
`<output_dir>/config.yaml` so every run can be repeated exactly.

Example:

```python
config = tfft.config.load_config(
    "configs/demo.yaml", overrides=["train.epochs=2", "model.freeze_layers=1"]
)
```
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import pathlib
import types
import typing
from typing import Any, Literal

import yaml

from tfft.errors import ConfigError

#: What `model.lora_targets` may name.
LORA_TARGETS = ("query", "key", "value", "attention_output", "feedforward")

__all__ = ["Config", "ConfigError", "load_config", "from_dict", "apply_override", "set_key", "read_yaml", "derived", "TASK_TYPES"]


@dataclasses.dataclass
class ModelConfig:
    """The backbone and the classification head.

    Args:
        backbone: str. A keras-hub preset name (`bert_tiny_en_uncased`), a local
            keras-hub preset folder, a Hugging Face checkpoint folder or
            `hf://<id>`, or a tfft recipe (`tiny-bert`) that tfft builds itself,
            with a vocabulary learned from the training split.
        source: str. Where the backbone comes from. `auto` decides from
            `backbone`; `transformers` loads a Hugging Face `transformers` TF
            model (`pip install tfft[transformers]`).
        freeze_layers: int. Freeze the embeddings and the lowest N encoder
            layers; `-1` freezes the whole backbone (only the head trains).
        freeze_embeddings: bool. Set to false with `freeze_layers: 0` to train
            every backbone weight.
        pretrained: bool. Load the backbone's pretrained weights; false builds
            the same architecture with random weights (a baseline).
        dropout: float. Dropout rate before the head's Dense layer (`extractive_qa`: none, as in BERT's
            run_squad.py).
        pooling: str. What heads on one vector per text read: `pooled` (the
            backbone's `pooled_output`, BERT's pooler on `[CLS]`) or `mean`
            (the mean of `sequence_output` over the real tokens, which
            sentence-embedding checkpoints such as all-MiniLM-L6-v2 were
            trained with; their pooler is untrained).
        sequence_length: int. Longest packed sequence, special tokens included.
            Longer inputs are truncated and counted in the log.
        reinit_layers: int. Re-initialize the top N encoder layers (and the
            pooler, when the head reads it) with the backbone's own
            initializers, seeded by `train.seed`, before training.
        lora_rank: int. 0: no LoRA. Else Keras' `enable_lora(rank)` on the
            trained encoder layers' `lora_targets`; only the LoRA factors and
            the head train. The export merges the factors into the kernels.
        lora_alpha: float or None. LoRA's scale is `lora_alpha / lora_rank`;
            None: `lora_rank` (a scale of 1).
        lora_targets: list of str. The projections LoRA adapts, of `query`,
            `key`, `value`, `attention_output` and `feedforward` (both
            feed-forward kernels). `[query, value]`, as keras-hub's and PEFT's
            defaults.
        keep_layers: int, list of int or None. A backbone with fewer encoder
            layers (layer dropping): a list keeps those layers (0 is the
            lowest), in that order, with their pretrained weights; a number N
            keeps the lowest N (dropping the top layers keeps the most accuracy,
            Sajjad et al. 2023). None keeps every layer. `tfft distill` starts
            such a student from its teacher's weights.
    """

    backbone: str = "tiny-bert"
    source: Literal["auto", "keras_hub", "huggingface", "recipe", "transformers"] = "auto"
    freeze_layers: int = 2
    freeze_embeddings: bool = True
    pretrained: bool = True
    dropout: float = 0.1
    pooling: Literal["pooled", "mean"] = "pooled"
    sequence_length: int = 128
    reinit_layers: int = 0
    lora_rank: int = 0
    lora_alpha: float | None = None
    lora_targets: list[str] = dataclasses.field(default_factory=lambda: ["query", "value"])
    keep_layers: int | list[int] | None = None


@dataclasses.dataclass
class SplitConfig:
    """Holds out part of `data.train` as the validation split (`tfft.folds`): a slice, or one fold of k.

    Classification folds keep each label's share; multi-label folds each
    example's rarest label's; extractive-QA folds keep a context's questions
    together. `data.validation` must then be empty: the held-out rows are it.

    Args:
        fraction: float. 0: off. Else hold out this share of the (capped)
            training rows.
        folds: int. 0: off. Else split the training rows into `folds` folds
            and hold out fold `fold`.
        fold: int. The held-out fold, from 0.
        seed: int. Seeds the shuffle before the split.
        stratify: bool. Keep each label's share in every part (classification
            and multi-label); false splits at random.
    """

    fraction: float = 0.0
    folds: int = 0
    fold: int = 0
    seed: int = 0
    stratify: bool = True

    @property
    def active(self) -> bool:
        return bool(self.fraction or self.folds)


@dataclasses.dataclass
class DataConfig:
    """Where the labelled examples are and which columns hold what.

    Args:
        train: str. A `.csv`, `.tsv` or `.jsonl` file, or `tfds:NAME[:SPLIT]`;
            or, to stream, several `.csv`, `.tsv`, `.jsonl` or `.tfrecord`
            files: comma-separated paths and glob patterns, on any
            filesystem TensorFlow reads (`gs://bucket/train-*.csv`).
        validation: str. Same forms as `train`; empty to train without one.
        text_column: str. Column with the (first) text.
        text_pair_column: str or None. Column with the second text of a
            sentence-pair task.
        label_column: str. Column with string or integer labels.
        has_header: bool. False for header-less files: columns are then named
            by position, `"0"`, `"1"`, ...
        format: str. `auto` goes by the extension (`.csv`, `.tsv`, `.jsonl`);
            `csv`, `tsv` or `jsonl` reads any file name so (SICK's `.txt`
            files are `tsv`).
        quoting: str. How `"` is read in `.csv`/`.tsv` cells: `auto` reads
            CSV quoting in `.csv` and keeps quotes as text in `.tsv` (as GLUE
            needs); `csv` reads quoted cells in both (GoEmotions' TSVs);
            `none` keeps every quote as text.
        tfds_data_dir: str or None. `data_dir` for TFDS data sets.
        max_train_examples: int or None. Use only the first N training rows.
        shuffle_buffer: int. Examples in the shuffle buffer (0: the whole
            set; 10,000 rows when streaming).
        streaming: str. `false` reads the training split into memory;
            `true` streams it from its files (`tfft.streaming`); `auto`
            streams several files, or more than 256 MB.
        on_bad_row: str. `error` stops at a bad row, naming its file and
            line; `skip` (streamed data) skips it, counts it and logs it.
        split: `SplitConfig`. Hold out part of `train` as the validation
            split (`tfft search`, `tfft cv`).
    """

    train: str = ""
    validation: str = ""
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    has_header: bool = True
    format: Literal["auto", "csv", "tsv", "jsonl", "tfrecord", "parquet"] = "auto"
    quoting: Literal["auto", "csv", "none"] = "auto"
    tfds_data_dir: str | None = None
    max_train_examples: int | None = None
    shuffle_buffer: int = 0
    streaming: Literal["auto", "true", "false"] = "auto"
    on_bad_row: Literal["error", "skip"] = "error"
    split: SplitConfig = dataclasses.field(default_factory=SplitConfig)


TASK_TYPES = ("classification", "multi_label", "regression", "token_classification", "extractive_qa", "masked_lm")


@dataclasses.dataclass
class TaskConfig:
    """What the model learns to predict. Keys other than `type` apply to one type each.

    Args:
        type: str. `classification` (one label per row, softmax),
            `multi_label` (any number of labels per row, sigmoid),
            `regression` (a float per row), `token_classification` (a tag
            per word, e.g. NER), `extractive_qa` (an answer span in a
            context, SQuAD JSON) or `masked_lm` (domain adaptation on
            unlabelled text; `tfft adapt`).
        threshold: float. multi_label: a label is predicted when its
            probability is at least this.
        label_separator: str. multi_label: separates the labels in one cell
            (`"joy,love"`); also joins the predicted names in serving.
        label_names_file: str or None. multi_label: a file with one label name
            per line; the cells then hold 0-based ids into it (GoEmotions).
        label_columns: list of str or None. multi_label: one 0/1 column per
            label instead of `data.label_column`.
        loss: str. regression: `mse` or `huber`.
        tag_scheme: str. token_classification: `iob1`, `iob2` (B-/I-/O) or
            `iobes` (also E-/S-). Every tag must fit it.
        tag_column: int. token_classification, CoNLL files: the column that
            holds the tag; -1 is the last.
        tokens_key: str. token_classification, JSONL: the key of the words.
        tags_key: str. token_classification, JSONL: the key of the tags.
        doc_stride: int. extractive_qa: tokens of overlap between the windows
            a long context is split into (Hugging Face's `doc_stride`).
        max_question_length: int. extractive_qa: question tokens kept; longer
            questions are cut, and counted in the log.
        max_answer_length: int. extractive_qa: the longest answer span, in
            tokens.
        n_best: int. extractive_qa: candidate answers returned per question.
        null_threshold: float or None. extractive_qa with unanswerable
            questions (SQuAD v2.0): answer "" when the no-answer score beats
            the best span's by more than this. None chooses it on
            `data.validation` (0.0 without validation).
        mask_rate: float. masked_lm: the share of word pieces to predict; of
            those, 80% become the mask token, 10% a random token and 10% stay.
        whole_word_masking: bool. masked_lm: mask all pieces of a word
            together.
        max_predictions: int or None. masked_lm: predicted pieces per
            sequence at most; None: 20% of `model.sequence_length`.
    """

    type: Literal[
        "classification", "multi_label", "regression", "token_classification", "extractive_qa", "masked_lm"
    ] = "classification"
    threshold: float = 0.5
    label_separator: str = ","
    label_names_file: str | None = None
    label_columns: list[str] | None = None
    loss: Literal["mse", "huber"] = "mse"
    tag_scheme: Literal["iob1", "iob2", "iobes"] = "iob2"
    tag_column: int = -1
    tokens_key: str = "tokens"
    tags_key: str = "tags"
    doc_stride: int = 128
    max_question_length: int = 64
    max_answer_length: int = 30
    n_best: int = 20
    null_threshold: float | None = None
    mask_rate: float = 0.15
    whole_word_masking: bool = False
    max_predictions: int | None = None


@dataclasses.dataclass
class UnfreezeConfig:
    """Gradual unfreezing, as in ULMFiT: the head first, then one more encoder layer at a time, from the top.

    Args:
        every: int. 0: off. Else one more encoder layer starts training every
            `every` `unit`s, down to `model.freeze_layers`; the embeddings
            (when `model.freeze_embeddings` is false) come last.
        unit: str. `epochs` or `steps` (optimizer updates).
        start: int. Encoder layers, from the top, that train from the start
            beside the head.
    """

    every: int = 0
    unit: Literal["epochs", "steps"] = "epochs"
    start: int = 0


@dataclasses.dataclass
class TrainConfig:
    """Optimizer, schedule, loop and hardware settings.

    Args:
        epochs: int. Passes over the training split.
        batch_size: int. Global batch size, across all replicas.
        learning_rate: float. Peak learning rate, reached after warmup.
        warmup_ratio: float. Fraction of all steps spent in linear warmup.
        schedule: str. Decay after warmup, `linear` or `cosine`, to zero.
        weight_decay: float. AdamW decay; never applied to biases and norms.
        clipnorm: float. Global gradient-norm clip; 0 disables it.
        adam_epsilon: float. AdamW's epsilon. Keras adds it to `sqrt(v)`
            before bias correction (`adam_epsilon_placement`'s default), so
            early in training it weighs up to `1 / sqrt(1 - beta_2)` (about
            32x) more than PyTorch's same value; the BERT recipe's 1e-6 here
            damps small gradients more than the Hugging Face `Trainer`'s
            1e-8 does there.
        adam_epsilon_placement: str. Where Adam adds `adam_epsilon`:
            `before_bias_correction` (Keras', TensorFlow's and tfft's
            default: `m_hat / (sqrt(v_hat) + eps / sqrt(1 - beta_2^t))`
            in effect) or `after_bias_correction` (PyTorch's `AdamW`, the
            `Trainer`'s: `m_hat / (sqrt(v_hat) + eps)`).
        seed: int. Seed for weights, dropout and shuffling.
        class_weight: str or None. `balanced` weighs classes by inverse
            frequency in the training split.
        early_stopping_patience: int or None. Stop after this many epochs
            without a better validation accuracy.
        restore_best: bool. With a validation split, end the run with the
            weights of its best epoch by the task's monitored score, as
            Keras' `restore_best_weights` and the `Trainer`'s
            `load_best_model_at_end` (whose default is false). false: keep
            the final weights (no best checkpoint is written). Either way the
            run's scores are those of the weights it ends with.
        strategy: str. `auto`, `default`, `mirrored`, `multi_worker` or `tpu`.
        tpu: str. TPU name or `grpc://` address; empty for a local/Colab TPU.
        mixed_precision: str. `none`, `mixed_float16` or `mixed_bfloat16`.
        jit_compile: bool. Compile the train step with XLA.
        steps_per_execution: int. Steps run per `tf.function` call (TPU).
        pad_to: str. `longest` pads each batch to its longest sequence;
            `buckets` pads to the next of 16, 32, 64, ... (few
            shapes, for TPU/XLA); `max` pads to `sequence_length`.
        group_by_length: bool. Training batches of similar lengths, which
            `longest` and `buckets` pad less; false: random batches, as the
            Hugging Face `Trainer`'s default.
        megabatch: int. Length grouping's megabatch, in batches: each run of
            this many shuffled batches is sorted by length and cut into
            batches, which are then shuffled. Fewer: batches nearer random
            ones, and more padding (1: random batches).
        overwrite_output_dir: bool. Replace a finished run in `output_dir`.
        backup_every_steps: int or None. Also back up the training state
            every this many steps inside an epoch, so a killed or preempted
            run resumes at that step, with the data order unchanged. None:
            back up at each epoch's end (and on Ctrl-C / SIGTERM) only.
        layer_decay: float. Layer-wise learning-rate decay in (0, 1]: encoder
            layer i of L trains at `learning_rate * layer_decay**(L - i)`,
            the embeddings at `layer_decay**(L + 1)`, the head and pooler at
            `learning_rate`. 1: one learning rate for all.
        unfreeze: `UnfreezeConfig`. Gradual unfreezing.
        gradient_accumulation_steps: int. Sum the gradients of this many
            batches before each update: the effective batch is
            `batch_size * gradient_accumulation_steps`, and the schedule
            counts updates.
    """

    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    schedule: Literal["linear", "cosine"] = "linear"
    weight_decay: float = 0.01
    clipnorm: float = 1.0
    adam_epsilon: float = 1e-6
    adam_epsilon_placement: Literal["before_bias_correction", "after_bias_correction"] = "before_bias_correction"
    seed: int = 0
    class_weight: Literal["balanced"] | None = None
    early_stopping_patience: int | None = None
    restore_best: bool = True
    strategy: Literal["auto", "default", "mirrored", "multi_worker", "tpu"] = "auto"
    tpu: str = ""
    mixed_precision: Literal["none", "mixed_float16", "mixed_bfloat16"] = "none"
    jit_compile: bool = False
    steps_per_execution: int = 1
    pad_to: Literal["longest", "buckets", "max"] = "longest"
    group_by_length: bool = True
    megabatch: int = 16
    overwrite_output_dir: bool = False
    backup_every_steps: int | None = None
    layer_decay: float = 1.0
    unfreeze: UnfreezeConfig = dataclasses.field(default_factory=UnfreezeConfig)
    gradient_accumulation_steps: int = 1


@dataclasses.dataclass
class ExportConfig:
    """SavedModel export for TF Serving.

    Args:
        enabled: bool. Export at the end of `tfft train`.
        base_dir: str. Exports go to `<base_dir>/<name>/<version>/`.
        warmup_requests: int. PredictRequests written for TF Serving warmup.
        formats: list of str. What each version folder holds: `saved_model`
            (always: TF Serving loads the folder), plus `litert` for a
            `model.tflite` that takes raw text (`tfft.litert`).
        quantize: str. The LiteRT file's weights: `none` (float32),
            `dynamic_range` (int8) or `float16`.
    """

    enabled: bool = True
    base_dir: str = "saved_models"
    warmup_requests: int = 3
    formats: list[str] = dataclasses.field(default_factory=lambda: ["saved_model"])
    quantize: Literal["none", "dynamic_range", "float16"] = "none"


@dataclasses.dataclass
class SearchConfig:
    """`tfft search`: a hyperparameter search with Optuna (`tfft.search`). `tfft train` ignores this section.

    Args:
        trials: int. Finished trials the study ends with, over every process
            that shares it.
        objective: str. The validation score to optimize: a metric name
            (`accuracy`, `matthews_corrcoef`, `f1`, ...); empty for the
            task's monitored score.
        direction: str. `maximize`, `minimize`, or `auto`: minimize names with
            `loss` or `error` in them, maximize the others.
        space: dict. Config key -> `{type: loguniform|uniform|int|choice,
            low:, high:}` or `{type: choice, values: [...]}`.
        seed: int. Seeds the sampler (TPE; trial n from `seed + n`) and the held-out slice.
        validation_fraction: float. 0: score trials on `data.validation`.
            Else on this share of the training split, held out (stratified for
            classification), keeping `data.validation` for the final report.
        storage: str. Where the study lives: empty for SQLite in
            `output_dir/study.db`, or any database URL Optuna takes
            (`postgresql://...`, `mysql://...`), shared by every process
            and machine pointed at it.
        study_name: str. Empty: the config's `name`.
        pruning: bool. Stop trials whose per-epoch validation score is below
            the median of earlier trials at the same epoch (Optuna's
            `MedianPruner`), or equal to it with a validation loss above the
            median of the trials tied there (`tfft.trial_pruner`). A trial's
            last epoch is never pruned, nor one its early stopping ends.
        heartbeat_seconds: int. A trial whose process has not written a
            heartbeat for twice this long (killed) is failed and tried again
            with the same values.
        parallel_trials: int. Trials this process runs at once, each in its
            own process with its share of the cores as TensorFlow threads.
    """

    trials: int = 10
    objective: str = ""
    direction: Literal["auto", "maximize", "minimize"] = "auto"
    space: dict[str, dict] = dataclasses.field(default_factory=dict)
    seed: int = 0
    validation_fraction: float = 0.0
    storage: str = ""
    study_name: str = ""
    pruning: bool = True
    heartbeat_seconds: int = 60
    parallel_trials: int = 1


@dataclasses.dataclass
class DistillConfig:
    """`tfft distill`: train the run's model (the student) on a finished run's outputs (`tfft.distill`).

    Args:
        teacher: str. A finished tfft run folder of the same task type whose
            backbone has the same tokenizer, or a SavedModel version folder
            `tfft export` wrote (classification, multi-label, regression;
            any tokenizer; `tfft.export_teacher`). `tfft train` ignores this
            section.
        temperature: float. Both models' logits are divided by it before the
            soft loss (the soft loss is scaled by its square, as Hinton et
            al.'s); regression ignores it.
        alpha: float. The loss is `alpha * soft + (1 - alpha) * hard`: soft is
            the distance to the teacher's outputs (the task's
            `Task.soft_loss`), hard the task's own loss on the labels. 0
            trains on the labels alone (the teacher only initializes).
        unlabeled: str. Tables of texts without labels (the training
            split's text columns; paths and glob patterns, comma-separated),
            read into memory (streamed, beside a streamed training split,
            and labelled in the training step): the teacher labels each
            row and the rows join the training split (classification,
            multi-label, regression). Empty: none.
        teacher_outputs: str. `cached`: for a training split held in
            memory, the teacher's outputs on it are computed once before
            training (`tfft.teacher_cache`); `in_step`: the teacher runs in
            every training step; `auto`: cached from two epochs on (at one,
            the cache's pass costs about what it saves). A streamed split
            is always `in_step`; an export's outputs are always cached.
        hidden_weight: float. Above 0, intermediate-layer matching: each
            student encoder layer's outputs are pulled toward a teacher
            layer's (TinyBERT's mapping, top to top) by their mean squared
            difference, this weight times it added to the loss
            (`tfft.hidden_states`); a student of another width learns a
            projection to the teacher's (trained, not exported). Needs a
            run-folder teacher, running in the step (`teacher_outputs` not
            `cached`). 0: off.
        hidden_only: bool. TinyBERT's first stage, run on its own: the loss
            is the hidden-state term alone (`hidden_weight` > 0; `alpha`,
            the labels and the head take no part), and the trained student's
            backbone is written as a keras-hub preset folder,
            `<output_dir>/backbone`. The second stage is a `tfft distill`
            with `model.backbone` set to that folder. Its head is untrained,
            so its validation scores mean nothing: it needs
            `train.restore_best: false` and `export.enabled: false`.
    """

    teacher: str = ""
    temperature: float = 2.0
    alpha: float = 0.5
    unlabeled: str = ""
    teacher_outputs: Literal["auto", "cached", "in_step"] = "auto"
    hidden_weight: float = 0.0
    hidden_only: bool = False


@dataclasses.dataclass
class Config:
    """A whole tfft run. See the README's config reference.

    Args:
        name: str. Export name, the folder under `export.base_dir`.
        output_dir: str. Checkpoints, logs, `config.yaml` and `metrics.json`.
    """

    name: str = "demo"
    output_dir: str = "runs/demo"
    task: TaskConfig = dataclasses.field(default_factory=TaskConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)
    search: SearchConfig = dataclasses.field(default_factory=SearchConfig)
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | pathlib.Path) -> None:
        pathlib.Path(path).write_text(self.to_yaml(), encoding="utf-8")

    def validate(self) -> Config:
        """Checks every value's range and the keys that depend on each other.

        The keys of one task type (`task.doc_stride`, `task.label_columns`,
        ...) are the task's to check: `tfft.tasks.create` does, before a run
        writes anything.

        Returns the config, so `load_config` can end with it. Raises
        `ConfigError` naming the key, the valid range and what it received.
        """
        check(bool(self.name.strip()), "name", self.name, "must be a non-empty string")
        check(bool(self.output_dir.strip()), "output_dir", self.output_dir, "must be a non-empty path")
        check(
            self.name not in (".", "..") and not set(self.name) & set("/\\\0") and not self.name.startswith("."),
            "name", self.name, "must be one folder name: no `/` or `\\`, not `.` or `..`, not starting with `.`",
        )
        for part in (self._validate_model, self._validate_data, self._validate_train, self._validate_export,
                     self._validate_search, self._validate_distill):
            part()
        return self

    def _validate_model(self) -> None:
        m = self.model
        check(bool(m.backbone), "model.backbone", m.backbone, "must name a preset, a folder or a recipe")
        check(m.freeze_layers >= -1, "model.freeze_layers", m.freeze_layers,
               "must be -1 (freeze the whole backbone) or a number of layers >= 0")
        check(0.0 <= m.dropout < 1.0, "model.dropout", m.dropout, "must be in [0, 1)")
        check(8 <= m.sequence_length <= 8192, "model.sequence_length", m.sequence_length,
               "must be between 8 and 8192")
        check(m.reinit_layers >= 0, "model.reinit_layers", m.reinit_layers, "must be >= 0")
        check(m.lora_rank >= 0, "model.lora_rank", m.lora_rank, "must be >= 0 (0: no LoRA)")
        if m.lora_rank:
            check(m.freeze_layers >= 0, "model.lora_rank", m.lora_rank,
                  "needs `model.freeze_layers` >= 0: with -1 no encoder layer trains to adapt")
        if m.lora_alpha is not None:
            check(m.lora_alpha > 0, "model.lora_alpha", m.lora_alpha, "must be > 0, or null for `lora_rank`")
        check(bool(m.lora_targets) and set(m.lora_targets) <= set(LORA_TARGETS), "model.lora_targets",
              m.lora_targets, f"must be a non-empty list of {', '.join(LORA_TARGETS)}")

    def _validate_data(self) -> None:
        d, k = self.data, self.task
        check(bool(d.train), "data.train", d.train,
               "must name a training file (.csv, .tsv, .jsonl) or `tfds:NAME[:SPLIT]`")
        check(bool(d.text_column), "data.text_column", d.text_column, "must name a column")
        check(bool(d.label_column), "data.label_column", d.label_column, "must name a column")
        if d.max_train_examples is not None:
            check(d.max_train_examples > 0, "data.max_train_examples", d.max_train_examples, "must be > 0")
        check(d.shuffle_buffer >= 0, "data.shuffle_buffer", d.shuffle_buffer, "must be >= 0")
        self._validate_split()
        check(0.0 < k.threshold < 1.0, "task.threshold", k.threshold, "must be in (0, 1)")
        check(bool(k.label_separator), "task.label_separator", k.label_separator, "must not be empty")

    def _validate_train(self) -> None:
        m, d, t = self.model, self.data, self.train
        check(t.epochs >= 1, "train.epochs", t.epochs, "must be >= 1")
        check(t.batch_size >= 1, "train.batch_size", t.batch_size, "must be >= 1")
        check(0.0 < t.learning_rate < 1.0, "train.learning_rate", t.learning_rate, "must be in (0, 1)")
        check(0.0 <= t.warmup_ratio <= 1.0, "train.warmup_ratio", t.warmup_ratio, "must be in [0, 1]")
        check(t.weight_decay >= 0.0, "train.weight_decay", t.weight_decay, "must be >= 0")
        check(t.adam_epsilon > 0.0, "train.adam_epsilon", t.adam_epsilon, "must be > 0")
        check(t.clipnorm >= 0.0, "train.clipnorm", t.clipnorm, "must be >= 0 (0 disables clipping)")
        if t.early_stopping_patience is not None:
            check(t.early_stopping_patience >= 1, "train.early_stopping_patience",
                   t.early_stopping_patience, "must be >= 1")
            check(bool(d.validation), "train.early_stopping_patience", t.early_stopping_patience,
                   "needs `data.validation` to watch")
        check(t.steps_per_execution >= 1, "train.steps_per_execution", t.steps_per_execution,
               "must be >= 1")
        check(t.megabatch >= 1, "train.megabatch", t.megabatch, "must be >= 1 (batches per length-sorted megabatch)")
        if t.backup_every_steps is not None:
            check(t.backup_every_steps >= 1, "train.backup_every_steps", t.backup_every_steps,
                   "must be >= 1, or null for backups at epoch ends only")
        check(0.0 < t.layer_decay <= 1.0, "train.layer_decay", t.layer_decay, "must be in (0, 1] (1: no decay)")
        check(t.unfreeze.every >= 0, "train.unfreeze.every", t.unfreeze.every, "must be >= 0 (0: off)")
        check(t.unfreeze.start >= 0, "train.unfreeze.start", t.unfreeze.start, "must be >= 0")
        check(not (t.unfreeze.every and m.lora_rank), "train.unfreeze.every", t.unfreeze.every,
              "cannot be combined with `model.lora_rank` (LoRA trains only its factors); set one of them to 0")
        check(t.gradient_accumulation_steps >= 1, "train.gradient_accumulation_steps",
              t.gradient_accumulation_steps, "must be >= 1 (1: no accumulation)")

    def _validate_export(self) -> None:
        e = self.export
        check(e.warmup_requests >= 0, "export.warmup_requests", e.warmup_requests, "must be >= 0")
        check(set(e.formats) <= {"saved_model", "litert"}, "export.formats", e.formats,
               "may hold `saved_model` and `litert` only")
        check("saved_model" in e.formats, "export.formats", e.formats,
               "must include `saved_model` (TF Serving loads every version folder); add `litert` beside it")
        check(bool(e.base_dir.strip()), "export.base_dir", e.base_dir,
               "must name a folder (empty would export to the filesystem root)")

    def _validate_split(self) -> None:
        s = self.data.split
        check(0.0 <= s.fraction < 1.0, "data.split.fraction", s.fraction, "must be in [0, 1) (0: off)")
        check(s.folds == 0 or s.folds >= 2, "data.split.folds", s.folds, "must be 0 (off) or >= 2")
        check(not (s.fraction and s.folds), "data.split.fraction", s.fraction,
              "cannot be combined with `data.split.folds`; set one of them to 0")
        if s.folds:
            check(0 <= s.fold < s.folds, "data.split.fold", s.fold, f"must be between 0 and {s.folds - 1}")
        if s.active:
            check(not self.data.validation, "data.validation", self.data.validation,
                  "must be empty when `data.split` holds out part of `data.train` as the validation split")

    def _validate_distill(self) -> None:
        keep, d = self.model.keep_layers, self.distill
        if isinstance(keep, int):
            check(keep >= 1, "model.keep_layers", keep, "must be >= 1 (a number of layers), a list of layers, or null")
        elif keep is not None:
            check(bool(keep) and len(set(keep)) == len(keep) and min(keep) >= 0, "model.keep_layers", keep,
                  "must list distinct layer indices >= 0 (0 is the lowest encoder layer)")
        check(d.temperature > 0.0, "distill.temperature", d.temperature, "must be > 0")
        check(0.0 <= d.alpha <= 1.0, "distill.alpha", d.alpha, "must be in [0, 1] (0: the labels alone)")
        check(d.hidden_weight >= 0.0, "distill.hidden_weight", d.hidden_weight, "must be >= 0 (0: no hidden-state matching)")
        check(d.hidden_weight == 0.0 or d.teacher_outputs != "cached", "distill.hidden_weight", d.hidden_weight,
              "needs the teacher in the training step (its per-token, per-layer states are not cached): set "
              "`distill.teacher_outputs` to `auto` or `in_step`, or `distill.hidden_weight: 0`")
        if d.hidden_only:
            check(d.hidden_weight > 0.0, "distill.hidden_weight", d.hidden_weight,
                  "must be > 0 with `distill.hidden_only: true`, which trains the hidden-state term alone")
            for key, value in (("train.restore_best", self.train.restore_best), ("export.enabled", self.export.enabled)):
                check(not value, key, value, "must be false with `distill.hidden_only: true`: that run trains no "
                      "head, so no epoch's validation scores or served model mean anything; its output is "
                      "`<output_dir>/backbone`")

    def _validate_search(self) -> None:
        s = self.search
        check(s.trials >= 1, "search.trials", s.trials, "must be >= 1")
        check(0.0 <= s.validation_fraction < 1.0, "search.validation_fraction", s.validation_fraction,
              "must be in [0, 1) (0: score on `data.validation`)")
        check(s.heartbeat_seconds >= 1, "search.heartbeat_seconds", s.heartbeat_seconds, "must be >= 1")
        check(s.parallel_trials >= 1, "search.parallel_trials", s.parallel_trials, "must be >= 1")


def derived(config: Config, output_dir: str | pathlib.Path, values: dict[str, Any] | None = None,
            split: SplitConfig | None = None, member: bool = False) -> Config:
    """A run made from `config` by `tfft search` or `tfft cv`: validated, its `search` section cleared.

    Args:
        config: `Config`. Left as it is.
        output_dir: the new run's folder.
        values: dict or None. Config key -> value (`set_key`).
        split: `SplitConfig` or None. Holds out part of `data.train` as the
            validation split (`data.validation` is then emptied), and keeps
            the run's final weights (`train.restore_best=false`): an epoch
            chosen on the held-out rows would score them optimistically.
        member: bool. A trial or fold: no export of its own, and never
            `train.overwrite_output_dir` (a rerun resumes it or reads it back).
    """
    run = copy.deepcopy(config)
    run.search = SearchConfig()
    run.output_dir = str(output_dir)
    if member:
        run.export.enabled = False
        run.train.overwrite_output_dir = False
    if split is not None:
        run.data.validation = ""
        run.data.split = split
        run.train.restore_best = False
    for key, value in (values or {}).items():
        set_key(run, key, value)
    return run.validate()


def check(ok: bool, key: str, value: Any, requirement: str) -> None:
    """Raises a `ConfigError` in Keras' form, naming `key`, what it requires and the value received, unless `ok`."""
    if not ok:
        leaf = key.rsplit(".", 1)[-1]
        raise ConfigError(f"Argument `{key}` {requirement}. Received: {leaf}={value!r}")


# --- Loading ----------------------------------------------------------------


def load_config(
    path: str | pathlib.Path | None = None,
    overrides: typing.Sequence[str] = (),
    sections: dict[str, Any] | None = None,
) -> Config:
    """Builds a validated `Config` from defaults, a YAML file and overrides.

    Args:
        path: str or None. A YAML file with any subset of the config's keys.
        overrides: list of str. `section.key=value` strings, applied in order
            after the file; values are parsed as YAML (`true`, `null`, `2`).
        sections: dict or None. Whole sections that replace the file's
            (`tfft search --search=space.yaml`'s `search`), before overrides.

    Returns:
        The validated `Config`.

    Example:

    ```python
    config = load_config("configs/demo.yaml", ["train.batch_size=16"])
    ```
    """
    values = read_yaml(path, "--config") if path is not None else {}
    for section, value in (sections or {}).items():
        values[section] = value
    config = from_dict(values)
    for override in overrides:
        apply_override(config, override)
    return config.validate()


def read_yaml(path: str | pathlib.Path, flag: str) -> dict[str, Any]:
    """The mapping a YAML file holds; a missing, folder or non-mapping file fails naming it and `flag`."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise ConfigError(f"Config file `{path}` is a folder. Pass a YAML file to `{flag}`, e.g. "
                          f"`{path / 'config.yaml'}` or configs/demo.yaml.")
    if not path.is_file():
        raise ConfigError(f"Config file `{path}` does not exist. Pass an existing YAML file to `{flag}`.")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"Config file `{path}` is not valid YAML: {err}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"Config file `{path}` must hold a mapping of keys, not {type(loaded).__name__}.")
    return loaded or {}


def from_dict(values: dict[str, Any]) -> Config:
    """Builds a `Config` from a nested dict, rejecting unknown keys and bad types."""
    return _build(Config, values, prefix="")


def apply_override(config: Config, override: str) -> None:
    """Applies one `section.key=value` override to `config` in place."""
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"Override `{override}` must have the form `section.key=value`, e.g. `train.epochs=2`.")
    target, leaf, hint = _resolve(config, key)
    setattr(target, leaf, _coerce(hint, _parse_override_value(raw, hint, key), key))


def set_key(config: Config, key: str, value: Any) -> None:
    """Sets `key` (`section.key`) of `config` in place to `value`, converted to the key's type.

    Raises a `ConfigError` naming `key` when it is no config key, a section,
    or `value` does not convert.
    """
    target, leaf, hint = _resolve(config, key)
    setattr(target, leaf, _coerce(hint, value, key))


def _resolve(config: Config, key: str) -> tuple[Any, str, Any]:
    """The dataclass holding `key`, the key's last part and its type hint."""
    *parents, leaf = key.split(".")
    target: Any = config
    walked = []
    for part in parents:
        fields = _field_types(type(target))
        if part not in fields or not dataclasses.is_dataclass(getattr(target, part)):
            raise _unknown_key(".".join([*walked, part]), type(target))
        walked.append(part)
        target = getattr(target, part)
    fields = _field_types(type(target))
    if leaf not in fields:
        raise _unknown_key(key, type(target))
    if dataclasses.is_dataclass(getattr(target, leaf)):
        first = next(iter(_field_types(type(getattr(target, leaf)))))
        raise ConfigError(f"Override `{key}` names a section; set one of its keys, e.g. `{key}.{first}=...`.")
    return target, leaf, fields[leaf]


_YAML_NULLS = ("~", "null", "Null", "NULL")


#: String keys that also take a list (several files), as `a.csv,b.csv` or `[a.csv, b.csv]`.
_LIST_STRINGS = ("data.train", "data.validation")


def _parse_override_value(raw: str, hint: Any, key: str = "") -> Any:
    """An override's value: verbatim for string keys, parsed as YAML for the others.

    String keys (column names, paths) keep what was typed: YAML would read
    `#1 String` (MRPC's column) as a comment and `007` as 7. `null` and `~`
    still mean None where the key allows it. Every key that takes a list
    reads `[a, b]` as YAML's list and `a,b` split at the commas.
    """
    takes_list = key in _LIST_STRINGS or any(typing.get_origin(h) is list for h in (hint, *typing.get_args(hint)))
    if takes_list and raw.strip().startswith("[") and raw.strip().endswith("]"):
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"Argument `{key}` is a list that is not valid YAML ({err.problem}). Write it as "
                              f"[a, b] or a,b. Received: {key.rsplit('.', 1)[-1]}={raw!r}") from None
        return [str(v) for v in value] if isinstance(value, list) else value
    if hint in (str, str | None, list[str] | None):
        return None if raw.strip() in _YAML_NULLS and hint is not str else raw
    try:
        return yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _unknown_key(key: str, section: type) -> ConfigError:
    """Names `key`, the nearest valid key of its section (a typo's fix) when one is close, and every valid key."""
    fields = list(_field_types(section))
    parent, _, name = key.rpartition(".")
    near = difflib.get_close_matches(name, fields, n=1)
    hint = f" Did you mean `{parent + '.' if parent else ''}{near[0]}`?" if near else ""
    return ConfigError(f"Unknown config key `{key}`.{hint} Valid keys here: {', '.join(fields)}.")


def _build(cls: type, values: Any, prefix: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"Config section `{prefix.rstrip('.') or '<top>'}` must be a mapping. Received: {values!r}")
    fields = _field_types(cls)
    unknown = [k for k in values if k not in fields]
    if unknown:
        raise _unknown_key(prefix + str(unknown[0]), cls)
    kwargs = {}
    for name, hint in fields.items():
        if name not in values:
            continue
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, values[name] or {}, prefix + name + ".")
        else:
            kwargs[name] = _coerce(hint, values[name], prefix + name)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    """Converts `value` to the type `hint`, or raises a `ConfigError` naming `key`."""
    leaf = key.rsplit(".", 1)[-1]
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(typing.get_args(hint), value, key)
    if origin is Literal:
        choices = typing.get_args(hint)
        if isinstance(value, bool) and str(value).lower() in choices:  # YAML reads `streaming: true` as a bool
            value = str(value).lower()
        if value not in choices:
            raise ConfigError(
                f"Argument `{key}` must be one of {', '.join(map(str, choices))}. Received: {leaf}={value!r}"
            )
        return value
    if hint in _SCALARS:
        return _SCALARS[hint](value, key, leaf)
    if origin is dict:
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
        raise ConfigError(f"Argument `{key}` must be a mapping, e.g. {{a: 1}}. Received: {leaf}={value!r}")
    if origin is list:
        (item,) = typing.get_args(hint)
        if isinstance(value, str):  # `--set task.label_columns=a,b`
            value = [part.strip() for part in value.split(",")]
        if isinstance(value, (list, tuple)):
            return [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
        raise ConfigError(f"Argument `{key}` must be a list. Received: {leaf}={value!r}")
    raise TypeError(f"Config field `{key}` has an unsupported type {hint!r}.")


def _coerce_union(options: tuple, value: Any, key: str) -> Any:
    """The first of `options` that takes `value`; else the first option's error (`or null` when None may be)."""
    if value is None and type(None) in options:
        return None
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return _coerce(option, value, key)
        except ConfigError as err:
            errors.append(str(err))
    raise ConfigError(errors[0] + (" (or null)" if type(None) in options else ""))


def _to_bool(value: Any, key: str, leaf: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(f"Argument `{key}` must be true or false. Received: {leaf}={value!r}")


def _to_int(value: Any, key: str, leaf: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ConfigError(f"Argument `{key}` must be an integer. Received: {leaf}={value!r}")


def _to_float(value: Any, key: str, leaf: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads `5e-5` as a string.
        except ValueError:
            pass
    raise ConfigError(f"Argument `{key}` must be a number. Received: {leaf}={value!r}")


def _to_str(value: Any, key: str, leaf: str) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    if key in ("data.train", "data.validation") and isinstance(value, list):  # several files to stream
        return ",".join(str(v) for v in value)
    raise ConfigError(f"Argument `{key}` must be a string. Received: {leaf}={value!r}")


_SCALARS = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str}
