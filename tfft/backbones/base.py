"""The one interface every backbone source implements.

Head, freezing, optimizer, `fit` and export code see only these three things:

- a `TextPacker`: raw strings in, int32 model inputs out, in the TF graph;
- a backbone `keras.Model`: those inputs in, a dict with `pooled_output`
  (`[batch, hidden]`) out;
- `LayerGroups`: which of its layers are embeddings and which are the encoder
  layers, lowest first, so "freeze the lowest N" means the same everywhere.
"""

from __future__ import annotations

import abc
import dataclasses
import pathlib
import re

import keras
import tensorflow as tf

from tfft.backbones import fast_layers
from tfft.backbones.sentencepiece import exact_sentencepiece
from tfft.config import ConfigError, ModelConfig


class TextPacker:
    """Tokenizes and packs raw text into int32 model inputs, in the TF graph.

    Wraps a keras-hub `TextClassifierPreprocessor` (tokenizer + packer with the
    model's special tokens), casts its outputs to int32 (a bool `padding_mask`
    breaks `fit` under `MirroredStrategy`) and counts untruncated lengths.

    Args:
        preprocessor: a keras-hub `TextClassifierPreprocessor`, already set to
            the run's `sequence_length`.

    Example:

    ```python
    packer = TextPacker(preprocessor)
    features = packer(tf.constant(["a fine film"]))  # token_ids, padding_mask, ...
    ```
    """

    def __init__(self, preprocessor):
        self.preprocessor = preprocessor
        self.tokenizer = preprocessor.tokenizer
        self.sequence_length = int(preprocessor.sequence_length)
        exact_sentencepiece(self.tokenizer)
        # Eager first calls: they build the preprocessor and the tokenizer's tables outside any graph.
        single = self._pack((tf.constant([""]),))
        pair = self._pack((tf.constant([""]), tf.constant([""])))
        self.input_names = tuple(sorted(single))
        # Special tokens the packer adds around one text and around a pair.
        self._specials = (
            int(tf.reduce_sum(single["padding_mask"])),
            int(tf.reduce_sum(pair["padding_mask"])),
        )
        # Traced once each, then called by every later graph (each tf.data map, each serving signature) instead
        # of retraced there: keras-hub's byte-level BPE takes about 2 s a trace, and a run makes a dozen.
        strings = tf.TensorSpec([None], tf.string)
        self._pack_one = tf.function(lambda text: self._pack((text,)), input_signature=[strings])
        self._pack_two = tf.function(lambda text, pair: self._pack((text, pair)), input_signature=[strings, strings])
        self._tokenize = tf.function(self.tokenizer, input_signature=[strings])
        self._pack_words_graph = tf.function(self.pack_words, reduce_retracing=True)  # for eager callers

    def __call__(self, text, text_pair=None) -> dict[str, tf.Tensor]:
        """Packs `text` (and `text_pair`), both `[batch]` strings, to `sequence_length`."""
        return self._pack_one(text) if text_pair is None else self._pack_two(text, text_pair)

    def _pack(self, segments: tuple) -> dict[str, tf.Tensor]:
        features = self.preprocessor(x=segments)
        return {name: tf.cast(value, tf.int32) for name, value in features.items()}

    def tokenize(self, strings) -> tf.RaggedTensor:
        """The tokenizer's ids of `[n]` strings, without special tokens, as int32 `[n, (pieces)]` (int64 row
        splits, whatever the tokenizer gives: `FastSentencepieceTokenizer` gives int32)."""
        return tf.cast(self._tokenize(strings), tf.int32).with_row_splits_dtype(tf.int64)

    def pack_words(self, words: tf.RaggedTensor) -> tuple[dict[str, tf.Tensor], tf.RaggedTensor, tf.Tensor]:
        """Packs sentences given as words, for per-word predictions (token classification).

        Each word is tokenized on its own, so every word piece belongs to
        exactly one word; the pieces of a sentence are then packed as one
        segment, truncated to `sequence_length`.

        Args:
            words: `tf.RaggedTensor` of strings, `[batch, (words)]`.

        Returns:
            `(features, first_piece, counts)`: the packed int32 inputs, as
            `__call__` returns them; the position of each word's first piece,
            int32 `[batch, (words)]`, -1 where the word has no pieces or was
            cut off by `sequence_length`; and each sentence's untruncated
            length with its special tokens, int32 `[batch]`.
        """
        if tf.executing_eagerly():  # keras-hub turns eager outputs into Python lists; traced once, not per call
            return self._pack_words_graph(words)
        pieces = self.tokenize(words.flat_values)  # [words in the batch, (pieces)]
        sentence_splits = tf.gather(pieces.row_splits, words.row_splits)
        sentences = tf.RaggedTensor.from_row_splits(pieces.flat_values, sentence_splits)
        token_ids, segment_ids = self.preprocessor.packer((sentences,))
        token_ids = tf.cast(token_ids, tf.int32)
        packed = {
            "token_ids": token_ids,
            "segment_ids": tf.cast(segment_ids, tf.int32),
            "padding_mask": tf.cast(token_ids != self.tokenizer.pad_token_id, tf.int32),
        }
        features = {name: packed[name] for name in self.input_names}
        # Position of each word's first piece: pieces before it in its sentence, after the start token.
        word_sentence_start = tf.gather(sentence_splits, words.value_rowids())
        position = tf.cast(pieces.row_splits[:-1] - word_sentence_start, tf.int32) + 1
        kept = self.sequence_length - self._specials[0]  # pieces that fit beside the special tokens
        valid = (pieces.row_lengths() > 0) & (position - 1 < kept)
        first_piece = words.with_flat_values(tf.where(valid, position, -1))
        counts = tf.cast(sentences.row_lengths(), tf.int32) + self._specials[0]
        return features, first_piece, counts

    def with_offsets(self, purpose: str, fix: str):
        """This packer's tokenizer with byte offsets, and its special tokens (`tfft.backbones.offsets.offsets_tokenizer`).

        Built once per packer. Tokenizer families without offsets support fail
        with a `ConfigError` naming `purpose` and `fix`.
        """
        if getattr(self, "_offsets", None) is None:
            from tfft.backbones.offsets import offsets_tokenizer

            # Built eagerly even when first asked for inside a traced function: its vocabulary constants must
            # outlive that graph, or the next trace (a retrace, another tf.data map) cannot use them.
            with tf.init_scope():
                self._offsets = offsets_tokenizer(self, purpose=purpose, fix=fix)
        return self._offsets

    def resources(self) -> list:
        """What a SavedModel of this packer must track: the preprocessor (its vocabularies), and the offsets
        tokenizer once built (SentencePiece's model is a resource)."""
        offsets = getattr(self, "_offsets", None)
        return [self.preprocessor] if offsets is None else [self.preprocessor, offsets]

    def check_token_ids(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Checks packed inputs that a client made itself (`serve_token_ids`), in the graph.

        A batch of 0 rows passes. A sequence longer than `sequence_length`,
        or a token id outside `[0, vocabulary size)`, fails with an
        `InvalidArgumentError` that says so, instead of an internal slice
        error or, for a negative id, a silent answer.
        """
        token_ids = features["token_ids"]
        vocabulary_size = int(self.tokenizer.vocabulary_size())
        checks = [
            tf.debugging.assert_less_equal(
                tf.shape(token_ids)[1], self.sequence_length,
                message=f"token_ids has more positions than the model takes, sequence_length ({self.sequence_length})",
            ),
            tf.debugging.assert_non_negative(token_ids, message="token_ids holds a negative id"),
            tf.debugging.assert_less(
                token_ids, vocabulary_size, message=f"token_ids holds an id >= the vocabulary size ({vocabulary_size})"
            ),
        ]
        with tf.control_dependencies(checks):
            return {name: tf.identity(value) for name, value in features.items()}

    def difference(self, other: TextPacker) -> str | None:
        """How `other` tokenizes differently from this packer (another vocabulary or rules), or None: the same ids."""
        mine, theirs = self.tokenizer, other.tokenizer
        if type(mine) is not type(theirs):
            return f"{type(theirs).__name__} is not {type(mine).__name__}"
        if vocabulary_by_id(mine) != vocabulary_by_id(theirs):
            return f"their vocabularies differ ({mine.vocabulary_size()} and {theirs.vocabulary_size()} tokens)"
        for setting in ("lowercase", "strip_accents", "special_tokens_in_strings"):
            if getattr(mine, setting, None) != getattr(theirs, setting, None):
                return f"`{setting}` is {getattr(mine, setting, None)} and {getattr(theirs, setting, None)}"
        if self.input_names != other.input_names:
            return f"their inputs are {', '.join(self.input_names)} and {', '.join(other.input_names)}"
        return None

    def token_counts(self, text, text_pair=None) -> tf.Tensor:
        """Untruncated lengths, special tokens included, as int32 `[batch]`."""
        if text_pair is None:
            return self.packed_lengths(self.tokenize(text))
        count = self.tokenize(text).row_lengths() + self.tokenize(text_pair).row_lengths()
        return tf.cast(count, tf.int32) + self._specials[1]

    def packed_lengths(self, pieces: tf.RaggedTensor) -> tf.Tensor:
        """Untruncated lengths of single texts already tokenized (`pieces`, ragged `[batch, None]`), special tokens
        included, as int32 `[batch]`: `token_counts` of the texts they came from."""
        return tf.cast(pieces.row_lengths(), tf.int32) + self._specials[0]


def vocabulary_by_id(tokenizer) -> list[str]:
    """The tokenizer's tokens in id order (keras-hub's byte-level BPE gives `get_vocabulary()` as unordered keys)."""
    return [tokenizer.id_to_token(i) for i in range(tokenizer.vocabulary_size())]


@dataclasses.dataclass
class LayerGroups:
    """The backbone's layers that freezing acts on.

    Args:
        embeddings: list of layers. Token/position/segment embeddings and their
            normalization.
        encoder: list of layers. Encoder blocks, lowest (closest to the
            embeddings) first.
        pooler: list of layers. The layers that make `pooled_output` only;
            frozen for tasks that read `sequence_output` alone.
        unused: list of layers. Layers the backbone computes but no output
            reads (keras-hub ELECTRA's untrained pooler); always frozen.
        called_once: bool. Whether each `encoder` layer is a block the
            backbone calls once per forward pass, returning its hidden states
            (false: ALBERT's block, called at every depth; weight groups
            that are never called). `distill.hidden_weight` needs it.
    """

    embeddings: list
    encoder: list
    pooler: list = dataclasses.field(default_factory=list)
    unused: list = dataclasses.field(default_factory=list)
    called_once: bool = True


class BackboneSource(abc.ABC):
    """Loads one kind of backbone. One subclass per source.

    `packer()` is called outside any distribution strategy (it feeds
    `tf.data`); `backbone()` is called inside the strategy's scope.
    """

    #: Short name of the source, logged and written to the run's metadata.
    name: str = ""

    def __init__(self, config: ModelConfig):
        self.config = config

    def prepare(self, train_texts: list[str] | None, output_dir: str | pathlib.Path | None) -> None:
        """Called once before `packer`/`backbone`; writes nothing.

        Recipes read their vocabulary from `output_dir` (a resumed or
        finished run) or learn it from `train_texts`.
        """
        del train_texts, output_dir  # Most sources need neither.

    def save(self, output_dir: str | pathlib.Path) -> None:
        """Writes what `prepare` made and a rerun needs (a recipe's vocabulary), once the run's checks passed."""
        del output_dir

    @abc.abstractmethod
    def packer(self) -> TextPacker:
        """The in-graph tokenizer and packer for this backbone."""

    @abc.abstractmethod
    def backbone(self) -> keras.Model:
        """The backbone, with pretrained weights where the source has them."""

    @abc.abstractmethod
    def layer_groups(self, backbone: keras.Model) -> LayerGroups:
        """The embedding and encoder layers of a backbone this source made."""

    def reinitialize(self, layers: list, seed: int) -> None:
        """Draws `layers`' weights again from the initializers they were built with (`model.reinit_layers`).

        The default walks Keras 3 layers: every sublayer's `<weight>_initializer`
        re-draws its `<weight>` (kernels, biases, norm scales and offsets),
        each weight from its own seed counted up from `seed`.
        """
        reinitialize_layers(layers, seed)

    def masked_lm_head_weights(self) -> dict | None:
        """The pretrained masked-LM head, as `MASKED_LM_HEAD_WEIGHTS` name -> array, or None if the source has none."""
        return None

    def keep_layers(self, backbone: keras.Model, keep: int | list[int]) -> keras.Model:
        """A backbone with only the encoder layers `keep` of `backbone` (`model.keep_layers`), with their weights.

        The default rebuilds a keras-hub backbone with fewer layers
        (`keep_encoder_layers`).
        """
        return keep_encoder_layers(backbone, keep)


#: A masked-LM head's weights, by name, as keras-hub's `MaskedLMHead` holds them (the output kernel is the tied
#: token embedding).
MASKED_LM_HEAD_WEIGHTS = ("dense_kernel", "dense_bias", "norm_gamma", "norm_beta", "output_bias")
#: File beside an adapted backbone's preset (`save_preset`) that holds its masked-LM head.
MASKED_LM_HEAD_FILE = "masked_lm_head.npz"

#: Beside a saved preset: the feed-forward activation its encoder ran with, where a checkpoint named one.
ACTIVATION_FILE = "feedforward_activation.txt"

#: Feed-forward activations by name: `gelu` is the exact (erf) form, `gelu_approximate` the tanh form.
ACTIVATIONS = {
    "gelu": fast_layers.gelu,
    "gelu_approximate": fast_layers.gelu_approximate,
    "relu": keras.activations.relu,
}


def set_feedforward_activation(backbone: keras.Model, name: str) -> None:
    """Makes every encoder block of a keras-hub backbone use the feed-forward activation `name` (`ACTIVATIONS`).

    keras-hub builds each architecture with one fixed activation (BERT: the
    tanh approximation of GELU), while a checkpoint says what it was trained
    with (Hugging Face BERT: `hidden_act: gelu`, the exact form).
    """
    import keras_hub

    for layer in inner_backbone(backbone)._flatten_layers():
        if isinstance(layer, keras_hub.layers.TransformerEncoder):
            layer._feedforward_intermediate_dense.activation = ACTIVATIONS[name]
            layer.tfft_activation = name


def feedforward_activation(backbone: keras.Model) -> str | None:
    """The activation `set_feedforward_activation` gave the backbone, or None (keras-hub's own)."""
    for layer in inner_backbone(backbone)._flatten_layers():
        if hasattr(layer, "tfft_activation"):
            return layer.tfft_activation
    return None


def token_embedding(backbone: keras.Model):
    """The backbone's token embedding layer (keras-hub's `ReversibleEmbedding`), or None."""
    return getattr(inner_backbone(backbone), "token_embedding", None)


def save_preset(backbone: keras.Model, packer: TextPacker, folder, head_weights: dict | None = None) -> None:
    """Writes `backbone` and its tokenizer as a keras-hub preset folder that `model.backbone` loads.

    Args:
        backbone: keras.Model. A backbone a source made (keras-hub inside).
        packer: `TextPacker`. Its tokenizer is saved with the weights.
        folder: str or path. Created; must not hold a preset yet.
        head_weights: dict or None. A masked-LM head (`MASKED_LM_HEAD_WEIGHTS`),
            saved beside the preset for a later adaptation to resume from.
    """
    import keras_hub
    import numpy as np

    model = inner_backbone(backbone)
    if not isinstance(model, keras_hub.models.Backbone):
        raise ConfigError(
            f"Saving an adapted backbone needs a keras-hub backbone (presets, Hugging Face checkpoints, recipes); "
            f"this one is `{type(model).__name__}`. Use `model.source: auto`."
        )
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_to_preset(str(folder))
    packer.tokenizer.save_to_preset(str(folder))
    # The preprocessor too: keras-hub finds none by backbone class for ELECTRA or tfft's ModernBERT.
    packer.preprocessor.save_to_preset(str(folder))
    if head_weights is not None:
        np.savez(folder / MASKED_LM_HEAD_FILE, **head_weights)
    activation = feedforward_activation(model)
    if activation is not None:
        (folder / ACTIVATION_FILE).write_text(activation + "\n", encoding="utf-8")


def check_sequence_length(config: ModelConfig, max_positions: int | None) -> None:
    if max_positions and config.sequence_length > max_positions:
        raise ConfigError(
            f"Argument `model.sequence_length` must be at most {max_positions}, the backbone's "
            f"number of positions. Received: sequence_length={config.sequence_length}"
        )


def with_pooled_output(backbone: keras.Model) -> keras.Model:
    """Returns `backbone` if it outputs `pooled_output`, else a wrapper that does.

    Encoders without a pooler (RoBERTa, DistilBERT, DeBERTa-v3 in keras-hub)
    pool by taking the first token's hidden state, as their keras-hub
    classifiers do. So does ELECTRA, as Hugging Face's ELECTRA heads do:
    keras-hub's `ElectraBackbone` has a pooler, but no ELECTRA checkpoint
    trained one (`FIRST_TOKEN_POOLED`).
    """
    outputs = backbone.output
    if isinstance(outputs, dict) and "pooled_output" in outputs and type(backbone).__name__ not in FIRST_TOKEN_POOLED:
        return backbone
    inputs = backbone.input
    sequence = backbone(inputs)
    sequence = sequence["sequence_output"] if isinstance(sequence, dict) else sequence
    pooled = keras.layers.Lambda(lambda x: x[:, 0, :], name="first_token_pool")(sequence)
    return keras.Model(inputs, {"sequence_output": sequence, "pooled_output": pooled}, name=f"{backbone.name}_pooled")


#: keras-hub backbones whose `pooled_output` comes from a pooler no checkpoint trains: tfft pools their first token.
FIRST_TOKEN_POOLED = ("ElectraBackbone",)


def inner_backbone(backbone: keras.Model) -> keras.Model:
    """The keras-hub backbone inside a `with_pooled_output` wrapper (or itself)."""
    for layer in backbone.layers:
        if isinstance(layer, keras.Model):
            return layer
    return backbone


#: A keras-hub encoder block in a weight's path: `transformer_layer_<i>/`.
_LAYER_IN_PATH = re.compile(r"(?:^|/)(?:transformer_layer|disentangled_attention_encoder_layer)_(\d+)/")


def kept_layer_indices(keep: int | list[int], num_layers: int) -> list[int]:
    """`model.keep_layers` as the indices of the kept layers, checked against the backbone's `num_layers`.

    >>> kept_layer_indices(2, 6), kept_layer_indices([0, 2, 4], 6)
    ([0, 1], [0, 2, 4])
    """
    indices = list(range(keep)) if isinstance(keep, int) else list(keep)
    if isinstance(keep, int) and keep > num_layers or any(not 0 <= i < num_layers for i in indices):
        raise ConfigError(
            f"Argument `model.keep_layers` must be a number of layers between 1 and {num_layers}, or a list of "
            f"layers between 0 and {num_layers - 1}: the backbone has {num_layers}. Received: keep_layers={keep}"
        )
    return indices


def keep_encoder_layers(backbone: keras.Model, keep: int | list[int]) -> keras.Model:
    """A keras-hub backbone rebuilt with only the encoder layers `keep`, carrying their weights and the rest.

    Every weight outside the encoder blocks (embeddings, pooler) is copied as
    it is; kept block `keep[i]` becomes block `i`.
    """
    model = inner_backbone(backbone)
    settings = model.get_config()
    if "num_layers" not in settings or not any(_ENCODER_LAYER.fullmatch(layer.name) for layer in model.layers) \
            or any(layer.name.startswith("group_") for layer in model.layers):
        raise ConfigError(
            f"`model.keep_layers` needs a backbone whose encoder layers each have their own weights (BERT, "
            f"DistilBERT, RoBERTa, XLM-RoBERTa, ELECTRA, DeBERTa-v3 from keras-hub or Hugging Face); "
            f"`{type(model).__name__}` has none. "
            "Set `model.keep_layers: null`."
        )
    indices = kept_layer_indices(keep, settings["num_layers"])
    from tfft.backbones.deberta import attend_within_reach

    smaller_settings = (model.keep_layer_settings(indices) if hasattr(model, "keep_layer_settings")
                        else {**settings, "num_layers": len(indices)})  # ModernBERT: each layer keeps its kind
    smaller = type(model).from_config(smaller_settings)
    attend_within_reach(smaller)
    copy_weights(model, smaller, indices)
    activation = feedforward_activation(model)
    if activation is not None:
        set_feedforward_activation(smaller, activation)
    return with_pooled_output(smaller)


def copy_weights(source: keras.Model, target: keras.Model, keep: list[int] | None = None) -> int:
    """Copies each weight of `source` into the weight of `target` at the same path; returns how many.

    With `keep`, `source`'s encoder block `keep[i]` goes to `target`'s block
    `i` and its other blocks are left out. LoRA factors that only `target`
    has keep their values.

    Raises:
        ValueError: a weight of `target` has no counterpart in `source`, or
            one of another shape, naming the first such weight.
    """
    position = {layer: i for i, layer in enumerate(keep)} if keep is not None else None
    by_path = {}
    for weight in source.weights:
        path = getattr(weight, "path", weight.name)
        found = _LAYER_IN_PATH.search(path)
        if found and position is not None:
            layer = int(found.group(1))
            if layer not in position:
                continue
            path = path[:found.start(1)] + str(position[layer]) + path[found.end(1):]
        by_path[path] = weight
    pairs = []
    for weight in target.weights:
        path = getattr(weight, "path", weight.name)
        if path not in by_path:
            if "lora_kernel" in path:
                continue
            raise ValueError(f"`{path}` has no counterpart in `{source.name}`.")
        if tuple(by_path[path].shape) != tuple(weight.shape):
            raise ValueError(f"`{path}` is {tuple(weight.shape)} here and {tuple(by_path[path].shape)} in `{source.name}`.")
        pairs.append((weight, by_path[path]))
    for weight, value in pairs:
        weight.assign(tf.cast(value, weight.dtype))
    return len(pairs)


_ENCODER_LAYER = re.compile(r"transformer_layer_\d+|disentangled_attention_encoder_layer_\d+|group_\d+_inner_layer_\d+")


def keras_hub_layer_groups(backbone: keras.Model) -> LayerGroups:
    """Layer groups of a keras-hub encoder, found by keras-hub's layer names.

    keras-hub names encoder blocks `transformer_layer_<i>` (DeBERTa-v3:
    `disentangled_attention_encoder_layer_<i>`) and embedding layers
    `*embedding*` in BERT, DistilBERT, RoBERTa, XLM-RoBERTa, ELECTRA and
    DeBERTa-v3 alike (DeBERTa's relative-position table among them).
    ALBERT shares one set of weights across its layers: its encoder groups are
    the distinct blocks `group_<g>_inner_layer_<i>` (one, for the released
    checkpoints), and its embedding projection counts as an embedding.
    """
    model = inner_backbone(backbone)
    encoder = sorted(
        (layer for layer in model.layers if _ENCODER_LAYER.fullmatch(layer.name)),
        key=lambda layer: tuple(int(n) for n in re.findall(r"\d+", layer.name)),
    )
    embeddings = [layer for layer in model.layers if "embedding" in layer.name and layer.weights]
    if not encoder:
        raise ConfigError(
            f"Backbone `{model.name}` ({type(model).__name__}) has no `transformer_layer_<i>` (or ALBERT `group_<g>_inner_layer_<i>`) layers, so "
            "`model.freeze_layers` cannot pick its lower layers. Use `model.freeze_layers: -1` (freeze "
            "everything) or a BERT-style encoder."
        )
    pooler = [layer for layer in model.layers if layer.name == "pooled_dense"]
    shared = any(layer.name.startswith("group_") for layer in encoder)  # ALBERT: one block at every depth
    if type(model).__name__ in FIRST_TOKEN_POOLED:
        return LayerGroups(embeddings=embeddings, encoder=encoder, unused=pooler, called_once=not shared)
    return LayerGroups(embeddings=embeddings, encoder=encoder, pooler=pooler, called_once=not shared)


def reinitialize_layers(layers: list, seed: int) -> int:
    """Re-draws each weight of `layers` that its (sub)layer names an initializer for; returns how many.

    A sublayer's `kernel_initializer` re-draws its `kernel` (the stored one:
    `_kernel` where Keras keeps it behind a property), `gamma_initializer`
    its `gamma`, and so on, in Keras 3 and tf-keras layers alike. Seeded
    initializers get `seed`, `seed + 1`, ... in a fixed order.
    """
    drawn = 0
    for layer in layers:
        for sublayer in layer._flatten_layers(include_self=True):
            for attribute, initializer in sorted(vars(sublayer).items()):
                if not attribute.endswith("_initializer") or initializer is None or isinstance(initializer, str):
                    continue
                name = attribute.removesuffix("_initializer")
                weight = getattr(sublayer, "_" + name, None) if hasattr(sublayer, "_" + name) else getattr(sublayer, name, None)
                if weight is None or not hasattr(weight, "assign") or not hasattr(initializer, "get_config"):
                    continue
                settings = initializer.get_config()
                if "seed" in settings:
                    initializer = type(initializer).from_config({**settings, "seed": seed + drawn})
                weight.assign(tf.cast(initializer(tuple(weight.shape), dtype="float32"), weight.dtype))
                drawn += 1
    return drawn
