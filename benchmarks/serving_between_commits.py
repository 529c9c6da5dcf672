"""Serving speed of one SST-2 classifier exported by two commits of tfft: does a change to the export cost anything?

Each commit (--before, --after: any git revision) is checked out in a temporary worktree, and each trains
`configs/sst2_minilm.yaml` on the first --train_examples SST-2 sentences with the same seed, then exports a
SavedModel and a LiteRT `dynamic_range` file. `serving_harness.py` then measures each file in a fresh process
(batch-1 p50 and p99 over the 872 dev sentences, batch-32 sentences/s, size, peak RSS, accuracy), the commits
alternating over --rounds rounds; the table gives the medians. The worktrees are removed at the end.

    python benchmarks/serving_between_commits.py --before=08eefad --after=32042f0
"""

from __future__ import annotations

import json
import statistics

from absl import app, flags

import common
from serving_harness import MEASURE

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with all_minilm_l6_v2/ and sst2/.")
_BEFORE = flags.DEFINE_string("before", None, "The first commit (a git revision).", required=True)
_AFTER = flags.DEFINE_string("after", "HEAD", "The second commit (a git revision).")
_TRAIN_EXAMPLES = flags.DEFINE_integer("train_examples", 1600, "SST-2 training sentences.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Rounds; each measures both commits' files, the order alternating.")

TRAIN = """
import json, pathlib, sys
from tfft import train
from tfft.config import load_config
config = load_config("configs/sst2_minilm.yaml", json.loads(sys.argv[1]))
print(json.dumps({"export": train.run(config).export_path}))
"""

FILES = {"saved_model": "", "litert_dynamic_range": "/model.tflite"}


def export(tree: str, work: str) -> str:
    """Trains and exports in worktree `tree` (its own tfft on the path); returns the SavedModel version folder."""
    overrides = [*common.sst2_overrides(common.data_dir(_DATA_DIR.value), _TRAIN_EXAMPLES.value, f"{work}/run"),
                 "data.validation=", "export.enabled=true", f"export.base_dir={work}/saved",
                 "export.formats=saved_model,litert", "export.quantize=dynamic_range"]
    return common.run_in_tree(tree, TRAIN, json.dumps(overrides))["export"]


def main(argv):
    del argv
    dev = common.data_dir(_DATA_DIR.value) / "sst2" / "dev.tsv"
    commits = {"before": _BEFORE.value, "after": _AFTER.value}
    results = {}
    with common.worktrees(commits, prefix="tfft_serving_commits_") as (work, trees):
        exports = {name: export(tree, f"{work}/{name}_out") for name, tree in trees.items()}
        for round_, name in common.alternating(commits, _ROUNDS.value):
            for row, suffix in FILES.items():
                out = common.run_child(MEASURE, row, exports[name] + suffix, str(dev))
                results.setdefault((row, name), []).append(out)
                print(round_, row, name, out, flush=True)
    keys = ("p50_ms", "p99_ms", "batch32_per_s", "size_mb", "peak_rss_mb", "accuracy")
    rows = [{"file": row, "commit": f"{name} ({commits[name]})",
             **{key: statistics.median(o[key] for o in outs) for key in keys}}
            for (row, name), outs in sorted(results.items())]
    common.report("serving_between_commits", rows, list(rows[0]), {"commits": commits, "rounds": _ROUNDS.value})


if __name__ == "__main__":
    app.run(main)
