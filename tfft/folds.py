"""Holding out part of the training split as the validation split: a slice, or one fold of k (`data.split`).

`tfft search` scores its trials on a held-out slice (`search.validation_fraction`)
and `tfft cv` trains one run per fold; both are plain runs whose config says
which part of `data.train` they hold out, so each resumes, evaluates and
exports as any run does.

The task decides what a split keeps together and balanced:
`Task.strata` (classification: the label; multi-label: the rarest label)
and `Task.split_groups` (extractive QA: the context, so no paragraph is in
both parts). Token classification splits by sentence, the unit it reads.
scikit-learn makes the splits.

```python
config = load_config("configs/demo.yaml", ["data.validation=", "data.split.folds=5", "data.split.fold=2"])
train.run(config)  # trains on folds 0, 1, 3, 4; validates on fold 2
```
"""

from __future__ import annotations

import collections
import logging

import numpy as np

from tfft import data, streaming
from tfft.config import Config, SplitConfig
from tfft.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["held_out", "train_part", "read_validation", "fold_indices"]


def read_validation(task, config: Config) -> data.Examples | None:
    """The validation split: `data.split`'s held-out part of `data.train`, else `data.validation`, else None."""
    if config.data.split.active:
        return held_out(task, task.read(config.data.train, split="train"), config.data.split)
    if config.data.validation:
        return streaming.read_all(task, config.data.validation, "validation")
    return None


def train_part(task, examples: data.Examples, split: SplitConfig) -> data.Examples:
    """The rows of the (capped) training split that `split` trains on: all of them when it is off."""
    if not split.active:
        return examples
    kept = sorted(set(range(len(examples))) - set(_held_out_indices(task, examples, split)))
    return examples.take(kept)


def held_out(task, examples: data.Examples, split: SplitConfig) -> data.Examples:
    """The rows of the (capped) training split that `split` holds out as the validation split."""
    return examples.take(sorted(_held_out_indices(task, examples, split)))


def _held_out_indices(task, examples: data.Examples, split: SplitConfig) -> list[int]:
    if split.fraction:
        return _slice_indices(task, examples, split)
    return fold_indices(task, examples, split.folds, split.seed, split.stratify)[split.fold]


def fold_indices(task, examples: data.Examples, folds: int, seed: int, stratify: bool = True) -> list[list[int]]:
    """The example indices of each of `folds` folds, each sorted; groups stay whole, strata keep their shares.

    Raises a `ConfigError` when there are fewer rows (or groups) than folds,
    or, stratified, a label with fewer examples than folds.
    """
    units, strata = _units(task, examples, stratify)
    if len(units) < folds:
        what = "groups of examples (contexts)" if task.split_groups(examples) is not None else "examples"
        raise ConfigError(f"Argument `data.split.folds` must be at most the number of {what} in `data.train` "
                          f"({len(units)}). Received: folds={folds}")
    from sklearn.model_selection import KFold, StratifiedKFold

    if strata is not None:
        _check_strata(strata, folds, examples.source)
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(units)), strata)
    else:
        splitter = KFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(units)))
    return [sorted(i for unit in held for i in units[unit]) for _, held in splitter]


def _slice_indices(task, examples: data.Examples, split: SplitConfig) -> list[int]:
    """`split.fraction` of the units, by scikit-learn's `train_test_split` (stratified where the task has strata)."""
    from sklearn.model_selection import train_test_split

    units, strata = _units(task, examples, split.stratify)
    if strata is not None:
        _check_strata(strata, 2, examples.source)
    _, held = train_test_split(np.arange(len(units)), test_size=split.fraction, random_state=split.seed,
                               stratify=strata)
    return [i for unit in held for i in units[unit]]


def _units(task, examples: data.Examples, stratify: bool) -> tuple[list[list[int]], list[str] | None]:
    """What a split moves as one (an example, or a group's examples), and each unit's stratum (None: unstratified)."""
    groups = task.split_groups(examples)
    if groups is not None:
        members = collections.defaultdict(list)
        for i, group in enumerate(groups):
            members[group].append(i)
        return list(members.values()), None
    strata = task.strata(examples) if stratify else None
    return [[i] for i in range(len(examples))], strata


def _check_strata(strata: list[str], folds: int, source: str) -> None:
    counts = collections.Counter(strata)
    rare = sorted((count, label) for label, count in counts.items() if count < folds)
    if rare:
        shown = ", ".join(f"{label!r} ({count})" for count, label in rare[:5])
        raise ConfigError(
            f"Data file `{source}` has labels with fewer examples than the {folds} parts a stratified split needs: "
            f"{shown}. Lower `data.split.folds` (or raise `data.split.fraction`), or set `data.split.stratify=false`."
        )
