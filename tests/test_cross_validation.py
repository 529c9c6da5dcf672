"""`tfft cv`: the members' configs, the checks before any write, the table, and the ensemble export served."""

import json

import numpy as np
import pytest
import tensorflow as tf

from conftest import SERVING_PROCESS, run_python, run_tfft, write_csv
from tfft import cross_validation, data, tasks
from tfft.config import ConfigError, load_config
from tfft.errors import OutputDirError


def test_plan_gives_each_fold_and_seed_its_own_run(make_config, tmp_path):
    config = make_config("train.seed=7", "train.overwrite_output_dir=true")
    members = cross_validation.plan(config, folds=3, seeds=(0, 1))
    assert [m.name for m in members] == ["fold-0-seed-0", "fold-0-seed-1", "fold-1-seed-0", "fold-1-seed-1",
                                        "fold-2-seed-0", "fold-2-seed-1"]
    m = members[3].config
    assert (m.data.split.folds, m.data.split.fold, m.train.seed, m.data.validation) == (3, 1, 1, "")
    assert m.output_dir == str(tmp_path / "run" / "fold-1-seed-1") and not m.export.enabled
    assert not m.train.overwrite_output_dir  # a rerun reads back or resumes each run
    only_folds = cross_validation.plan(config, folds=2, seeds=())
    assert [(m.name, m.config.train.seed) for m in only_folds] == [("fold-0", 7), ("fold-1", 7)]
    only_seeds = cross_validation.plan(config, folds=0, seeds=(0, 1))
    assert [m.name for m in only_seeds] == ["seed-0", "seed-1"]
    assert only_seeds[0].config.data.validation == config.data.validation  # the whole split, scored on dev


def test_a_fold_keeps_its_final_weights_and_seeds_alone_follow_the_config(make_config):
    # A fold's held-out scores must come from weights that fold did not choose.
    config = make_config()
    assert config.train.restore_best
    assert [m.config.train.restore_best for m in cross_validation.plan(config, folds=2, seeds=(0, 1))] == [False] * 4
    assert [m.config.train.restore_best for m in cross_validation.plan(config, folds=0, seeds=(0, 1))] == [True] * 2


@pytest.mark.parametrize("folds, seeds, message", [
    (1, (), "`--folds` must be 0 \\(no folds\\) or >= 2"),
    (0, (3,), "needs `--folds` >= 2 or at least two `--seeds`"),
])
def test_a_plan_without_two_runs_is_refused(make_config, folds, seeds, message):
    with pytest.raises(ConfigError, match=message):
        cross_validation.plan(make_config(), folds, seeds)


def test_a_label_rarer_than_the_folds_is_refused_before_anything_is_written(make_config, tmp_path, no_fit):
    path = write_csv(tmp_path / "rare.csv", [("good", "pos"), ("bad", "neg")] * 10 + [("odd", "other")] * 2)
    config = make_config(f"data.train={path}")
    with pytest.raises(ConfigError, match=r"'other' \(2\)"):
        cross_validation.run(config, folds=3)
    assert not (tmp_path / "run").exists()


def test_a_folder_with_other_files_is_refused(make_config, tmp_path, no_fit):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "mine.txt").write_text("x")
    with pytest.raises(OutputDirError, match="holds files tfft cv did not write: mine.txt"):
        cross_validation.run(make_config(), folds=2)


def test_an_ensemble_litert_export_the_tokenizer_cannot_take_is_refused_before_training(make_config, tmp_path, no_fit):
    config = make_config("export.formats=[saved_model, litert]")  # the tiny preset's tokenizer keeps accents
    with pytest.raises(ConfigError, match="LiteRT export needs a WordPiece tokenizer"):
        cross_validation.run(config, folds=2, ensemble=True)
    assert not (tmp_path / "run").exists()


def test_the_table_has_each_run_then_the_mean_and_standard_deviation():
    members = [cross_validation.Member(f"fold-{i}", None) for i in range(3)]
    rows = cross_validation.table(members, [{"accuracy": 0.8, "f1": 0.5}, {"accuracy": 0.9, "f1": 0.7},
                                            {"accuracy": 0.7}], monitor="accuracy")
    assert [r["run"] for r in rows] == ["fold-0", "fold-1", "fold-2", "mean", "std"]
    assert list(rows[0]) == ["run", "accuracy"]  # a score some run lacks is left out
    assert rows[3]["accuracy"] == pytest.approx(0.8) and rows[4]["accuracy"] == pytest.approx(0.1)


@pytest.mark.parametrize("task_type, outputs", [
    ("classification", lambda x: tf.nn.softmax(x, -1)),
    ("multi_label", tf.math.sigmoid),
    ("regression", lambda x: x),
])
def test_combined_logits_give_the_mean_of_the_members_outputs(task_type, outputs):
    task = tasks.create(load_config(None, ["data.train=t.csv", f"task.type={task_type}"]))
    logits = [tf.random.stateless_normal([4, 3], seed=[i, 0]) * 3 for i in range(3)]
    combined = task.combine_logits(logits)
    expected = tf.add_n([outputs(x) for x in logits]) / 3
    np.testing.assert_allclose(outputs(combined), expected, atol=1e-6)


# Serves the ensemble in a process with TensorFlow and TF Text only: probabilities for argv[2]'s texts.
SERVE = SERVING_PROCESS + """
model = tf.saved_model.load(sys.argv[1])
out = model.signatures["serving_default"](text=tf.constant(json.loads(sys.argv[2])))
print(json.dumps({"probabilities": out["probabilities"].numpy().tolist(),
                  "modules": sorted(m for m in ("keras_hub", "tfft", "tf_keras") if m in sys.modules)}))
"""


@pytest.mark.slow
def test_cv_trains_the_folds_and_serves_their_ensemble_as_the_mean_of_their_outputs(make_config, tmp_path, caplog):
    from tfft import evaluate
    from tfft.model import load_trained

    config = make_config("train.epochs=1", "data.max_train_examples=320")
    config.save(tmp_path / "cv.yaml")
    proc = run_tfft("cv", f"--config={tmp_path / 'cv.yaml'}", "--folds=2", "--ensemble", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "cv_results.json").read_text())
    assert [r["run"] for r in results["rows"]] == ["fold-0", "fold-1", "mean", "std"]
    assert len(results["dev"]["members"]) == 2 and "accuracy" in results["dev"]["ensemble"]
    texts = ["the plot was superb", "the meal was awful and dull", "", "the cast was fine " * 30]
    served = run_python(SERVE, results["export_path"], json.dumps(texts))
    assert served.returncode == 0, served.stderr[-3000:]
    served = json.loads(served.stdout.strip().splitlines()[-1])
    assert served["modules"] == []
    members = [load_trained(m.config) for m in cross_validation.plan(config, folds=2, seeds=())]
    examples = data.Examples("texts", texts)
    mean = np.mean([evaluate.predict_outputs(m.task, m.model, m.packer, examples, 8)["probabilities"]
                    for m in members], axis=0)
    np.testing.assert_allclose(served["probabilities"], mean, atol=1e-5)
    caplog.set_level("INFO")
    again = cross_validation.run(config, folds=2)  # a rerun reads the finished runs back, training none
    assert "training in" not in caplog.text and again.rows == results["rows"]
    # The ensemble's export teaches as any export: a student trains on its outputs and reports its dev scores.
    from tfft import distill

    student = distill.run(make_config("train.epochs=1", "data.max_train_examples=64", f"output_dir={tmp_path / 'student'}",
                                      f"distill.teacher={results['export_path']}"))
    assert student.metrics["teacher"]["accuracy"] == pytest.approx(results["dev"]["ensemble"]["accuracy"], abs=1e-6)
