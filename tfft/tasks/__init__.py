"""Tasks: what a model predicts, from reading targets to serving outputs (see `tfft.tasks.base`).

`create(config)` returns the task `config.task.type` names. Register a new one
in `TASKS`.
"""

from tfft.config import check
from tfft.freezing import count_parameters, freeze
from tfft.tasks.base import Task, TaskModel
from tfft.tasks.classification import Classification
from tfft.tasks.extractive_qa import ExtractiveQA
from tfft.tasks.masked_lm import MaskedLM
from tfft.tasks.multi_label import MultiLabel
from tfft.tasks.regression import Regression
from tfft.tasks.token_classification import TokenClassification

#: `task.type` -> its `Task` class.
TASKS: dict[str, type[Task]] = {
    cls.type: cls for cls in (Classification, MultiLabel, Regression, TokenClassification, ExtractiveQA, MaskedLM)
}

__all__ = ["TASKS", "Task", "TaskModel", "create", "check_config", "count_parameters", "freeze"]


def create(config) -> Task:
    """The `Task` for `config.task.type`, once its keys are checked (`check_config`)."""
    check_config(config)
    return TASKS[config.task.type](config)


def check_config(config) -> None:
    """Refuses a key that another task type owns (`Task.exclusive_keys`), then runs the task's own checks."""
    cls = TASKS[config.task.type]
    for other in TASKS.values():
        for key in set(other.exclusive_keys) - set(cls.exclusive_keys):
            section, name = key.split(".")
            value = getattr(getattr(config, section), name)
            check(value is None, key, value, f"applies to `task.type: {other.type}` only")
    cls.check_config(config)
