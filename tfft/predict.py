"""Batched inference from an exported SavedModel or LiteRT file alone (`tfft predict`), for any task.

The model runs from the SavedModel (TensorFlow and TensorFlow Text only: no
keras-hub or tfft model code), or from a version's `model.tflite` through the
LiteRT interpreter (`tfft.litert.LiteRTModel`), which writes the same columns. `assets/tfft_task.json` in the export names
its task, whose `prediction_columns` turn the outputs into columns:

| task | columns added to the input's |
|---|---|
| classification | `predicted_label`, `predicted_label_id`, `probability_<label>` per label, `truncated_tokens` |
| multi_label | `predicted_labels` (joined by the separator), `probability_<label>` per label, `truncated_tokens` |
| regression | `predicted_score`, `truncated_tokens` |
| token_classification | `entities` (JSON spans: text, type, start and end character), `tags`, `truncated_words` |
| extractive_qa | `answer`, `start` and `end` (character offsets into `context`), `score`, `nbest` (JSON candidates), `truncated_question_tokens` |
| masked_lm | `predicted_token`, `top_tokens` (the 5 likeliest, space-separated), `truncated_tokens` |

`truncated_tokens` counts the word pieces of a row past the model's sequence length, which it did not read
(NER: `truncated_words`, words tagged O; extractive QA: `truncated_question_tokens`, the question's pieces past
`task.max_question_length`); a warning counts the rows. Exports older than these have no such column.

Example:

```python
predict_file("saved_models/demo/1", "new.csv", "predictions.csv")
```
"""

from __future__ import annotations

import json
import logging
import pathlib

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_text  # noqa: F401  Registers the tokenizer's ops before loading.

from tfft import data, tables
from tfft.errors import ConfigError
from tfft.progress import progress_bar
from tfft.tasks.base import METADATA_FILE

logger = logging.getLogger(__name__)

#: The file that makes a folder a SavedModel.
SAVED_MODEL_FILE = "saved_model.pb"


def load_metadata(model_dir: str | pathlib.Path) -> dict:
    """The export's `assets/tfft_task.json` (older exports: a classifier with `assets/labels.txt`)."""
    model_dir = pathlib.Path(model_dir)
    path = model_dir / "assets" / METADATA_FILE
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    labels = (model_dir / "assets" / "labels.txt").read_text(encoding="utf-8").splitlines()
    return {"type": "classification", "inputs": ["text"], "labels": labels}


def predict_file(
    model_dir: str | pathlib.Path,
    input_path: str | pathlib.Path,
    output_path: str | pathlib.Path,
    *,
    text_column: str = "text",
    text_pair_column: str | None = None,
    batch_size: int = 64,
    progress: bool = True,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Predicts every row of `input_path` and writes the rows with predictions.

    Args:
        model_dir: str. A SavedModel version folder written by `tfft export`,
            or the `model.tflite` file in one.
        input_path: str. `.csv`, `.tsv` or `.jsonl` with a `text_column`
            (extractive QA: `question` and `context` columns, or SQuAD JSON).
        output_path: str. CSV (or `.tsv`/`.jsonl` by extension) to write: the
            input columns, then the task's prediction columns (module docstring).
        text_column: str. Column with the text.
        text_pair_column: str or None. Column with the second text, for
            models trained on pairs.
        batch_size: int. Rows per SavedModel call.
        progress: bool. Show a progress bar.
        overwrite: bool. Replace `output_path` if it exists; without it an
            existing file is refused before any work. The input file is never
            replaced, and the output is written whole (a temporary file renamed
            into place), so a crash leaves no half-written file.

    Returns:
        The written frame.
    """
    from tfft.tasks import TASKS

    if batch_size < 1:
        raise ConfigError(f"Argument `--batch_size` must be at least 1. Received: batch_size={batch_size}")
    _check_output(pathlib.Path(input_path), pathlib.Path(output_path), overwrite)
    model_path, model_dir, litert_file = _model_paths(model_dir)
    metadata = load_metadata(model_dir)
    if "text_pair" in metadata["inputs"] and not text_pair_column:
        raise data.DataError(
            f"`{model_dir}` was trained on text pairs: pass the second text's column with --text_pair_column."
        )
    task = TASKS[metadata["type"]]
    frame, columns = _input_frame(task, metadata, input_path, {"text": text_column, "text_pair": text_pair_column})
    serve = serving_function(model_path, litert_file)
    bar = progress_bar(len(frame), "example") if progress else None
    texts = {name: frame[columns[name]].astype(str).tolist() for name in metadata["inputs"]}
    order = data.length_order(*texts.values())  # shortest first: a batch pads little
    predicted: dict[str, list] = {}
    for start in range(0, len(frame), batch_size):
        rows = order[start : start + batch_size]
        inputs = {name: [column[i] for i in rows] for name, column in texts.items()}
        outputs = serve(inputs)
        for name, values in _columns(task, outputs, metadata, inputs, frame.columns, input_path).items():
            predicted.setdefault(name, []).extend(np.asarray(values).tolist() if not isinstance(values, list) else values)
        if bar is not None:
            bar.add(len(rows))
    result = frame.copy()
    for name, values in data.restore_order(predicted, order).items():  # each row's predictions in its own row
        result[name] = values
    _warn_truncated(result, predicted)
    _write_table(result, pathlib.Path(output_path))
    logger.info("Wrote %d predictions to %s", len(result), output_path)
    return result


def _check_output(input_path: pathlib.Path, output_path: pathlib.Path, overwrite: bool) -> None:
    """Refuses an output that is the input, a folder, or (unless `overwrite`) an existing file."""
    if output_path.is_dir():
        raise ConfigError(
            f"Argument `--output` is a folder: `{output_path}`. Name a file in it, e.g. `{output_path}/predictions.csv`."
        )
    if output_path.exists() and output_path.resolve() == input_path.resolve():
        raise ConfigError(
            f"Argument `--output` is the input file `{input_path}`: the predictions would replace it. "
            "Choose another --output."
        )
    if output_path.exists() and not overwrite:
        raise ConfigError(
            f"Argument `--output` names an existing file: `{output_path}`. Pass --overwrite to replace it, "
            "or choose another --output."
        )


def _model_paths(model_dir: str | pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, bool]:
    """`(the path given, its SavedModel version folder, whether it is a LiteRT file)`; a missing model fails here."""
    model_path = pathlib.Path(model_dir)
    litert_file = model_path.suffix == ".tflite"
    folder = model_path.parent if litert_file else model_path
    if litert_file and not model_path.is_file():
        raise FileNotFoundError(f"`{model_path}` does not exist. Export one with `tfft export --format=litert`.")
    if not litert_file and not (folder / SAVED_MODEL_FILE).is_file():
        raise FileNotFoundError(
            f"`{folder}` is not a SavedModel folder (no saved_model.pb). Pass a version folder, "
            "e.g. saved_models/demo/1, or the model.tflite file in one."
        )
    return model_path, folder, litert_file


def _input_frame(task, metadata: dict, input_path, columns: dict) -> tuple[pd.DataFrame, dict]:
    """The rows to predict and the column of each model input; a missing column fails naming the flag to pass."""
    frame = task.prediction_frame(str(input_path))
    if frame is None:  # a blank line is an empty text: the output keeps one row per input row
        frame = data.read_table(input_path, key="`--input`", keep_blank_lines=True)
        _warn_blank(frame, input_path)
    for name in metadata["inputs"]:
        columns.setdefault(name, name)  # other inputs (QA's question, context) are read from their own columns
        if columns[name] not in frame.columns:
            flag = {"text": "--text_column", "text_pair": "--text_pair_column"}.get(name)
            fix = f"Pass the right one with {flag}." if flag else f"This model needs a `{name}` column."
            raise data.DataError(
                f"Data file `{input_path}` has no column `{columns[name]}`. Its columns are: "
                f"{', '.join(frame.columns)}. {fix}"
            )
    return frame, columns


def _warn_blank(frame: pd.DataFrame, input_path) -> None:
    """Logs the rows whose every cell is empty (a `.csv`/`.tsv`'s blank lines among them): they are predicted as
    empty texts."""
    empty = np.flatnonzero((frame == "").all(axis=1).to_numpy()) + 1
    if len(empty):
        shown = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
        logger.warning("Data file `%s` has %d row(s) with every cell empty, blank lines included (rows %s, counting "
                       "from 1): each is predicted as an empty text, so the output keeps one row per input row. "
                       "Remove them from the file if they are not texts.", input_path, len(empty), shown)


def _columns(task, outputs: dict, metadata: dict, inputs: dict, taken, input_path) -> dict:
    """The task's prediction columns of a batch, then the outputs that count truncation (`truncated_tokens`), as
    integers, unless the task made a column of them (NER's `truncated_words`; older exports have none). A column
    the input has already (`taken`: an earlier run's predictions fed back in) fails: it would be replaced."""
    columns = task.prediction_columns(outputs, metadata, inputs)
    for name in (n for n in outputs if n.startswith("truncated_") and n not in columns):
        columns[name] = np.asarray(outputs[name]).astype(int)
    clash = [name for name in columns if name in taken]
    if clash:
        raise data.DataError(
            f"Data file `{input_path}` already has the columns `tfft predict` writes: {', '.join(clash)}. Rename or "
            "drop them (an earlier run's predictions?), so that the output keeps both."
        )
    return columns


def _warn_truncated(result: pd.DataFrame, predicted: dict) -> None:
    """Logs how many rows were longer than the model reads, from the `truncated_*` columns."""
    for name in (n for n in predicted if n.startswith("truncated_")):
        cut = int((result[name] > 0).sum())
        if cut:
            logger.warning("%d of %d rows have %s > 0: they are longer than the model reads (model.sequence_length; "
                           "a question: task.max_question_length), and it did not read the rest (NER tags those words "
                           "O); see the `%s` column.", cut, len(result), name, name)


def serving_function(model_path: pathlib.Path, litert_file: bool):
    """Input name -> list of strings, to output name -> numpy array: a SavedModel's or a LiteRT file's."""
    if litert_file:
        from tfft.litert import LiteRTModel

        model = LiteRTModel(model_path)
        return lambda inputs: model(**inputs)
    signature = tf.saved_model.load(str(model_path)).signatures["serving_default"]
    return lambda inputs: {k: v.numpy() for k, v in signature(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def _write_table(frame: pd.DataFrame, path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        tables.write_whole(path, lambda temporary: frame.to_json(temporary, orient="records", lines=True,
                                                                  force_ascii=False))
    else:
        tables.write_whole(path, lambda temporary: frame.to_csv(temporary, sep="\t" if suffix == ".tsv" else ",",
                                                                 index=False))
