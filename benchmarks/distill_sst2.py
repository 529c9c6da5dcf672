"""`tfft distill` on SST-2: 3- and 2-layer students of a fine-tuned all-MiniLM-L6-v2, their accuracy and serving speed.

The teacher is `configs/sst2_minilm.yaml` trained on the full SST-2 training set (reused when --work_dir holds it
finished). For each --layers count N, three students keep the teacher's lowest N encoder layers
(`model.keep_layers: N`) and train with the same config, data and steps (one epoch over the full training set):

- `distilled`: `tfft distill`, starting from the teacher's weights, loss `alpha * soft + (1 - alpha) * hard`
  (`distill.alpha` 0.5, `distill.temperature` 2; the teacher runs in each training step);
- `labels only, teacher's start`: `tfft distill --set distill.alpha=0`: the same start, the labels alone;
- `labels only, pretrained start`: `tfft train`: the pretrained checkpoint's lowest N layers, no teacher at all.

Accuracy is on the 872 SST-2 dev sentences (GLUE's test labels are not public; no setting was chosen on dev).
Serving figures come from `serving_speed.py`'s harness (`serving_harness.py`): batch-1 p50 latency, batch-32
sentences/s and size, for the SavedModel and the LiteRT `dynamic_range` file, each in a fresh process, rows
alternating over --rounds.

    python benchmarks/distill_sst2.py                      # about 60 minutes on 2 cores (teacher: 15 more)
    python benchmarks/distill_sst2.py --train_examples=4000 --layers=2   # a quick look
    python benchmarks/distill_sst2.py --serve_only                       # serving again, on an idle machine
"""

from __future__ import annotations

import json
import pathlib
import statistics

from absl import app, flags

import common
from serving_harness import measure_rows

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with all_minilm_l6_v2/ and sst2/.")
_WORK_DIR = flags.DEFINE_string("work_dir", "runs/bench_distill_sst2", "Where the runs and exports go.")
_TRAIN_EXAMPLES = flags.DEFINE_integer("train_examples", 0, "SST-2 training sentences (0: all 67,349).")
_LAYERS = flags.DEFINE_list("layers", ["3", "2"], "Student sizes: encoder layers kept (the lowest N).")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Serving passes over the rows, alternating their order.")
_SERVE_ONLY = flags.DEFINE_bool("serve_only", False, "Only measure serving, of the teacher and the distilled "
                                "students a run before left in --work_dir.")

# Trains one run (`train` or `distill`) in a fresh process, writes its LiteRT dynamic-range file beside its
# SavedModel, and prints its figures.
TRAIN = """
import json, pathlib, sys
from tfft import distill, litert, train
from tfft.config import load_config
from common import peak_rss_mb
overrides, command = json.loads(sys.argv[1]), sys.argv[2]
result = (distill.run if command == "distill" else train.run)(load_config("configs/sst2_minilm.yaml", overrides))
version = pathlib.Path(result.export_path)
(version / "model_dynamic_range.tflite").write_bytes(
    litert.convert(result.model, result.packer, result.task, quantize="dynamic_range"))
metrics = result.metrics
print(json.dumps({"export": str(version), "accuracy": metrics["accuracy"], "train_seconds": metrics["train_seconds"],
                  "peak_rss_mb": peak_rss_mb(), "teacher": metrics.get("teacher")}))
"""

# A teacher trained before by `tfft train` (its run folder given): its figures, and its LiteRT dynamic-range file.
TEACHER_FILES = """
import json, pathlib, sys
from tfft import litert, model
from tfft.config import load_config
folder = pathlib.Path(sys.argv[1])
config = load_config(str(folder / "config.yaml"))
config.output_dir = str(folder)
version = pathlib.Path(json.loads((folder / "run_complete.json").read_text())["export"])
trained = model.load_trained(config)
(version / "model_dynamic_range.tflite").write_bytes(
    litert.convert(trained.model, trained.packer, trained.task, quantize="dynamic_range"))
metrics = json.loads((folder / "metrics.json").read_text())
print(json.dumps({"export": str(version), "accuracy": metrics["accuracy"], "train_seconds": metrics["train_seconds"],
                  "peak_rss_mb": None}))
"""

#: (row name, command, extra overrides) for each student of one size.
STUDENTS = (
    ("distilled", "distilled", "distill", []),
    ("labels only, teacher's start", "labels_teacher_start", "distill", ["distill.alpha=0"]),
    ("labels only, pretrained start", "labels_pretrained_start", "train", []),
)


def train_teacher(data: pathlib.Path, work: pathlib.Path) -> dict:
    """The teacher's figures: trained here, or read back from its finished run and export."""
    folder, state = work / "teacher", work / "teacher.json"
    if (folder / "run_complete.json").is_file():
        print(f"Reusing the teacher in {folder}", flush=True)
        if not state.is_file():  # trained by `tfft train` with this config beforehand
            state.write_text(json.dumps(common.run_child(TEACHER_FILES, str(folder))))
        return json.loads(state.read_text())
    overrides = [*common.sst2_overrides(data, _TRAIN_EXAMPLES.value, str(folder)), "name=distill_teacher",
                 "export.enabled=true", f"export.base_dir={work / 'saved_models'}"]
    result = common.run_child(TRAIN, json.dumps(overrides), "train", timeout=4 * 3600)
    state.write_text(json.dumps(result))
    return result


def train_students(data: pathlib.Path, work: pathlib.Path, layers: int) -> dict[str, dict]:
    results = {}
    for name, tag, command, extra in STUDENTS:
        tag = f"student{layers}_{tag}"
        overrides = [*common.sst2_overrides(data, _TRAIN_EXAMPLES.value, str(work / tag)), f"name={tag}",
                     f"model.keep_layers={layers}", f"distill.teacher={work / 'teacher'}", "export.enabled=true",
                     f"export.base_dir={work / 'saved_models'}", *extra]
        results[name] = common.run_child(TRAIN, json.dumps(overrides), command, timeout=4 * 3600)
        print(f"{layers} layers, {name}: dev accuracy {results[name]['accuracy']:.4f}, "
              f"{results[name]['train_seconds']:.0f} s", flush=True)
    return results


def serving(data: pathlib.Path, exports: dict[str, str]) -> dict[str, dict]:
    """Row name -> median serving figures, for each model's SavedModel and LiteRT dynamic-range file."""
    paths = {}
    for model, export in exports.items():
        paths[f"{model} saved_model"] = pathlib.Path(export)
        paths[f"{model} litert"] = pathlib.Path(export) / "model_dynamic_range.tflite"
    measured = measure_rows(paths, list(paths), data / "sst2" / "dev.tsv", _ROUNDS.value)
    return {row: {key: statistics.median(r[key] for r in results) for key in ("p50_ms", "batch32_per_s")}
            | {"size_mb": results[0]["size_mb"], "accuracy": results[0]["accuracy"]}
            for row, results in measured.items()}


def main(argv):
    del argv
    data = common.data_dir(_DATA_DIR.value)
    work = (common.REPO / _WORK_DIR.value).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if _SERVE_ONLY.value:
        return serve_only(data, work)
    teacher = train_teacher(data, work)
    students = {int(n): train_students(data, work, int(n)) for n in _LAYERS.value}
    exports = {"teacher": teacher["export"]} | {f"{n}": s["distilled"]["export"] for n, s in students.items()}
    served = serving(data, exports)
    reference = served["teacher saved_model"]["batch32_per_s"]
    rows = [row("teacher (6 layers)", teacher, teacher["accuracy"], served, "teacher", reference)]
    for n, trained in students.items():
        for name, result in trained.items():
            rows.append(row(f"{n} layers, {name}", result, teacher["accuracy"], served,
                            str(n) if name == "distilled" else None, reference))
    columns = ["model", "dev accuracy", "% of teacher", "train s", "peak RSS MB", "SavedModel p50 ms",
               "SavedModel sentences/s (batch 32)", "x teacher's throughput", "SavedModel MB", "LiteRT dr p50 ms",
               "LiteRT dr sentences/s", "LiteRT dr MB", "LiteRT dr accuracy"]
    common.report("distill_sst2", rows, columns, {"train_examples": _TRAIN_EXAMPLES.value, "rounds": _ROUNDS.value})


def serve_only(data: pathlib.Path, work: pathlib.Path) -> None:
    exports = {"teacher": json.loads((work / "teacher.json").read_text())["export"]}
    exports |= {n: str(work / "saved_models" / f"student{n}_distilled" / "1") for n in _LAYERS.value}
    served = serving(data, exports)
    reference = served["teacher saved_model"]["batch32_per_s"]
    rows = [{"model": model, "format": row.split(" ")[1], "p50 ms (batch 1)": figures["p50_ms"],
             "sentences/s (batch 32)": figures["batch32_per_s"], "MB": figures["size_mb"],
             "x teacher's SavedModel": figures["batch32_per_s"] / reference, "dev accuracy": figures["accuracy"]}
            for row, figures in served.items() for model in [row.split(" ")[0]]]
    common.report("distill_sst2_serving", rows, list(rows[0]), {"rounds": _ROUNDS.value})


def row(label: str, result: dict, teacher_accuracy: float, served: dict, model: str | None, reference: float) -> dict:
    out = {"model": label, "dev accuracy": result["accuracy"], "% of teacher": 100 * result["accuracy"] / teacher_accuracy,
           "train s": result["train_seconds"], "peak RSS MB": result["peak_rss_mb"] or ""}
    if model is not None:  # the students without the teacher have the distilled one's shape and speed
        saved, lite = served[f"{model} saved_model"], served[f"{model} litert"]
        out |= {"SavedModel p50 ms": saved["p50_ms"], "SavedModel sentences/s (batch 32)": saved["batch32_per_s"],
                "x teacher's throughput": saved["batch32_per_s"] / reference, "SavedModel MB": saved["size_mb"],
                "LiteRT dr p50 ms": lite["p50_ms"], "LiteRT dr sentences/s": lite["batch32_per_s"],
                "LiteRT dr MB": lite["size_mb"], "LiteRT dr accuracy": lite["accuracy"]}
    return out


if __name__ == "__main__":
    app.run(main)
