"""Hugging Face checkpoints (a folder or `hf://<id>`) loaded into Keras 3 backbones.

keras-hub's Transformers converters map BERT, DistilBERT, RoBERTa,
XLM-RoBERTa and ALBERT checkpoints onto a keras-hub backbone and
preprocessor; ELECTRA, DeBERTa-v3 and ModernBERT, which keras-hub cannot
load, are mapped by tfft (`electra`, `deberta`, `modernbert` modules). Weights are read
from `model.safetensors` only: tfft never unpickles `pytorch_model.bin` and
never runs remote code.
"""

from __future__ import annotations

import json
import logging
import pathlib

import keras
import keras_hub
import tensorflow as tf

from tfft.backbones.base import (
    BackboneSource,
    LayerGroups,
    TextPacker,
    check_sequence_length,
    keras_hub_layer_groups,
    set_feedforward_activation,
    with_pooled_output,
)
from tfft.config import ConfigError

logger = logging.getLogger(__name__)

HF_PREFIX = "hf://"

#: Hugging Face `model_type` -> keras-hub classifier preprocessor class.
SUPPORTED_MODEL_TYPES = {
    "bert": "BertTextClassifierPreprocessor",
    "distilbert": "DistilBertTextClassifierPreprocessor",
    "roberta": "RobertaTextClassifierPreprocessor",
    "xlm-roberta": "XLMRobertaTextClassifierPreprocessor",
    "albert": "AlbertTextClassifierPreprocessor",
    "electra": "ElectraTextClassifierPreprocessor",  # tfft's (`tfft.backbones.electra`)
    "deberta-v2": "DebertaV3TextClassifierPreprocessor",
    "modernbert": "ModernBertPreprocessor",  # tfft's (`tfft.backbones.modernbert`)
}
_WORDPIECE_TYPES = ("bert", "distilbert", "electra")
#: Model types keras-hub cannot load from a Hugging Face folder: tfft builds the backbone (keras-hub's where it has
#: one) and maps the weights itself (`checkpoint_weights`).
CONVERTED_BY_TFFT = {
    "electra": "tfft.backbones.electra",
    "deberta-v2": "tfft.backbones.deberta",
    "modernbert": "tfft.backbones.modernbert",  # keras-hub has no ModernBERT: tfft's own backbone
}

#: A checkpoint's `hidden_act` (DistilBERT: `activation`) -> tfft's name for it (`base.ACTIVATIONS`).
HIDDEN_ACTS = {"gelu": "gelu", "gelu_new": "gelu_approximate", "gelu_pytorch_tanh": "gelu_approximate", "relu": "relu"}


def is_huggingface_checkpoint(spec: str) -> bool:
    """Whether `spec` is `hf://...` or a folder with a Hugging Face `config.json`."""
    if spec.startswith(HF_PREFIX):
        return True
    path = pathlib.Path(spec)
    return (path / "config.json").is_file() and not (path / "metadata.json").is_file()


def read_checkpoint_file(spec: str, filename: str) -> pathlib.Path | None:
    """A file of the checkpoint: from the folder, or downloaded for `hf://`."""
    if spec.startswith(HF_PREFIX):
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import EntryNotFoundError

        try:
            return pathlib.Path(hf_hub_download(spec[len(HF_PREFIX) :], filename))
        except EntryNotFoundError:
            return None
    path = pathlib.Path(spec) / filename
    return path if path.is_file() else None


def checkpoint_config(spec: str) -> dict:
    path = read_checkpoint_file(spec, "config.json")
    if path is None:
        raise ConfigError(f"Hugging Face checkpoint `{spec}` has no config.json.")
    return json.loads(path.read_text(encoding="utf-8"))


def checkpoint_activation(spec: str) -> str:
    """The feed-forward activation the checkpoint was trained with, as a `base.ACTIVATIONS` name."""
    config = checkpoint_config(spec)
    key = "activation" if "activation" in config and "hidden_act" not in config else "hidden_act"
    hidden_act = config.get(key, "gelu")
    if hidden_act not in HIDDEN_ACTS:
        raise ConfigError(
            f"Hugging Face checkpoint `{spec}` has {key}={hidden_act!r} in config.json, which tfft does not "
            f"support. Supported: {', '.join(HIDDEN_ACTS)}."
        )
    return HIDDEN_ACTS[hidden_act]


def checkpoint_model_type(spec: str) -> str:
    model_type = checkpoint_config(spec).get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ConfigError(
            f"Hugging Face checkpoint `{spec}` has model_type={model_type!r}, which tfft does not support. "
            f"Supported model types: {', '.join(SUPPORTED_MODEL_TYPES)}."
        )
    return model_type


def checkpoint_tokenizer_config(spec: str) -> dict:
    """The checkpoint's `tokenizer_config.json`, or {} when it has none."""
    path = read_checkpoint_file(spec, "tokenizer_config.json")
    return json.loads(path.read_text("utf-8")) if path else {}


def wordpiece_tokenizer(spec: str, model_type: str):
    """A keras-hub WordPiece tokenizer that matches Hugging Face's `BertTokenizer`.

    Hugging Face strips accents whenever it lowercases unless
    `tokenizer_config.json` says otherwise; keras-hub's converter does not, so
    "Café" would become `[UNK]` instead of "cafe".
    """
    vocab = read_checkpoint_file(spec, "vocab.txt")
    if vocab is None:
        raise ConfigError(f"Hugging Face checkpoint `{spec}` ({model_type}) has no vocab.txt.")
    tokenizer_config = checkpoint_tokenizer_config(spec)
    lowercase = bool(tokenizer_config.get("do_lower_case", True))
    strip_accents = tokenizer_config.get("strip_accents")
    strip_accents = lowercase if strip_accents is None else bool(strip_accents)
    cls = _LOWERCASING_TOKENIZERS[model_type] if lowercase else _TOKENIZERS[model_type]
    return cls(vocabulary=unique_vocabulary(vocab), lowercase=False, strip_accents=strip_accents)


def unique_vocabulary(path: pathlib.Path) -> list[str]:
    """The lines of a WordPiece `vocab.txt`, with the ids Hugging Face gives a token listed twice.

    `transformers` maps a repeated token to its last line; keras-hub refuses
    repeated tokens. Earlier copies become placeholders that no text can
    produce (`[` splits off as punctuation), so every id keeps its line and
    the token keeps `transformers`' id.
    """
    tokens = path.read_text(encoding="utf-8").split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    last = {token: i for i, token in enumerate(tokens)}
    repeated = sum(1 for i, token in enumerate(tokens) if last[token] != i)
    if repeated:
        logger.warning("%s repeats %d token(s); each maps to its last line, as in transformers.", path, repeated)
    return [token if last[token] == i else f"[tfft-repeated-{i}]" for i, token in enumerate(tokens)]


def _lowercase_like_python(cls):
    """`cls`, lowercasing as Hugging Face does (`str.lower`), not by Unicode case folding.

    keras-hub's `lowercase=True` case-folds, which turns "Straße" into
    "strasse"; Hugging Face keeps "straße". The subclass lowercases first and
    leaves keras-hub's own lowercasing off.
    """

    class PythonLowercase(cls):
        lowercases_text = True  # keras-hub's `lowercase` is False: tfft lowercases (`tfft.backbones.litert`)

        def tokenize(self, inputs, *args, **kwargs):
            return super().tokenize(tf.strings.lower(inputs, encoding="utf-8"), *args, **kwargs)

    PythonLowercase.__name__ = PythonLowercase.__qualname__ = f"Lowercase{cls.__name__}"
    # Registered, so that a preset folder holding it (`tfft adapt`'s output) loads back as this class.
    return keras.saving.register_keras_serializable(package="tfft")(PythonLowercase)


_TOKENIZERS = {
    "bert": keras_hub.models.BertTokenizer,
    "distilbert": keras_hub.models.DistilBertTokenizer,
    "electra": keras_hub.models.BertTokenizer,  # ELECTRA's WordPiece is BERT's, special tokens and all
}
_LOWERCASING_CLASSES = {cls: _lowercase_like_python(cls) for cls in dict.fromkeys(_TOKENIZERS.values())}
_LOWERCASING_TOKENIZERS = {name: _LOWERCASING_CLASSES[cls] for name, cls in _TOKENIZERS.items()}


class AlbertNormalizingTokenizer(keras_hub.models.AlbertTokenizer):
    """keras-hub's ALBERT tokenizer with Hugging Face's `AlbertTokenizer` text normalization.

    Hugging Face lowercases (`do_lower_case`, default true) and strips accents
    (`keep_accents`, default false) before SentencePiece; keras-hub passes the
    text as it is, so "Café" would give other pieces than the model was
    trained on.
    """

    def __init__(self, proto, lowercase: bool = True, strip_accents: bool = True, **kwargs):
        self.lowercase_like_python = lowercase
        self.strip_accents = strip_accents
        super().__init__(proto=proto, **kwargs)

    def tokenize(self, inputs, *args, **kwargs):
        import tensorflow_text as tf_text

        inputs = tf.convert_to_tensor(inputs)
        inputs = tf.strings.regex_replace(inputs, "``|''", '"')
        if self.strip_accents:
            inputs = tf.strings.regex_replace(tf_text.normalize_utf8(inputs, "NFKD"), r"\p{Mn}", "")
        if self.lowercase_like_python:
            inputs = tf.strings.lower(inputs, encoding="utf-8")
        return super().tokenize(inputs, *args, **kwargs)

    def get_config(self):
        return {**super().get_config(), "lowercase": self.lowercase_like_python, "strip_accents": self.strip_accents}


def albert_tokenizer(spec: str):
    """A keras-hub ALBERT tokenizer that normalizes text as Hugging Face's does."""
    proto = read_checkpoint_file(spec, "spiece.model")
    if proto is None:
        raise ConfigError(f"Hugging Face checkpoint `{spec}` (albert) has no spiece.model.")
    tokenizer_config = checkpoint_tokenizer_config(spec)
    return AlbertNormalizingTokenizer(
        proto=str(proto),
        lowercase=bool(tokenizer_config.get("do_lower_case", True)),
        strip_accents=not tokenizer_config.get("keep_accents", False),
    )


def fold_token_type_embedding(backbone, spec: str) -> None:
    """Adds RoBERTa's single token-type embedding to the position embeddings.

    Hugging Face RoBERTa adds `token_type_embeddings[0]` to every token;
    keras-hub's RoBERTa has no such table and its converter drops it. That is
    harmless for checkpoints converted from fairseq, where the row is zero,
    but wrong for any other. Both are added before the embedding LayerNorm,
    so folding the row into every position embedding is exact.
    """
    from safetensors import safe_open

    path = read_checkpoint_file(spec, "model.safetensors")
    with safe_open(str(path), framework="np") as tensors:
        keys = [k for k in tensors.keys() if k.endswith("embeddings.token_type_embeddings.weight")]
        if not keys:
            return
        row = tensors.get_tensor(keys[0])[0]
    if not row.any():
        return
    positions = backbone.embeddings.position_embedding.position_embeddings
    positions.assign(positions.numpy() + row[None, :])


def deberta_tokenizer(spec: str):
    """keras-hub's DeBERTa-v3 SentencePiece tokenizer on the checkpoint's `spm.model`."""
    proto = read_checkpoint_file(spec, "spm.model")
    if proto is None:
        raise ConfigError(f"Hugging Face checkpoint `{spec}` (deberta-v2) has no spm.model.")
    tokenizer_config = checkpoint_tokenizer_config(spec)
    for key in ("do_lower_case", "split_by_punct"):
        if tokenizer_config.get(key):
            raise ConfigError(
                f"Hugging Face checkpoint `{spec}` has {key}=true in tokenizer_config.json; tfft's DeBERTa "
                f"tokenizer implements the DeBERTa-v3 checkpoints' {key}=false only."
            )
    return keras_hub.models.DebertaV3Tokenizer(proto=str(proto))


def converted_family(model_type: str):
    """The module of a model type tfft converts itself (`CONVERTED_BY_TFFT`), or None."""
    import importlib

    return importlib.import_module(CONVERTED_BY_TFFT[model_type]) if model_type in CONVERTED_BY_TFFT else None


def preprocessor_class(model_type: str):
    """The classifier preprocessor class `SUPPORTED_MODEL_TYPES` names: keras-hub's, else the tfft family's."""
    name = SUPPORTED_MODEL_TYPES[model_type]
    return getattr(keras_hub.models, name, None) or getattr(converted_family(model_type), name)


def converted_backbone(spec: str, model_type: str, pretrained: bool) -> keras.Model:
    """The keras-hub backbone of a model type tfft converts itself (`CONVERTED_BY_TFFT`), with the checkpoint's
    weights when `pretrained`."""
    from tfft.backbones.checkpoint_weights import CheckpointWeights

    family = converted_family(model_type)
    backbone = family.build_backbone(checkpoint_config(spec))
    if pretrained:
        weights = CheckpointWeights(read_checkpoint_file(spec, "model.safetensors"), prefix=family.WEIGHT_PREFIX)
        family.load_weights(backbone, weights)
    return backbone


def check_converted_settings(spec: str, model_type: str) -> None:
    """Refuses a config.json setting that a model type tfft converts does not implement, naming the key."""
    family = converted_family(model_type)
    if family is not None:
        family.check_settings(spec, checkpoint_config(spec))


class HuggingFaceCheckpoint(BackboneSource):
    """A Hugging Face checkpoint folder or `hf://<id>`, converted by keras-hub or by tfft (`CONVERTED_BY_TFFT`)."""

    name = "huggingface"

    def prepare(self, train_texts, output_dir) -> None:
        self.model_type = checkpoint_model_type(self.config.backbone)
        spec = self.config.backbone
        if read_checkpoint_file(spec, "model.safetensors") is None:
            raise ConfigError(
                f"Hugging Face checkpoint `{spec}` has no model.safetensors. tfft does not unpickle "
                "pytorch_model.bin; convert it first, e.g. `AutoModel.from_pretrained(path)"
                ".save_pretrained(path, safe_serialization=True)`."
            )
        check_converted_settings(spec, self.model_type)

    def packer(self) -> TextPacker:
        spec, length = self.config.backbone, self.config.sequence_length
        preprocessor_cls = preprocessor_class(self.model_type)
        if self.model_type in _WORDPIECE_TYPES:
            tokenizer = wordpiece_tokenizer(spec, self.model_type)
        elif self.model_type in ("albert", "deberta-v2"):
            tokenizer = (albert_tokenizer if self.model_type == "albert" else deberta_tokenizer)(spec)
        elif self.model_type == "modernbert":
            tokenizer = converted_family("modernbert").tokenizer(spec, read_checkpoint_file(spec, "tokenizer.json"))
        else:
            return TextPacker(preprocessor_cls.from_preset(spec, sequence_length=length))
        return TextPacker(preprocessor_cls(tokenizer=tokenizer, sequence_length=length))

    def backbone(self) -> keras.Model:
        if self.model_type in CONVERTED_BY_TFFT:
            backbone = converted_backbone(self.config.backbone, self.model_type, self.config.pretrained)
        else:
            backbone = keras_hub.models.Backbone.from_preset(self.config.backbone, load_weights=self.config.pretrained)
        check_sequence_length(self.config, getattr(backbone, "max_sequence_length", None))
        if self.model_type == "roberta" and self.config.pretrained:  # keras-hub's XLM-R converter folds it itself.
            fold_token_type_embedding(backbone, self.config.backbone)
        set_feedforward_activation(backbone, checkpoint_activation(self.config.backbone))
        return with_pooled_output(backbone)

    def layer_groups(self, backbone: keras.Model) -> LayerGroups:
        return keras_hub_layer_groups(backbone)

    def masked_lm_head_weights(self):
        """BERT's `cls.predictions.*` (transform dense and LayerNorm, output bias), where the checkpoint has them;
        a family tfft converts reads its own (`masked_lm_head_weights` of its module; None if it has none)."""
        from safetensors import safe_open

        path = read_checkpoint_file(self.config.backbone, "model.safetensors")
        family = converted_family(self.model_type)
        if family is not None:
            from tfft.backbones.checkpoint_weights import CheckpointWeights

            read = getattr(family, "masked_lm_head_weights", None)
            return read(CheckpointWeights(path, prefix=family.WEIGHT_PREFIX)) if read else None
        with safe_open(str(path), framework="np") as tensors:
            keys = set(tensors.keys())
            prefix = "cls.predictions."
            norm = "transform.LayerNorm.weight" if prefix + "transform.LayerNorm.weight" in keys else "transform.LayerNorm.gamma"
            names = {
                "dense_kernel": "transform.dense.weight", "dense_bias": "transform.dense.bias",
                "norm_gamma": norm, "norm_beta": norm.replace("weight", "bias").replace("gamma", "beta"),
                "output_bias": "bias",
            }
            if not all(prefix + key in keys for key in names.values()):
                return None
            weights = {name: tensors.get_tensor(prefix + key) for name, key in names.items()}
        weights["dense_kernel"] = weights["dense_kernel"].T  # PyTorch stores [out, in]
        return weights
