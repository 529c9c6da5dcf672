"""Backbone sources: Hugging Face checkpoint folders and `transformers` TF models."""

import json
import pathlib
import re

import numpy as np
import pytest
import tensorflow as tf

from conftest import SHARED_DATA, run_python
from tfft import train
from tfft.backbones import resolve
from tfft.config import ConfigError, ModelConfig

try:
    import torch
    import transformers
except ImportError:  # the safety tests below need neither, and still run
    torch = transformers = None

import hf_checkpoints  # noqa: E402

#: The parity and conversion tests write checkpoints with PyTorch `transformers` and compare against it.
requires_transformers = pytest.mark.skipif(transformers is None, reason="needs torch and transformers")

MINILM = SHARED_DATA / "all_minilm_l6_v2"
BERT_TINY_TOKENIZER = SHARED_DATA / "bert_tiny_tokenizer"


def _source(path, source="auto", sequence_length=32):
    backbone = resolve(ModelConfig(backbone=str(path), source=source, sequence_length=sequence_length))
    backbone.prepare(None, None)
    return backbone


PARITY_TEXTS = tf.constant(["the movie was great", "Café 東京 😀 was dull!"])


def _hidden_states(backbone, features):
    """tfft's backbone's `sequence_output` at the real (unpadded) positions of `features`."""
    return backbone(features)["sequence_output"].numpy()[features["padding_mask"].numpy().astype(bool)]


def _transformers_hidden_states(path, features, keep_layers=None):
    """The `transformers` model's last hidden states at the real positions of the same packed `features`
    (with only its encoder layers `keep_layers`, if given)."""
    reference = transformers.AutoModel.from_pretrained(path).eval()
    if keep_layers is not None:
        owner, name = (reference, "layers") if hasattr(reference, "layers") else (reference.encoder, "layer")
        setattr(owner, name, torch.nn.ModuleList(getattr(owner, name)[i] for i in keep_layers))
    with torch.no_grad():
        theirs = reference(
            input_ids=torch.tensor(features["token_ids"].numpy(), dtype=torch.long),
            attention_mask=torch.tensor(features["padding_mask"].numpy(), dtype=torch.long),
        ).last_hidden_state.numpy()
    return theirs[features["padding_mask"].numpy().astype(bool)]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    return {
        "bert": hf_checkpoints.write_bert(root / "bert"),
        "distilbert": hf_checkpoints.write_bert(root / "distilbert", distil=True),
        "roberta": hf_checkpoints.write_roberta(root / "roberta"),
        "xlm-roberta": hf_checkpoints.write_xlm_roberta(root / "xlm_roberta"),
        "albert": hf_checkpoints.write_albert(root / "albert"),
        "electra": hf_checkpoints.write_electra(root / "electra"),
        "deberta-v3": hf_checkpoints.write_deberta_v3(root / "deberta_v3"),
        "modernbert": hf_checkpoints.write_modernbert(root / "modernbert"),
    }


ARCHITECTURES = ["bert", "distilbert", "roberta", "xlm-roberta", "albert", "electra", "deberta-v3", "modernbert"]
#: The families tfft maps itself (keras-hub has no converter, or no backbone).
CONVERTED = ["electra", "deberta-v3", "modernbert"]
#: Encoder layers with weights of their own: ALBERT shares one block across its layers.
ENCODER_GROUPS = {"albert": 1, "modernbert": 3}


def test_unsupported_model_type_lists_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt_neox"}))
    with pytest.raises(ConfigError, match="model_type='gpt_neox'.*Supported model types: bert, distilbert, roberta, xlm-roberta, albert, electra, "
                       "deberta-v2, modernbert"):
        _source(tmp_path)


def test_pickled_weights_are_never_loaded(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not to be unpickled")
    with pytest.raises(ConfigError, match="has no model.safetensors. tfft does not unpickle pytorch_model.bin"):
        _source(tmp_path)


@requires_transformers
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_converted_backbone_equals_the_transformers_model(checkpoints, arch):
    path = checkpoints[arch]
    source = _source(path)
    backbone = source.backbone()
    features = source.packer()(PARITY_TEXTS)
    ours = _hidden_states(backbone, features)
    np.testing.assert_allclose(ours, _transformers_hidden_states(path, features), atol=1e-4)
    assert len(source.layer_groups(backbone).encoder) == ENCODER_GROUPS.get(arch, 2)


#: Trained here; the converted families train every task with every recipe in `test_task_contract.py`.
KERAS_HUB_CONVERTED = [arch for arch in ARCHITECTURES if arch not in CONVERTED]


@requires_transformers
@pytest.mark.slow
@pytest.mark.parametrize("arch", KERAS_HUB_CONVERTED)
def test_each_architecture_fine_tunes(checkpoints, make_config, arch):
    result = train.run(make_config(f"model.backbone={checkpoints[arch]}", "train.epochs=1", "data.max_train_examples=64",
                                   "model.freeze_layers=1"))
    assert np.isfinite(result.history["loss"]).all()
    assert result.metrics["examples"] == 96
    # The embeddings and the lowest encoder layer are frozen, the head trains.
    groups = _source(checkpoints[arch]).layer_groups(result.model.backbone)
    assert not any(w.trainable for layer in [*groups.embeddings, groups.encoder[0]] for w in layer.weights)
    assert result.model.get_layer("head").trainable


@requires_transformers
def test_wordpiece_ids_equal_the_transformers_tokenizer():
    if not BERT_TINY_TOKENIZER.is_dir():
        pytest.skip(f"{BERT_TINY_TOKENIZER} is missing")
    _assert_tokenizer_parity(BERT_TINY_TOKENIZER, "bert")


@requires_transformers
def test_a_vocabulary_that_repeats_a_token_gives_the_transformers_ids(checkpoints, tmp_path):
    """keras-hub refuses repeated vocab.txt lines; transformers maps such a token to its last line."""
    import shutil

    path = shutil.copytree(checkpoints["bert"], tmp_path / "repeats")
    lines = (path / "vocab.txt").read_text().splitlines()
    the = lines.index("the")
    lines[-1] = "the"  # listed twice: transformers gives it the last id
    (path / "vocab.txt").write_text("\n".join(lines) + "\n")
    (path / "tokenizer.json").unlink()  # built again from vocab.txt
    sentences = ["the movie was great", "The Cast and the plot", "thematic"]
    _assert_tokenizer_parity(path, "bert", sentences=sentences)
    from tfft.backbones.huggingface import HuggingFaceCheckpoint

    source = HuggingFaceCheckpoint(ModelConfig(backbone=str(path), sequence_length=16))
    source.model_type = "bert"
    assert the != len(lines) - 1 and source.packer()(tf.constant(["the"]))["token_ids"].numpy()[0, 1] == len(lines) - 1


def _has_whitespace_run(sentence):
    return re.search(r"\s\s", sentence) is not None


@requires_transformers
def test_byte_level_bpe_ids_equal_the_transformers_tokenizer(checkpoints):
    _assert_tokenizer_parity(checkpoints["roberta"], "roberta")


@requires_transformers
@pytest.mark.parametrize("arch", ["xlm-roberta", "albert"])
def test_sentencepiece_ids_equal_the_transformers_tokenizer(checkpoints, arch):
    """Against Hugging Face's SentencePiece tokenizers (`use_fast=False`), which run the model file itself.

    The Rust "fast" conversions of a unigram model segment a few strings
    differently from SentencePiece (trailing whitespace, runs of dots).
    """
    _assert_tokenizer_parity(checkpoints[arch], arch, use_fast=False)


@requires_transformers
def test_electra_wordpiece_ids_equal_the_transformers_tokenizer(checkpoints):
    _assert_tokenizer_parity(checkpoints["electra"], "electra")


@requires_transformers
def test_deberta_v3_sentencepiece_ids_equal_the_transformers_tokenizer(checkpoints):
    """The ids of spm.model itself (`use_fast=False`) on all 1,000 texts; `AutoTokenizer`'s Rust conversion differs
    on a known few: it splits a run of three dots "." + ".." where SentencePiece gives ".." + "." (tied scores)."""
    path = checkpoints["deberta-v3"]
    _assert_tokenizer_parity(path, "deberta-v3", use_fast=False)
    sentences = hf_checkpoints.parity_sentences(1000)
    ours = _source(path, sequence_length=48).packer()(tf.constant(sentences))["token_ids"].numpy()
    fast = transformers.AutoTokenizer.from_pretrained(path)
    theirs = fast(sentences, max_length=48, truncation=True, padding="max_length")["input_ids"]
    differ = [(a.tolist(), b) for a, b in zip(ours, theirs, strict=True) if a.tolist() != list(b)]
    dots = fast.convert_tokens_to_ids([".", ".."])
    assert 0 < len(differ) <= 10
    for a, b in differ:
        assert [x for x in a if x not in dots] == [x for x in b if x not in dots], (a, b)
        assert fast.convert_ids_to_tokens(a).count("..") == fast.convert_ids_to_tokens(b).count("..")


@requires_transformers
def test_modernbert_byte_level_bpe_ids_equal_the_transformers_tokenizer(checkpoints):
    _assert_tokenizer_parity(checkpoints["modernbert"], "modernbert")


@requires_transformers
def test_mixed_lengths_and_long_texts_equal_the_transformers_model(checkpoints):
    """A batch of texts from a few pieces to all 64 positions: padding leaves the real positions alone, and DeBERTa's
    log-scaled relative buckets (8 buckets: beyond 4 pieces apart), ModernBERT's 8-position local window and its two
    rotary bases, and ELECTRA's last positions match."""
    texts = tf.constant(["good", "the movie was great", " ".join(["the film was not very good"] * 12)])
    for arch in CONVERTED:
        source = _source(checkpoints[arch], sequence_length=64)
        features = source.packer()(texts)
        lengths = features["padding_mask"].numpy().sum(axis=1)
        assert lengths.min() <= 8 and lengths.max() == 64, lengths  # 64: every position the checkpoints have
        ours = _hidden_states(source.backbone(), features)
        np.testing.assert_allclose(ours, _transformers_hidden_states(checkpoints[arch], features), atol=1e-4)


@requires_transformers
@pytest.mark.parametrize("arch", CONVERTED)
def test_kept_layers_compute_what_transformers_computes_without_the_others(checkpoints, arch):
    source = _source(checkpoints[arch])
    keep = [1, 2] if arch == "modernbert" else [1]  # ModernBERT: a local then a global layer, each keeping its kind
    backbone = source.keep_layers(source.backbone(), keep)  # `model.keep_layers`, as a distilled student
    features = source.packer()(PARITY_TEXTS)
    assert len(source.layer_groups(backbone).encoder) == len(keep)
    ours = _hidden_states(backbone, features)
    np.testing.assert_allclose(ours, _transformers_hidden_states(checkpoints[arch], features, keep_layers=keep),
                               atol=1e-4)


@requires_transformers
def test_deberta_attends_within_reach_as_keras_hub_does_over_every_bucket(checkpoints):
    """`deberta.attend_within_reach` projects only the buckets a text reaches; keras-hub's own layer (the instance's
    method removed) projects all 16 and gives the same outputs, for a student's kept layers too."""
    from tfft.backbones.base import inner_backbone

    source = _source(checkpoints["deberta-v3"], sequence_length=64)
    features = source.packer()(tf.constant(["good", " ".join(["the film was not very good"] * 12)]))
    for backbone in (source.backbone(), source.keep_layers(source.backbone(), [1])):
        layers = [block._self_attention_layer for block in inner_backbone(backbone).transformer_layers]
        assert all("_compute_attention" in vars(layer) for layer in layers)
        ours = backbone(features)["sequence_output"].numpy()
        for layer in layers:
            del layer._compute_attention
        np.testing.assert_allclose(ours, backbone(features)["sequence_output"].numpy(), atol=1e-5)


@requires_transformers
@pytest.mark.parametrize("arch", CONVERTED)
def test_a_saved_preset_of_each_family_loads_back_as_model_backbone(checkpoints, arch, tmp_path):
    """`tfft adapt` writes a preset folder; keras-hub finds no preprocessor of its own for ELECTRA or ModernBERT."""
    from tfft.backbones import save_preset

    source = _source(checkpoints[arch])
    backbone, packer = source.backbone(), source.packer()
    save_preset(backbone, packer, tmp_path / "preset")
    again = _source(tmp_path / "preset")
    features = again.packer()(PARITY_TEXTS)
    np.testing.assert_array_equal(features["token_ids"], packer(PARITY_TEXTS)["token_ids"])
    np.testing.assert_allclose(_hidden_states(again.backbone(), features), _hidden_states(backbone, features), atol=1e-6)


@requires_transformers
@pytest.mark.parametrize("arch, key, value", [
    ("electra", "position_embedding_type", "relative_key"),
    ("electra", "layer_norm_eps", 1e-5),
    ("deberta-v3", "pos_att_type", "c2p"),
    ("deberta-v3", "share_att_key", False),
    ("deberta-v3", "conv_kernel_size", 3),
    ("deberta-v3", "position_biased_input", True),
    ("modernbert", "hidden_activation", "silu"),
    ("modernbert", "rope_scaling", {"rope_type": "linear", "factor": 2.0}),
])
def test_a_setting_tfft_does_not_implement_is_named_before_training(checkpoints, tmp_path, arch, key, value):
    import shutil

    path = shutil.copytree(checkpoints[arch], tmp_path / arch)
    settings = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**settings, key: value}))
    with pytest.raises(ConfigError, match=f"has {key}={value!r} in config.json"):
        _source(path)


@requires_transformers
def test_a_checkpoint_with_tensors_tfft_would_drop_is_refused(checkpoints, tmp_path):
    import shutil

    from safetensors.numpy import load_file, save_file

    path = shutil.copytree(checkpoints["electra"], tmp_path / "electra")
    tensors = load_file(path / "model.safetensors")
    save_file({**tensors, "electra.encoder.layer.0.attention.self.distance_embedding.weight": np.zeros((4, 4),
               np.float32)}, path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ConfigError, match="1 tensor.*first `electra.encoder.layer.0.attention.self.distance_embedding"):
        _source(path).backbone()


@requires_transformers
def test_electra_heads_read_the_first_token_and_never_train_keras_hubs_untrained_pooler(checkpoints):
    from tfft.freezing import freeze

    source = _source(checkpoints["electra"])
    backbone = source.backbone()
    features = source.packer()(PARITY_TEXTS)
    outputs = backbone(features)
    np.testing.assert_allclose(outputs["pooled_output"], outputs["sequence_output"][:, 0], atol=0)
    groups = source.layer_groups(backbone)
    freeze(backbone, groups, freeze_layers=0, freeze_embeddings=False)
    assert groups.pooler == [] and [layer.name for layer in groups.unused] == ["pooled_dense"]
    assert backbone.trainable_weights and not any("pooled_dense" in w.path for w in backbone.trainable_weights)


@requires_transformers
def test_byte_level_bpe_whitespace_runs(checkpoints):
    """A run of spaces before a word gives its last space to the word, as GPT-2's `\\s+(?!\\S)` does (in the
    graph; keras-hub's eager path, the `tokenizers` library, keeps the run together)."""
    sentences = [s for s in hf_checkpoints.parity_sentences(1000) if _has_whitespace_run(s)]
    assert len(sentences) >= 20
    _assert_tokenizer_parity(checkpoints["roberta"], "roberta", sentences=sentences)


def _assert_tokenizer_parity(path, kind, sequence_length=48, sentences=None, use_fast=True):
    """The packer's ids (its graph, which training and serving run; keras-hub's eager path uses other libraries)
    equal the reference tokenizer's."""
    from tfft.backbones.huggingface import HuggingFaceCheckpoint

    sentences = sentences or hf_checkpoints.parity_sentences(1000)
    if kind == "bert":  # a tokenizer folder without weights: build only the packer
        source = HuggingFaceCheckpoint(ModelConfig(backbone=str(path), sequence_length=sequence_length))
        source.model_type = "bert"
    else:
        source = _source(path, sequence_length=sequence_length)
    ours = source.packer()(tf.constant(sentences))["token_ids"].numpy()
    reference = transformers.AutoTokenizer.from_pretrained(path, use_fast=use_fast)
    theirs = reference(sentences, max_length=sequence_length, truncation=True, padding="max_length")["input_ids"]
    mismatched = [(s, a.tolist(), b) for s, a, b in zip(sentences, ours, theirs, strict=True) if a.tolist() != list(b)]
    assert not mismatched, f"{len(mismatched)} of {len(sentences)} differ, e.g. {mismatched[0]}"


@pytest.fixture(scope="module")
def tf_bert(tmp_path_factory):
    """A tiny `transformers` TF BERT saved as tf_model.h5, with a vocab.txt."""
    path = tmp_path_factory.mktemp("tf_bert")
    hf_checkpoints.write_bert(path)
    (path / "model.safetensors").unlink()
    tf_model = transformers.TFBertModel(transformers.BertConfig.from_pretrained(path), name="tf_bert_model")
    tf_model(tf_model.dummy_inputs)
    tf_model.save_pretrained(path)
    return path


@requires_transformers
@pytest.mark.slow
def test_transformers_source_trains_freezes_and_exports(tf_bert, make_config, tmp_path):
    config = make_config(f"model.backbone={tf_bert}", "model.source=transformers", "model.freeze_layers=1",
                         "train.epochs=2", "export.enabled=true")
    result = train.run(config)
    assert np.isfinite(result.history["loss"]).all()
    groups = _source(tf_bert, "transformers").layer_groups(result.model.backbone)
    fresh = transformers.TFBertModel.from_pretrained(tf_bert)
    def by_name(weights):  # without the per-instance model name ("tf_bert_model_1/...")
        return {w.name.split(":")[0].split("/", 1)[1]: w.numpy() for w in weights}

    before = by_name(fresh.weights)
    trained = by_name(result.model.backbone.get_layer("transformers_encoder")._hf_model[0].weights)
    frozen = [k for k in before if "/embeddings/" in k or "/layer_._0/" in k]
    trainable = [k for k in before if "/layer_._1/" in k]
    assert frozen and trainable and groups.encoder
    for key in frozen:
        assert np.array_equal(before[key], trained[key]), f"{key} is frozen but changed"
    assert any(not np.array_equal(before[key], trained[key]) for key in trainable)

    import tensorflow_text  # noqa: F401

    texts = ["the movie was great", "Café was dull", ""]
    served = tf.saved_model.load(result.export_path).signatures["serving_default"](text=tf.constant(texts))
    expected = tf.nn.softmax(result.model.predict(result.packer(tf.constant(texts)), verbose=0))
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)


@requires_transformers
def test_a_transformers_backbone_leaves_the_processes_a_user_starts_on_keras_3(tf_bert):
    """Importing transformers' TF code sets TF_USE_LEGACY_KERAS=1 for the process tree; tfft puts it back."""
    code = """
import os, subprocess, sys
os.environ.pop("TF_USE_LEGACY_KERAS", None)  # a fresh process (this one imported transformers' TF code)
from tfft.backbones import resolve
from tfft.config import ModelConfig
source = resolve(ModelConfig(backbone=sys.argv[1], source="transformers", sequence_length=32))
source.prepare(None, None)
source.backbone()
child = "import os, tensorflow as tf; print(os.environ.get('TF_USE_LEGACY_KERAS'), tf.keras.Model.__module__)"
print(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout)
"""
    out = run_python(code, str(tf_bert))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["None", "keras.src.models.model"]


@requires_transformers
def test_transformers_source_honours_pretrained_false(tf_bert):
    """`model.pretrained: false` builds the architecture with random weights; it used to load them anyway."""
    def source(pretrained):
        backbone = resolve(ModelConfig(backbone=str(tf_bert), source="transformers", sequence_length=32,
                                       pretrained=pretrained))
        backbone.prepare(None, None)
        return backbone

    pretrained, random_init = source(True).backbone(), source(False).backbone()
    fresh = {w.name.split("/", 1)[1]: w.numpy() for w in transformers.TFBertModel.from_pretrained(tf_bert).weights}

    def weights(backbone):
        return {w.name.split("/", 1)[1]: w.numpy() for w in backbone.get_layer("transformers_encoder")._hf_model[0].weights}

    loaded, random = weights(pretrained), weights(random_init)
    assert loaded.keys() == random.keys() == fresh.keys()
    key = next(k for k in fresh if "word_embeddings" in k)
    assert np.array_equal(loaded[key], fresh[key])
    assert not np.array_equal(random[key], fresh[key])


@requires_transformers
@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new", "relu"])
def test_the_checkpoints_feedforward_activation_is_used(tmp_path, hidden_act):
    # keras-hub's BERT always uses the tanh approximation of GELU; Hugging Face BERT checkpoints say `gelu`, the
    # exact form. Large weights make the two differ well beyond float error (about 1e-2 here).
    torch.manual_seed(0)
    path = hf_checkpoints.write_bert(tmp_path / "bert", hidden_act=hidden_act, initializer_range=0.5)
    source = _source(path)
    features = source.packer()(PARITY_TEXTS)
    ours = _hidden_states(source.backbone(), features)
    np.testing.assert_allclose(ours, _transformers_hidden_states(path, features), atol=1e-5)


@requires_transformers
def test_an_adapted_folder_keeps_the_checkpoints_activation(tmp_path):
    # `tfft adapt` saves a keras-hub preset, and keras-hub rebuilds BERT with its own activation unless told.
    from tfft.backbones import save_preset

    torch.manual_seed(0)
    source = _source(hf_checkpoints.write_bert(tmp_path / "bert", hidden_act="gelu", initializer_range=0.5))
    backbone, packer = source.backbone(), source.packer()
    save_preset(backbone, packer, tmp_path / "preset")
    features = packer(PARITY_TEXTS)
    reloaded = _source(tmp_path / "preset").backbone()
    np.testing.assert_allclose(_hidden_states(reloaded, features), _hidden_states(backbone, features), atol=1e-6)


@requires_transformers
def test_an_unsupported_activation_is_named(tmp_path):
    torch.manual_seed(0)
    path = hf_checkpoints.write_bert(tmp_path / "bert", hidden_act="silu")
    with pytest.raises(ConfigError, match=r"has hidden_act='silu' in config.json.*Supported: gelu, gelu_new"):
        _source(path).backbone()


@requires_transformers
@pytest.mark.slow
def test_real_minilm_loads_through_both_paths_with_the_same_pooled_output():
    if not (MINILM / "model.safetensors").is_file():
        pytest.skip(f"{MINILM} is missing")
    sentences = tf.constant(["A man is eating food.", "A man is eating a piece of bread.", "Héllo Wörld, café!"])
    pooled = {}
    for source in ("huggingface", "transformers"):
        backbone_source = _source(MINILM, source)
        pooled[source] = backbone_source.backbone()(backbone_source.packer()(sentences))["pooled_output"].numpy()
    np.testing.assert_allclose(pooled["huggingface"], pooled["transformers"], atol=2e-5)


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """`huggingface_hub.hf_hub_download` over local folders: `repos[id] = folder`.

    Files land in a snapshot folder per id, one by one, as the real one puts
    them; a missing file raises `EntryNotFoundError`.
    """
    import shutil

    import huggingface_hub
    from huggingface_hub.utils import EntryNotFoundError

    repos, fetched = {}, []

    def hf_hub_download(repo_id, filename, **kwargs):
        source = pathlib.Path(repos[repo_id]) / filename
        if not source.is_file():
            raise EntryNotFoundError(f"{filename} is not in {repo_id}")
        target = tmp_path / "hub_cache" / repo_id / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
        fetched.append((repo_id, filename))
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    return repos, fetched


def _pooled(source):
    return source.backbone()(source.packer()(tf.constant(["the movie was great", "Café was dull!"])))["pooled_output"]


@requires_transformers
@pytest.mark.parametrize("source", ["huggingface", "transformers"])
def test_hf_ids_load_like_local_folders(fake_hub, checkpoints, tf_bert, source):
    repos, fetched = fake_hub
    local = checkpoints["bert"] if source == "huggingface" else tf_bert
    repos["org/tiny-bert"] = local
    np.testing.assert_allclose(_pooled(_source("hf://org/tiny-bert", source)), _pooled(_source(local, source)),
                               atol=1e-6)
    assert ("org/tiny-bert", "config.json") in fetched
    assert not any(name.endswith(".bin") for _, name in fetched)  # never asks for pickles


@requires_transformers
def test_tf_model_h5_wins_over_a_pytorch_safetensors_beside_it(tf_bert, checkpoints, tmp_path):
    """Hub repos often hold both; transformers would pick the safetensors and fail to read it into TF."""
    import shutil

    both = shutil.copytree(tf_bert, tmp_path / "both")
    shutil.copy(checkpoints["bert"] / "model.safetensors", both / "model.safetensors")
    np.testing.assert_allclose(_pooled(_source(both, "transformers")), _pooled(_source(tf_bert, "transformers")),
                               atol=1e-6)


@requires_transformers
def test_transformers_source_reinitializes_its_top_layer_and_refuses_lora(tf_bert, make_config, no_fit):
    from tfft import layerwise
    from tfft.config import ConfigError

    source = _source(tf_bert, "transformers")
    backbone = source.backbone()
    encoder = backbone.get_layer("transformers_encoder")
    groups = source.layer_groups(backbone)
    before = {id(w): w.numpy().copy() for w in backbone.weights}
    layerwise.reinitialize_top(source, groups, count=1, seed=0, pooler=False)

    def moved(layer):
        return any(not np.array_equal(w.numpy(), before[id(w)]) for w in layer.weights)

    # The top layer's kernels are re-drawn (its biases and norms were at their initial values already).
    assert [moved(layer) for layer in groups.encoder] == [False, True]
    assert not moved(groups.embeddings[0]) and not moved(groups.pooler[0])
    hf_layer = encoder.encoder_layers[1].source_layer[0]
    kernels = [w.numpy() for w in hf_layer.weights if "kernel" in w.name]
    assert all(0.012 < float(np.std(k)) < 0.022 for k in kernels)  # BERT's initializer_range, 0.02

    with pytest.raises(ConfigError, match=r"Argument `model.lora_rank` needs Keras 3 Dense or EinsumDense"):
        train.run(make_config(f"model.backbone={tf_bert}", "model.source=transformers", "model.freeze_layers=0",
                              "model.lora_rank=4"))


@requires_transformers
@pytest.mark.slow
@pytest.mark.parametrize("arch", [*KERAS_HUB_CONVERTED, "tiny-bert"])
def test_each_architecture_takes_every_recipe(checkpoints, make_config, arch):
    # ALBERT's one shared block is its only layer group: it is the one re-initialized, LoRA-adapted layer.
    backbone = checkpoints.get(arch, arch)
    result = train.run(make_config(f"model.backbone={backbone}", "train.epochs=1", "data.max_train_examples=32",
                                   "model.freeze_layers=0", "train.layer_decay=0.8", "model.reinit_layers=1",
                                   "model.lora_rank=2", "train.gradient_accumulation_steps=2", "data.validation="))
    assert np.isfinite(result.history["loss"]).all()
    factors = [w for w in result.model.trainable_weights if "lora_kernel" in w.path]
    assert factors and any(np.abs(w.numpy()).max() > 0 for w in factors if w.path.endswith("lora_kernel_b"))


def test_a_preset_path_that_is_not_a_folder_is_refused_naming_the_key(tmp_path):
    # keras-hub's own error lists every kind of preset; tfft names the key and the path it looked for.
    missing = tmp_path / "runs" / "first" / "backbone"
    source = resolve(ModelConfig(backbone=str(missing)))
    with pytest.raises(ConfigError, match=rf"Argument `model.backbone` must be .* `{missing}` is not a folder.*"
                                          rf"Received: backbone='{missing}'"):
        source.prepare(None, None)
    resolve(ModelConfig(backbone="bert_tiny_en_uncased")).prepare(None, None)  # a name is keras-hub's to find
