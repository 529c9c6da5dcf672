"""Tokenization that also gives each piece's byte offsets in the raw text.

keras-hub's tokenizers give no offsets (keras-team/keras-hub#926); extractive
QA needs them to map an answer span back to its context.
`offsets_tokenizer(packer, ...)` gives the ids of the packer's own tokenizer
with offsets, by its family:

- **WordPiece** (the BERT family, ELECTRA). A tokenizer that lowercases and
  strips accents together (or neither), as the Hugging Face checkpoints do,
  becomes TensorFlow Text's `FastBertTokenizer`, whose normalizer maps offsets
  back through case folding and accent stripping. Otherwise (keras-hub's
  uncased presets lowercase without stripping accents) the text is split into
  words with offsets by keras-hub's own patterns, each word normalized as
  keras-hub does and cut into pieces by `FastWordpieceTokenizer`. A piece's
  offsets are exact where normalizing kept the word's byte length, else they
  are the whole word's.
- **SentencePiece** (DeBERTa-v3, XLM-RoBERTa). The ids are keras-hub's; the
  offsets come from TensorFlow Text's `SentencepieceTokenizer` on the same
  model, which cuts the same pieces but orders a tie differently (three dots
  as "..", "." for ".", "..", or the reverse), moved to keras-hub's order. A
  tokenizer that changes the text before SentencePiece (tfft's ALBERT, which
  lowercases and strips accents as Hugging Face does) is refused.
- **Byte-level BPE** (ModernBERT, RoBERTa). The ids are keras-hub's; the
  pieces spell the text's bytes in order, so a piece's offsets are the running
  sum of the bytes each piece stands for.

SentencePiece and BPE pieces carry the space before a word (`▁word`,
`Ġword`); their starts skip it, so an answer span starts at its first
character. Other families fail with a `ConfigError` that names them.

Example:

```python
tokenizer = offsets_tokenizer(packer, purpose="Extractive QA", fix="Use a BERT backbone.")
ids, starts, ends = tokenizer.tokenize_with_offsets(tf.constant(["Super Bowl 50"]))
```
"""

from __future__ import annotations

import keras_hub
import tensorflow as tf

from tfft.backbones.base import vocabulary_by_id
from tfft.backbones.litert import lite_tokenizer, packing_ids
from tfft.errors import ConfigError

__all__ = ["OffsetsTokenizer", "offsets_tokenizer"]

def offsets_tokenizer(packer, purpose: str, fix: str) -> OffsetsTokenizer:
    """The `OffsetsTokenizer` for the packer's tokenizer family.

    Args:
        packer: `tfft.backbones.TextPacker`.
        purpose: str. What needs offsets, for error messages.
        fix: str. What to do instead, for error messages.

    Raises:
        ConfigError: for a tokenizer family tfft builds no offsets for.
    """
    tokenizer = packer.tokenizer
    for family in (WordPieceOffsets, SentencePieceOffsets, BytePairOffsets):
        if isinstance(tokenizer, family.tokenizer_class):
            return family(packer, purpose, fix)
    raise ConfigError(
        f"{purpose} needs character offsets, which tfft builds for WordPiece, SentencePiece and byte-level BPE "
        f"tokenizers; this backbone's tokenizer is `{type(tokenizer).__name__}`. {fix}"
    )


class OffsetsTokenizer(tf.Module):
    """The packer's ids with byte offsets into the raw text, and its special tokens.

    Args:
        packer: `tfft.backbones.TextPacker`.

    Attributes:
        start_id, end_id, pad_id: int. The packer's start, end and padding tokens.
        separator_ids: tuple of int. The tokens between the two texts of a
            pair (`[SEP]`, or RoBERTa's `</s></s>`).
        input_names: tuple of str. The model's inputs.
    """

    def __init__(self, packer):
        super().__init__(name=f"{type(self).__name__}")
        self.input_names = packer.input_names
        self.start_id, self.separator_ids, self.end_id, self.pad_id = packing_ids(packer)
        # The packer's ids, int32 `[batch, (pieces)]`, as its graph gives them (`TextPacker.tokenize`, traced once,
        # also for eager callers: keras-hub tokenizes eagerly with other libraries, whose pieces can differ). A
        # method of a plain object: a SavedModel of this module skips it.
        self._keras_hub_ids = packer.tokenize

    def tokenize(self, text: tf.Tensor) -> tf.RaggedTensor:
        """Ids, int32 `[batch, (pieces)]` (keras-hub's own, without offsets)."""
        return self._keras_hub_ids(tf.convert_to_tensor(text))

    def tokenize_with_offsets(self, text: tf.Tensor) -> tuple[tf.RaggedTensor, tf.RaggedTensor, tf.RaggedTensor]:
        """Ids, int32, and start / end UTF-8 byte offsets into `text`, int64, each `[batch, (pieces)]`."""
        raise NotImplementedError


def _skip_leading_space(text: tf.Tensor, ids: tf.RaggedTensor, starts: tf.RaggedTensor, ends: tf.RaggedTensor):
    """Starts moved past the whitespace a piece carries before its word (an all-space piece becomes empty)."""
    pieces = tf.strings.substr(tf.gather(text, ids.value_rowids()), starts.flat_values, ends.flat_values - starts.flat_values)
    kept = tf.strings.length(tf.strings.regex_replace(pieces, r"^\s+", ""))
    return starts.with_flat_values(ends.flat_values - tf.cast(kept, tf.int64))


class WordPieceOffsets(OffsetsTokenizer):
    """WordPiece ids with offsets (`FastBertTokenizer`, or word splitting and `FastWordpieceTokenizer`)."""

    tokenizer_class = keras_hub.tokenizers.WordPieceTokenizer

    def __init__(self, packer, purpose: str, fix: str):
        super().__init__(packer)
        tokenizer = packer.tokenizer
        if not tokenizer.split:
            raise ConfigError(
                f"{purpose} needs character offsets, which tfft builds for WordPiece tokenizers that split words; "
                f"this backbone's `{type(tokenizer).__name__}` has split=False. {fix}"
            )
        self._python_lowercase = bool(getattr(tokenizer, "lowercases_text", False))
        self._lowercase = bool(tokenizer.lowercase)
        self._strip_accents = bool(tokenizer.strip_accents)
        self._fast_bert = None
        if (self._lowercase or self._python_lowercase) == self._strip_accents and tokenizer.split_on_cjk:
            self._fast_bert = lite_tokenizer(tokenizer, purpose, fix)
            return
        import tensorflow_text as tf_text
        from keras_hub.src.tokenizers import word_piece_tokenizer as patterns

        self._split = (
            (patterns.WHITESPACE_PUNCTUATION_AND_CJK_REGEX, patterns.PUNCTUATION_AND_CJK_REGEX)
            if tokenizer.split_on_cjk
            else (patterns.WHITESPACE_AND_PUNCTUATION_REGEX, patterns.PUNCTUATION_REGEX)
        )
        self._wordpiece = tf_text.FastWordpieceTokenizer(
            vocab=list(tokenizer.get_vocabulary()),
            suffix_indicator=tokenizer.suffix_indicator,
            unknown_token=tokenizer.oov_token,
            token_out_type=tf.int32,
            no_pretokenization=True,
            support_detokenization=False,
        )

    def tokenize(self, text):
        return self.tokenize_with_offsets(text)[0]  # the ids tfft rebuilt, the same as keras-hub's (tested)

    def tokenize_with_offsets(self, text):
        if self._fast_bert is not None:
            ids, starts, ends = self._fast_bert.tokenize_with_offsets(text)
            return tf.cast(ids, tf.int32), starts, ends
        import tensorflow_text as tf_text

        words, word_starts, word_ends = tf_text.regex_split_with_offsets(text, *self._split)
        normalized = words.flat_values
        if self._strip_accents:
            normalized = tf.strings.regex_replace(tf_text.normalize_utf8(normalized, "NFD"), r"\p{Mn}", "")
        if self._lowercase:
            normalized = tf_text.case_fold_utf8(normalized)
        if self._python_lowercase:
            normalized = tf.strings.lower(normalized, encoding="utf-8")
        ids, starts, ends = self._wordpiece.tokenize_with_offsets(normalized)  # [words, (pieces)]
        kept = tf.strings.length(normalized) == tf.strings.length(words.flat_values)
        word_start = tf.repeat(word_starts.flat_values, ids.row_lengths())
        word_end = tf.repeat(word_ends.flat_values, ids.row_lengths())
        kept = tf.repeat(kept, ids.row_lengths())
        starts = tf.where(kept, word_start + starts.flat_values, word_start)
        ends = tf.where(kept, word_start + ends.flat_values, word_end)
        row_splits = tf.gather(ids.row_splits, words.row_splits)  # pieces of each text
        as_texts = lambda values: tf.RaggedTensor.from_row_splits(values, row_splits)  # noqa: E731
        return as_texts(ids.flat_values), as_texts(starts), as_texts(ends)


class SentencePieceOffsets(OffsetsTokenizer):
    """keras-hub's SentencePiece ids, with TensorFlow Text's offsets for the same pieces."""

    tokenizer_class = keras_hub.tokenizers.SentencePieceTokenizer

    def __init__(self, packer, purpose: str, fix: str):
        super().__init__(packer)
        import tensorflow_text as tf_text

        tokenizer = packer.tokenizer
        if not type(tokenizer).tokenize.__module__.startswith("keras_hub."):
            raise ConfigError(
                f"{purpose} needs character offsets; this backbone's `{type(tokenizer).__name__}` changes the text "
                f"before SentencePiece (lowercasing, accent stripping), so its pieces have no offsets in the raw "
                f"text. {fix}"
            )
        self._sentence_piece = tf_text.SentencepieceTokenizer(model=tokenizer.proto, out_type=tf.int32)
        # Each piece's bytes, "▁" standing for a space: by the op's ids and by keras-hub's (which may renumber).
        self._op_bytes = _piece_bytes(self._sentence_piece.id_to_string(tf.range(self._sentence_piece.vocab_size())))
        self._bytes = _piece_bytes(tf.constant(vocabulary_by_id(tokenizer)))

    def tokenize_with_offsets(self, text):
        """keras-hub's ids (it may renumber pieces: XLM-RoBERTa), which are `FastSentencepieceTokenizer`'s pieces
        (`tfft.backbones.sentencepiece`), with the offsets of TensorFlow Text's op.

        The op cuts the same pieces but orders a tie differently (three dots as "..", "." for ".", "..", or
        the reverse): inside such a run each piece is moved by the bytes of the pieces before it that differ
        (exact where the run is not changed by normalizing, as a run of punctuation is not).
        """
        text = tf.convert_to_tensor(text)
        pieces, starts, ends = self._sentence_piece.tokenize_with_offsets(text)
        ids = self._keras_hub_ids(text)
        check = tf.debugging.assert_equal(
            pieces.row_lengths(), tf.cast(ids.row_lengths(), pieces.row_splits.dtype),
            message="TensorFlow Text's SentencePiece op cut a text into another number of pieces than keras-hub",
        )
        with tf.control_dependencies([check]):
            delta = ids.with_flat_values(tf.gather(self._bytes, ids.flat_values)
                                         - tf.gather(self._op_bytes, pieces.flat_values))
        shift = tf.cast(tf.math.cumsum(delta, axis=1, exclusive=True).flat_values, tf.int64)
        starts = ids.with_flat_values(starts.flat_values + shift)
        ends = ids.with_flat_values(ends.flat_values + shift + tf.cast(delta.flat_values, tf.int64))
        return ids, _skip_leading_space(text, ids, starts, ends), ends


def _piece_bytes(pieces: tf.Tensor) -> tf.Tensor:
    """The UTF-8 length of each SentencePiece piece, its "▁" counted as the space it stands for."""
    return tf.strings.length(tf.strings.regex_replace(pieces, "\u2581", " "))


class BytePairOffsets(OffsetsTokenizer):
    """keras-hub's byte-level BPE ids, with offsets summed from the bytes each piece stands for."""

    tokenizer_class = keras_hub.tokenizers.BytePairTokenizer

    def __init__(self, packer, purpose: str, fix: str):
        super().__init__(packer)
        from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

        byte_of = dict(zip(bytes_to_unicode()[1], range(256), strict=True))
        literal = set(packer.tokenizer.unsplittable_tokens or ())  # special tokens, matched as written

        def length(token: str) -> int:
            if token in literal or any(c not in byte_of for c in token):
                return len(token.encode("utf-8"))
            return len(token)  # a byte per character

        self._lengths = tf.constant([length(t) for t in vocabulary_by_id(packer.tokenizer)], tf.int64)

    def tokenize_with_offsets(self, text):
        text = tf.convert_to_tensor(text)
        ids = self._keras_hub_ids(text)
        lengths = tf.gather(self._lengths, ids.flat_values)
        running = tf.cumsum(lengths)  # over the whole batch: less the sum before each text's first piece
        before = tf.concat([tf.zeros([1], tf.int64), running], axis=0)
        ends = ids.with_flat_values(running - tf.gather(before, tf.gather(ids.row_splits, ids.value_rowids())))
        starts = ids.with_flat_values(ends.flat_values - lengths)
        return ids, _skip_leading_space(text, ids, starts, ends), ends
