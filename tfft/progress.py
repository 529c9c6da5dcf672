"""Progress bars for long work (the streamed pre-pass, `tfft shard`, `tfft predict`), on terminals only.

Keras' `Progbar` redraws one line with carriage returns. Written to a file or
a CI log, it leaves partial lines that the next log message is glued onto, so
off a terminal (or notebook) there is no bar: the work logs its own summary
line when it ends.
"""

from __future__ import annotations

import sys


def progress_bar(total: int, unit_name: str):
    """A `keras.utils.Progbar` of `total` units on a terminal or in a notebook, else None."""
    interactive = sys.stdout.isatty() or "ipykernel" in sys.modules
    if not interactive:
        return None
    import keras

    return keras.utils.Progbar(total, unit_name=unit_name)
