"""The errors that mean "fix your input", which the CLI prints as one line, without a traceback.

This module imports nothing but the standard library: the CLI catches these
before TensorFlow is loaded, and every other module raises them.
"""

import os


class ConfigError(ValueError):
    """A config key or value is invalid. The message names the key and the fix."""


class DataError(ValueError):
    """A data file or row is unusable. The message names the file, row and fix."""


class StrategyError(RuntimeError):
    """The requested distribution strategy cannot run on this machine."""


class OutputDirError(RuntimeError):
    """`output_dir` holds an earlier run that tfft will not silently overwrite."""


class RunInUseError(OutputDirError):
    """Another live process holds `output_dir`'s lock (`tfft.run_dir.locked`)."""


class ChildRunError(RuntimeError):
    """A run's process (`tfft.child_run`: a search trial, a `tfft cv` run) ended without finishing the run; its own
    error is in the output above."""


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite: the run stopped, and nothing was exported."""


def missing_file(path, key: str) -> DataError:
    """The error for a data file that is not there, saying where a relative path was looked for.

    Args:
        path: str or path-like. The path as the user gave it.
        key: str. Where it came from, e.g. "`data.train`", for the fix.
    """
    where = "" if os.path.isabs(path) or "://" in str(path) else f" (read from the current folder, `{os.getcwd()}`)"
    return DataError(f"Data file `{path}` does not exist{where}. Check the path in {key}.")


USER_ERRORS = (ConfigError, DataError, StrategyError, OutputDirError, DivergedError, FileNotFoundError)
