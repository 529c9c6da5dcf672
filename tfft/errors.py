"""The errors that mean "fix your input", which the CLI prints without a traceback."""

from tfft.config import ConfigError
from tfft.data import DataError
from tfft.distribute import StrategyError
from tfft.train import OutputDirError

USER_ERRORS = (ConfigError, DataError, StrategyError, OutputDirError, FileNotFoundError)
