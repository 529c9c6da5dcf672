"""SentencePiece in the TF graph, segmenting as the `sentencepiece` library does.

keras-hub tokenizes SentencePiece two ways: with the `sentencepiece` library
eagerly, and with TensorFlow Text's `SentencepieceTokenizer` op in a graph,
which is what training (tf.data) and serving run. Where two segmentations
score the same (a run of three dots as "." + ".." or ".." + "."), the op
picks the other one: 110 of tfft's 1,000 parity texts differ from the
checkpoint's own tokenizer for ALBERT, XLM-RoBERTa and DeBERTa-v3. TensorFlow
Text's `FastSentencepieceTokenizer` picks as the library does (0 of 1,000).

Example:

```python
exact_sentencepiece(packer.tokenizer)  # before the tokenizer's first graph
```
"""

from __future__ import annotations

import keras_hub

__all__ = ["exact_sentencepiece"]


def exact_sentencepiece(tokenizer) -> None:
    """Makes a keras-hub `SentencePieceTokenizer`'s graph path use `FastSentencepieceTokenizer`.

    Other tokenizers, and SentencePiece tokenizers that give strings, are left
    as they are. keras-hub builds its op only when none is set, and again
    after `set_proto`, which this must then follow.

    Args:
        tokenizer: a keras-hub tokenizer.
    """
    if not isinstance(tokenizer, keras_hub.tokenizers.SentencePieceTokenizer) or tokenizer.compute_dtype != "int32":
        return
    import tensorflow_text as tf_text

    tokenizer._sentence_piece = tf_text.FastSentencepieceTokenizer(
        tokenizer.proto, add_bos=tokenizer.add_bos, add_eos=tokenizer.add_eos
    )
