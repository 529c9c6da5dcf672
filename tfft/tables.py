"""Result tables that `tfft search`, `tfft cv` and `tfft predict` write whole: CSV files and Markdown text."""

from __future__ import annotations

import csv
import os
import pathlib
from collections.abc import Callable

__all__ = ["write_whole", "write_csv", "write_text", "markdown"]


def write_whole(path: pathlib.Path, write: Callable[[pathlib.Path], None]) -> None:
    """`write(temporary)` on a temporary file beside `path`, then the file renamed into place: a reader (or a
    process sharing `path`) never sees half of it, and a crash leaves `path` as it was."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    write(temporary)
    os.replace(temporary, path)


def write_csv(rows: list[dict], path: pathlib.Path) -> None:
    """Writes `rows` (columns: every key, in first-seen order) to `path` whole (`write_whole`)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))

    def write(temporary: pathlib.Path) -> None:
        with open(temporary, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows(rows)

    write_whole(path, write)


def write_text(path: pathlib.Path, text: str) -> None:
    """Writes `text` to `path` whole (`write_whole`)."""
    write_whole(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def markdown(rows: list[dict]) -> str:
    """`rows` as a Markdown table; floats to 4 significant digits."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows])
