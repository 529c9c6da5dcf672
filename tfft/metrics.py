"""Scores for every task, on plain arrays: the in-memory model, an export or any other predictions.

- `classification_metrics`: accuracy, macro-F1, per-class P/R/F1, MCC, confusion matrix.
- `multi_label_metrics`: micro/macro F1, per-label P/R/F1/support, exact match.
- `regression_metrics`: Pearson, Spearman, MSE, MAE.
- `entity_metrics`: entity-level P/R/F1 with conlleval's chunking (IOB1, IOB2, IOBES), per type, and token accuracy.
- `squad_metrics`: exact match and F1 with SQuAD's answer normalization, each question against all its gold answers.

Each has a `format_*` function that prints it as a table.
"""

from __future__ import annotations

import collections
import re
import string

import numpy as np


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
        *_per_name_table({name: metrics["per_class"][name] for name in names}, "label"),
    ]
    lines += ["", "confusion matrix (rows: true, columns: predicted)"]
    lines.append(" " * width + "  " + "  ".join(f"{n[:8]:>8}" for n in names))
    for name, row in zip(names, metrics["confusion_matrix"], strict=True):
        lines.append(f"{name:<{width}}  " + "  ".join(f"{v:8d}" for v in row))
    return "\n".join(lines)


def _f1(precision, recall):
    denominator = precision + recall
    return np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)


def _ratio(numerator, denominator):
    numerator, denominator = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def multi_label_metrics(y_true, y_pred, label_names: list[str], threshold: float) -> dict:
    """Scores 0/1 label matrices.

    Args:
        y_true: array `[examples, labels]` of 0/1.
        y_pred: array `[examples, labels]` of 0/1.
        label_names: list of str. The labels, in column order.
        threshold: float. The probability threshold that made `y_pred` (recorded).

    Returns:
        `micro_f1`, `micro_precision`, `micro_recall`, `macro_f1`,
        `exact_match` (every label of the row right), `per_label` (name ->
        precision, recall, f1, support), `threshold`, `examples`, `labels`.
        A label that is neither true nor predicted anywhere has F1 0.

    Example:

    ```python
    multi_label_metrics([[1, 0], [1, 1]], [[1, 0], [1, 0]], ["a", "b"], 0.5)["exact_match"]  # 0.5
    ```
    """
    y_true = np.asarray(y_true, dtype=bool).reshape(len(y_true), len(label_names))
    y_pred = np.asarray(y_pred, dtype=bool).reshape(len(y_pred), len(label_names))
    tp = (y_true & y_pred).sum(axis=0)
    predicted, support = y_pred.sum(axis=0), y_true.sum(axis=0)
    precision, recall = _ratio(tp, predicted), _ratio(tp, support)
    f1 = _f1(precision, recall)
    micro_p, micro_r = float(_ratio(tp.sum(), predicted.sum())), float(_ratio(tp.sum(), support.sum()))
    n = len(y_true)
    return {
        "examples": n,
        "micro_f1": float(_f1(np.float64(micro_p), np.float64(micro_r))),
        "micro_precision": micro_p,
        "micro_recall": micro_r,
        "macro_f1": float(f1.mean()) if len(label_names) else 0.0,
        "exact_match": float(np.mean(np.all(y_true == y_pred, axis=1))) if n else 0.0,
        "threshold": float(threshold),
        "per_label": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(label_names)
        },
        "labels": list(label_names),
    }


def format_multi_label_metrics(metrics: dict) -> str:
    lines = [
        f"examples {metrics['examples']}   micro-F1 {metrics['micro_f1']:.4f}   macro-F1 {metrics['macro_f1']:.4f}   "
        f"exact match {metrics['exact_match']:.4f}   (threshold {metrics['threshold']:g})",
        "",
    ]
    return "\n".join(lines + _per_name_table(metrics["per_label"], "label"))


def _per_name_table(per_name: dict, heading: str) -> list[str]:
    width = max(10, *(len(n) for n in per_name)) if per_name else 10
    lines = [f"{heading:<{width}}  precision  recall     f1  support"]
    for name, s in per_name.items():
        lines.append(f"{name:<{width}}  {s['precision']:9.4f}  {s['recall']:6.4f}  {s['f1']:.4f}  {s['support']:7d}")
    return lines


def regression_metrics(y_true, y_pred) -> dict:
    """Pearson and Spearman correlation, MSE and MAE of float predictions.

    A correlation is undefined when either side is constant; it is reported
    as 0.0 then (no linear or rank relationship), not NaN.

    Example:

    ```python
    regression_metrics([1.0, 2.0, 3.0], [1.1, 1.9, 3.2])["pearson"]  # 0.99
    ```
    """
    from scipy import stats

    y_true = np.asarray(y_true, np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, np.float64).reshape(-1)

    def correlation(fn) -> float:
        if len(y_true) < 2 or np.ptp(y_true) == 0 or np.ptp(y_pred) == 0:
            return 0.0
        return float(fn(y_true, y_pred)[0])

    error = y_pred - y_true
    return {
        "examples": len(y_true),
        "pearson": correlation(stats.pearsonr),
        "spearman": correlation(stats.spearmanr),
        "mse": float(np.mean(error**2)) if len(error) else 0.0,
        "mae": float(np.mean(np.abs(error))) if len(error) else 0.0,
    }


def format_regression_metrics(metrics: dict) -> str:
    return (
        f"examples {metrics['examples']}   Pearson {metrics['pearson']:.4f}   Spearman {metrics['spearman']:.4f}   "
        f"MSE {metrics['mse']:.4f}   MAE {metrics['mae']:.4f}"
    )


# --- Entities (conlleval) ------------------------------------------------------


def _split_tag(tag: str) -> tuple[str, str]:
    if tag == "O":
        return "O", ""
    prefix, _, kind = tag.partition("-")
    return prefix, kind or "_"


def _chunk_ends(prev_tag, tag, prev_type, kind) -> bool:
    return (
        prev_tag in ("E", "S")
        or (prev_tag in ("B", "I") and tag in ("B", "S", "O"))
        or (prev_tag not in ("O", ".") and prev_type != kind)
    )


def _chunk_starts(prev_tag, tag, prev_type, kind) -> bool:
    return (
        tag in ("B", "S")
        or (prev_tag in ("E", "S", "O") and tag in ("E", "I"))
        or (tag not in ("O", ".") and prev_type != kind)
    )


def entities(tags: list[str]) -> list[tuple[str, int, int]]:
    """The entity chunks of one sentence's tags, as conlleval reads them: `(type, first, last)` word indices.

    IOB1, IOB2 and IOBES tags are all read the same way: an `I-` after `O`
    or after another type starts an entity, as in conlleval and seqeval's
    default mode.

    Example:

    ```python
    entities(["B-PER", "I-PER", "O", "I-LOC"])  # [("PER", 0, 1), ("LOC", 3, 3)]
    ```
    """
    chunks = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, kind = _split_tag(tag)
        if _chunk_ends(prev_tag, prefix, prev_type, kind):
            chunks.append((prev_type, begin, i - 1))
        if _chunk_starts(prev_tag, prefix, prev_type, kind):
            begin = i
        prev_tag, prev_type = prefix, kind
    return chunks


def entity_metrics(true_tags: list[list[str]], pred_tags: list[list[str]]) -> dict:
    """Entity-level precision, recall and F1 (overall and per type), and token accuracy.

    An entity counts as found only when its type and both ends match.

    Args:
        true_tags: list of list of str. Each sentence's true tags.
        pred_tags: list of list of str. Each sentence's predicted tags, as long.

    Returns:
        `precision`, `recall`, `f1`, `token_accuracy`, `per_type` (type ->
        precision, recall, f1, support), `examples`, `words`.
    """
    true_set, pred_set = set(), set()
    correct_tokens = total_tokens = 0
    for s, (true, pred) in enumerate(zip(true_tags, pred_tags, strict=True)):
        if len(true) != len(pred):
            raise ValueError(f"Sentence {s} has {len(true)} true tags and {len(pred)} predicted ones.")
        true_set.update((s, *chunk) for chunk in entities(true))
        pred_set.update((s, *chunk) for chunk in entities(pred))
        correct_tokens += sum(t == p for t, p in zip(true, pred, strict=True))
        total_tokens += len(true)
    correct = true_set & pred_set
    types = sorted({c[1] for c in true_set | pred_set})

    def prf(found, gold, right):
        p, r = float(_ratio(right, found)), float(_ratio(right, gold))
        return p, r, float(_f1(np.float64(p), np.float64(r)))

    precision, recall, f1 = prf(len(pred_set), len(true_set), len(correct))
    per_type = {}
    for kind in types:
        p, r, f = prf(sum(c[1] == kind for c in pred_set), sum(c[1] == kind for c in true_set),
                      sum(c[1] == kind for c in correct))
        per_type[kind] = {"precision": p, "recall": r, "f1": f, "support": sum(c[1] == kind for c in true_set)}
    return {
        "examples": len(true_tags),
        "words": total_tokens,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "token_accuracy": correct_tokens / total_tokens if total_tokens else 0.0,
        "per_type": per_type,
    }


def format_entity_metrics(metrics: dict) -> str:
    lines = [
        f"sentences {metrics['examples']}   words {metrics['words']}   entity P {metrics['precision']:.4f}   "
        f"R {metrics['recall']:.4f}   F1 {metrics['f1']:.4f}   token accuracy {metrics['token_accuracy']:.4f}",
        "",
    ]
    return "\n".join(lines + _per_name_table(metrics["per_type"], "type"))


# --- Extractive QA -------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalization: lowercase, drop ASCII punctuation and the articles a/an/the, squeeze spaces.

    The steps, in the order of the official SQuAD v1.1 evaluation script.
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_f1(prediction: str, gold: str) -> float:
    """Token F1 of two answers after `normalize_answer` (0 when they share no token).

    A gold answer `""` (SQuAD v2.0's "no answer") scores 1 against an empty
    prediction and 0 against any other; otherwise an answer that normalizes to
    nothing scores 0, as in the official v1.1 script.
    """
    predicted, true = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not gold:
        return float(not predicted)
    if not predicted or not true:
        return 0.0
    same = sum((collections.Counter(predicted) & collections.Counter(true)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(true)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(golds: list[list[str]], predictions: list[str]) -> dict:
    """Exact match and F1, in percent, each question scored against the best of its gold answers.

    Args:
        golds: list of list of str. Each question's gold answer texts; `[""]`
            for a question with no answer (SQuAD v2.0).
        predictions: list of str. The predicted answer of each question
            (`""`: no answer).

    Returns:
        A dict with `exact_match`, `f1` and `questions`, and, when some
        questions have no answer, the same scores over the questions that
        have one (`has_answer_*`) and those that do not (`no_answer_*`).

    Example:

    ```python
    squad_metrics([["Denver Broncos", "the Broncos"]], ["Broncos"])  # exact_match 100.0, f1 100.0
    ```
    """
    exact = np.array([max(float(normalize_answer(p) == normalize_answer(g)) for g in gs)
                      for gs, p in zip(golds, predictions, strict=True)])
    f1 = np.array([max(answer_f1(p, g) for g in gs) for gs, p in zip(golds, predictions, strict=True)])
    scores = {"exact_match": 100.0 * float(exact.mean()) if len(exact) else 0.0,
              "f1": 100.0 * float(f1.mean()) if len(f1) else 0.0, "questions": len(golds)}
    unanswerable = np.array([gs == [""] for gs in golds], dtype=bool)
    if unanswerable.any():
        for name, rows in (("has_answer", ~unanswerable), ("no_answer", unanswerable)):
            scores[f"{name}_exact_match"] = 100.0 * float(exact[rows].mean()) if rows.any() else 0.0
            scores[f"{name}_f1"] = 100.0 * float(f1[rows].mean()) if rows.any() else 0.0
            scores[f"{name}_questions"] = int(rows.sum())
    return scores


def format_squad_metrics(metrics: dict) -> str:
    lines = [f"exact match  {metrics['exact_match']:6.2f}", f"F1           {metrics['f1']:6.2f}",
             f"questions    {metrics['questions']:6d}"]
    for name in ("has_answer", "no_answer"):
        if f"{name}_f1" in metrics:
            lines.append(f"{name:<12} EM {metrics[f'{name}_exact_match']:6.2f}  F1 {metrics[f'{name}_f1']:6.2f}  "
                         f"({metrics[f'{name}_questions']} questions)")
    return "\n".join(lines)
