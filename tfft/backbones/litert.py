"""A packer built only from ops that LiteRT (TensorFlow Lite) runs, for raw-text `.tflite` exports.

keras-hub's tokenizers use TensorFlow Text ops that have no TFLite kernel
(keras-team/keras-hub#1243). TensorFlow Text ships TFLite kernels for its
`FastBertTokenizer` (normalizer and WordPiece), registered by
`tensorflow_text.tflite_registrar`. `LitePacker` tokenizes with it and packs
with plain tensor ops, giving the same `token_ids`, `segment_ids` and
`padding_mask` as the training `TextPacker` (tested on 1,000 sentences and
on pairs, truncation included).

WordPiece tokenizers (the BERT family: BERT, DistilBERT, MiniLM, the recipes)
are supported. Other families fail with a `ConfigError` that names them.

Example:

```python
lite = LitePacker(packer)  # packer: the run's TextPacker
features = lite(tf.constant(["a fine film"]))  # same ids as packer(...)
```
"""

from __future__ import annotations

import keras_hub
import tensorflow as tf

from tfft.errors import ConfigError

__all__ = ["LitePacker", "lite_tokenizer", "packing_ids", "shifted", "special_token_ids"]


_LITERT_FIX = "Export with `export.formats: [saved_model]`."


def lite_tokenizer(tokenizer, purpose: str = "LiteRT export", fix: str = _LITERT_FIX):
    """The TFLite-compatible `tensorflow_text.FastBertTokenizer` that gives `tokenizer`'s ids.

    It also gives each piece's byte offsets in the raw text
    (`tokenize_with_offsets`), which keras-hub's tokenizers do not
    (keras-team/keras-hub#926): extractive QA uses it for that.

    Args:
        tokenizer: the keras-hub tokenizer a `TextPacker` holds.
        purpose: str. What needs it, for the error message.
        fix: str. What to do instead, for the error message.

    Raises:
        ConfigError: for a tokenizer family with no TFLite equivalent here.
    """
    import tensorflow_text as tf_text

    family = type(tokenizer).__name__
    if not isinstance(tokenizer, keras_hub.tokenizers.WordPieceTokenizer):
        raise ConfigError(
            f"{purpose} supports WordPiece tokenizers (the BERT family) only; this backbone's tokenizer is "
            f"`{family}`, which tfft cannot yet rebuild with TensorFlow Text's FastBertTokenizer. {fix}"
        )
    # tfft's Hugging Face tokenizers lowercase before keras-hub sees the text (`lowercases_text`).
    lowercase = bool(tokenizer.lowercase or getattr(tokenizer, "lowercases_text", False))
    strip_accents = bool(tokenizer.strip_accents)
    if lowercase != strip_accents or not tokenizer.split or not tokenizer.split_on_cjk:
        raise ConfigError(
            f"{purpose} needs a WordPiece tokenizer that lowercases and strips accents together (or neither) "
            f"and splits words and CJK characters, as TensorFlow Text's FastBertNormalizer does. `{family}` has "
            f"lowercase={lowercase}, strip_accents={strip_accents}, split={tokenizer.split}, "
            f"split_on_cjk={tokenizer.split_on_cjk}. {fix}"
        )
    return tf_text.FastBertTokenizer(
        vocab=list(tokenizer.get_vocabulary()),
        suffix_indicator=tokenizer.suffix_indicator,
        unknown_token=tokenizer.oov_token,
        token_out_type=tf.int32,
        lower_case_nfd_strip_accents=lowercase,
    )


class LitePacker:
    """`TextPacker`'s packing, from TFLite-compatible ops only.

    BERT-style packing: `[CLS] text [SEP]`, or `[CLS] text [SEP] pair [SEP]`
    with `segment_ids` 1 on the pair, truncated round-robin (as keras-hub's
    `MultiSegmentPacker` does by default), padded to `sequence_length`.

    Args:
        packer: `tfft.backbones.TextPacker`. The training packer to mirror.
    """

    def __init__(self, packer):
        self.sequence_length = packer.sequence_length
        self.input_names = packer.input_names
        self.tokenizer = lite_tokenizer(packer.tokenizer)
        segment_packer = packer.preprocessor.packer
        if getattr(segment_packer, "truncate", "round_robin") != "round_robin":
            raise ConfigError(f"LiteRT export packs pairs round-robin; this packer truncates `{segment_packer.truncate}`.")
        self.start_id, self.sep_id, self.end_id, self.pad_id = special_token_ids(packer)

    def __call__(self, text, text_pair=None) -> dict[str, tf.Tensor]:
        """Packs `text` (and `text_pair`), `string[batch]`, to int32 `[batch, sequence_length]` inputs."""
        length = self.sequence_length
        first = self.tokenizer.tokenize(text)
        first_count = tf.cast(first.row_lengths(), tf.int32)
        positions = tf.range(length, dtype=tf.int32)[tf.newaxis, :]
        if text_pair is None:
            kept_first = tf.minimum(first_count, length - 2)
            kept_second = tf.zeros_like(kept_first)
        else:
            second_count = tf.cast(self.tokenizer.tokenize(text_pair).row_lengths(), tf.int32)
            budget = length - 3
            # Round-robin: one piece from each in turn, the first text first, until the budget is spent.
            kept_first = tf.minimum(first_count, tf.maximum(budget - second_count, (budget + 1) // 2))
            kept_second = tf.minimum(second_count, budget - kept_first)
        first_ids = self._dense(first)
        first_end = kept_first[:, tf.newaxis] + 1  # the position of the first [SEP]
        ids = tf.where(positions == 0, self.start_id, self.pad_id)
        ids = tf.where((positions >= 1) & (positions < first_end), shifted(first_ids, positions - 1), ids)
        if text_pair is None:
            ids = tf.where(positions == first_end, self.end_id, ids)
            total = first_end + 1
            segment_ids = tf.zeros_like(ids)
        else:
            second_ids = self._dense(self.tokenizer.tokenize(text_pair))
            second_end = first_end + 1 + kept_second[:, tf.newaxis]
            ids = tf.where(positions == first_end, self.sep_id, ids)
            in_second = (positions > first_end) & (positions < second_end)
            ids = tf.where(in_second, shifted(second_ids, positions - first_end - 1), ids)
            ids = tf.where(positions == second_end, self.end_id, ids)
            total = second_end + 1
            segment_ids = tf.cast((positions > first_end) & (positions < total), tf.int32)
        padding_mask = tf.cast(positions < total, tf.int32)
        features = {"token_ids": ids, "segment_ids": segment_ids * padding_mask, "padding_mask": padding_mask}
        return {name: features[name] for name in self.input_names}

    def token_counts(self, text, text_pair=None) -> tf.Tensor:
        """Untruncated lengths, special tokens included, as int32 `[batch]` (`TextPacker.token_counts`)."""
        count = tf.cast(self.tokenizer.tokenize(text).row_lengths(), tf.int32) + 2  # [CLS] text [SEP]
        if text_pair is not None:
            count += tf.cast(self.tokenizer.tokenize(text_pair).row_lengths(), tf.int32) + 1  # pair [SEP]
        return count

    def _dense(self, pieces: tf.RaggedTensor) -> tf.Tensor:
        """`[batch, sequence_length]` ids, cut or padded (`RaggedTensorToTensor` has a TFLite kernel)."""
        return pieces.to_tensor(default_value=self.pad_id, shape=[None, self.sequence_length])


def special_token_ids(packer) -> tuple[int, int, int, int]:
    """The packer's `[CLS]`-like start, pair separator, end and padding ids (separator: the end token if none)."""
    start, separators, end, pad = packing_ids(packer)
    if len(separators) != 1:
        raise ConfigError(f"LiteRT export packs one separator between a pair's texts; the packer has {list(separators)}.")
    return start, separators[0], end, pad


def packing_ids(packer) -> tuple[int, tuple[int, ...], int, int]:
    """The packer's start id, the ids between a pair's texts (`[SEP]`, or RoBERTa's `</s></s>`), end and padding ids."""
    segment_packer = packer.preprocessor.packer
    sep = getattr(segment_packer, "sep_value", None) or segment_packer.end_value
    separators = (sep,) if isinstance(sep, (str, int)) or not hasattr(sep, "__len__") else tuple(sep)
    start, end, pad = (segment_packer.start_value, segment_packer.end_value, segment_packer.pad_value)
    return (_token_id(packer.tokenizer, start), tuple(_token_id(packer.tokenizer, s) for s in separators),
            _token_id(packer.tokenizer, end), _token_id(packer.tokenizer, pad))


def _token_id(tokenizer, value) -> int:
    """A packer's special token (an id, a token, or a one-item list of either) as an id."""
    if isinstance(value, (list, tuple)) or hasattr(value, "__len__") and not isinstance(value, str):
        if len(value) != 1:
            raise ConfigError(f"LiteRT export packs one special token at each place; the packer has {list(value)}.")
        value = value[0]
    return int(tokenizer.token_to_id(value)) if isinstance(value, str) else int(value)


def shifted(ids: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """`ids[b, index[b, p]]` for every position, with `index` clipped into range."""
    index = tf.clip_by_value(index, 0, tf.shape(ids)[1] - 1)
    index = tf.broadcast_to(index, tf.shape(ids))
    return tf.gather(ids, index, batch_dims=1)
