"""Does masked-LM adaptation (`tfft adapt`) help a small labelled set? SST-2, all-MiniLM-L6-v2, one run.

1. Adapt: `configs/sst2_adapt.yaml`, one epoch of masked-LM training on the
   67,349 SST-2 training sentences without their labels (task-adaptive
   pretraining, Gururangan et al. 2020). MiniLM has no masked-LM head, so the
   head starts fresh. Held-out perplexity on the 872 dev sentences, before
   and after, on the same masks.
2. Fine-tune `configs/sst2_minilm.yaml` on 1,000 labelled training sentences
   (a fixed random sample), `--finetune_epochs` epochs, from the original
   backbone and from the adapted one, with seeds 0, 1, 2 (alternating), and
   score SST-2 dev accuracy. Nothing is tuned: both arms use the same recipe.

    python benchmarks/adapt_sst2.py
    python benchmarks/adapt_sst2.py --adapt_examples=20000 --seeds=0,1   # quicker
"""

from __future__ import annotations

import json
import pathlib
import statistics

from absl import app, flags

import common

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with all_minilm_l6_v2/ and sst2/.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Fine-tuning seeds.")
_LABELLED = flags.DEFINE_integer("labelled", 1000, "Labelled training sentences for fine-tuning.")
_FINETUNE_EPOCHS = flags.DEFINE_integer("finetune_epochs", 3, "Fine-tuning epochs.")
_ADAPT_EXAMPLES = flags.DEFINE_integer("adapt_examples", 0, "Adapt on the first N sentences only (0: all 67,349).")
_WORK = pathlib.Path("runs/bench_adapt")

ADAPT = """
import json, sys
from tfft import adapt
from tfft.config import load_config
from common import peak_rss_mb
config = load_config("configs/sst2_adapt.yaml", [*json.loads(sys.argv[1]), "train.overwrite_output_dir=true"])
result = adapt.run(config)
print(json.dumps({"before": result.perplexity_before, "after": result.perplexity_after,
                  "seconds": result.train.metrics["train_seconds"], "backbone": result.backbone_dir,
                  "accuracy_after": result.train.metrics["masked_accuracy"], "peak_rss_mb": peak_rss_mb()}))
"""

FINETUNE = """
import json, sys
from tfft import train
from tfft.config import load_config
config = load_config("configs/sst2_minilm.yaml", json.loads(sys.argv[1]))
result = train.run(config)
print(json.dumps({"accuracy": result.metrics["accuracy"], "seconds": result.metrics["train_seconds"]}))
"""


def main(argv):
    del argv
    import pandas as pd

    data = common.data_dir(_DATA_DIR.value)
    _WORK.mkdir(parents=True, exist_ok=True)
    sst2 = pd.read_csv(data / "sst2" / "train.tsv", sep="\t", quoting=3, keep_default_na=False)
    sst2.sample(n=_LABELLED.value, random_state=0).to_csv(_WORK / "labelled.csv", index=False)
    adapt_values = [f"model.backbone={data / 'all_minilm_l6_v2'}", f"data.train={data / 'sst2' / 'train.tsv'}",
                    f"data.validation={data / 'sst2' / 'dev.tsv'}", f"output_dir={_WORK / 'adapt'}"]
    if _ADAPT_EXAMPLES.value:
        adapt_values.append(f"data.max_train_examples={_ADAPT_EXAMPLES.value}")
    adapted = common.run_child(ADAPT, json.dumps(adapt_values), timeout=4 * 3600)
    print("adapt", json.dumps(adapted), flush=True)

    arms = {"MiniLM": str(data / "all_minilm_l6_v2"), "MiniLM + tfft adapt": adapted["backbone"]}
    scores: dict[str, list[float]] = {arm: [] for arm in arms}
    for seed in _SEEDS.value:
        for arm, backbone in arms.items():  # alternating, so drift on the machine hits both arms alike
            values = [f"model.backbone={backbone}", f"data.train={_WORK / 'labelled.csv'}",
                      f"data.validation={data / 'sst2' / 'dev.tsv'}", f"output_dir={_WORK / 'finetune'}",
                      "train.overwrite_output_dir=true", "export.enabled=false", f"train.seed={seed}",
                      f"train.epochs={_FINETUNE_EPOCHS.value}"]
            out = common.run_child(FINETUNE, json.dumps(values))
            scores[arm].append(out["accuracy"])
            print(arm, seed, json.dumps(out), flush=True)
    rows = []
    for arm, accuracies in scores.items():
        rows.append({
            "backbone": arm,
            "held-out perplexity": f"{adapted['after']:.1f}" if "adapt" in arm else f"{adapted['before']:.1f}",
            "dev accuracy per seed": ", ".join(f"{a:.4f}" for a in accuracies),
            "mean": f"{statistics.mean(accuracies):.4f}",
            "spread (max - min)": f"{max(accuracies) - min(accuracies):.4f}",
            "std": f"{statistics.stdev(accuracies):.4f}" if len(accuracies) > 1 else "",
        })
    gain = statistics.mean(scores["MiniLM + tfft adapt"]) - statistics.mean(scores["MiniLM"])
    print(f"mean gain from adaptation: {100 * gain:+.2f} points", flush=True)
    common.report("adapt_sst2", rows, ["backbone", "held-out perplexity", "dev accuracy per seed", "mean",
                                       "spread (max - min)", "std"],
                  {"adapt": adapted, "scores": scores, "labelled": _LABELLED.value,
                   "finetune_epochs": _FINETUNE_EPOCHS.value, "gain_points": 100 * gain})


if __name__ == "__main__":
    app.run(main)
