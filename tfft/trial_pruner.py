"""Optuna's median pruner, with ties on the objective broken by the validation loss.

On a small validation split a score such as accuracy takes few values, and
after the first epoch many trials score the same: on the 60-pair MRPC slice of
`benchmarks/search_vs_trainer.py` every trial scored the majority class,
0.6833, after its first epoch. A trial at the median is not below it, so
`optuna.pruners.MedianPruner` let every one of them train a second epoch.
This pruner prunes what the median pruner prunes, and also a trial whose
score equals the median when its validation loss is above the median loss of
the finished trials that scored the same at that epoch.

```python
study = optuna.create_study(pruner=LossBreaksTies(n_startup_trials=2), ...)
trial.set_user_attr(LOSS_ATTR, {**losses, str(step): loss})  # before trial.report(score, step)
```
"""

from __future__ import annotations

import statistics

import optuna

LOSS_ATTR = "val_loss_at"  # a trial's user attribute: {"<epoch>": validation loss}


class LossBreaksTies(optuna.pruners.MedianPruner):
    """`optuna.pruners.MedianPruner`, whose ties on the objective the validation loss breaks.

    Args:
        n_startup_trials: int. No pruning until this many trials finished.
    """

    def __init__(self, n_startup_trials: int):
        super().__init__(n_startup_trials=n_startup_trials)
        self.n_startup_trials = n_startup_trials

    def prune(self, study, trial) -> bool:
        return bool(super().prune(study, trial)) or self.lost_tie(study, trial) is not None

    def lost_tie(self, study, trial) -> str | None:
        """Why the trial's last epoch loses its tie at the median, for its log line; None where it does not."""
        step, loss = trial.last_step, loss_at(trial, trial.last_step)
        finished = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if loss is None or len(finished) < self.n_startup_trials:
            return None
        values = [t.intermediate_values[step] for t in finished if step in t.intermediate_values]
        if not values:
            return None
        median = statistics.median(values)
        best = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
        if best(trial.intermediate_values.values()) != median:
            return None  # off the median: the median pruner's rule decides
        tied = [loss_at(t, step) for t in finished if t.intermediate_values.get(step) == median]
        tied = [value for value in tied if value is not None]
        if not tied or loss <= statistics.median(tied):
            return None
        return (f"tied at the finished trials' median {median:.4g}, its validation loss {loss:.6g} above theirs "
                f"({statistics.median(tied):.6g})")


def loss_at(trial, step: int | None) -> float | None:
    """The validation loss a trial recorded for an epoch (`LOSS_ATTR`), or None."""
    return None if step is None else trial.user_attrs.get(LOSS_ATTR, {}).get(str(step))
