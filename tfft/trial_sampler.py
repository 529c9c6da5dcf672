"""Optuna's TPE sampler seeded per trial: trial n draws from `seed + n`, whichever process samples it.

A seeded Optuna sampler draws from one random stream per process, so
processes that open one study together (`tfft search` started on several
machines at once) draw the same values for their first trials: TPE's first
trials are random draws, and each process starts its stream at the same
seed (optuna/optuna#4714). Seeding each trial by its number, which the
study's storage hands out once, gives every trial values of its own, and the
same values for trial n whether one process ran the search or several.

```python
study = optuna.create_study(sampler=TrialSeededTPE(seed=0), storage=...)
```

The Hugging Face Trainer takes it as well (`hyperparameter_search(...,
sampler=TrialSeededTPE(0))`), which is how `benchmarks/search_vs_trainer.py`
gives both peers the same draws.
"""

from __future__ import annotations

import optuna


class TrialSeededTPE(optuna.samplers.BaseSampler):
    """`optuna.samplers.TPESampler`, with a fresh one for each trial, seeded `seed + trial.number`.

    TPE keeps nothing between trials but its random streams (it reads the
    finished trials from the study each time), so a sampler per trial
    samples as one would, apart from where its random numbers come from.

    Args:
        seed: int. Trial n's sampler is seeded `seed + n`.
        **tpe_args: passed to each `TPESampler`.
    """

    def __init__(self, seed: int, **tpe_args):
        self.seed, self.tpe_args = seed, tpe_args
        self._samplers: dict[int, optuna.samplers.TPESampler] = {}

    def _of(self, trial) -> optuna.samplers.TPESampler:
        if trial.number not in self._samplers:
            self._samplers[trial.number] = optuna.samplers.TPESampler(seed=self.seed + trial.number, **self.tpe_args)
        return self._samplers[trial.number]

    def infer_relative_search_space(self, study, trial):
        return self._of(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._of(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._of(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._of(trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._of(trial).after_trial(study, trial, state, values)
        self._samplers.pop(trial.number, None)

    def reseed_rng(self) -> None:
        """Optuna asks this of a sampler shared by threads (`n_jobs > 1`); each trial's seed already differs."""
