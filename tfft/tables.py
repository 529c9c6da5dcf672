"""Result tables that `tfft search` and `tfft cv` write: CSV files and Markdown text, one row per dict."""

from __future__ import annotations

import csv
import os
import pathlib

__all__ = ["write_csv", "write_text", "markdown"]


def write_csv(rows: list[dict], path: pathlib.Path) -> None:
    """Writes `rows` (columns: every key, in first-seen order) to `path` whole: processes sharing it never see half."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    with open(temporary, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)


def write_text(path: pathlib.Path, text: str) -> None:
    """Writes `text` to `path` whole (a temporary file renamed into place)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def markdown(rows: list[dict]) -> str:
    """`rows` as a Markdown table; floats to 4 significant digits."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows])
