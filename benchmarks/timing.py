"""A Keras callback that times training steps, first step (tracing) apart."""

import time

import keras


class StepTimer(keras.callbacks.Callback):
    """Wall time per training step; `skip` first steps (tracing, warm-up) are left out of `steady`."""

    def __init__(self, skip: int = 3):
        super().__init__()
        self.skip = skip
        self.times: list[float] = []
        self._start = None
        self.first_batch_at = None
        self.last_batch_at = None

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()
        if self.first_batch_at is None:
            self.first_batch_at = self._start

    def on_train_batch_end(self, batch, logs=None):
        self.last_batch_at = time.perf_counter()
        self.times.append(self.last_batch_at - self._start)

    @property
    def total_seconds(self) -> float:
        return self.last_batch_at - self.first_batch_at

    @property
    def steady_ms(self) -> float:
        steady = sorted(self.times[self.skip :]) or sorted(self.times)
        return 1000.0 * steady[len(steady) // 2]
