"""Task heads put on top of a backbone."""

from tfft.tasks.classifier import TextClassifier, count_parameters, freeze

__all__ = ["TextClassifier", "count_parameters", "freeze"]
