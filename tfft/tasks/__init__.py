"""Tasks: what a model predicts, from reading targets to serving outputs (see `tfft.tasks.base`).

`create(config)` returns the task `config.task.type` names. Register a new one
in `TASKS`.
"""

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

__all__ = ["TASKS", "Task", "TaskModel", "create", "count_parameters", "freeze"]


def create(config) -> Task:
    """The `Task` for `config.task.type`."""
    return TASKS[config.task.type](config)
