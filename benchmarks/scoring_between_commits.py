"""Time a run spends scoring its validation split, at two commits of tfft: does a change to the scoring path pay?

Each commit (--before, --after: any git revision) is checked out in a temporary worktree. Every round trains each
of --configs (tfft's own `configs/<name>_minilm.yaml`, all-MiniLM-L6-v2) for one epoch on the first
--train_examples training rows, with the whole validation split, once per commit, each run in its own process,
the order alternating over --rounds rounds. Reported per config and commit, as medians over the rounds:

- validation s: the per-epoch validation (Keras' pass for its loss and metrics, and `ValidationScores`, the
  task's own scores, for the tasks that have them);
- final s: `train.finish`, the final scoring of the validation split (export off);
- run s: the whole `train.run`;
- the scores (`task.logged_scores`), which a change to the scoring path must leave as they were.

    python benchmarks/scoring_between_commits.py --before=HEAD~1
    python benchmarks/scoring_between_commits.py --before=HEAD~1 --configs=sst2 --rounds=3
    python benchmarks/scoring_between_commits.py --before=HEAD~1 --configs=squad --train_examples=400

Prints a Markdown table and writes benchmarks/results/scoring_between_commits.{md,json}.
"""

from __future__ import annotations

import json
import statistics

from absl import app, flags

import common

_DATA_DIR = flags.DEFINE_string("data_dir", None, "The shared data folder (all_minilm_l6_v2/, sst2/, ...).")
_BEFORE = flags.DEFINE_string("before", None, "The first commit (a git revision).", required=True)
_AFTER = flags.DEFINE_string("after", "HEAD", "The second commit (a git revision).")
_CONFIGS = flags.DEFINE_list("configs", ["sst2", "sick", "conll2003", "goemotions"], "configs/<name>_minilm.yaml.")
_TRAIN_EXAMPLES = flags.DEFINE_integer("train_examples", 800, "Training rows per run.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Rounds; each trains at both commits, the order alternating.")

#: Each config's files, under --data_dir (the configs name them relative to the repository's parent).
FILES = {
    "sst2": {"data.train": "sst2/train.tsv", "data.validation": "sst2/dev.tsv"},
    "sick": {"data.train": "sick/SICK_train.txt", "data.validation": "sick/SICK_trial.txt"},
    "conll2003": {"data.train": "conll2003/train.txt", "data.validation": "conll2003/valid.txt"},
    "goemotions": {"data.train": "goemotions/train.tsv", "data.validation": "goemotions/dev.tsv",
                   "task.label_names_file": "goemotions/labels.txt"},
    # `benchmarks/qa_vs_trainer.py`'s split of SQuAD v1.1 dev: XQuAD's 1,190 questions scored, the rest to train.
    "squad": {"data.train": str(common.REPO / "runs/squad_split/train.json"),
              "data.validation": str(common.REPO / "runs/squad_split/eval.json")},
}

#: Writes the SQuAD split (`qa_vs_trainer.write_split`) in a child: importing that script defines its flags.
SPLIT = """
import json, pathlib, sys
import qa_vs_trainer
print(json.dumps(qa_vs_trainer.write_split(pathlib.Path(sys.argv[1]), 0)))
"""

RUN = """
import json, sys, time
import tfft  # first: tfft's environment (oneDNN's kernels) before TensorFlow loads
import keras
from tfft import callbacks, train
from tfft.config import load_config
from common import peak_rss_mb
spent = {"validation": 0.0, "final": 0.0}
class KerasValidation(keras.callbacks.Callback):
    def on_test_begin(self, logs=None):
        self.start = time.monotonic()
    def on_test_end(self, logs=None):
        spent["validation"] += time.monotonic() - self.start
def timed(function, key):
    def call(*args, **kwargs):
        start = time.monotonic()
        result = function(*args, **kwargs)
        spent[key] += time.monotonic() - start
        return result
    return call
callbacks.ValidationScores.on_epoch_end = timed(callbacks.ValidationScores.on_epoch_end, "validation")
train.finish = timed(train.finish, "final")
start = time.monotonic()
result = train.run(load_config(sys.argv[1], json.loads(sys.argv[2])), callbacks=[KerasValidation()])
print(json.dumps({**spent, "run": time.monotonic() - start, "scores": result.task.logged_scores(result.metrics),
                  "peak_rss_mb": peak_rss_mb()}))
"""


def overrides(data, name: str, output_dir: str) -> list[str]:
    files = [f"{key}={data / path}" for key, path in FILES[name].items()]
    return [*files, f"model.backbone={data / 'all_minilm_l6_v2'}", f"data.max_train_examples={_TRAIN_EXAMPLES.value}",
            "train.epochs=1", "export.enabled=false", f"output_dir={output_dir}"]


def main(argv):
    del argv
    data = common.data_dir(_DATA_DIR.value)
    commits = {"before": _BEFORE.value, "after": _AFTER.value}
    runs = {(config, name): [] for config in _CONFIGS.value for name in commits}
    if "squad" in _CONFIGS.value:
        common.run_child(SPLIT, str(data))
    with common.worktrees(commits, prefix="tfft_scoring_commits_") as (work, trees):
        for round_, name in common.alternating(commits, _ROUNDS.value):
            for config in _CONFIGS.value:
                out = common.run_in_tree(trees[name], RUN, f"{trees[name]}/configs/{config}_minilm.yaml",
                                         json.dumps(overrides(data, config, f"{work}/{name}_{config}_{round_}")))
                runs[config, name].append(out)
                print(round_, name, config, out, flush=True)
    rows = [{"config": config, "commit": f"{name} ({commits[name]})",
             **{f"{key} s": round(statistics.median(r[key] for r in outs), 2) for key in ("validation", "final", "run")},
             "per round run s": " ".join(f"{r['run']:.1f}" for r in outs),
             "peak RSS MB": round(statistics.median(r["peak_rss_mb"] for r in outs)),
             "scores": " | ".join(sorted({", ".join(f"{k} {v:.4f}" for k, v in r["scores"].items()) for r in outs}))}
            for (config, name), outs in runs.items()]
    common.report("scoring_between_commits", rows, list(rows[0]),
                  {"commits": commits, "train_examples": _TRAIN_EXAMPLES.value, "rounds": _ROUNDS.value})


if __name__ == "__main__":
    app.run(main)
