"""Masked-LM adaptation (`tfft.tasks.masked_lm`, `tfft.adapt`, `tfft adapt`): masking, perplexity, the adapted folder."""

import json
import pathlib
import random
import shutil

import numpy as np
import pytest
import tensorflow as tf
import yaml
from absl.testing import flagsaver

import hf_checkpoints
from conftest import NEGATIVE, NOUNS, POSITIVE, TASK_DATA, build_untrained
from tfft import adapt, backbones, cli, run_dir, tasks, train
from tfft.config import load_config
from tfft.errors import DataError


def _task_and_packer(backbone, *overrides, sequence_length=64):
    config = load_config(None, ["data.train=x.txt", "task.type=masked_lm", f"model.backbone={backbone}",
                                f"model.sequence_length={sequence_length}", *overrides])
    source = backbones.resolve(config.model)
    source.prepare(hf_checkpoints.parity_sentences(400, seed=1), None)
    packer = source.packer()
    task = tasks.create(config)
    task.check_packer(packer)
    return task, packer


def _sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = POSITIVE + NEGATIVE + NOUNS + ["the", "was", "and", "fine", "."]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(5, 40))) for _ in range(n)]


def _masked(task, packer, texts):
    features = packer(tf.constant(texts))
    masked, labels, weights = task.mask(packer, features, task._seeds(tf.constant(texts)))
    return features, masked, labels.numpy(), weights.numpy()


def test_masking_rates_hold_on_10000_tokens(tiny_preset):
    task, packer = _task_and_packer(tiny_preset)
    texts = _sentences(600)
    features, masked, labels, weights = _masked(task, packer, texts)
    original, corrupted = features["token_ids"].numpy(), masked["token_ids"].numpy()
    specials = np.isin(original, packer.tokenizer.special_token_ids)
    tokens = int(((features["padding_mask"].numpy() > 0) & ~specials).sum())
    assert tokens >= 10_000
    chosen = weights > 0
    assert abs(chosen.sum() / tokens - 0.15) < 0.01
    rows = np.repeat(np.arange(len(texts))[:, None], labels.shape[1], axis=1)[chosen]
    positions = masked["mask_positions"].numpy()[chosen]
    now = corrupted[rows, positions]
    assert (labels[chosen] == original[rows, positions]).all()  # labels are the original pieces
    mask_id = packer.tokenizer.mask_token_id
    n = chosen.sum()
    assert abs((now == mask_id).sum() / n - 0.80) < 0.03
    random_token = (now != mask_id) & (now != labels[chosen])
    vocabulary = packer.tokenizer.vocabulary_size()
    assert abs(random_token.sum() / n - 0.10 * (1 - 1 / vocabulary)) < 0.02
    assert abs((now == labels[chosen]).sum() / n - 0.10 * (1 + 1 / vocabulary)) < 0.02
    # Nothing else changes.
    untouched = np.ones_like(original, bool)
    untouched[rows, positions] = False
    assert (corrupted[untouched] == original[untouched]).all()


def test_special_tokens_and_padding_are_never_masked(tiny_preset):
    task, packer = _task_and_packer(tiny_preset, "task.mask_rate=0.9")
    texts = _sentences(300, seed=1) + ["", "the"]
    features, masked, labels, weights = _masked(task, packer, texts)
    original = features["token_ids"].numpy()
    positions = masked["mask_positions"].numpy()
    chosen = weights > 0
    rows = np.repeat(np.arange(len(texts))[:, None], positions.shape[1], axis=1)
    at = original[rows[chosen], positions[chosen]]
    assert not np.isin(at, packer.tokenizer.special_token_ids).any()  # [CLS], [SEP], [PAD], [MASK]
    assert (features["padding_mask"].numpy()[rows[chosen], positions[chosen]] == 1).all()
    assert chosen[-2].sum() == 0  # an empty text has nothing to mask
    # Special tokens and padding keep their ids.
    special = np.isin(original, packer.tokenizer.special_token_ids)
    assert (masked["token_ids"].numpy()[special] == original[special]).all()
    assert chosen.sum(axis=1).max() <= task.max_predictions(packer)


def _whole_word_masks(tmp_path, *overrides):
    """(chosen `[texts, length]`, continuation `[texts, length]`, budget) on texts of multi-piece words."""
    bert = hf_checkpoints.write_bert(tmp_path / "bert")
    task, packer = _task_and_packer(bert, "task.whole_word_masking=true", *overrides)
    rng = random.Random(0)
    words = ["films", "filmed", "filming", "badly", "goodly", "the", "film", "was", "good", "plots", "casting"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 30))) for _ in range(300)]
    features, masked, _, weights = _masked(task, packer, texts)
    vocabulary = np.array(packer.tokenizer.get_vocabulary())
    ids = features["token_ids"].numpy()
    chosen = np.zeros_like(ids, bool)
    for row, (p, w) in enumerate(zip(masked["mask_positions"].numpy(), weights, strict=True)):
        chosen[row, p[w > 0]] = True
    return chosen, np.char.startswith(vocabulary[ids], "##"), task.max_predictions(packer)


def _assert_whole_words(chosen, continuation):
    checked = 0
    for row in range(chosen.shape[0]):
        for position in range(1, chosen.shape[1]):
            if continuation[row, position]:  # a continuation piece is chosen exactly when its word's previous piece is
                assert chosen[row, position] == chosen[row, position - 1], f"text {row}, position {position}"
                checked += 1
    assert checked > 100


def test_whole_word_masking_masks_every_piece_of_a_chosen_word(tmp_path):
    chosen, continuation, _ = _whole_word_masks(tmp_path, "task.max_predictions=64")
    _assert_whole_words(chosen, continuation)


def test_whole_word_masking_leaves_out_a_word_that_would_run_past_the_budget(tmp_path):
    # 40% of up to ~60 pieces against a budget of 4: the budget ends inside a word in many texts.
    chosen, continuation, budget = _whole_word_masks(tmp_path, "task.max_predictions=4", "task.mask_rate=0.4")
    assert budget == 4
    _assert_whole_words(chosen, continuation)
    assert chosen.sum(axis=1).max() <= budget
    assert (chosen.sum(axis=1) > 0).mean() > 0.95  # words still fill the budget


def test_empty_corpus_fails_before_training(make_config, tmp_path, no_fit):
    (tmp_path / "empty.txt").write_text("\n   \n\n", encoding="utf-8")
    config = make_config("task.type=masked_lm", f"data.train={tmp_path / 'empty.txt'}", "data.validation=")
    with pytest.raises(DataError, match=r"empty\.txt.*holds no text"):
        adapt.run(config)


@pytest.fixture(scope="module")
def adapted(tmp_path_factory, data_dir, tiny_preset):
    root = tmp_path_factory.mktemp("adapt")
    config_path = root / "adapt.yaml"
    train_file, validation = TASK_DATA["masked_lm"](data_dir)[1:]
    config_path.write_text(yaml.safe_dump({
        "name": "adapt", "output_dir": str(root / "run"),
        "model": {"backbone": str(tiny_preset), "sequence_length": 32, "freeze_layers": 0, "freeze_embeddings": False,
                  "dropout": 0.0},
        "data": {"train": train_file.split("=", 1)[1], "validation": validation.split("=", 1)[1]},
        "train": {"epochs": 3, "batch_size": 16, "learning_rate": 5e-3},
        "export": {"enabled": False},
    }))
    with flagsaver.flagsaver(config=str(config_path), set=[]):
        assert cli.main(["tfft", "adapt"]) == 0  # the command sets task.type: masked_lm
    return root / "run"


def test_adaptation_lowers_held_out_perplexity(adapted):
    summary = json.loads((adapted / adapt.ADAPT_FILE).read_text())
    assert summary["perplexity_after"] < 0.7 * summary["perplexity_before"]
    metrics = json.loads((adapted / "metrics.json").read_text())
    assert metrics["perplexity_before"] == summary["perplexity_before"]
    assert [p.name for p in adapted.iterdir() if not run_dir.is_own_entry(p.name)] == []  # all of it tfft's


def test_adapted_folder_loads_as_a_backbone_and_fine_tunes(adapted, make_config, tiny_preset):
    folder = adapted / run_dir.BACKBONE_DIR
    assert (folder / "metadata.json").is_file() and (folder / "masked_lm_head.npz").is_file()
    # The folder holds the adapted weights, not the starting ones.
    fresh = backbones.resolve(load_config(None, ["data.train=x", f"model.backbone={tiny_preset}", "model.sequence_length=32"]).model).backbone()
    loaded = backbones.resolve(load_config(None, ["data.train=x", f"model.backbone={folder}", "model.sequence_length=32"]).model).backbone()
    assert any(not np.allclose(a, b) for a, b in zip(fresh.get_weights(), loaded.get_weights(), strict=True))
    result = train.run(make_config(f"model.backbone={folder}"))
    assert result.metrics["accuracy"] >= 0.9  # the synthetic sentiment task, chance 0.5


def test_adapting_an_adapted_folder_starts_from_its_head(adapted, tmp_path, data_dir):
    folder = adapted / run_dir.BACKBONE_DIR
    config = load_config(None, [
        "name=again", f"output_dir={tmp_path / 'run'}", f"model.backbone={folder}", "model.sequence_length=32",
        "model.dropout=0.0", *TASK_DATA["masked_lm"](data_dir), "train.epochs=1", "train.batch_size=16",
        "export.enabled=false",
    ])
    again = adapt.run(config)
    first = json.loads((adapted / adapt.ADAPT_FILE).read_text())
    assert again.perplexity_before == pytest.approx(first["perplexity_after"], rel=1e-4)  # same weights, same masks


def test_checkpoint_without_a_head_logs_a_fresh_one(tmp_path, caplog):
    bert = hf_checkpoints.write_bert(tmp_path / "bert")
    config = load_config(None, ["data.train=x.txt", "task.type=masked_lm", f"model.backbone={bert}",
                                "model.sequence_length=32"])
    with caplog.at_level("WARNING"):
        _, source = build_untrained(config)
    assert source.masked_lm_head_weights() is None  # a `BertModel` checkpoint, as all-MiniLM-L6-v2 is
    assert "no masked-LM head weights: the head starts freshly initialized" in caplog.text


def test_hugging_face_head_weights_are_loaded(tmp_path):
    """A checkpoint saved as `BertForPreTraining` (as bert-base-uncased is) brings its `cls.predictions` head."""
    transformers = pytest.importorskip("transformers")
    bert = hf_checkpoints.write_bert(tmp_path / "bert")
    torch_model = transformers.BertForPreTraining.from_pretrained(bert)
    shutil.copytree(bert, tmp_path / "mlm")  # its tokenizer files, with the masked-LM weights saved over
    torch_model.save_pretrained(tmp_path / "mlm", safe_serialization=True)
    config = load_config(None, ["data.train=x.txt", "task.type=masked_lm", f"model.backbone={tmp_path / 'mlm'}",
                                "model.sequence_length=32", "model.dropout=0.0"])
    model, source = build_untrained(config)
    head = model.get_layer("mlm_head")
    expected = torch_model.cls.predictions
    np.testing.assert_allclose(head._intermediate_dense.kernel.numpy(),
                               expected.transform.dense.weight.detach().numpy().T, atol=1e-6)
    np.testing.assert_allclose(head._bias.numpy(), expected.bias.detach().numpy(), atol=1e-6)
    # The whole model then predicts what transformers' does at a masked position.
    packer = source.packer()
    features = packer(tf.constant(["the movie was great ."]))
    features["mask_positions"] = tf.constant([[2]], tf.int32)
    ours = model(features, training=False).numpy()[0, 0]
    import torch

    as_torch = lambda name: torch.tensor(features[name].numpy(), dtype=torch.long)  # noqa: E731
    with torch.no_grad():
        theirs = torch_model(input_ids=as_torch("token_ids"), attention_mask=as_torch("padding_mask"),
                             token_type_ids=as_torch("segment_ids")).prediction_logits.numpy()[0, 2]
    np.testing.assert_allclose(ours, theirs, atol=1e-3)


@pytest.mark.parametrize("family, torch_class", [("modernbert", "ModernBertForMaskedLM"),
                                                 ("deberta-v3", "DebertaV2ForMaskedLM"),
                                                 ("deberta-v3 lm_predictions", "DebertaV2ForMaskedLM")])
def test_converted_families_bring_their_masked_lm_head(family, torch_class, family_checkpoints, caplog, tmp_path):
    # The whole model predicts what transformers' masked-LM model does at a masked position (a fresh head: far off).
    # DeBERTa's head is `cls.predictions` in transformers' default layout, `lm_predictions.lm_head` in the released one.
    transformers = pytest.importorskip("transformers")
    import torch

    folder = family_checkpoints[family.split()[0]]
    if family.endswith("lm_predictions"):  # the same tensors, the head under the released files' names
        from safetensors.numpy import load_file, save_file

        shutil.copytree(folder, tmp_path / "released")
        tensors = load_file(folder / "model.safetensors")
        renamed = {k.replace("cls.predictions.transform.", "lm_predictions.lm_head.").replace(
            "cls.predictions.", "lm_predictions.lm_head."): v for k, v in tensors.items()}
        assert "lm_predictions.lm_head.dense.weight" in renamed
        save_file(renamed, tmp_path / "released" / "model.safetensors", metadata={"format": "pt"})
        config_folder = tmp_path / "released"
    else:
        config_folder = folder
    config = load_config(None, ["data.train=x.txt", "task.type=masked_lm", f"model.backbone={config_folder}",
                                "model.sequence_length=32", "model.dropout=0.0"])
    with caplog.at_level("INFO"):
        model, source = build_untrained(config)
    assert "Masked-LM head loaded" in caplog.text
    features = source.packer()(tf.constant(["the movie was great and the cast was fine ."]))
    features["mask_positions"] = tf.constant([[3]], tf.int32)
    ours = model(features, training=False).numpy()[0, 0]
    torch_model = getattr(transformers, torch_class).from_pretrained(folder).eval()
    with torch.no_grad():
        theirs = torch_model(input_ids=torch.tensor(features["token_ids"].numpy(), dtype=torch.long),
                             attention_mask=torch.tensor(features["padding_mask"].numpy(), dtype=torch.long)).logits
    np.testing.assert_allclose(ours, theirs.numpy()[0, 3], atol=2e-3)


def test_serving_fills_the_mask_written_in_the_text(adapted):
    from tfft.model import load_trained

    config = load_config(str(adapted / "config.yaml"))
    trained = load_trained(config)
    function, _ = trained.task.serving_signatures(trained.model, trained.packer)["serving_default"]
    long = "the movie was dull . " * 8 + "the movie was [MASK]"  # 44 pieces: the mask is past sequence_length 32
    outputs = function(tf.constant(["the movie was [MASK]", "the [MASK] was dull", "no mask here", long]))
    tokens = [[t.decode() for t in row] for row in outputs["top_tokens"].numpy()]
    assert outputs["mask_count"].numpy().tolist() == [1, 1, 0, 0]
    assert outputs["truncated_tokens"].numpy().tolist() == [0, 0, 0, 44 + 2 - 32]  # [CLS] and [SEP] counted
    assert tokens[0][0] in POSITIVE + NEGATIVE  # after "was": an adjective, as in every training sentence
    assert tokens[1][0] in NOUNS
    assert tokens[2] == tokens[3] == [""] * 5
    probabilities = outputs["top_probabilities"].numpy()
    assert (np.diff(probabilities[:2], axis=1) <= 0).all() and probabilities[:2].sum(axis=1).max() <= 1.0 + 1e-6


def test_only_the_chief_of_a_multi_worker_adaptation_writes_the_backbone_folder(tmp_path, monkeypatch):
    # The other workers' run folders are temporary; `output_dir` is the chief's to write.
    config = load_config(None, ["task.type=masked_lm", "data.train=unused.txt", f"output_dir={tmp_path}"])
    worker = train.TrainResult(None, None, None, None, None, {}, "/tmp/tfft_worker_x", chief=False)
    monkeypatch.setattr(train, "run", lambda config, hooks: worker)  # a worker's `finished` hook is not called
    result = adapt.run(config)
    assert result.backbone_dir == str(tmp_path / run_dir.BACKBONE_DIR) and result.train is worker
    assert result.perplexity_before is None and result.perplexity_after is None
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_a_kill_while_the_backbone_folder_is_written_loses_no_training(tmp_path, data_dir, tiny_preset, monkeypatch):
    # The run is marked complete only after its backbone folder is written: rerun, it writes the folder without
    # training again (a run marked complete first would be refused, and its folder half written).
    config = load_config(None, [
        "name=killed", f"output_dir={tmp_path / 'run'}", f"model.backbone={tiny_preset}", "model.sequence_length=32",
        *TASK_DATA["masked_lm"](data_dir), "train.epochs=1", "train.batch_size=16", "export.enabled=false",
    ])
    saved = backbones.save_preset

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(backbones, "save_preset", killed)
    with pytest.raises(KeyboardInterrupt):
        adapt.run(config)
    assert not (tmp_path / "run" / run_dir.COMPLETE_FILE).exists()
    monkeypatch.setattr(backbones, "save_preset", saved)
    fits = []
    monkeypatch.setattr(train, "fit", lambda *args, **kwargs: fits.append(1))
    result = adapt.run(config)
    assert fits == [] and (tmp_path / "run" / run_dir.COMPLETE_FILE).is_file()
    assert (pathlib.Path(result.backbone_dir) / "metadata.json").is_file()
    assert result.perplexity_before is not None and result.perplexity_after is not None
