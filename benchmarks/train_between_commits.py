"""Training speed of one config at two commits of tfft: does a change to the training path pay?

Each commit (--before, --after: any git revision) is checked out in a temporary worktree. Every round trains
`configs/sst2_minilm.yaml`, with the --set overrides, on the first --train_examples SST-2 sentences for one epoch
once per commit, each run in its own process, the order alternating over --rounds rounds. Reported per commit,
as medians over the rounds: the time inside the training steps after 3 warm-up steps (`timing.StepTimer`), the
median step, peak RSS, and dev accuracy (the same seed for both). The worktrees are removed at the end.

    python benchmarks/train_between_commits.py --before=HEAD~1 --set=train.pad_to=max --set=model.sequence_length=32
"""

from __future__ import annotations

import json
import statistics

from absl import app, flags

import common

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with all_minilm_l6_v2/ and sst2/.")
_BEFORE = flags.DEFINE_string("before", None, "The first commit (a git revision).", required=True)
_AFTER = flags.DEFINE_string("after", "HEAD", "The second commit (a git revision).")
_SET = flags.DEFINE_multi_string("set", [], "Config overrides for both commits, as `tfft train --set`.")
_TRAIN_EXAMPLES = flags.DEFINE_integer("train_examples", 1600, "SST-2 training sentences.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Rounds; each trains at both commits, the order alternating.")

TRAIN = """
import json, sys
from tfft import train
from tfft.config import load_config
from common import peak_rss_mb
from timing import StepTimer
timer = StepTimer()
result = train.run(load_config("configs/sst2_minilm.yaml", json.loads(sys.argv[1])), callbacks=[timer])
print(json.dumps({"step_seconds": sum(timer.times[3:]), "steady_ms": timer.steady_ms,
                  "accuracy": result.metrics["accuracy"], "peak_rss_mb": peak_rss_mb()}))
"""


def main(argv):
    del argv
    data = common.data_dir(_DATA_DIR.value)
    commits = {"before": _BEFORE.value, "after": _AFTER.value}
    runs = {name: [] for name in commits}
    with common.worktrees(commits, prefix="tfft_train_commits_") as (work, trees):
        for round_, name in common.alternating(commits, _ROUNDS.value):
            overrides = [*common.sst2_overrides(data, _TRAIN_EXAMPLES.value, f"{work}/{name}_run"),
                         "train.epochs=1", *_SET.value]
            out = common.run_in_tree(trees[name], TRAIN, json.dumps(overrides))
            runs[name].append(out)
            print(round_, name, out, flush=True)
    rows = [{"commit": f"{name} ({commits[name]})",
             "train-step s": round(statistics.median(r["step_seconds"] for r in outs), 2),
             "median ms/step": round(statistics.median(r["steady_ms"] for r in outs), 1),
             "per round s": " ".join(f"{r['step_seconds']:.1f}" for r in outs),
             "peak RSS MB": round(statistics.median(r["peak_rss_mb"] for r in outs)),
             "dev accuracy": " ".join(sorted({f"{r['accuracy']:.4f}" for r in outs}))}
            for name, outs in runs.items()]
    common.report("train_between_commits", rows, list(rows[0]),
                  {"commits": commits, "set": _SET.value, "train_examples": _TRAIN_EXAMPLES.value,
                   "rounds": _ROUNDS.value})


if __name__ == "__main__":
    app.run(main)
