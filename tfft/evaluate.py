"""Classification metrics: accuracy, macro-F1, per-class P/R/F1, MCC and the confusion matrix.

`classification_metrics` works on plain label ids, so it checks the in-memory
model, an export, or any other predictions the same way. `run(config)` is
`tfft evaluate`: it rebuilds the trained model from `output_dir` and scores
the validation split (or another file).
"""

from __future__ import annotations

import json
import logging
import pathlib

import numpy as np

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


def classification_metrics(y_true, y_pred, label_names: list[str]) -> dict:
    """Scores predicted label ids against true ones.

    Args:
        y_true: array of int. True label ids.
        y_pred: array of int. Predicted label ids.
        label_names: list of str. Names of the ids, in id order.

    Returns:
        A dict with `accuracy`, `macro_f1`, `matthews_corrcoef`, `per_class`
        (name -> precision, recall, f1, support), `confusion_matrix` (rows are
        true labels, columns predictions), `labels` and `examples`.

    Example:

    ```python
    classification_metrics([0, 1, 1], [0, 1, 0], ["neg", "pos"])["accuracy"]  # 0.667
    ```
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    k = len(label_names)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    true_positive = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0).astype(np.float64)
    support = confusion.sum(axis=1).astype(np.float64)
    precision = np.divide(true_positive, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(true_positive, support, out=np.zeros(k), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(k), where=denominator > 0)
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(label_names)
    }
    n = len(y_true)
    return {
        "examples": n,
        "accuracy": float(true_positive.sum() / n) if n else 0.0,
        "macro_f1": float(f1.mean()),
        "matthews_corrcoef": _matthews(confusion),
        "per_class": per_class,
        "labels": list(label_names),
        "confusion_matrix": confusion.tolist(),
    }


def _matthews(confusion: np.ndarray) -> float:
    """Multi-class Matthews correlation (equals the binary MCC for two classes)."""
    c = confusion.astype(np.float64)
    t, p, n = c.sum(axis=1), c.sum(axis=0), c.sum()
    correct = np.trace(c)
    numerator = correct * n - t @ p
    denominator = np.sqrt((n**2 - p @ p) * (n**2 - t @ t))
    return float(numerator / denominator) if denominator else 0.0


def format_metrics(metrics: dict) -> str:
    """The metrics as a plain-text table: summary, per-class scores, confusion matrix."""
    names = metrics["labels"]
    width = max(10, *(len(n) for n in names))
    lines = [
        f"examples {metrics['examples']}   accuracy {metrics['accuracy']:.4f}   "
        f"macro-F1 {metrics['macro_f1']:.4f}   MCC {metrics['matthews_corrcoef']:.4f}",
        "",
        f"{'label':<{width}}  precision  recall     f1  support",
    ]
    for name in names:
        s = metrics["per_class"][name]
        lines.append(f"{name:<{width}}  {s['precision']:9.4f}  {s['recall']:6.4f}  {s['f1']:.4f}  {s['support']:7d}")
    lines += ["", "confusion matrix (rows: true, columns: predicted)"]
    lines.append(" " * width + "  " + "  ".join(f"{n[:8]:>8}" for n in names))
    for name, row in zip(names, metrics["confusion_matrix"], strict=True):
        lines.append(f"{name:<{width}}  " + "  ".join(f"{v:8d}" for v in row))
    return "\n".join(lines)


def predict_probabilities(model, dataset) -> np.ndarray:
    """Softmax probabilities of `model` over a features-only `dataset`, in order."""
    return np.asarray(model.predict(dataset, verbose=0), dtype=np.float32)


def write_metrics(metrics: dict, output_dir: str | pathlib.Path) -> pathlib.Path:
    path = pathlib.Path(output_dir) / METRICS_FILE
    path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return path


def run(config, split_file: str | None = None) -> dict:
    """`tfft evaluate`: scores the model trained in `config.output_dir`.

    Args:
        config: `tfft.config.Config`. The run's config (its `output_dir` holds
            the trained weights).
        split_file: str or None. A labelled file to score instead of
            `data.validation`.

    Returns:
        The metrics dict, also written to `<output_dir>/metrics.json` (or to
        `metrics_<file stem>.json` for `split_file`).
    """
    from tfft import data as data_lib
    from tfft import train as train_lib

    model, packer, labels = train_lib.load_trained(config)
    spec = split_file or config.data.validation
    if not spec:
        raise data_lib.DataError("Nothing to evaluate: set `data.validation` or pass `--input`.")
    examples = data_lib.read_split(spec, config.data, split="validation")
    y_true = labels.encode(examples)
    dataset = data_lib.make_dataset(examples, None, packer, batch_size=config.train.batch_size)
    y_pred = predict_probabilities(model, dataset).argmax(axis=-1)
    metrics = classification_metrics(y_true, y_pred, labels.names)
    print(format_metrics(metrics))
    name = METRICS_FILE if split_file is None else f"metrics_{pathlib.Path(split_file).stem}.json"
    path = pathlib.Path(config.output_dir) / name
    path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    logger.info("Wrote %s", path)
    return metrics
