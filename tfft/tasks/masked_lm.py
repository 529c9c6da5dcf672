"""Masked-LM adaptation: continued pretraining on unlabelled in-domain text (`tfft adapt`).

BERT's recipe (Devlin et al., 2019): `task.mask_rate` (15%) of each
sequence's word pieces are chosen, never special tokens or padding; of those,
80% become the mask token, 10% a random token and 10% stay as they are, and
the model predicts the original pieces. `task.whole_word_masking` chooses
whole words (WordPiece) instead. Masks are drawn in the graph from the run's
seed and each text, so a split is masked the same way every time it is read:
perplexity before and after adaptation is measured on the same masks.

The head is keras-hub's `MaskedLMHead` (dense, GELU, LayerNorm, then the token
embedding transposed), on float32 logits. A checkpoint that holds a pretrained
head (Hugging Face BERT's `cls.predictions`, or a folder `tfft adapt` wrote)
starts from it; one without (all-MiniLM-L6-v2) gets a freshly initialized
head, and the log says so.

Serving (`serving_default(text)`) fills the first mask token written in the
text (`[MASK]` for BERT): `top_tokens` and `top_probabilities` `[batch, 5]`,
`mask_count` (masks within `model.sequence_length`) and `truncated_tokens`
(pieces past it, which the model did not read: a mask there is not filled).
"""

from __future__ import annotations

import logging
import math

import keras
import numpy as np
import tensorflow as tf

from tfft import data
from tfft.backbones.base import vocabulary_by_id
from tfft.config import check
from tfft.errors import ConfigError, DataError
from tfft.tasks.base import (
    Task,
    WeightedTokenCrossentropy,
    decode,
    log_mean_softmax,
    trim_to_longest,
)

logger = logging.getLogger(__name__)

#: Candidates `serving_default` returns for the first mask.
TOP_K = 5


def read_corpus(spec: str, config) -> data.Examples:
    """Unlabelled texts: a `.txt` file with one document per line (blank lines skipped), or a table's text column."""
    if spec.lower().endswith(".txt"):
        text = data.read_text(spec)
        lines = text.split("\n")
        kept = [(i + 1, line.strip()) for i, line in enumerate(lines) if line.strip()]
        examples = data.Examples(spec, [t for _, t in kept], lines=[n for n, _ in kept])
    else:
        frame = data.read_frame(spec, config.data, "train", [])
        texts, _ = data.text_columns(frame, spec, config.data)
        examples = data.Examples(spec, texts)
    if not examples.texts:
        raise DataError(
            f"Data file `{spec}` holds no text: masked-LM adaptation needs a `.txt` file with one document per line, "
            f"or a table with a `{config.data.text_column}` column (`data.text_column`)."
        )
    return examples


class MaskedLM(Task):
    """`task.type: masked_lm`: predicts masked word pieces of unlabelled text (domain-adaptive pretraining).

    `tfft adapt --config=...` runs it and writes the adapted backbone as a
    keras-hub preset folder that `model.backbone` loads (`tfft.adapt`).
    """

    type = "masked_lm"
    distill_unsupported = "masked-LM adaptation is not distilled; distill the task you fine-tune after it"
    monitor = ("loss", "min")
    monitor_in_keras = True
    one_validation_pass = False  # its targets are drawn in `pack`; its monitored loss is Keras' own
    sequence_targets = True  # labels and weights per predicted position, trimmed with the features
    uses_pooled_output = False
    litert_unsupported = "a masked-LM export serves mask filling, which tfft exports as a SavedModel only"

    @classmethod
    def check_config(cls, config):
        k, length = config.task, config.model.sequence_length
        check(0.0 < k.mask_rate < 1.0, "task.mask_rate", k.mask_rate, "must be in (0, 1)")
        if k.max_predictions is not None:
            check(1 <= k.max_predictions <= length, "task.max_predictions", k.max_predictions,
                  f"must be between 1 and model.sequence_length ({length}), or null")

    # --- Data ------------------------------------------------------------

    def read(self, spec, split="train", labelled=True):
        del labelled  # the targets are the text itself
        return data.limit_train_examples(read_corpus(spec, self.config), self.config.data, split)

    def describe(self):
        tc = self.config.task
        words = "whole words" if tc.whole_word_masking else "word pieces"
        return f"masked LM, {tc.mask_rate:.0%} of {words} predicted (80% masked, 10% random, 10% kept)"

    def encode(self, examples):
        return np.zeros([len(examples)], np.int32)  # the targets are drawn in `pack`

    def max_predictions(self, packer) -> int:
        tc = self.config.task
        return tc.max_predictions or max(1, math.ceil(0.2 * packer.sequence_length))

    def check_packer(self, packer):
        tokenizer = packer.tokenizer
        if getattr(tokenizer, "mask_token_id", None) is None:
            raise ConfigError(f"Masked-LM adaptation needs a tokenizer with a mask token; `{type(tokenizer).__name__}` has none.")
        if self.config.task.whole_word_masking and not hasattr(tokenizer, "suffix_indicator"):
            raise ConfigError(
                "Argument `task.whole_word_masking` needs a WordPiece tokenizer (word continuations marked by `##`); "
                f"this backbone's is `{type(tokenizer).__name__}`. Received: whole_word_masking=True"
            )

    def mask(self, packer, features: dict, seeds: tf.Tensor) -> tuple[dict, tf.Tensor, tf.Tensor]:
        """Chooses and corrupts the pieces to predict, in the graph.

        Args:
            packer: `TextPacker`.
            features: the packer's int32 inputs, `[batch, sequence_length]`.
            seeds: int32 `[batch]`. One seed per sequence (from its text).

        Returns:
            `(features, labels, weights)`: the features with corrupted
            `token_ids` and `mask_positions` (int32 `[batch,
            max_predictions]`), the original ids there, and 1.0 where a
            position is predicted (0.0 on padding).
        """
        tc, tokenizer = self.config.task, packer.tokenizer
        ids = features["token_ids"]
        shape = tf.shape(ids)
        length, budget = shape[1], self.max_predictions(packer)
        special = tf.reduce_any(ids[:, :, tf.newaxis] == tf.constant(tokenizer.special_token_ids, tf.int32), axis=2)
        candidate = (features["padding_mask"] > 0) & ~special
        base = tf.stack([tf.fill(tf.shape(seeds), self.config.train.seed), seeds], axis=1)
        draw = lambda k: tf.map_fn(  # noqa: E731  one stateless draw per sequence, from its own seed
            lambda s: tf.random.stateless_uniform([length], seed=s + [0, k]), base, fn_output_signature=tf.float32
        )
        score = draw(1)
        if tc.whole_word_masking:  # a word's pieces share its first piece's draw
            vocabulary = tf.constant(vocabulary_by_id(tokenizer))
            continuation = tf.strings.regex_full_match(tf.gather(vocabulary, ids), "^" + tokenizer.suffix_indicator + ".+")
            word = tf.cumsum(tf.cast(~continuation, tf.int32), axis=1) - 1
            score = tf.gather(score, tf.maximum(word, 0), batch_dims=1)
        score = tf.where(candidate, score, 2.0)
        candidates = tf.reduce_sum(tf.cast(candidate, tf.int32), axis=1)
        wanted = tf.cast(tf.round(tc.mask_rate * tf.cast(candidates, tf.float32)), tf.int32)
        wanted = tf.minimum(tf.maximum(wanted, tf.minimum(candidates, 1)), budget)
        k = tf.minimum(budget, length)
        if tc.whole_word_masking:
            # Words in draw order (a word's pieces share a draw, so they sit together), up to the word
            # holding the wanted-th piece, taken whole; a word that would run past the budget is left
            # out entirely, as BERT's create_pretraining_data.py and Hugging Face's whole-word collator do.
            ranked, positions = tf.math.top_k(-score, k=length)
            ascending = -ranked
            cut = tf.gather(ascending, tf.maximum(wanted - 1, 0), batch_dims=1)
            word_ends = tf.searchsorted(ascending, ascending, side="right")  # one past the word's last piece
            chosen = ((ascending <= cut[:, tf.newaxis]) & (ascending < 2.0) & (wanted[:, tf.newaxis] > 0)
                      & (word_ends <= budget))
            positions, chosen = positions[:, :k], chosen[:, :k]  # chosen is a prefix of at most `budget`
        else:
            ranked, positions = tf.math.top_k(-score, k=k)  # lowest draws first
            chosen = tf.range(k)[tf.newaxis, :] < wanted[:, tf.newaxis]
        positions = tf.where(chosen, positions, 0)
        # Chosen positions first (top_k keeps them in front), padded to the budget.
        pad = [[0, 0], [0, budget - k]]
        positions = tf.pad(positions, pad)
        weights = tf.pad(tf.cast(chosen, tf.float32), pad)
        labels = tf.where(weights > 0, tf.gather(ids, positions, batch_dims=1), 0)

        action = tf.gather(draw(2), positions, batch_dims=1)  # 80% mask, 10% random, 10% kept
        random_ids = tf.cast(tf.gather(draw(3), positions, batch_dims=1) * tokenizer.vocabulary_size(), tf.int32)
        replacement = tf.where(action < 0.8, tokenizer.mask_token_id, tf.where(action < 0.9, random_ids, labels))
        rows = tf.repeat(tf.range(shape[0])[:, tf.newaxis], budget, axis=1)
        index = tf.stack([rows, positions], axis=2)[weights > 0]
        corrupted = tf.tensor_scatter_nd_update(ids, index, tf.boolean_mask(replacement, weights > 0))
        return {**features, "token_ids": corrupted, "mask_positions": positions}, labels, weights

    def _seeds(self, text):
        return tf.cast(tf.strings.to_hash_bucket_fast(text, 2**31 - 1), tf.int32)

    def pack(self, packer, inputs, targets=None):
        features, labels, weights = self.mask(packer, packer(inputs["text"]), self._seeds(inputs["text"]))
        return (features, labels, weights) if targets is not None else features

    # --- Model -----------------------------------------------------------

    def extra_inputs(self):
        return {"mask_positions": keras.Input(shape=(None,), dtype="int32", name="mask_positions")}

    def head(self, backbone_outputs, dropout, backbone):
        import keras_hub

        from tfft import backbones

        del dropout
        embedding = backbones.token_embedding(backbone)
        if embedding is None:
            raise ConfigError("Masked-LM adaptation needs a keras-hub backbone with a token embedding to tie the head to.")
        head = keras_hub.layers.MaskedLMHead(
            token_embedding=embedding, intermediate_activation="gelu",
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02), dtype="float32", name="mlm_head",
        )
        return head(backbone_outputs["sequence_output"], mask_positions=backbone_outputs["mask_positions"])

    #: `tfft.backbones.base.MASKED_LM_HEAD_WEIGHTS` name -> the variable's path inside keras-hub's `MaskedLMHead`.
    _HEAD_PATHS = {"dense_kernel": "intermediate_dense/kernel", "dense_bias": "intermediate_dense/bias",
                   "norm_gamma": "intermediate_layer_norm/gamma", "norm_beta": "intermediate_layer_norm/beta",
                   "output_bias": "output_bias"}

    @classmethod
    def _head_variables(cls, model) -> dict:
        """The head's own variables (not the tied embedding), by `MASKED_LM_HEAD_WEIGHTS` name, found by path."""
        head = model.get_layer("mlm_head")
        by_path = {v.path.removeprefix(f"{head.name}/"): v for v in head.weights if v.path.startswith(f"{head.name}/")}
        missing = sorted(set(cls._HEAD_PATHS.values()) - set(by_path))
        if missing:
            raise ConfigError(f"keras-hub's `MaskedLMHead` has no variables {missing}; its variables are "
                              f"{sorted(by_path)}. This keras-hub version is not supported: install keras-hub 0.32.")
        return {name: by_path[path] for name, path in cls._HEAD_PATHS.items()}

    def load_head(self, model, source):
        weights = source.masked_lm_head_weights()
        if weights is None:
            logger.warning(
                "Backbone `%s` has no masked-LM head weights: the head starts freshly initialized.",
                self.config.model.backbone,
            )
            return
        for name, variable in self._head_variables(model).items():
            variable.assign(weights[name])
        logger.info("Masked-LM head loaded from `%s`.", self.config.model.backbone)

    @staticmethod
    def head_weights(model) -> dict:
        """The trained head, by `tfft.backbones.base.MASKED_LM_HEAD_WEIGHTS` name."""
        return {name: variable.numpy() for name, variable in MaskedLM._head_variables(model).items()}

    def loss(self):
        return WeightedTokenCrossentropy()

    def weighted_metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="masked_accuracy")]

    # --- Outputs ---------------------------------------------------------

    def combine_logits(self, logits):
        return log_mean_softmax(logits)

    def postprocess(self, logits):
        return {"probabilities": tf.nn.softmax(logits, axis=-1)}

    def outputs(self, model, packer, inputs):
        """Per text: the summed cross-entropy of its masked pieces, their count and how many were right."""
        features, labels, weights = self.mask(packer, packer(inputs["text"]), self._seeds(inputs["text"]))
        features = trim_to_longest(features)
        kept = tf.shape(features["mask_positions"])[1]  # trimmed with the features
        labels, weights = labels[:, :kept], weights[:, :kept]
        logits = tf.cast(model(features, training=False), tf.float32)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        right = tf.cast(tf.argmax(logits, axis=-1, output_type=tf.int32) == labels, tf.float32)
        return {
            "loss_sum": tf.reduce_sum(losses * weights, axis=1),
            "predicted": tf.reduce_sum(weights, axis=1),
            "right": tf.reduce_sum(right * weights, axis=1),
        }

    def serving_signatures(self, model, packer):
        tokenizer = packer.tokenizer
        mask_token, mask_id = tokenizer.mask_token, tokenizer.mask_token_id
        vocabulary = tf.constant(vocabulary_by_id(tokenizer))

        def serving_default(text):
            if tf.executing_eagerly():  # keras-hub's tokenizers give Python lists eagerly
                return tf.function(serving_default)(text)
            parts = tf.strings.split(text, mask_token)  # the mask token as written, kept whole
            pieces = packer.tokenize(parts.flat_values)
            last = tf.cast(parts.row_splits[1:] - 1, tf.int32)
            not_last = tf.tensor_scatter_nd_update(
                tf.ones([tf.shape(parts.flat_values)[0]], tf.bool), last[:, tf.newaxis], tf.zeros_like(last, tf.bool)
            )
            tail = tf.RaggedTensor.from_row_lengths(
                tf.fill([tf.reduce_sum(tf.cast(not_last, tf.int32))], mask_id), tf.cast(not_last, tf.int64)
            )
            with_masks = tf.concat([pieces, tail], axis=1)
            sequences = tf.RaggedTensor.from_row_splits(
                with_masks.flat_values, tf.gather(with_masks.row_splits, parts.row_splits)
            )
            token_ids, segment_ids = packer.preprocessor.packer((sequences,))
            token_ids = tf.cast(token_ids, tf.int32)
            packed = {"token_ids": token_ids, "segment_ids": tf.cast(segment_ids, tf.int32),
                      "padding_mask": tf.cast(token_ids != tokenizer.pad_token_id, tf.int32)}
            features = trim_to_longest({name: packed[name] for name in packer.input_names})
            is_mask = features["token_ids"] == mask_id
            features["mask_positions"] = tf.argmax(tf.cast(is_mask, tf.int32), axis=1, output_type=tf.int32)[:, None]
            probabilities = tf.nn.softmax(tf.cast(model(features, training=False), tf.float32)[:, 0, :], axis=-1)
            top, top_ids = tf.math.top_k(probabilities, k=TOP_K)
            count = tf.reduce_sum(tf.cast(is_mask, tf.int32), axis=1)
            return {
                "top_tokens": tf.where(count[:, None] > 0, tf.gather(vocabulary, top_ids), ""),
                "top_probabilities": tf.where(count[:, None] > 0, top, 0.0),
                "mask_count": count,
                "truncated_tokens": tf.maximum(packer.packed_lengths(sequences) - packer.sequence_length, 0),
            }

        return {"serving_default": (serving_default, [tf.TensorSpec([None], tf.string, name="text")])}

    def warmup_inputs(self, count):
        texts = ["the movie was [MASK] .", "", "a [MASK] request"]
        return [{"text": [texts[j % len(texts)] for j in range(i, i + 2)]} for i in range(count)]

    def input_names(self):
        return ("text",)

    # --- Scores ----------------------------------------------------------

    def score(self, examples, outputs):
        predicted = float(np.sum(outputs["predicted"]))
        loss = float(np.sum(outputs["loss_sum"])) / max(predicted, 1.0)
        right = float(np.sum(outputs["right"])) / max(predicted, 1.0)
        return {"perplexity": math.exp(loss), "loss": loss, "masked_accuracy": right, "masked_tokens": int(predicted),
                "examples": len(examples)}

    def report(self, scores):
        return (f"perplexity       {scores['perplexity']:.3f}\nmasked accuracy  {scores['masked_accuracy']:.4f}\n"
                f"masked tokens    {scores['masked_tokens']:,} in {scores['examples']:,} texts")

    def logged_scores(self, scores):
        return {"perplexity": scores["perplexity"], "masked_accuracy": scores["masked_accuracy"]}

    @classmethod
    def prediction_columns(cls, outputs, metadata, inputs):
        filled, candidates = [], []
        for i in range(len(inputs["text"])):
            tokens = decode(outputs["top_tokens"][i])
            candidates.append(" ".join(tokens) if outputs["mask_count"][i] else "")
            filled.append(tokens[0] if outputs["mask_count"][i] else "")
        return {"predicted_token": filled, "top_tokens": candidates}

