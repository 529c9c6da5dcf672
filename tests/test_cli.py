import json
import re
import sys

import pandas as pd
import pytest
import yaml
from absl import app
from absl.testing import flagsaver

from conftest import REPO, run_python, write_csv
from tfft import cli
from tfft.errors import ConfigError


def test_unknown_command_is_a_usage_error():
    with pytest.raises(app.UsageError, match="Usage: tfft"):
        cli.main(["tfft", "fit"])


def test_train_needs_a_config():
    with flagsaver.flagsaver(config=None), pytest.raises(app.UsageError, match="needs --config"):
        cli.main(["tfft", "train"])


def test_predict_needs_model_and_input():
    with flagsaver.flagsaver(model=None, input=None), pytest.raises(app.UsageError, match="--model"):
        cli.main(["tfft", "predict"])


@pytest.mark.slow
def test_train_from_yaml_with_overrides(tmp_path, data_dir, tiny_preset):
    config_path = tmp_path / "c.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "name": "cli",
                "output_dir": str(tmp_path / "run"),
                "model": {"backbone": str(tiny_preset), "sequence_length": 32, "freeze_layers": 1},
                "data": {"train": str(data_dir / "train.csv"), "validation": str(data_dir / "validation.csv")},
                "train": {"epochs": 5, "batch_size": 16, "learning_rate": 1.0e-2},
                "export": {"base_dir": str(tmp_path / "saved_models")},
            }
        )
    )
    with flagsaver.flagsaver(config=str(config_path), set=["train.epochs=3", "model.dropout=0.0"]):
        assert cli.main(["tfft", "train"]) == 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 3 and saved["model"]["dropout"] == 0.0  # overrides won
    assert saved["train"]["batch_size"] == 16  # the file's value
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.9
    model_dir = tmp_path / "saved_models" / "cli" / "1"
    assert (model_dir / "saved_model.pb").is_file()

    # `tfft predict` from the SavedModel alone.
    rows = [("the plot was superb", "pos"), ("the cast was awful", "neg"), ("", "neg")]
    write_csv(tmp_path / "new.csv", rows)
    with flagsaver.flagsaver(model=str(model_dir), input=str(tmp_path / "new.csv"), output=str(tmp_path / "p.csv")):
        assert cli.main(["tfft", "predict"]) == 0
    predictions = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    assert list(predictions.columns) == [
        "text", "label", "predicted_label", "predicted_label_id", "probability_neg", "probability_pos",
        "truncated_tokens",
    ]
    assert predictions["truncated_tokens"].tolist() == [0, 0, 0]  # every text fits
    assert predictions["predicted_label"].tolist()[:2] == ["pos", "neg"]
    assert predictions[["probability_neg", "probability_pos"]].sum(axis=1).round(5).tolist() == [1.0] * 3
    again = {"model": str(model_dir), "input": str(tmp_path / "new.csv"), "output": str(tmp_path / "p.csv")}
    with flagsaver.flagsaver(**again), pytest.raises(ConfigError, match="names an existing file.*Pass --overwrite"):
        cli.main(["tfft", "predict"])
    with flagsaver.flagsaver(**again, overwrite=True):
        assert cli.main(["tfft", "predict"]) == 0

    # `tfft evaluate` on another labelled file (checked like training data: no empty rows).
    write_csv(tmp_path / "more.csv", rows[:2])
    with flagsaver.flagsaver(config=str(config_path), set=["train.epochs=3"], input=str(tmp_path / "more.csv")):
        assert cli.main(["tfft", "evaluate"]) == 0
    assert json.loads((tmp_path / "run" / "metrics_more.json").read_text())["accuracy"] == 1.0


def test_flagfile_and_one_line_errors(tmp_path):
    (tmp_path / "bad.yaml").write_text("data: {train: x.csv}\nmodel: {frezee_layers: 3}\n")
    (tmp_path / "flags").write_text(f"--config={tmp_path / 'bad.yaml'}\n--set=train.epochs=1\n")
    result = run_python("from tfft.cli import run_main; run_main()", "train", f"--flagfile={tmp_path / 'flags'}")
    assert result.returncode == 2
    assert ("tfft: error: Unknown config key `model.frezee_layers`. Did you mean `model.freeze_layers`? Valid keys "
            "here: backbone,") in result.stderr
    assert "Traceback" not in result.stderr


def test_python_dash_m_runs_the_cli():
    import subprocess

    result = subprocess.run([sys.executable, "-m", "tfft", "--help"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr  # (absl's --helpfull exits 1)
    assert "--config" in result.stdout and "--set" in result.stdout


def test_saved_model_export_keeps_absl_quiet(tmp_path):
    """TF's SavedModel writer saves and restores absl's verbosity: the CLI's WARNING level must survive it."""
    import logging

    import tensorflow as tf
    from absl import logging as absl_logging

    absl_logger = logging.getLogger("absl")
    before = absl_logger.level
    try:
        absl_logging.set_verbosity(absl_logging.INFO)  # as `app.run` leaves it
        cli.setup_logging()
        module = tf.Module()
        module.f = tf.function(lambda x: x + 1, input_signature=[tf.TensorSpec([None], tf.float32)])
        tf.saved_model.save(module, str(tmp_path / "m"))
        assert absl_logger.getEffectiveLevel() == logging.WARNING
    finally:
        absl_logging.set_verbosity(absl_logging.INFO)
        absl_logger.setLevel(before)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_commands_flags_and_examples_without_tensorflow(flag):
    """`tfft --help` answers without loading TensorFlow: the CLI's error types live in `tfft.errors`, which imports nothing."""
    code = (
        f"import sys\nsys.argv = ['tfft', '{flag}']\nfrom tfft.cli import run_main\n"
        "try:\n    run_main()\nexcept SystemExit as e:\n    print('exit', e.code)\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    result = run_python(code)
    lines = result.stdout.strip().splitlines()
    assert lines[-2:] == ["exit 0", "False False"], result.stderr[-2000:]
    for command in ("train", "evaluate", "export", "predict"):
        assert f"\n  {command}  " in result.stdout
    assert "--config=FILE" in result.stdout and "--set=KEY=VALUE" in result.stdout
    assert "tfft train --config=configs/demo.yaml" in result.stdout


def test_train_help_lists_every_config_key_without_tensorflow():
    """Issue 26: `tfft train --help` showed no train keys."""
    code = ("import sys\nsys.argv = ['tfft', 'train', '--help']\nfrom tfft.cli import run_main\n"
            "try:\n    run_main()\nexcept SystemExit as e:\n    print('exit', e.code)\n"
            "print('tensorflow' in sys.modules)")
    result = run_python(code)
    assert result.stdout.strip().splitlines()[-2:] == ["exit 0", "False"], result.stderr[-2000:]
    from tfft.config import Config

    for section, values in Config().to_dict().items():
        for key in values if isinstance(values, dict) else [""]:
            name = f"{section}.{key}" if key else section
            assert re.search(rf"\n  {re.escape(name)} +\S", result.stdout), name
    assert re.search(r"\n  train\.learning_rate +5e-05\n", result.stdout)


def test_first_screen_holds_only_tfft_lines(tmp_path):
    """TensorFlow's native start-up lines (oneDNN, CUDA, absl::InitializeLog) are kept off the user's screen."""
    result = run_python("from tfft.cli import run_main; run_main()", "predict", f"--model={tmp_path}",
                        f"--input={tmp_path / 'x.csv'}", env={"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"tfft: error: `{tmp_path}` is not a SavedModel folder (no saved_model.pb). Pass a version folder, "
        "e.g. saved_models/demo/1, or the model.tflite file in one."
    ]


def test_a_mistyped_command_gets_a_did_you_mean():
    result = run_python("from tfft.cli import run_main; run_main()", "trian")
    assert result.returncode != 0
    assert "Received: ['trian']. Did you mean `tfft train`?" in result.stderr


@pytest.mark.parametrize("error, message, code", [
    ("RunDiverged", "The run in runs/cv/fold_1 diverged: its training loss became NaN or infinite (its error is in "
                    "the output above).", 2),
    ("ChildRunError", "The run in runs/cv/fold_1 ended in its process with exit status 1 before finishing; its "
                      "error is in the output above. Rerun to resume it.", 1),
])
def test_a_run_whose_process_failed_or_diverged_is_one_line_naming_the_run(make_config, tmp_path, error, message,
                                                                           code):
    make_config().save(tmp_path / "cv.yaml")
    stand_in = ("from tfft import child_run, cross_validation\n"
                "def failed(*args, **kwargs):\n"
                f"    raise child_run.{error}({message!r})\n"
                "cross_validation.run = failed\n"
                "from tfft.cli import run_main; run_main()")
    result = run_python(stand_in, "cv", f"--config={tmp_path / 'cv.yaml'}", "--folds=2")
    assert result.returncode == code and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"tfft: error: {message}"
