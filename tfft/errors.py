"""The errors that mean "fix your input", which the CLI prints as one line, without a traceback.

This module imports nothing: the CLI catches these before TensorFlow is
loaded, and every other module raises them.
"""


class ConfigError(ValueError):
    """A config key or value is invalid. The message names the key and the fix."""


class DataError(ValueError):
    """A data file or row is unusable. The message names the file, row and fix."""


class StrategyError(RuntimeError):
    """The requested distribution strategy cannot run on this machine."""


class OutputDirError(RuntimeError):
    """`output_dir` holds an earlier run that tfft will not silently overwrite."""


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite: the run stopped, and nothing was exported."""


USER_ERRORS = (ConfigError, DataError, StrategyError, OutputDirError, DivergedError, FileNotFoundError)
