"""The `tfft` command line. It parses flags and calls the library; nothing more.

    tfft train    --config=configs/demo.yaml [--set train.epochs=2 ...]
    tfft adapt    --config=configs/sst2_adapt.yaml (masked-LM adaptation; writes <output_dir>/backbone)
    tfft evaluate --config=configs/demo.yaml [--input=other.csv]
    tfft export   --config=configs/demo.yaml [--format=litert]
    tfft search   --config=base.yaml [--search=space.yaml] [--train_best]
    tfft cv       --config=configs/demo.yaml --folds=5 [--seeds=0,1,2] [--ensemble]
    tfft distill  --config=configs/demo.yaml --set distill.teacher=runs/demo --set model.keep_layers=1
    tfft predict  --model=saved_models/demo/1 --input=in.csv --output=out.csv
    tfft shard    --input=big.csv --output=gs://bucket/train --num_shards=64 [--shard_format=jsonl]

`--flagfile=FILE` reads flags from a file. `python -m tfft ...` is the same.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys

from absl import app, flags
from absl import logging as absl_logging

COMMANDS = ("train", "adapt", "evaluate", "export", "predict", "shard", "search", "cv", "distill")

HELP = """usage: tfft COMMAND [--flag=value ...]

Fine-tune a pretrained text encoder, evaluate it, and export it for TF Serving.

commands:
  train      train, evaluate and export the run a config describes (resumes an interrupted one)
  adapt      continue masked-LM pretraining on unlabelled text; writes the adapted backbone folder
  evaluate   score a trained run on data.validation, or on --input
  export     export a trained run as the next SavedModel version (--format=litert adds model.tflite)
  search     search the config's `search.space` with Optuna; writes best_config.yaml (continues a stopped search)
  distill    train a smaller student (e.g. --set model.keep_layers=3) on a finished run's outputs (distill.teacher)
  cv         train on k folds (--folds) and/or seeds (--seeds); their scores' mean and spread; --ensemble exports one model
  predict    run a SavedModel version, or its model.tflite, over a file: --model, --input, --output
  shard      split one large file into shards to stream: --input, --output (a prefix), --num_shards

main flags:
  --config=FILE        YAML config (see configs/)
  --set=KEY=VALUE      override a config key, e.g. --set train.epochs=2; repeat for more
  --model=DIR          predict: a SavedModel version folder, e.g. saved_models/demo/1, or its model.tflite
  --format=litert      train, export: write a LiteRT file (raw text in) beside the SavedModel
  --search=FILE        search: the `search` section from its own YAML file
  --train_best         search: train and export the best config when the search is done
  --folds=K            cv: k-fold cross-validation over data.train (stratified for classification)
  --seeds=0,1,2        cv: train each fold (or the whole split) once per seed
  --ensemble           cv: export the runs as one SavedModel that averages their outputs
  --input=FILE         predict: the file to predict; evaluate: a labelled file to score
  --output=FILE        predict: where to write the predictions (default predictions.csv)
  --overwrite          predict: replace --output if it exists (refused otherwise)
  --text_column=NAME   predict: the text column (default text); --text_pair_column for pairs
  --flagfile=FILE      read flags from a file
  --helpfull           every flag, absl's included

examples:
  tfft train --config=configs/demo.yaml --set train.epochs=2
  tfft predict --model=saved_models/demo/1 --input=new.csv --output=predictions.csv
  tfft search --config=base.yaml --search=space.yaml --set search.trials=20
  tfft cv --config=configs/demo.yaml --folds=5 --ensemble
  tfft distill --config=configs/demo.yaml --set distill.teacher=runs/demo --set model.keep_layers=1 \
               --set output_dir=runs/demo_student --set name=demo_student
"""

_CONFIG = flags.DEFINE_string("config", None, "YAML config file (see configs/).")
_SET = flags.DEFINE_multi_string(
    "set", [], "Config override `section.key=value`, e.g. `train.epochs=2`; repeat for more."
)
_MODEL = flags.DEFINE_string(
    "model", None, "predict: a SavedModel version folder, e.g. saved_models/demo/1, or its model.tflite."
)
_INPUT = flags.DEFINE_string("input", None, "predict: file to predict; evaluate: labelled file to score.")
_OUTPUT = flags.DEFINE_string("output", "predictions.csv", "predict: where to write the predictions.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "predict: replace --output if it exists (refused otherwise).")
_TEXT_COLUMN = flags.DEFINE_string("text_column", "text", "predict: column with the text.")
_TEXT_PAIR_COLUMN = flags.DEFINE_string("text_pair_column", None, "predict: column with the second text.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "predict: rows per SavedModel call.")
_NUM_SHARDS = flags.DEFINE_integer("num_shards", 16, "shard: how many shards to write.")
_SHARD_FORMAT = flags.DEFINE_enum("shard_format", "tfrecord", ["tfrecord", "jsonl"], "shard: the shards' format.")
_SEARCH = flags.DEFINE_string("search", None, "search: a YAML file with the `search` section (or only its keys).")
_TRAIN_BEST = flags.DEFINE_bool("train_best", False, "search: train and export the best config at the end.")
_FOLDS = flags.DEFINE_integer("folds", 0, "cv: number of folds (0: none, train on all of data.train).")
_SEEDS = flags.DEFINE_list("seeds", [], "cv: train.seed of each run, e.g. 0,1,2.")
_ENSEMBLE = flags.DEFINE_bool("ensemble", False, "cv: export the runs as one SavedModel averaging their outputs.")
_FORMAT = flags.DEFINE_list(
    "format", [], "train/export: also write these formats beside the SavedModel, e.g. `litert` (model.tflite)."
)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(argv[1], COMMANDS, n=1) if len(argv) == 2 else []
        hint = f" Did you mean `tfft {close[0]}`?" if close else ""
        raise app.UsageError(f"Usage: tfft {{{'|'.join(COMMANDS)}}} --flag=value ... Received: {argv[1:]}.{hint}")
    command = argv[1]
    setup_logging()
    if command in _FILE_COMMANDS:
        _FILE_COMMANDS[command]()
    else:
        _CONFIG_COMMANDS[command](_load_config(command))
    return 0


def _shard() -> None:
    from tfft import shard

    if not _INPUT.value or not _OUTPUT.value or _OUTPUT.value == _OUTPUT.default:
        raise app.UsageError("`tfft shard` needs --input=<file> and --output=<path prefix of the shards>.")
    names = shard.shard_file(_INPUT.value, _OUTPUT.value, _NUM_SHARDS.value, _SHARD_FORMAT.value)
    print(f"Wrote {len(names)} shards: {names[0]} ... {names[-1]}")


def _predict() -> None:
    from tfft import predict

    if not _MODEL.value or not _INPUT.value:
        raise app.UsageError("`tfft predict` needs --model=<SavedModel version folder> and --input=<file>.")
    predict.predict_file(_MODEL.value, _INPUT.value, _OUTPUT.value, text_column=_TEXT_COLUMN.value,
                         text_pair_column=_TEXT_PAIR_COLUMN.value, batch_size=_BATCH_SIZE.value,
                         overwrite=_OVERWRITE.value)
    print(f"Wrote {_OUTPUT.value}")


def _load_config(command: str):
    """The config of `--config`, `--search` and the overrides (`--set`, `--format`, `adapt`'s task)."""
    from tfft import config as config_lib

    if not _CONFIG.value:
        raise app.UsageError(f"`tfft {command}` needs --config=<YAML file>, e.g. --config=configs/demo.yaml.")
    overrides = (["task.type=masked_lm"] if command == "adapt" else []) + list(_SET.value)
    if _FORMAT.value:  # `--format=litert`: the SavedModel, and a LiteRT file beside it
        overrides.append("export.formats=" + ",".join(dict.fromkeys(["saved_model", *_FORMAT.value])))
    sections = None
    if _SEARCH.value:  # `search:` at its top, or the section's keys alone
        loaded = config_lib.read_yaml(_SEARCH.value, "--search")
        sections = {"search": loaded["search"] if set(loaded) == {"search"} else loaded}
    return config_lib.load_config(_CONFIG.value, overrides, sections)


def _train(config) -> None:
    from tfft import train

    if config.distill.teacher:
        logging.warning("`tfft train` ignores `distill.teacher`: `tfft distill` trains on the teacher's outputs.")
    _print_result(train.run(config))


def _distill(config) -> None:
    from tfft import distill

    result = distill.run(config)
    _print_result(result)
    if result.metrics is not None:
        teacher = "  ".join(f"{k} {v:.4f}" for k, v in result.metrics["teacher"].items())
        print(f"teacher: {teacher}  (the student keeps "
              + ", ".join(f"{100 * v:.1f}% of {k}" for k, v in result.metrics["retained"].items()) + ")")


def _print_result(result) -> None:
    if result.metrics is not None:
        print(result.task.summary(result.metrics))
    if result.export_path:
        print(f"Exported {result.export_path}")


def _adapt(config) -> None:
    from tfft import adapt

    adapted = adapt.run(config)
    if adapted.perplexity_after is not None:
        print(f"held-out perplexity {adapted.perplexity_before:.3f} -> {adapted.perplexity_after:.3f}")
    print(f"Adapted backbone {adapted.backbone_dir}")


def _evaluate(config) -> None:
    from tfft import evaluate

    evaluate.run(config, split_file=_INPUT.value)


def _export(config) -> None:
    from tfft import export

    print(f"Exported {export.run(config)}")


def _search(config) -> None:
    from tfft import search

    result = search.run(config, train_best=_TRAIN_BEST.value)
    if result.trained is not None and result.trained.export_path:
        print(f"Exported {result.trained.export_path}")


def _cv(config) -> None:
    from tfft import cross_validation

    try:
        seeds = tuple(int(seed) for seed in _SEEDS.value)
    except ValueError:
        raise app.UsageError(f"--seeds takes integers, e.g. --seeds=0,1,2. Received: {_SEEDS.value}") from None
    result = cross_validation.run(config, folds=_FOLDS.value, seeds=seeds, ensemble=_ENSEMBLE.value)
    if result.export_path:
        print(f"Exported {result.export_path}")


#: Commands that read files named by flags, and commands that read a config.
_FILE_COMMANDS = {"shard": _shard, "predict": _predict}
_CONFIG_COMMANDS = {"train": _train, "adapt": _adapt, "evaluate": _evaluate, "export": _export, "search": _search,
                    "cv": _cv, "distill": _distill}


def setup_logging(level: int = logging.INFO) -> None:
    """tfft's log lines (time, level, logger) at `level`; TensorFlow's own at warnings and above."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    # Through absl's flag, not the logger: TF's SavedModel code saves and restores the flag's value.
    absl_logging.set_verbosity(absl_logging.WARNING)
    for noisy in ("tensorflow", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def command_help(args: list[str]) -> str:
    """The help text; a command that reads a config (`tfft train --help`) lists every config key and its default."""
    command = next((a for a in args if not a.startswith("-")), None)
    if command not in _CONFIG_COMMANDS:
        return HELP
    from tfft.config import Config  # pyyaml and dataclasses only: help stays free of TensorFlow

    lines = ["", f"config keys (YAML, or `tfft {command} --set=section.key=value`), with their defaults:"]
    for section, values in Config().to_dict().items():
        for key, value in (values.items() if isinstance(values, dict) else [("", values)]):
            name = f"{section}.{key}" if key else section
            shown = "null" if value is None else '""' if value == "" else value
            lines.append(f"  {name:<30} {shown}")
    lines.append("Each key is described in the README's Config reference.")
    return HELP + "\n".join(lines) + "\n"


def run_main() -> None:
    """Console-script entry point: user errors, Ctrl-C and SIGTERM print one line, not a traceback."""
    from tfft.errors import USER_ERRORS, ChildRunError

    if len(sys.argv) == 1 or "-h" in sys.argv[1:] or "--help" in sys.argv[1:]:
        print(command_help(sys.argv[1:]), end="")  # Before absl: `-h` is no absl flag, and help needs no TensorFlow.
        sys.exit(0 if len(sys.argv) > 1 else 2)
    _quiet_native_start_up_logs()
    # Preemptible machines get SIGTERM before they go: stop as for Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app.run(main)
    except USER_ERRORS as err:
        print(f"tfft: error: {err}", file=sys.stderr)
        sys.exit(2)
    except ChildRunError as err:  # a search trial's or `tfft cv` run's process: its own error is printed above
        print(f"tfft: error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        command = " ".join(["tfft", *sys.argv[1:]])
        print(
            f"tfft: stopped. Run the same command again to resume from the last backup: {command}",
            file=sys.stderr,
        )
        sys.exit(130)


#: TensorFlow's native start-up lines, written to file descriptor 2 before any flag or env var can silence them
#: (`TF_CPP_MIN_LOG_LEVEL` does not reach the lines logged before absl::InitializeLog).
_START_UP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|"
    # `I0000 00:00:1795458649.022983   16957 port.cc:153] ...` (2.21) or `2026-11-23 18:44:00.839050: I external/...
    # /cudart_stub.cc:31] ...` (2.20)
    r"^(?:[IWE]\d{4} [\d:. ]+\d+ |\d{4}-\d\d-\d\d [\d:.]+: [IWE] \S*?)"
    r"(?:port|cudart_stub|cpu_feature_guard|cuda_platform|cuda_executor|cuda_diagnostics|util)\.cc:\d+\]|"
    r"^To enable the following instructions|rebuild TensorFlow with the appropriate compiler flags"
)


def _quiet_native_start_up_logs() -> None:
    """Keeps the user's first screen to tfft's own lines.

    Python's `sys.stderr` keeps the terminal; native code's writes to file
    descriptor 2 pass through a thread that drops TensorFlow's known start-up
    lines (oneDNN notes, "could not find cuda drivers", `cuInit` on a machine
    without a GPU, CPU-instruction notes) and forwards every other line.
    `TFFT_NATIVE_LOGS=1` turns the filter off.
    """
    if os.environ.get("TFFT_NATIVE_LOGS") == "1":
        return
    import threading

    terminal = os.dup(2)
    sys.stderr = os.fdopen(os.dup(terminal), "w", buffering=1, encoding=sys.stderr.encoding, errors="replace")
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward():
        with os.fdopen(read_end, "rb") as lines:
            for line in lines:
                if not _START_UP_NOISE.search(line.decode("utf-8", errors="replace")):
                    os.write(terminal, line)

    threading.Thread(target=forward, name="tfft-native-stderr", daemon=True).start()


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")
