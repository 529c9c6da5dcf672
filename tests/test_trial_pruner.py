"""`tfft.trial_pruner`: the median pruner, with ties on the score broken by the validation loss."""

import optuna
import pytest

from tfft.trial_pruner import LOSS_ATTR, LossBreaksTies

optuna.logging.set_verbosity(optuna.logging.WARNING)


def study_of(finished, direction="maximize"):
    """A study whose finished trials scored `(score, loss)` after epoch 1 (and 0.8 at the end)."""
    study = optuna.create_study(direction=direction, pruner=LossBreaksTies(n_startup_trials=2))
    for score, loss in finished:
        study.add_trial(optuna.trial.create_trial(value=0.8, intermediate_values={1: score},
                                                  user_attrs={LOSS_ATTR: {"1": loss}}))
    return study


def prunes(study, score, loss):
    trial = study.ask()
    if loss is not None:
        trial.set_user_attr(LOSS_ATTR, {"1": loss})
    trial.report(score, step=1)
    return trial.should_prune()


# Three finished trials tied at the slice's majority class after epoch 1, losses 0.58, 0.60, 0.63 (median 0.60).
TIED = [(0.6833, 0.58), (0.6833, 0.60), (0.6833, 0.63)]


@pytest.mark.parametrize("score, loss, pruned", [
    (0.6833, 0.61, True),   # tied, its loss above the tied trials' median: optuna's MedianPruner keeps it
    (0.6833, 0.59, False),  # tied, its loss below the median
    (0.6833, None, False),  # tied, no loss recorded: as the median pruner
    (0.6500, 0.50, True),   # below the median, whatever its loss (the median pruner's own rule)
    (0.7500, 0.90, False),  # above the median, whatever its loss
])
def test_a_trial_tied_at_the_median_is_pruned_when_its_loss_is_above_the_tied_trials(score, loss, pruned):
    assert prunes(study_of(TIED), score, loss) is pruned


def test_the_loss_breaks_ties_only_among_the_trials_tied_at_the_median():
    # The median score is 0.6833; the trials above it had low losses, which must not count against a tied trial.
    study = study_of([(0.6833, 0.60), (0.6833, 0.62), (0.6833, 0.64), (0.75, 0.30), (0.75, 0.31)])
    assert not prunes(study, 0.6833, 0.61)
    assert prunes(study, 0.6833, 0.63)


def test_no_trial_is_pruned_before_the_startup_trials_finished():
    assert not prunes(study_of(TIED[:1]), 0.6833, 0.99)


def test_ties_are_broken_by_the_loss_when_the_score_is_minimized():
    study = study_of([(0.3, 0.58), (0.3, 0.60), (0.3, 0.63)], direction="minimize")
    assert prunes(study, 0.3, 0.61)
    assert not prunes(study, 0.3, 0.59)
    assert prunes(study, 0.35, 0.10)


def test_a_study_whose_finished_trials_kept_no_loss_prunes_as_the_median_pruner():
    # A study begun before the losses were kept (no `LOSS_ATTR` on its finished trials): nothing to break a tie on.
    study = optuna.create_study(direction="maximize", pruner=LossBreaksTies(n_startup_trials=2))
    for _ in range(3):
        study.add_trial(optuna.trial.create_trial(value=0.8, intermediate_values={1: 0.6833}))
    assert not prunes(study, 0.6833, 0.99)
    assert prunes(study, 0.65, 0.10)
