import dataclasses
import pathlib
import re

import pytest
import yaml

from tfft.config import Config, ConfigError, apply_override, from_dict, load_config


def test_defaults_then_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ndata: {train: t.csv}\ntrain: {epochs: 5, batch_size: 8}\n")
    config = load_config(path, ["train.epochs=2", "model.freeze_layers=1", "train.learning_rate=5e-5"])
    assert config.name == "x"
    assert config.train.epochs == 2  # override beats file
    assert config.train.batch_size == 8  # file beats default
    assert config.train.schedule == "linear"  # default
    assert config.model.freeze_layers == 1
    assert config.train.learning_rate == pytest.approx(5e-5)  # YAML 1.1 reads `5e-5` as a string


def test_every_config_in_configs_folder_loads():
    paths = sorted(pathlib.Path(__file__).parents[1].joinpath("configs").glob("*.yaml"))
    assert {"demo", "sst2_minilm", "squad_minilm", "conll2003_minilm"} <= {p.stem for p in paths}
    for path in paths:
        config = load_config(path)  # validated: a bad key or value raises ConfigError
        assert config.name == path.stem, path  # each config names its own runs


def test_saved_yaml_round_trips(tmp_path):
    config = load_config(None, ["data.train=a.csv", "data.text_pair_column=b", "train.class_weight=balanced"])
    config.save(tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == config


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.frezee_layers=1", "Unknown config key `model.frezee_layers`. Did you mean `model.freeze_layers`? "
                                  "Valid keys here: backbone,"),
        ("modle.backbone=x", "Unknown config key `modle`. Did you mean `model`? Valid keys here: name,"),
        ("train.epoch=2", "Unknown config key `train.epoch`. Did you mean `train.epochs`?"),
        ("train.lr=0.1", "Unknown config key `train.lr`. Valid keys here: epochs,"),  # nothing near: no guess
        ("train.learning_rate=fast", "Argument `train.learning_rate` must be a number. Received: learning_rate='fast'"),
        ("train.schedule=step", "Argument `train.schedule` must be one of linear, cosine. Received: schedule='step'"),
        ("train.epochs=0", "Argument `train.epochs` must be >= 1. Received: epochs=0"),
        ("train.adam_epsilon=0", "Argument `train.adam_epsilon` must be > 0. Received: adam_epsilon=0"),
        ("train.megabatch=0", "Argument `train.megabatch` must be >= 1 (batches per length-sorted megabatch). "
                              "Received: megabatch=0"),
        ("search.parallel_trials=0", "Argument `search.parallel_trials` must be >= 1. Received: parallel_trials=0"),
        ("model.freeze_layers=-2", "Argument `model.freeze_layers` must be -1"),
        ("train.strategy=gpu", "must be one of auto, default, mirrored, multi_worker, tpu"),
        ("train.jit_compile=maybe", "Argument `train.jit_compile` must be true or false"),
        ("train.epochs", "must have the form `section.key=value`"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.train=a.csv", override])
    assert message in str(err.value)


def test_unknown_key_in_file_is_rejected(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {train: t.csv, text_colum: sentence}\n")
    with pytest.raises(ConfigError, match="Unknown config key `data.text_colum`.*text_column"):
        load_config(path)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="Config file `nope.yaml` does not exist"):
        load_config("nope.yaml")


def test_training_file_is_required():
    with pytest.raises(ConfigError, match="Argument `data.train` must name a training file"):
        load_config(None)


def test_early_stopping_needs_validation():
    with pytest.raises(ConfigError, match="needs `data.validation`"):
        load_config(None, ["data.train=a.csv", "train.early_stopping_patience=2"])


def test_override_of_a_section_is_rejected():
    config = from_dict({"data": {"train": "a.csv"}})
    with pytest.raises(ConfigError, match="names a section"):
        apply_override(config, "train=3")


def test_null_and_types():
    config = load_config(None, ["data.train=a.csv", "data.text_pair_column=null", "data.max_train_examples=10"])
    assert config.data.text_pair_column is None
    assert config.data.max_train_examples == 10
    assert yaml.safe_load(config.to_yaml())["data"]["max_train_examples"] == 10
    assert isinstance(Config().train.learning_rate, float)


def test_string_overrides_are_taken_verbatim():
    # YAML would read `#1 String` (MRPC's column name) as a comment and `007` as the number 7.
    config = load_config(None, ["data.train=a.csv", "data.text_column=#1 String", "data.text_pair_column=#2 String",
                                "name=007", "data.label_column=yes"])
    assert (config.data.text_column, config.data.text_pair_column) == ("#1 String", "#2 String")
    assert (config.name, config.data.label_column) == ("007", "yes")
    config = load_config(None, ["data.train=a.csv", "data.text_pair_column=null", "data.tfds_data_dir=~"])
    assert config.data.text_pair_column is None and config.data.tfds_data_dir is None
    assert load_config(None, ["data.train=a.csv", "train.epochs=2"]).train.epochs == 2  # other keys: YAML


def test_every_config_key_has_a_row_in_the_readme_table():
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    documented = set()
    for keys in re.findall(r"^\| (`[a-z_.0-9]+`(?: / `[a-z_.0-9]+`)*) \|", readme, re.M):
        documented.update(re.findall(r"`([a-z_.0-9]+)`", keys))
    keys = set()

    def walk(value, prefix):
        for field in dataclasses.fields(value):
            inner = getattr(value, field.name)
            if dataclasses.is_dataclass(inner):
                walk(inner, f"{prefix}{field.name}.")
            else:
                keys.add(prefix + field.name)

    walk(Config(), "")
    assert {"train.adam_epsilon", "train.unfreeze.every"} <= keys
    assert sorted(keys - documented) == []


def test_a_folder_as_the_config_is_called_a_folder(tmp_path):
    with pytest.raises(ConfigError, match=rf"Config file `{tmp_path}` is a folder. Pass a YAML file to `--config`"):
        load_config(tmp_path)


@pytest.mark.parametrize(
    "override, key, expected",
    [
        ("data.train=[a.csv, b.csv]", "data.train", "a.csv,b.csv"),  # several files: joined, as `a.csv,b.csv`
        ("data.train=a.csv,b.csv", "data.train", "a.csv,b.csv"),
        ("task.label_columns=[toxic, insult]", "task.label_columns", ["toxic", "insult"]),
        ("task.label_columns=toxic,insult", "task.label_columns", ["toxic", "insult"]),
        ("export.formats=[saved_model, litert]", "export.formats", ["saved_model", "litert"]),
        ("export.formats=saved_model,litert", "export.formats", ["saved_model", "litert"]),
    ],
)
def test_every_list_key_reads_brackets_and_commas_alike(override, key, expected):
    """Issue 26: `[a.csv, b.csv]` and `task.label_columns=[...]` were split on commas, brackets and all."""
    config = load_config(None, ["data.train=x.csv", override])
    section, leaf = key.split(".")
    assert getattr(getattr(config, section), leaf) == expected
