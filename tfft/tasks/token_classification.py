"""Token classification (NER): a tag per word, predicted on each word's first word piece."""

from __future__ import annotations

import json
import logging
import unicodedata

import keras
import numpy as np
import tensorflow as tf

from tfft import data, metrics
from tfft.errors import DataError
from tfft.tasks.base import (
    LabelledBatch,
    Task,
    WeightedTokenCrossentropy,
    decode,
    dense_head,
    log_mean_softmax,
    softened_kl,
    trim_to_longest,
)

logger = logging.getLogger(__name__)

#: Punctuation that serving splits off as words of their own: ASCII symbols and Unicode punctuation,
#: the characters BERT's basic tokenizer splits on.
PUNCTUATION = r"[!-/:-@\[-`{-~\p{P}]"
_PREFIXES = {"iob1": ("B", "I"), "iob2": ("B", "I"), "iobes": ("B", "I", "E", "S")}


def split_words(text: tf.Tensor) -> tuple[tf.RaggedTensor, tf.RaggedTensor, tf.RaggedTensor]:
    """Splits raw text into words the way serving does: at whitespace, and around each punctuation mark.

    "U.N. official Ekeus heads for Baghdad." gives `U . N . official Ekeus
    heads for Baghdad .`. Returns `(words, starts, ends)`, ragged `[batch,
    (words)]`, with each word's UTF-8 byte offsets in its text.
    """
    import tensorflow_text as tf_text

    return tf_text.regex_split_with_offsets(
        text, delim_regex_pattern=r"\s+|" + PUNCTUATION, keep_delim_regex_pattern=PUNCTUATION
    )


class TokenClassification(Task):
    """`task.type: token_classification`: one tag per word, e.g. CoNLL-2003 NER.

    Input is a CoNLL column file (a word per line, the tag in
    `task.tag_column`, blank lines between sentences, `-DOCSTART-` skipped) or
    JSONL with `{"tokens": [...], "tags": [...]}`. Each word is tokenized on
    its own; its tag goes on its first word piece, and later pieces, special
    tokens and padding are left out of the loss and the metrics. Words cut
    off by `model.sequence_length` are counted and reported.

    Serving: `serving_default` takes raw `text` `string[batch]`, splits it
    into words (`split_words`) and returns `words` and `tags`
    `string[batch, max_words]` padded with "", `word_count` `int32[batch]`,
    `truncated_words` `int32[batch]` (words past the sequence length, tagged
    `O`), and `word_starts` / `word_ends`, each word's UTF-8 byte offsets in
    its text (-1 as padding). `serve_words` takes words already split,
    `string[batch, max_words]` padded with "".
    """

    type = "token_classification"
    monitor = ("f1", "max")
    litert_unsupported = (
        "its word splitting (TensorFlow Text's `regex_split_with_offsets`) and span decoding have no TFLite kernels"
    )
    sequence_targets = True
    uses_pooled_output = False

    def __init__(self, config):
        super().__init__(config)
        self.tags: list[str] | None = None

    # --- Reading ---------------------------------------------------------

    def read(self, spec, split="train", labelled=True):
        tc = self.config.task
        if spec.startswith(data.TFDS_PREFIX):
            raise DataError(
                f"`{spec}`: token classification reads CoNLL column files or JSONL "
                '(`{"tokens": [...], "tags": [...]}`), not TFDS data sets.'
            )
        if spec.lower().endswith((".jsonl", ".json")):
            words, tags, lines = self._read_jsonl(spec, labelled)
        else:
            words, tags, lines = data.read_conll(spec, tc.tag_column)
        examples = data.Examples(
            spec, [" ".join(w) for w in words], labels=tags if labelled else None, words=words, lines=lines
        )
        _check_tokens(examples)
        if labelled:
            self._check_scheme(examples)
        return data.limit_train_examples(examples, self.config.data, split)

    def _read_jsonl(self, spec, labelled):
        tc = self.config.task
        frame = data.read_table(spec)
        keys = {"task.tokens_key": tc.tokens_key, "task.tags_key": tc.tags_key if labelled else None}
        data.require_columns(frame, spec, self.config.data, keys)
        words, tags, bad = [], [], []
        for i, row in enumerate(frame.to_dict("records")):
            try:
                row_words = _string_list(row[tc.tokens_key])
                row_tags = _string_list(row[tc.tags_key]) if labelled else row_words
            except ValueError:
                bad.append((f"line {i + 1}", "tokens and tags must be JSON lists of strings"))
                continue
            if not row_words:
                bad.append((f"line {i + 1}", "no tokens"))
            elif len(row_tags) != len(row_words):
                bad.append((f"line {i + 1}", f"{len(row_words)} tokens but {len(row_tags)} tags"))
            words.append(row_words)
            tags.append(row_tags)
        if bad:
            raise data.rows_error(spec, "has unusable rows", bad, "Each row needs one tag per token.")
        return words, tags, list(range(1, len(words) + 1))

    def _check_scheme(self, examples):
        scheme = self.config.task.tag_scheme
        prefixes = _PREFIXES[scheme]
        bad = []
        for i, tags in enumerate(examples.labels):
            for j, tag in enumerate(tags):
                prefix, dash, kind = tag.partition("-")
                if tag != "O" and not (prefix in prefixes and dash and kind):
                    bad.append((_word_line(examples, i, j), tag))
        if bad:
            allowed = ", ".join(f"{p}-TYPE" for p in prefixes)
            raise data.rows_error(
                examples.source, f"has tags outside the {scheme.upper()} scheme", bad,
                f"Tags must be O or {allowed}; set `task.tag_scheme` (iob1, iob2, iobes) or `task.tag_column`.",
            )
        if scheme == "iob2":
            self._warn_orphan_inside_tags(examples)

    @staticmethod
    def _warn_orphan_inside_tags(examples):
        """IOB2 starts every entity with B-: an I- after O or after another type is a data error, or IOB1 data."""
        orphans = [
            (_word_line(examples, i, j), tag) for i, tags in enumerate(examples.labels) for j, tag in enumerate(tags)
            if tag.startswith("I-") and (j == 0 or tags[j - 1][2:] != tag[2:])
        ]
        if orphans:
            shown = ", ".join(f"{where}: {tag!r}" for where, tag in orphans[:5])
            logger.warning(
                "`%s` has %d I- tags that start an entity (%s%s), which IOB2 starts with B-. Scores count each as an "
                "entity (conlleval). If the file is IOB1, set `task.tag_scheme: iob1`.", examples.source,
                len(orphans), shown, " ..." if len(orphans) > 5 else "",
            )

    # --- Vocabulary and targets -------------------------------------------

    def fit_vocabulary(self, train):
        seen = {tag for tags in train.labels for tag in tags}
        self.tags = ["O", *sorted(seen - {"O"})]

    @property
    def label_names(self):
        return self.tags

    def load_vocabulary(self, output_dir):
        self.tags = data.LabelVocabulary.load(output_dir, minimum=1).names

    def describe(self):
        return f"{len(self.tags)} tags: {', '.join(self.tags)}"

    def encode(self, examples):
        ids = {tag: i for i, tag in enumerate(self.tags)}
        unknown = [
            (_word_line(examples, i, j), tag)
            for i, tags in enumerate(examples.labels)
            for j, tag in enumerate(tags)
            if tag not in ids
        ]
        if unknown:
            raise data.rows_error(
                examples.source, "has tags that the training split never had", unknown,
                f"Known tags: {self.tags}. Fix those words or add examples of the tag to the training data.",
            )
        flat = [ids[tag] for tags in examples.labels for tag in tags]
        return tf.RaggedTensor.from_row_lengths(
            tf.constant(flat, tf.int32), [len(tags) for tags in examples.labels]
        )

    def inputs(self, examples):
        flat = [word for words in examples.words for word in words]
        words = tf.RaggedTensor.from_row_lengths(tf.constant(flat, tf.string), [len(w) for w in examples.words])
        return {"words": words}

    def pack(self, packer, inputs, targets=None):
        features, first, _ = packer.pack_words(inputs["words"])
        return features if targets is None else (features, *_piece_targets(features, first, targets))

    def prepare(self, examples, packer):
        """Counts the examples, and the words, that `model.sequence_length` cuts off."""

        def counts(inputs):
            _, first, lengths = packer.pack_words(inputs["words"])
            words = tf.cast(first.row_lengths(), tf.int32)
            return lengths, words, tf.reduce_sum(tf.cast(first < 0, tf.int32), axis=1)

        return data.PreparedSplit(examples, len(examples), data.truncation_stats(examples, packer, self.inputs(examples), counts))

    # --- Model and outputs -----------------------------------------------

    def head(self, backbone_outputs, dropout, backbone):
        del backbone
        return dense_head(backbone_outputs["sequence_output"], len(self.tags), dropout)

    def loss(self):
        # Averaged over the labelled word pieces of the whole global batch, not over every padded position.
        return WeightedTokenCrossentropy()

    def weighted_metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="token_accuracy")]

    def soft_loss(self, student, teacher, sample_weight, temperature):
        """The softened KL per word piece (`softened_kl`), averaged over the labelled pieces (each word's first)."""
        weights = tf.cast(sample_weight, tf.float32)
        per_piece = softened_kl(student, teacher, temperature)
        return tf.math.divide_no_nan(tf.reduce_sum(per_piece * weights), tf.reduce_sum(weights))

    def combine_logits(self, logits):
        return log_mean_softmax(logits)

    def postprocess(self, logits):
        return {"tag_ids": tf.argmax(logits, axis=-1, output_type=tf.int32)}

    def outputs(self, model, packer, inputs):
        features, first, _ = packer.pack_words(inputs["words"])
        logits = tf.cast(model(trim_to_longest(features), training=False), tf.float32)
        return self._word_tags(inputs["words"], first, logits)

    def labelled_outputs(self, model, packer, inputs, targets):
        features, first, _ = packer.pack_words(inputs["words"])
        labels, weights = _piece_targets(features, first, targets)
        features = trim_to_longest(features)
        length = tf.shape(features["padding_mask"])[1]
        logits = tf.cast(model(features, training=False), tf.float32)
        labelled = LabelledBatch(features, labels[:, :length], weights[:, :length], logits)
        return self._word_tags(inputs["words"], first, logits), labelled

    def _word_tags(self, words, first, logits):
        """Each word's tag (its first piece's; "O" past the cut), with the words, from a batch's logits."""
        tag_ids = self.postprocess(logits)["tag_ids"]
        position = first.flat_values
        valid = position >= 0
        index = tf.stack([tf.cast(first.value_rowids(), tf.int32), tf.maximum(position, 0)], axis=1)
        index = tf.minimum(index, tf.stack([tf.shape(tag_ids)[0] - 1, tf.shape(tag_ids)[1] - 1]))
        tags = tf.where(valid, tf.gather(tf.constant(self.tags), tf.gather_nd(tag_ids, index)), "O")
        return {
            "words": words.to_tensor(""),
            "tags": first.with_flat_values(tags).to_tensor(""),
            "word_count": tf.cast(words.row_lengths(), tf.int32),
            "truncated_words": tf.reduce_sum(tf.cast(first < 0, tf.int32), axis=1),
        }

    def input_names(self):
        return ("text",)

    def serving_signatures(self, model, packer):
        def serving_default(text):
            words, starts, ends = split_words(text)
            outputs = self.outputs(model, packer, {"words": words})
            outputs["word_starts"] = tf.cast(starts.to_tensor(-1), tf.int32)
            outputs["word_ends"] = tf.cast(ends.to_tensor(-1), tf.int32)
            return outputs

        def serve_words(words):
            return self.outputs(model, packer, {"words": tf.RaggedTensor.from_tensor(words, padding="")})

        return {
            "serving_default": (serving_default, [tf.TensorSpec([None], tf.string, name="text")]),
            "serve_words": (serve_words, [tf.TensorSpec([None, None], tf.string, name="words")]),
        }

    def warmup_inputs(self, count):
        texts = ["tfft warmup request from Berlin.", "", "Angela Merkel met Emmanuel Macron in Paris on Monday."]
        return [{"text": [texts[j % len(texts)] for j in range(i, i + 2)]} for i in range(count)]

    def collect(self, batches):
        tags, truncated = [], []
        for batch in batches:
            for row, count in zip(batch["tags"], batch["word_count"], strict=True):
                tags.append(decode(row[:count]))
            truncated.append(batch["truncated_words"])
        return {"tags": tags, "truncated_words": np.concatenate(truncated) if truncated else np.zeros([0], np.int32)}

    def score(self, examples, outputs):
        scores = metrics.entity_metrics(examples.labels, outputs["tags"])
        scores["truncated_words"] = int(np.sum(outputs["truncated_words"]))
        return scores

    def report(self, scores):
        table = metrics.format_entity_metrics(scores)
        if scores.get("truncated_words"):
            table += f"\n{scores['truncated_words']} words were past model.sequence_length and were tagged O."
        return table

    def logged_scores(self, scores):
        return {k: scores[k] for k in ("precision", "recall", "f1", "token_accuracy")}

    @classmethod
    def prediction_columns(cls, outputs, metadata, inputs):
        texts = inputs["text"]
        entities, tag_column = [], []
        for i, text in enumerate(texts):
            n = int(outputs["word_count"][i])
            tags = decode(outputs["tags"][i][:n])
            encoded = text.encode("utf-8")
            spans = []
            for kind, first, last in metrics.entities(tags):
                start = _char_offset(encoded, int(outputs["word_starts"][i][first]))
                end = _char_offset(encoded, int(outputs["word_ends"][i][last]))
                spans.append({"text": text[start:end], "type": kind, "start": start, "end": end})
            entities.append(json.dumps(spans, ensure_ascii=False))
            tag_column.append(" ".join(tags))
        columns = {"entities": entities, "tags": tag_column}
        if "truncated_words" in outputs:  # words past model.sequence_length, tagged O
            columns["truncated_words"] = np.asarray(outputs["truncated_words"]).astype(int).tolist()
        return columns


def _check_tokens(examples) -> None:
    """Fails naming the words with no visible character (empty, spaces, zero-width): they would get no prediction.

    Such a word has no word piece, so it was tagged `O` and counted as cut by the sequence length.
    """
    bad = [(_word_line(examples, i, j), word) for i, words in enumerate(examples.words) for j, word in enumerate(words)
           if all(c.isspace() or unicodedata.category(c) in ("Cf", "Cc") for c in word)]
    if bad:
        raise data.rows_error(examples.source, "has tokens with no visible character", bad,
                              "Remove those tokens (and their tags), or replace them with the text they stand for.")


def _char_offset(encoded: bytes, byte_offset: int) -> int:
    """A UTF-8 byte offset (what TensorFlow's string ops give) as a character offset."""
    return len(encoded[:byte_offset].decode("utf-8", errors="ignore"))


def _string_list(cell) -> list[str]:
    values = json.loads(cell) if isinstance(cell, str) and cell.startswith("[") else None
    if not isinstance(values, list) or not all(isinstance(v, (str, int, float)) for v in values):
        raise ValueError(cell)
    return [str(v) for v in values]


def _piece_targets(features: dict, first: tf.RaggedTensor, targets: tf.RaggedTensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-piece tag ids and weights, `features`' shape: each word's tag on its first piece, weight 1 there, else 0."""
    shape = tf.shape(features["token_ids"])
    valid = first.flat_values >= 0
    index = tf.stack([tf.cast(first.value_rowids(), tf.int32)[valid], first.flat_values[valid]], axis=1)
    labels = tf.scatter_nd(index, tf.cast(targets.flat_values, tf.int32)[valid], shape)
    weights = tf.scatter_nd(index, tf.ones(tf.shape(index)[:1], tf.float32), shape)
    return labels, weights


def _word_line(examples: data.Examples, sentence: int, word: int) -> str:
    """Where word `word` of sentence `sentence` is: its own line in a CoNLL file."""
    if examples.lines is not None and not examples.source.lower().endswith((".jsonl", ".json")):
        return f"line {examples.lines[sentence] + word}"
    return f"{examples.where(sentence)}, word {word + 1}"
