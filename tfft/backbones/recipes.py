"""Backbones that tfft builds itself, from a named architecture and a vocabulary
learned from the training split. No download, no network: the embedded demo
and the tests run on these.
"""

from __future__ import annotations

import logging
import pathlib

import keras
import keras_hub
import tensorflow as tf

from tfft.backbones.base import BackboneSource, LayerGroups, TextPacker, keras_hub_layer_groups
from tfft.config import ConfigError

logger = logging.getLogger(__name__)

#: Recipe name -> `keras_hub.models.BertBackbone` architecture.
RECIPES = {
    "tiny-bert": dict(num_layers=2, num_heads=2, hidden_dim=64, intermediate_dim=256),
    "mini-bert": dict(num_layers=4, num_heads=4, hidden_dim=256, intermediate_dim=1024),
    "base-bert": dict(num_layers=12, num_heads=12, hidden_dim=768, intermediate_dim=3072),
}
RESERVED_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCABULARY_FILE = "vocab.txt"
VOCABULARY_SIZE = 4000


def learn_vocabulary(texts: list[str], vocabulary_size: int = VOCABULARY_SIZE) -> list[str]:
    """A lowercase WordPiece vocabulary learned from `texts`."""
    return keras_hub.tokenizers.compute_word_piece_vocabulary(
        tf.data.Dataset.from_tensor_slices(texts).batch(1000),
        vocabulary_size=vocabulary_size,
        lowercase=True,
        strip_accents=True,
        reserved_tokens=RESERVED_TOKENS,
    )


class Recipe(BackboneSource):
    """A randomly initialized BERT built from a named recipe (`tiny-bert`, ...).

    The vocabulary is learned from the training texts once and saved as
    `<output_dir>/vocab.txt`; a resumed run, `tfft evaluate` and `tfft
    export` read it back from there.
    """

    name = "recipe"

    def prepare(self, train_texts, output_dir) -> None:
        self.architecture = RECIPES[self.config.backbone]
        path = pathlib.Path(output_dir) / VOCABULARY_FILE if output_dir else None
        if path is not None and path.is_file():
            self.vocabulary = path.read_text(encoding="utf-8").splitlines()
            return
        if not train_texts:
            raise ConfigError(
                f"Recipe `{self.config.backbone}` learns its vocabulary from the training texts, "
                f"and `{path}` does not hold one yet."
            )
        logger.info("Learning a WordPiece vocabulary from %d training texts.", len(train_texts))
        self.vocabulary = learn_vocabulary(train_texts)

    def save(self, output_dir) -> None:
        path = pathlib.Path(output_dir) / VOCABULARY_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(token + "\n" for token in self.vocabulary), encoding="utf-8")

    def packer(self) -> TextPacker:
        tokenizer = keras_hub.models.BertTokenizer(vocabulary=self.vocabulary, lowercase=True, strip_accents=True)
        preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
            tokenizer=tokenizer, sequence_length=self.config.sequence_length
        )
        return TextPacker(preprocessor)

    def backbone(self) -> keras.Model:
        return keras_hub.models.BertBackbone(
            vocabulary_size=len(self.vocabulary),
            max_sequence_length=max(self.config.sequence_length, 128),
            **self.architecture,
        )

    def layer_groups(self, backbone: keras.Model) -> LayerGroups:
        return keras_hub_layer_groups(backbone)
