"""Does unlabelled text pay in `tfft distill`, and what does streaming it cost? (`distill.unlabeled`) And hidden states?

A teacher (`configs/sst2_minilm.yaml`, all-MiniLM-L6-v2, 6 layers) trains on
the first --labelled SST-2 training sentences for --teacher_epochs epochs.
Then a student keeping its lowest --keep_layers layers trains --epochs epochs,
each in its own process, scored on the 872 dev sentences:

- `labelled rows only`: `tfft distill` on the --labelled sentences;
- `+ unlabelled, in memory`: the same, with the next --unlabeled training
  sentences, their labels dropped, as `distill.unlabeled` (the teacher labels
  them before training, and its logits are cached: `distill.teacher_outputs`
  `auto`);
- `+ unlabelled, streamed`: the same rows with `data.streaming=true`, the
  unlabelled ones in two shards (the teacher runs in every step and labels
  them there);
- `labels only, same rows`: the student on the labelled rows, no teacher
  (`tfft train --set model.keep_layers=N`), for scale;
- `hidden` (not run by default): `labelled rows only` with intermediate-layer
  matching, `distill.hidden_weight=--hidden_weight` (the teacher then runs in
  the step);
- `memory_hidden` (not run by default): `+ unlabelled, in memory` with it.
- `staged` (not run by default): TinyBERT's two stages as two runs. First
  `distill.hidden_only` for --first_epochs epochs on the rows of `memory`
  (the hidden-state term alone, weight --hidden_weight), then `memory`
  from the backbone it wrote, for --epochs epochs. Its seconds and peak RSS
  are both stages'.

With --student_width=W the students are not the teacher's layers but a BERT
W wide with --keep_layers layers (heads of 64, a feed-forward 4W wide),
randomly initialized (seeded) and given the teacher's tokenizer, its
embeddings training (a student from scratch, as TinyBERT's): another width,
whose states `hidden` and `memory_hidden` match through a learnt projection.

The labelled and unlabelled rows are written under --work_dir (never into the
data folder). Dev accuracy is the task's, on the final weights. With several
--seeds, each student runs once per seed (the teacher's seed stays 0) and
the table adds each student's mean and sample standard deviation.

    python benchmarks/distill_unlabeled.py
    python benchmarks/distill_unlabeled.py --seeds=0,1,2,3,4 --peers=labelled,memory,streamed
    python benchmarks/distill_unlabeled.py --seeds=0,1,2 --peers=labelled,hidden --hidden_weight=1
    python benchmarks/distill_unlabeled.py --seeds=0,1,2 --peers=labelled,hidden --keep_layers=0,2,4
    python benchmarks/distill_unlabeled.py --seeds=0,1,2 --peers=memory,memory_hidden --student_width=256 --keep_layers=4
    python benchmarks/distill_unlabeled.py --seeds=0,1,2 --peers=memory,staged --student_width=256 --keep_layers=4
"""

from __future__ import annotations

import json
import pathlib
import shutil

from absl import app, flags

import common

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with all_minilm_l6_v2/ and sst2/.")
_WORK_DIR = flags.DEFINE_string("work_dir", "runs/bench_distill_unlabeled", "Where the rows and runs go.")
_LABELLED = flags.DEFINE_integer("labelled", 1600, "Labelled training sentences (the first N).")
_UNLABELED = flags.DEFINE_integer("unlabeled", 8000, "Unlabelled sentences (the next M, labels dropped).")
_KEEP = flags.DEFINE_list("keep_layers", ["3"], "The student's layers: N (the teacher's lowest N), or the teacher's "
                          "layers to keep (0,2,4).")
_EPOCHS = flags.DEFINE_integer("epochs", 3, "The students' epochs.")
_TEACHER_EPOCHS = flags.DEFINE_integer("teacher_epochs", 3, "The teacher's epochs.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "The students' seeds (`train.seed`); the teacher's is 0. Several: a "
                           "mean ± std row per student.")
_PEERS = flags.DEFINE_list("peers", ["labelled", "memory", "streamed", "no_teacher"],
                           "The students to run (`hidden` too: labelled rows, hidden-state matching).")
_STUDENT_WIDTH = flags.DEFINE_integer("student_width", 0, "0: the students keep the teacher's layers. W: they are a "
                                      "BERT W wide with --keep_layers layers, from scratch (see above).")
_HIDDEN_WEIGHT = flags.DEFINE_float("hidden_weight", 1.0, "`distill.hidden_weight` of the `hidden` student.")
_FIRST_EPOCHS = flags.DEFINE_integer("first_epochs", 1, "The `staged` student's first stage's epochs.")

CHILD = """
import json, sys, time
from tfft import distill, train
from tfft.config import load_config
import common
command, config_file, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
config = load_config(config_file, overrides)
started = time.time()
result = (distill.run if command == "distill" else train.run)(config)
metrics = result.metrics
print(json.dumps({"accuracy": metrics["accuracy"], "teacher": metrics.get("teacher", {}).get("accuracy"),
                  "seconds": time.time() - started, "train_seconds": metrics.get("train_seconds"),
                  "peak_rss_mb": common.peak_rss_mb()}))
"""


def write_rows(data, work) -> tuple[str, str, str]:
    """`(labelled file, unlabelled file, a glob of its two shards)` from SST-2's training lines, under `work`."""
    lines = (data / "sst2" / "train.tsv").read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    labelled = rows[: _LABELLED.value]
    texts = [row.split("\t")[0] for row in rows[_LABELLED.value : _LABELLED.value + _UNLABELED.value]]
    half = len(texts) // 2
    files = {"labelled.tsv": [header, *labelled], "unlabeled.tsv": ["sentence", *texts],
             "unlabeled-0.tsv": ["sentence", *texts[:half]], "unlabeled-1.tsv": ["sentence", *texts[half:]]}
    work.mkdir(parents=True, exist_ok=True)
    for name, table in files.items():
        (work / name).write_text("\n".join(table) + "\n", encoding="utf-8")
    return str(work / "labelled.tsv"), str(work / "unlabeled.tsv"), str(work / "unlabeled-*.tsv")


def run_folder(key: str, seed: str, keep: int | list[int]) -> str:
    """A student's folder name, different for every peer, hidden weight, seed, set of kept layers and width."""
    name = f"student_{key}" + (f"_w{_HIDDEN_WEIGHT.value:g}" if key.endswith("hidden") or key == "staged" else "")
    name += f"_first{_FIRST_EPOCHS.value}" if key == "staged" else ""
    name += "" if seed == "0" else f"_seed{seed}"
    name += f"_width{_STUDENT_WIDTH.value}" if _STUDENT_WIDTH.value else ""
    return name + ("" if isinstance(keep, int) else "_keep" + "".join(map(str, keep)))


def write_scratch_student(data, work, width: int, layers: int) -> pathlib.Path:
    """A randomly initialized BERT folder (`width` wide, `layers` layers, seed 0) with all-MiniLM-L6-v2's tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    folder = work / f"scratch_bert_{width}x{layers}"
    if (folder / "model.safetensors").is_file():
        return folder
    torch.manual_seed(0)
    vocabulary = (data / "all_minilm_l6_v2" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    config = BertConfig(vocab_size=len(vocabulary), hidden_size=width, num_hidden_layers=layers, num_attention_heads=width // 64,
                        intermediate_size=4 * width, max_position_embeddings=512)
    BertModel(config).save_pretrained(folder)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(data / "all_minilm_l6_v2" / name, folder / name)
    return folder


def student_overrides(data, work, keep: int | list[int]) -> list[str]:
    """The students' model keys: the teacher's kept layers, or a BERT of another width from scratch."""
    if not _STUDENT_WIDTH.value:
        return [f"model.keep_layers={keep}"]
    folder = write_scratch_student(data, work, _STUDENT_WIDTH.value, keep)
    return [f"model.backbone={folder}", "model.keep_layers=null", "model.freeze_layers=0",
            "model.freeze_embeddings=false"]


def main(argv):
    del argv
    data = common.data_dir(_DATA_DIR.value)
    work = (common.REPO / _WORK_DIR.value).resolve()
    labelled, unlabeled, shards = write_rows(data, work)
    config_file = "configs/sst2_minilm.yaml"
    base = [*common.sst2_overrides(data, 0, ""), f"data.train={labelled}", "train.restore_best=false"]
    teacher = work / "teacher"
    if not (teacher / "run_complete.json").is_file():
        common.run_child(CHILD, "train", config_file, json.dumps(
            [*base, f"output_dir={teacher}", f"train.epochs={_TEACHER_EPOCHS.value}"]), timeout=4 * 3600)
    keep = [int(layer) for layer in _KEEP.value]
    keep, size = (keep[0], f"{keep[0]} layers") if len(keep) == 1 else (keep, f"layers {keep}")
    size += f", {_STUDENT_WIDTH.value} wide, from scratch" if _STUDENT_WIDTH.value else ""
    student = [*base, *student_overrides(data, work, keep), f"train.epochs={_EPOCHS.value}"]
    distilled = [*student, f"distill.teacher={teacher}"]
    peers = {
        "labelled": ("labelled rows only", "distill", distilled),
        "hidden": (f"labelled rows, hidden states matched (weight {_HIDDEN_WEIGHT.value:g})", "distill",
                   [*distilled, f"distill.hidden_weight={_HIDDEN_WEIGHT.value}"]),
        "memory": ("+ unlabelled, in memory", "distill", [*distilled, f"distill.unlabeled={unlabeled}"]),
        "memory_hidden": (f"+ unlabelled, in memory, hidden states matched (weight {_HIDDEN_WEIGHT.value:g})",
                          "distill", [*distilled, f"distill.unlabeled={unlabeled}",
                                      f"distill.hidden_weight={_HIDDEN_WEIGHT.value}"]),
        "streamed": ("+ unlabelled, streamed", "distill",
                     [*distilled, f"distill.unlabeled={shards}", "data.streaming=true"]),
        "no_teacher": ("labels only, same rows (no teacher)", "train", student),
        "staged": (f"+ unlabelled, in memory, after {_FIRST_EPOCHS.value} epoch(s) of hidden states alone (weight "
                   f"{_HIDDEN_WEIGHT.value:g})", "distill", [*distilled, f"distill.unlabeled={unlabeled}"]),
    }
    rows, scores = [], {}
    for seed in _SEEDS.value:
        for key in _PEERS.value:
            name, command, overrides = peers[key]
            folder = work / run_folder(key, seed, keep)
            first = None
            if key == "staged":  # the first stage's backbone is the second's `model.backbone`
                first = common.run_child(CHILD, "distill", config_file, json.dumps(
                    [*overrides, f"distill.hidden_weight={_HIDDEN_WEIGHT.value}", "distill.hidden_only=true",
                     f"train.epochs={_FIRST_EPOCHS.value}", f"train.seed={seed}", f"output_dir={folder}_first"]),
                    timeout=4 * 3600)
                overrides = [*overrides, f"model.backbone={folder}_first/backbone"]
            out = common.run_child(CHILD, command, config_file, json.dumps(
                [*overrides, f"train.seed={seed}", f"output_dir={folder}"]), timeout=4 * 3600)
            if first is not None:
                out.update({field: first[field] + out[field] for field in ("seconds", "train_seconds")},
                           peak_rss_mb=max(first["peak_rss_mb"], out["peak_rss_mb"]))
            print(name, seed, out, flush=True)
            scores.setdefault(name, []).append(out["accuracy"])
            rows.append({"student": f"{size}, {name}", "seed": seed,
                         "dev accuracy": f"{out['accuracy']:.4f}",
                         "teacher": f"{out['teacher']:.4f}" if out["teacher"] else "",
                         "train s": round(out["train_seconds"]), "run s": round(out["seconds"]),
                         "peak RSS MB": round(out["peak_rss_mb"])})
    if len(_SEEDS.value) > 1:
        rows += [{"student": f"{size}, {name}", "seed": "mean ± std",
                  "dev accuracy": common.mean_and_std(values)}
                 for name, values in scores.items()]
    common.report("distill_unlabeled", rows,
                  ["student", "seed", "dev accuracy", "teacher", "train s", "run s", "peak RSS MB"],
                  {"labelled": _LABELLED.value, "unlabeled": _UNLABELED.value, "keep_layers": keep,
                   "epochs": _EPOCHS.value, "teacher_epochs": _TEACHER_EPOCHS.value, "seeds": _SEEDS.value,
                   "student_width": _STUDENT_WIDTH.value, "hidden_weight": _HIDDEN_WEIGHT.value,
                   "first_epochs": _FIRST_EPOCHS.value})


if __name__ == "__main__":
    app.run(main)
