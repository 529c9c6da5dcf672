"""Extractive question answering: the answer is a span of the context, found over overlapping windows.

A context longer than a window is split into windows of `model.sequence_length`
tokens, `[CLS] question [SEP] context piece [SEP]`, consecutive pieces sharing
`task.doc_stride` tokens (Hugging Face's `run_qa` recipe). Training labels each
window with the answer's first and last token, or with `[CLS]` (position 0)
when the window does not hold the whole answer, as the BERT reference does.
The head gives a start and an end logit per token; the loss is the mean of the
start and end cross-entropies.

Everything from raw strings to the answer runs in the TensorFlow graph, so
serving and evaluation share it (`ExtractiveQA.outputs`): TensorFlow Text's
ops tokenize with byte offsets (`tfft.backbones.offsets`: WordPiece,
SentencePiece and byte-level BPE; keras-hub's tokenizers give none,
keras-team/keras-hub#926), the windows are cut and packed with tensor ops, and
the best span over all of a question's windows, at most
`task.max_answer_length` tokens long, is mapped back to character offsets.
Tokenizers without offsets (tfft's ALBERT, which normalizes the text first)
fail before training with a `ConfigError`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import zipfile

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from tfft import data, errors, metrics
from tfft.backbones.litert import shifted
from tfft.config import check
from tfft.errors import DataError
from tfft.tasks.base import LabelledBatch, Task, decode, dense_head, softened_kl

#: File in `output_dir` with the no-answer threshold and whether the data have unanswerable questions.
STATE_FILE = "qa.json"
_FIX = "Use another backbone (BERT, ELECTRA, DeBERTa-v3, ModernBERT, RoBERTa, XLM-RoBERTa) for `task.type: extractive_qa`."


def _check_doc_stride(task_config, sequence_length: int, separators: int, why: str = "") -> None:
    """`task.doc_stride` leaves each window new context tokens: `[CLS] question <separators> context [SEP]`."""
    room = sequence_length - 2 - separators - task_config.max_question_length
    check(task_config.doc_stride < room, "task.doc_stride", task_config.doc_stride,
          f"must be less than the context tokens of a window, model.sequence_length - task.max_question_length "
          f"- {2 + separators} = {room}{why}")


def read_squad(path: str | pathlib.Path, labelled: bool = True) -> tuple[list[dict], str]:
    """The questions of a SQuAD-format JSON file (v1.1 or v2.0), `.json` or zipped (`.json.zip`/`.zip`).

    Returns `(questions, version)`: one dict per question with `id`,
    `question`, `context`, `answers` (`[{"text", "answer_start"}]`) and
    `is_impossible`, in file order, and the file's `version` field.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise errors.missing_file(path, "`data.train` / `data.validation`, a SQuAD JSON file (`.json` or `.json.zip`)")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = [n for n in archive.namelist() if n.endswith(".json")]
            if len(members) != 1:
                raise DataError(f"Zip file `{path}` must hold exactly one `.json` file; it holds {members}.")
            raw = archive.read(members[0])
    else:
        raw = path.read_bytes()
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"Data file `{path}` is not UTF-8 JSON ({err}). Give a SQuAD JSON file.") from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise DataError(
            f'Data file `{path}` is not in SQuAD format: it needs `{{"data": [{{"paragraphs": [{{"context", '
            f'"qas": [...]}}]}}]}}`.'
        )
    questions = []
    for article in document["data"]:
        for paragraph in article.get("paragraphs", []):
            context = paragraph.get("context", "")
            for qa in paragraph.get("qas", []):
                questions.append({
                    "id": str(qa.get("id", f"#{len(questions) + 1}")),
                    "question": qa.get("question", ""),
                    "context": context,
                    "answers": qa.get("answers", []) if labelled else [],
                    "is_impossible": bool(qa.get("is_impossible", False)),
                })
    return questions, str(document.get("version", ""))


def check_squad(questions: list[dict], source: str, labelled: bool = True) -> None:
    """Fails naming the file and the question ids: empty questions or contexts, missing or misplaced answers."""
    bad = []
    for q in questions:
        if not str(q["question"]).strip():
            bad.append((f"question id {q['id']!r}", "empty question"))
        elif not str(q["context"]).strip():
            bad.append((f"question id {q['id']!r}", "empty context"))
        elif labelled and not q["is_impossible"] and not q["answers"]:
            bad.append((f"question id {q['id']!r}", "no answers (set `is_impossible: true` for SQuAD v2.0 data)"))
        elif labelled:
            for answer in q["answers"]:
                start, text = answer.get("answer_start"), answer.get("text", "")
                if not isinstance(start, int) or q["context"][start : start + len(text)] != text or not text:
                    found = q["context"][start : start + len(text)] if isinstance(start, int) else None
                    bad.append((f"question id {q['id']!r}",
                                f"answer {text!r} at answer_start={start!r}, where the context has {found!r}"))
                    break
    if bad:
        raise data.rows_error(
            source, "has unusable questions", bad,
            "Each question needs a non-empty question and context, and each answer's `answer_start` must be the "
            "character offset of its `text` in the context.",
        )


@dataclasses.dataclass
class WindowStats:
    """How a split's questions become windows, for the log and `metrics.json`."""

    examples: int
    windows: int
    truncated: int  # questions longer than task.max_question_length, cut
    longest_question: int
    max_question_length: int
    sequence_length: int
    doc_stride: int

    def message(self, split: str) -> str:
        text = (
            f"{split}: {self.examples:,} questions make {self.windows:,} windows of at most {self.sequence_length} "
            f"tokens (doc_stride {self.doc_stride})."
        )
        if self.truncated:
            text += (
                f" {self.truncated:,} questions are longer than task.max_question_length={self.max_question_length} "
                f"tokens and are cut (longest: {self.longest_question}). Raise `task.max_question_length` to keep them."
            )
        return text


class SpanLoss(keras.losses.Loss):
    """The mean of the start and end cross-entropies: targets int `[batch, 2]`, logits `[batch, length, 2]`."""

    def call(self, y_true, y_pred):
        y_true = keras.ops.cast(y_true, "int32")
        start = keras.ops.sparse_categorical_crossentropy(y_true[:, 0], y_pred[:, :, 0], from_logits=True)
        end = keras.ops.sparse_categorical_crossentropy(y_true[:, 1], y_pred[:, :, 1], from_logits=True)
        return (start + end) / 2.0


class MaskPadding(keras.layers.Layer):
    """Sets the `[batch, length, n]` logits of padding positions to -1e9, out of every softmax over positions.

    A span can only start or end on a real token. Without this, the start and
    end cross-entropies also spread probability over the padding, so how far a
    batch is padded (longest in a batch of random lengths, or sorted by
    length) would change what is learned.
    """

    def __init__(self, **kwargs):
        super().__init__(dtype="float32", **kwargs)

    def call(self, logits, padding_mask):
        real = keras.ops.expand_dims(keras.ops.cast(padding_mask, "bool"), -1)
        return keras.ops.where(real, logits, keras.ops.cast(-1e9, logits.dtype))


class ExtractiveQA(Task):
    """`task.type: extractive_qa`: the answer to a question, as a span of its context (SQuAD).

    Data are SQuAD-format JSON files, v1.1 or v2.0 (`is_impossible`), plain or
    zipped. Training uses each question's first answer; scores take the best
    over all its answers.

    Serving: `serving_default(question, context)`, `string[batch]` each,
    returns `answer` (string), `start` and `end` (character offsets into
    `context`, -1 for no answer), `score` (start + end logit), and the
    `task.n_best` candidates as `nbest_answers`, `nbest_starts`,
    `nbest_ends` and `nbest_scores` `[batch, n_best]` (padded with "" and -1),
    `null_score_diff` (the no-answer score minus the best span's), and
    `truncated_question_tokens` (int32: the question's word pieces past
    `task.max_question_length`, which the model did not read; the context is
    read whole, in windows).
    """

    type = "extractive_qa"
    monitor = ("f1", "max")
    uses_pooled_output = False
    litert_unsupported = "its windowing and span search run TensorFlow ops that have no TFLite kernels"
    stream_unsupported = "SQuAD JSON files are read whole"

    @classmethod
    def check_config(cls, config):
        k, length = config.task, config.model.sequence_length
        check(k.doc_stride >= 0, "task.doc_stride", k.doc_stride, "must be >= 0")
        check(k.max_question_length >= 1, "task.max_question_length", k.max_question_length, "must be >= 1")
        check(k.max_answer_length >= 1, "task.max_answer_length", k.max_answer_length, "must be >= 1")
        check(1 <= k.n_best <= 100, "task.n_best", k.n_best, "must be between 1 and 100")
        _check_doc_stride(k, length, separators=1)  # [SEP]; the backbone's own separator is checked in check_packer

    def __init__(self, config):
        super().__init__(config)
        self.has_no_answer = False
        self.uncalibrated()

    def uncalibrated(self):
        self.null_threshold = self.config.task.null_threshold if self.config.task.null_threshold is not None else 0.0

    # --- Reading ---------------------------------------------------------

    def read(self, spec, split="train", labelled=True):
        if spec.startswith(data.TFDS_PREFIX):
            raise DataError(f"`{spec}`: extractive QA reads SQuAD-format JSON files (`.json`, `.json.zip`), not TFDS.")
        questions, _ = read_squad(spec, labelled)
        check_squad(questions, spec, labelled)
        examples = data.Examples(
            spec,
            [q["question"] for q in questions],
            pairs=[q["context"] for q in questions],
            labels=[{"answers": q["answers"], "is_impossible": q["is_impossible"]} for q in questions]
            if labelled else None,
            ids=[q["id"] for q in questions],
        )
        return data.limit_train_examples(examples, self.config.data, split)

    def split_groups(self, examples):
        return examples.pairs  # a context's questions stay in one part

    def fit_vocabulary(self, train):
        self.has_no_answer = any(label["is_impossible"] for label in train.labels)

    def save_vocabulary(self, output_dir):
        state = {"has_no_answer": self.has_no_answer, "null_threshold": self.null_threshold}
        (pathlib.Path(output_dir) / STATE_FILE).write_text(json.dumps(state) + "\n", encoding="utf-8")

    def load_vocabulary(self, output_dir):
        state = json.loads((pathlib.Path(output_dir) / STATE_FILE).read_text(encoding="utf-8"))
        self.has_no_answer = state["has_no_answer"]
        if self.config.task.null_threshold is None:
            self.null_threshold = state["null_threshold"]

    def describe(self):
        kind = "with unanswerable questions (SQuAD v2.0)" if self.has_no_answer else "every question answerable"
        return f"extractive QA, {kind}"

    def encode(self, examples):
        """The first answer's UTF-8 byte offsets in its context, `[start, end)`, int64 `[n, 2]`; -1 for no answer."""
        targets = np.full([len(examples), 2], -1, np.int64)
        for i, (context, label) in enumerate(zip(examples.pairs, examples.labels, strict=True)):
            if label["answers"] and not label["is_impossible"]:
                answer = label["answers"][0]
                start = len(context[: answer["answer_start"]].encode("utf-8"))
                targets[i] = start, start + len(answer["text"].encode("utf-8"))
        return targets

    def inputs(self, examples):
        return {"question": examples.texts, "context": examples.pairs}

    def input_names(self):
        return ("question", "context")

    # --- Windows ---------------------------------------------------------

    def _tokenizer(self, packer):
        return packer.with_offsets("Extractive QA", _FIX)

    def check_packer(self, packer):
        separators = len(self._tokenizer(packer).separator_ids)
        _check_doc_stride(self.config.task, packer.sequence_length, separators,
                          f" (this backbone puts {separators} tokens between question and context)")

    def windows(self, packer, question, context, answers=None) -> dict[str, tf.Tensor]:
        """Cuts each question's context into overlapping windows and packs them, in the graph.

        Args:
            packer: `TextPacker`. The backbone's packer (WordPiece, SentencePiece or byte-level BPE).
            question: `string[batch]`.
            context: `string[batch]`.
            answers: int `[batch, 2]` or None. Answer byte offsets, `[start,
                end)`; -1 for no answer.

        Returns:
            A dict: `features` (the packer's int32 inputs, `[windows,
            sequence_length]`), `example` (each window's question, int32
            `[windows]`, ascending), `byte_start` / `byte_end` (each
            position's byte offsets in its context, -1 outside the context,
            int64 `[windows, sequence_length]`), `question_length` and, with
            `answers`, `labels` (int32 `[windows, 2]`: the answer's first and
            last token, or 0, 0).
        """
        tokenizer = self._tokenizer(packer)
        tc = self.config.task
        length = packer.sequence_length
        q_ids = tokenizer.tokenize(question)
        q_full = tf.cast(q_ids.row_lengths(), tf.int32)
        q_ids = q_ids[:, : tc.max_question_length]
        c_ids, c_starts, c_ends = tokenizer.tokenize_with_offsets(context)
        q_len = tf.cast(q_ids.row_lengths(), tf.int32)
        n_context = tf.cast(c_ids.row_lengths(), tf.int32)
        separators = len(tokenizer.separator_ids)
        room = length - 2 - separators - q_len  # context tokens per window
        count, example, start, take = _window_spans(room, room - tc.doc_stride, n_context)
        index = tf.ragged.range(start, start + take)
        index = index.with_flat_values(
            index.flat_values + tf.repeat(tf.gather(tf.cast(c_ids.row_splits, tf.int32), example), take)
        )
        win_ids = tf.gather(tf.cast(c_ids.flat_values, tf.int32), index)
        win_starts = tf.gather(c_starts.flat_values, index)
        win_ends = tf.gather(c_ends.flat_values, index)

        positions = tf.range(length, dtype=tf.int32)[tf.newaxis, :]
        q_window = tf.gather(q_len, example)[:, tf.newaxis]
        offset = q_window + 1 + separators  # [CLS] question [SEP] (RoBERTa: </s></s>)
        ends = offset + take[:, tf.newaxis]  # the final [SEP]
        in_question = (positions >= 1) & (positions <= q_window)
        in_context = (positions >= offset) & (positions < ends)
        q_dense = tf.gather(q_ids, example).to_tensor(tokenizer.pad_id, shape=[None, length])
        ids = tf.where(positions == 0, tokenizer.start_id, tokenizer.pad_id)
        ids = tf.where(in_question, shifted(tf.cast(q_dense, tf.int32), positions - 1), ids)
        for i, separator in enumerate(tokenizer.separator_ids):
            ids = tf.where(positions == q_window + 1 + i, separator, ids)
        ids = tf.where(in_context, shifted(win_ids.to_tensor(tokenizer.pad_id, shape=[None, length]), positions - offset), ids)
        ids = tf.where(positions == ends, tokenizer.end_id, ids)
        padding_mask = tf.cast(positions <= ends, tf.int32)
        packed = {
            "token_ids": ids,
            "segment_ids": tf.cast((positions >= offset) & (positions <= ends), tf.int32),
            "padding_mask": padding_mask,
        }
        result = {
            "features": {name: packed[name] for name in tokenizer.input_names},
            "example": example,
            "byte_start": tf.where(in_context, shifted(win_starts.to_tensor(-1, shape=[None, length]), positions - offset), -1),
            "byte_end": tf.where(in_context, shifted(win_ends.to_tensor(-1, shape=[None, length]), positions - offset), -1),
            "question_length": q_full,
            "count": count,
        }
        if answers is not None:
            result["labels"] = _answer_labels(tf.cast(answers, tf.int64), c_starts, c_ends, example, start, take,
                                              offset[:, 0])
        return result

    def pack(self, packer, inputs, targets=None):
        windows = self.windows(packer, inputs["question"], inputs["context"], targets)
        return windows["features"] if targets is None else (windows["features"], windows["labels"])

    def _count_windows(self, packer, examples):
        def count(batch):
            w = self.windows(packer, batch["question"], batch["context"])
            return w["count"], w["question_length"]

        ds = data.batched_inputs(self.inputs(examples), 1024).map(count)
        parts = [(c.numpy(), q.numpy()) for c, q in ds]
        if not parts:
            return np.zeros([0], np.int32), np.zeros([0], np.int32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def prepare(self, examples, packer):
        """Counts each question's windows once: the epoch length, the pipeline's size and the log's `WindowStats`."""
        counts, question_lengths = self._count_windows(packer, examples)
        tc = self.config.task
        stats = WindowStats(
            examples=len(examples), windows=int(counts.sum()),
            truncated=int((question_lengths > tc.max_question_length).sum()),
            longest_question=int(question_lengths.max(initial=0)), max_question_length=tc.max_question_length,
            sequence_length=packer.sequence_length, doc_stride=tc.doc_stride,
        )
        return data.PreparedSplit(examples, stats.windows, stats)

    # --- Model and outputs -----------------------------------------------

    def head(self, backbone_outputs, dropout, backbone):
        # No dropout on the token vectors, as in BERT's run_squad.py and `BertForQuestionAnswering`.
        del dropout, backbone
        logits = dense_head(backbone_outputs["sequence_output"], 2, 0.0)
        return MaskPadding(name="mask_padding")(logits, backbone_outputs["padding_mask"])

    def loss(self):
        return SpanLoss()

    def soft_loss(self, student, teacher, sample_weight, temperature):
        """The mean of the start and the end position's softened KL (`softened_kl` over the positions)."""
        del sample_weight
        per_window = softened_kl(student, teacher, temperature, axis=1)  # [batch, 2]: start, end
        return tf.reduce_mean(per_window)

    def postprocess(self, logits):
        return {"start_logits": logits[:, :, 0], "end_logits": logits[:, :, 1]}

    def outputs(self, model, packer, inputs):
        return self._answers(model, inputs, self.windows(packer, inputs["question"], inputs["context"]))[0]

    def labelled_outputs(self, model, packer, inputs, targets):
        """The answers, and each window's logits with its answer's tokens: Keras' per-window loss, in one pass."""
        windows = self.windows(packer, inputs["question"], inputs["context"], targets)
        outputs, features, logits = self._answers(model, inputs, windows)
        return outputs, LabelledBatch(features, windows["labels"], None, logits)

    def _answers(self, model, inputs, windows):
        """The questions' answers from their packed `windows`; with the trimmed features and the windows' logits."""
        question, context = inputs["question"], inputs["context"]
        features = windows["features"]
        longest = tf.maximum(tf.reduce_max(tf.reduce_sum(features["padding_mask"], axis=1)), 1)
        features = {name: value[:, :longest] for name, value in features.items()}
        byte_start, byte_end = windows["byte_start"][:, :longest], windows["byte_end"][:, :longest]
        logits = tf.cast(model(features, training=False), tf.float32)
        start_logits, end_logits = logits[:, :, 0], logits[:, :, 1]
        candidates = self._window_candidates(start_logits, end_logits, byte_start, byte_end, longest)
        best_scores, best_start, best_end, found = self._question_candidates(windows["count"], *candidates)
        answers, char_start, char_end = _answer_strings(context, best_start, best_end, found)
        null = tf.math.unsorted_segment_min(
            start_logits[:, 0] + end_logits[:, 0], windows["example"], tf.shape(question)[0]
        )
        null_diff = null - best_scores[:, 0]
        no_answer = (null_diff > self.null_threshold) if self.has_no_answer else tf.zeros_like(found[:, 0])
        outputs = {
            "answer": tf.where(no_answer, "", answers[:, 0]),
            "start": tf.where(no_answer, -1, char_start[:, 0]),
            "end": tf.where(no_answer, -1, char_end[:, 0]),
            "score": best_scores[:, 0],
            "null_score_diff": null_diff,
            "nbest_answers": answers,
            "nbest_starts": char_start,
            "nbest_ends": char_end,
            "nbest_scores": best_scores,
            # The context is read whole, in windows; a question is cut at `task.max_question_length`.
            "truncated_question_tokens": tf.maximum(windows["question_length"] - self.config.task.max_question_length, 0),
        }
        return outputs, features, logits

    def _window_candidates(self, start_logits, end_logits, byte_start, byte_end, longest):
        """Each window's best `n_best` spans of at most `max_answer_length` context tokens: scores, byte bounds."""
        tc = self.config.task
        # Every span of at most max_answer_length context tokens, per window: [windows, length, max_answer_length].
        span = tf.range(tc.max_answer_length)
        end_index = tf.range(longest)[:, tf.newaxis] + span[tf.newaxis, :]
        end_clipped = tf.minimum(end_index, longest - 1)
        in_context = byte_start >= 0
        valid = (
            in_context[:, :, tf.newaxis]
            & tf.gather(in_context, end_clipped, axis=1)
            & (end_index < longest)[tf.newaxis]
        )
        scores = start_logits[:, :, tf.newaxis] + tf.gather(end_logits, end_clipped, axis=1)
        scores = tf.where(valid, scores, -np.inf)
        flat = tf.reshape(scores, [tf.shape(scores)[0], -1])
        n = tc.n_best
        flat = tf.concat([flat, tf.fill([tf.shape(flat)[0], n], -np.inf)], axis=1)  # at least n candidates
        top_scores, top_index = tf.math.top_k(flat, k=n)
        first = top_index // tc.max_answer_length
        last = tf.minimum(first + top_index % tc.max_answer_length, longest - 1)
        first = tf.minimum(first, longest - 1)
        return top_scores, tf.gather(byte_start, first, batch_dims=1), tf.gather(byte_end, last, batch_dims=1)

    def _question_candidates(self, count, top_scores, cand_start, cand_end):
        """A question's candidates from all its windows: the best n, each span once (scores, bounds, found)."""
        n = self.config.task.n_best
        by_question = lambda t: tf.RaggedTensor.from_row_lengths(tf.reshape(t, [-1]), count * n)  # noqa: E731
        q_scores = by_question(top_scores).to_tensor(-np.inf)
        q_start = by_question(cand_start).to_tensor(-1)
        q_end = by_question(cand_end).to_tensor(-1)
        same = (q_start[:, :, tf.newaxis] == q_start[:, tf.newaxis, :]) & (q_end[:, :, tf.newaxis] == q_end[:, tf.newaxis, :])
        ahead = (q_scores[:, tf.newaxis, :] > q_scores[:, :, tf.newaxis]) | (
            (q_scores[:, tf.newaxis, :] == q_scores[:, :, tf.newaxis])
            & (tf.range(tf.shape(q_scores)[1])[tf.newaxis, :] < tf.range(tf.shape(q_scores)[1])[:, tf.newaxis])
        )
        duplicate = tf.reduce_any(same & ahead, axis=2)  # the same span from another window, scored higher
        q_scores = tf.where(duplicate, -np.inf, q_scores)
        best_scores, order = tf.math.top_k(q_scores, k=n)
        found = best_scores > -np.inf
        best_start = tf.where(found, tf.gather(q_start, order, batch_dims=1), 0)
        best_end = tf.where(found, tf.gather(q_end, order, batch_dims=1), 0)
        return best_scores, best_start, best_end, found

    def serving_signatures(self, model, packer):
        def serving_default(question, context):
            return self.outputs(model, packer, {"question": question, "context": context})

        specs = [tf.TensorSpec([None], tf.string, name="question"), tf.TensorSpec([None], tf.string, name="context")]
        return {"serving_default": (serving_default, specs)}

    def warmup_inputs(self, count):
        pairs = [
            ("Where is the tower?", "The tower stands in Paris, on the left bank of the Seine."),
            ("Who wrote it?", ""),
        ]
        return [
            {"question": [pairs[j % 2][0] for j in range(i, i + 2)], "context": [pairs[j % 2][1] for j in range(i, i + 2)]}
            for i in range(count)
        ]

    # --- Scores ----------------------------------------------------------

    def calibrate(self, examples, outputs):
        """SQuAD v2.0: the no-answer threshold that maximizes F1 on `examples`, unless the config sets one."""
        if not self.has_no_answer or self.config.task.null_threshold is not None:
            return
        golds = _golds(examples)
        diffs = np.asarray(outputs["null_score_diff"], np.float64)
        spans = decode(outputs["nbest_answers"][:, 0])
        best, best_f1 = 0.0, -1.0
        for threshold in sorted({0.0, *diffs.tolist()}):
            predicted = ["" if d > threshold else s for d, s in zip(diffs, spans, strict=True)]
            f1 = metrics.squad_metrics(golds, predicted)["f1"]
            if f1 > best_f1:
                best, best_f1 = float(threshold), f1
        self.null_threshold = best

    def score(self, examples, outputs):
        scores = metrics.squad_metrics(_golds(examples), decode(outputs["answer"]))
        if self.has_no_answer:
            scores["null_threshold"] = self.null_threshold
        return scores

    def report(self, scores):
        return metrics.format_squad_metrics(scores)

    def logged_scores(self, scores):
        return {"exact_match": scores["exact_match"], "f1": scores["f1"]}

    # --- Predict ---------------------------------------------------------

    @classmethod
    def prediction_frame(cls, path):
        """`tfft predict --input`: SQuAD JSON (plain or zipped) as `id, question, context` rows, else a table."""
        lowered = str(path).lower()
        if lowered.endswith((".json", ".zip")):
            questions, _ = read_squad(path, labelled=False)
            check_squad(questions, str(path), labelled=False)
            return pd.DataFrame({k: [q[k] for q in questions] for k in ("id", "question", "context")})
        return None

    @classmethod
    def prediction_columns(cls, outputs, metadata, inputs):
        nbest = []
        for i in range(len(inputs["question"])):
            candidates = [
                {"text": text, "start": int(s), "end": int(e), "score": round(float(score), 4)}
                for text, s, e, score in zip(
                    decode(outputs["nbest_answers"][i]), outputs["nbest_starts"][i], outputs["nbest_ends"][i],
                    outputs["nbest_scores"][i], strict=True,
                )
                if s >= 0
            ]
            nbest.append(json.dumps(candidates, ensure_ascii=False))
        return {
            "answer": decode(outputs["answer"]),
            "start": np.asarray(outputs["start"]).tolist(),
            "end": np.asarray(outputs["end"]).tolist(),
            "score": np.round(np.asarray(outputs["score"], np.float64), 4).tolist(),
            "nbest": nbest,
        }


def _golds(examples: data.Examples) -> list[list[str]]:
    return [
        [""] if label["is_impossible"] or not label["answers"] else [a["text"] for a in label["answers"]]
        for label in examples.labels
    ]


def _answer_strings(context, best_start, best_end, found):
    """The candidates' text and character bounds in their context ("" and -1 where none was found)."""
    contexts = tf.broadcast_to(context[:, tf.newaxis], tf.shape(best_start))
    answers = tf.strings.substr(contexts, best_start, best_end - best_start)
    char_start = tf.strings.length(tf.strings.substr(contexts, tf.zeros_like(best_start), best_start), unit="UTF8_CHAR")
    char_end = char_start + tf.strings.length(answers, unit="UTF8_CHAR")
    answers = tf.where(found, answers, "")
    return answers, tf.where(found, char_start, -1), tf.where(found, char_end, -1)


def _window_spans(room, step, n_context):
    """Where each window starts in its context, and how many context tokens it takes.

    Args:
        room: int32 `[questions]`. Context tokens a window of the question holds.
        step: int32 `[questions]`. Tokens between the starts of two windows (`room - doc_stride`).
        n_context: int32 `[questions]`. Tokens in the question's context.

    Returns:
        `(count, example, start, take)`: windows per question `[questions]`, and per window its question,
        first context token and number of context tokens, `[windows]`.
    """
    count = 1 + tf.maximum(0, (n_context - room + step - 1) // step)
    example = tf.repeat(tf.range(tf.shape(room)[0]), count)
    start = tf.ragged.range(count).flat_values * tf.gather(step, example)
    take = tf.maximum(0, tf.minimum(tf.gather(room, example), tf.gather(n_context, example) - start))
    return count, example, start, take


def _answer_labels(answers, c_starts, c_ends, example, start, take, offset):
    """Each window's answer as its first and last token's position, or `0, 0` when the window lacks it.

    `answers` are byte offsets `[questions, 2]` (-1: none); `c_starts`/`c_ends` the context tokens' byte offsets
    (ragged); `offset` the position of each window's first context token.
    """
    first = tf.reduce_sum(tf.cast(c_starts <= answers[:, :1], tf.int32), axis=1) - 1
    last = tf.reduce_sum(tf.cast(c_ends < answers[:, 1:], tf.int32), axis=1)
    first_w, last_w = tf.gather(first, example) - start, tf.gather(last, example) - start
    inside = (
        (tf.gather(answers[:, 0], example) >= 0) & (tf.gather(first, example) >= 0)
        & (first_w >= 0) & (last_w < take) & (first_w <= last_w)
    )
    return tf.stack([tf.where(inside, first_w + offset, 0), tf.where(inside, last_w + offset, 0)], axis=1)
