"""Batched inference from an exported SavedModel alone (`tfft predict`).

Needs only TensorFlow and TensorFlow Text: no keras, keras-hub or tfft model
code, exactly what a serving process has.

Example:

```python
predict_file("saved_models/demo/1", "new.csv", "predictions.csv")
```
"""

from __future__ import annotations

import logging
import pathlib

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_text  # noqa: F401  Registers the tokenizer's ops before loading.

from tfft import data

logger = logging.getLogger(__name__)


def load_labels(model_dir: str | pathlib.Path) -> list[str]:
    return (pathlib.Path(model_dir) / "assets" / "labels.txt").read_text(encoding="utf-8").splitlines()


def predict_file(
    model_dir: str | pathlib.Path,
    input_path: str | pathlib.Path,
    output_path: str | pathlib.Path,
    *,
    text_column: str = "text",
    text_pair_column: str | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> pd.DataFrame:
    """Predicts every row of `input_path` and writes the rows with predictions.

    Args:
        model_dir: str. A SavedModel version folder written by `tfft export`.
        input_path: str. `.csv`, `.tsv` or `.jsonl` with a `text_column`.
        output_path: str. CSV (or `.tsv`/`.jsonl` by extension) to write: the
            input columns, then `predicted_label`, `predicted_label_id` and
            one `probability_<label>` column per label.
        text_column: str. Column with the text.
        text_pair_column: str or None. Column with the second text.
        batch_size: int. Rows per SavedModel call.
        progress: bool. Show a progress bar.

    Returns:
        The written frame.
    """
    model_dir = pathlib.Path(model_dir)
    if not (model_dir / "saved_model.pb").is_file():
        raise FileNotFoundError(
            f"`{model_dir}` is not a SavedModel folder (no saved_model.pb). Pass a version folder, "
            "e.g. saved_models/demo/1."
        )
    frame = data.read_table(input_path)
    for column in filter(None, [text_column, text_pair_column]):
        if column not in frame.columns:
            raise data.DataError(
                f"Data file `{input_path}` has no column `{column}`. Its columns are: {', '.join(frame.columns)}."
            )
    serve = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    labels = load_labels(model_dir)
    bar = tf.keras.utils.Progbar(len(frame), unit_name="example") if progress else None
    probabilities, label_ids = [], []
    for start in range(0, len(frame), batch_size):
        rows = frame.iloc[start : start + batch_size]
        inputs = {"text": tf.constant(rows[text_column].tolist())}
        if text_pair_column:
            inputs["text_pair"] = tf.constant(rows[text_pair_column].tolist())
        outputs = serve(**inputs)
        probabilities.append(outputs["probabilities"].numpy())
        label_ids.append(outputs["label_id"].numpy())
        if bar is not None:
            bar.add(len(rows))
    probabilities = np.concatenate(probabilities) if probabilities else np.zeros([0, len(labels)], np.float32)
    label_ids = np.concatenate(label_ids) if label_ids else np.zeros([0], np.int64)
    result = frame.copy()
    result["predicted_label"] = [labels[i] for i in label_ids]
    result["predicted_label_id"] = label_ids
    for i, name in enumerate(labels):
        result[f"probability_{name}"] = probabilities[:, i]
    _write_table(result, pathlib.Path(output_path))
    logger.info("Wrote %d predictions to %s", len(result), output_path)
    return result


def _write_table(frame: pd.DataFrame, path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
