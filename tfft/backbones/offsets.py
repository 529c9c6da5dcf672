"""WordPiece tokenization that also gives each piece's byte offsets in the raw text.

keras-hub's tokenizers give no offsets (keras-team/keras-hub#926); extractive
QA needs them to map an answer span back to its context. `OffsetsTokenizer`
gives the ids of the packer's own tokenizer, with offsets, from TensorFlow Text
ops:

- a tokenizer that lowercases and strips accents together (or neither), as the
  Hugging Face checkpoints of the BERT family do, becomes TensorFlow Text's
  `FastBertTokenizer`, whose normalizer maps offsets back through case folding
  and accent stripping;
- otherwise (keras-hub's uncased presets lowercase without stripping accents)
  the text is split into words with offsets by keras-hub's own patterns, each
  word normalized as keras-hub does and cut into pieces by
  `FastWordpieceTokenizer`. A piece's offsets are exact where normalizing kept
  the word's byte length, else they are the whole word's.

Other tokenizer families fail with a `ConfigError` that names them.

Example:

```python
tokenizer = OffsetsTokenizer(packer, purpose="Extractive QA", fix="Use a BERT backbone.")
ids, starts, ends = tokenizer.tokenize_with_offsets(tf.constant(["Super Bowl 50"]))
```
"""

from __future__ import annotations

import keras_hub
import tensorflow as tf

from tfft.backbones.litert import lite_tokenizer, special_token_ids
from tfft.errors import ConfigError

__all__ = ["OffsetsTokenizer"]


class OffsetsTokenizer:
    """The packer's WordPiece ids with byte offsets, and its special tokens.

    Args:
        packer: `tfft.backbones.TextPacker`. Its tokenizer must be WordPiece.
        purpose: str. What needs offsets, for error messages.
        fix: str. What to do instead, for error messages.

    Attributes:
        start_id, sep_id, end_id, pad_id: int. The packer's special tokens.
        input_names: tuple of str. The model's inputs.
    """

    def __init__(self, packer, purpose: str, fix: str):
        tokenizer = packer.tokenizer
        family = type(tokenizer).__name__
        if not isinstance(tokenizer, keras_hub.tokenizers.WordPieceTokenizer) or not tokenizer.split:
            raise ConfigError(
                f"{purpose} needs character offsets, which tfft builds for WordPiece tokenizers (the BERT family) "
                f"only; this backbone's tokenizer is `{family}`. {fix}"
            )
        self.input_names = packer.input_names
        self.start_id, self.sep_id, self.end_id, self.pad_id = special_token_ids(packer)
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

    def tokenize(self, text: tf.Tensor) -> tf.RaggedTensor:
        """Ids, int32 `[batch, (pieces)]`."""
        return self.tokenize_with_offsets(text)[0]

    def tokenize_with_offsets(self, text: tf.Tensor) -> tuple[tf.RaggedTensor, tf.RaggedTensor, tf.RaggedTensor]:
        """Ids, int32, and start / end UTF-8 byte offsets into `text`, int64, each `[batch, (pieces)]`."""
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
