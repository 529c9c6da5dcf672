"""A Keras callback that times training: the whole fit and each step."""

import time

import keras


class StepTimer(keras.callbacks.Callback):
    """Wall time of training and of each step.

    `total_seconds` runs from `on_train_begin` (after `fit` has checked its
    arguments) to the end of the last training step: it holds iterator set-up
    and the first step's tracing, and leaves out end-of-epoch validation, like
    the Hugging Face Trainer's `train_runtime`. `steady_ms` is the median step
    after `skip` warm-up steps.
    """

    def __init__(self, skip: int = 3):
        super().__init__()
        self.skip = skip
        self.times: list[float] = []
        self._start = None
        self.train_began_at = None
        self.last_batch_at = None

    def on_train_begin(self, logs=None):
        self.train_began_at = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.last_batch_at = time.perf_counter()
        self.times.append(self.last_batch_at - self._start)

    @property
    def total_seconds(self) -> float:
        return self.last_batch_at - self.train_began_at

    @property
    def steady_ms(self) -> float:
        steady = sorted(self.times[self.skip :]) or sorted(self.times)
        return 1000.0 * steady[len(steady) // 2]
