"""A teacher's outputs on the training elements, computed once before training (`tfft distill`).

Without it the teacher runs forward in every training step, on every
epoch's batches (`tfft.distill.SoftTargets`): about a third of a
distilled step for all-MiniLM-L6-v2 over a 3-layer student (README,
*Distillation*).
For a training split held in memory, `attach_teacher_outputs` runs the
teacher once over the packed elements, in length-sorted batches of
`BATCH_SIZE`, and adds its logits to each element as the feature
`TEACHER_LOGITS`. They then ride with their element through every epoch's
shuffling, grouping and trimming, and the training step reads them instead
of running the teacher.

- **Shapes.** Per-token logits (NER, QA: `[length, n]`) are kept at the
  packer's full `sequence_length`, trimmed with the batch; per-example
  logits are kept as `[1, n]`, which trimming leaves whole.
- **Padding.** The teacher's per-token logits are computed only up to each
  sorted batch's longest element; beyond an element's own tokens the
  training step reads the student's logits instead (`teacher_logits`), which
  no soft loss counts (sample weights, or the -1e9 of masked positions).
- **Cost.** One forward pass over the split, in inference mode, and the
  logits in memory (CoNLL-2003: 14,041 x 128 x 9 floats, 65 MB).

```python
train_data.attach(lambda ds: attach_teacher_outputs(ds, teacher, elements))
```
"""

from __future__ import annotations

import logging
import time

import numpy as np
import tensorflow as tf

from tfft import data, progress
from tfft.tasks.base import trim_to_longest

__all__ = ["TEACHER_LOGITS", "BATCH_SIZE", "attach_teacher_outputs", "attach_logits", "teacher_outputs",
           "teacher_logits"]

logger = logging.getLogger(__name__)

#: The feature that carries the teacher's logits with each training element.
TEACHER_LOGITS = "teacher_logits"

#: Elements per forward pass of the teacher (sorted by length within megabatches of 32 batches).
BATCH_SIZE = 64
_MEGABATCH_BATCHES = 32


def attach_teacher_outputs(ds: tf.data.Dataset, teacher, elements: int, known: np.ndarray | None = None
                           ) -> tf.data.Dataset:
    """`ds`'s elements with the teacher's logits added to their features (`TEACHER_LOGITS`).

    Args:
        ds: tf.data.Dataset. Packed training elements, `features` or
            `(features, targets, ...)`, each padded to the packer's length.
        teacher: keras.Model. The teacher task model (its own inputs are
            read from `features`).
        elements: int. How many elements `ds` holds.
        known: float32 array or None. The logits of `ds`'s last
            `len(known)` elements, computed before (in `attach_logits`'
            layout); the teacher runs on the others only.
    """
    started = time.time()
    fresh = elements - (len(known) if known is not None else 0)
    logits = teacher_outputs(ds.take(fresh), teacher, fresh)
    if known is not None:
        logits = np.concatenate([logits, known])
    logger.info("The teacher's outputs on the %d training elements were computed once (%.1f s, %.1f MB); the "
                "training steps read them instead of running the teacher.", fresh, time.time() - started,
                logits.nbytes / 2**20)
    return attach_logits(ds, logits)


def attach_logits(ds: tf.data.Dataset, logits: np.ndarray) -> tf.data.Dataset:
    """`ds`'s elements with `logits[i]` added to the features of element i (`TEACHER_LOGITS`).

    Args:
        ds: tf.data.Dataset. Packed training elements, as `attach_teacher_outputs` takes them.
        logits: float32 array, one row per element: `[elements, 1, n]` per
            example, `[elements, length, n]` per token (see the module docstring).
    """

    def add(element, element_logits):
        features, rest = _split(element)
        features = {**features, TEACHER_LOGITS: element_logits}
        return (features, *rest) if rest else features

    return tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensor_slices(logits))).map(add)


def teacher_outputs(ds: tf.data.Dataset, teacher, elements: int) -> np.ndarray:
    """The teacher's float32 logits for each element of `ds`, in its order: `[elements, length or 1, n]`."""
    forward = tf.function(lambda features: teacher(features, training=False), reduce_retracing=True)
    spec, _ = _split(ds.element_spec)
    full_length = int(spec["padding_mask"].shape[0])
    logits, bar, done = None, progress.progress_bar(elements, "element"), 0
    for features, index in _sorted_batches(ds):
        batch = tf.cast(forward(features), tf.float32).numpy()
        per_token = batch.ndim == 3
        if logits is None:
            shape = (full_length, batch.shape[-1]) if per_token else (1, *batch.shape[1:])
            logits = np.zeros((elements, *shape), np.float32)
        if per_token:
            logits[index.numpy(), : batch.shape[1]] = batch
        else:
            logits[index.numpy(), 0] = batch
        done += len(batch)
        if bar is not None:
            bar.update(done)
    return logits


def _split(element) -> tuple:
    """`(features, rest)` of a packed element (or its spec): `features` or `(features, targets, ...)`."""
    return (element[0], element[1:]) if isinstance(element, tuple) else (element, ())


def _sorted_batches(ds: tf.data.Dataset) -> tf.data.Dataset:
    """`(features, indices)` batches of `ds`'s features, sorted by length in megabatches, trimmed to their longest."""

    def features_and_index(index, element):
        return _split(element)[0], index

    def trim(features, index):
        return trim_to_longest(features), index

    ds = ds.enumerate().map(features_and_index).batch(BATCH_SIZE * _MEGABATCH_BATCHES).map(data.sort_by_length)
    return ds.unbatch().batch(BATCH_SIZE).map(trim).with_options(data.pipeline_options()).prefetch(tf.data.AUTOTUNE)


def teacher_logits(x: dict, student_logits: tf.Tensor) -> tf.Tensor:
    """The teacher's logits a batch carries (`TEACHER_LOGITS`), shaped as the student's.

    Per-token logits beyond an element's tokens are the student's own
    (stopped): the teacher's were not computed there, and no soft loss
    counts those positions.
    """
    cached = x[TEACHER_LOGITS]
    if student_logits.shape.rank != 3:
        return tf.reshape(cached, tf.shape(student_logits))  # [batch, 1, n] -> [batch, n]
    real = tf.cast(x["padding_mask"], tf.bool)[:, :, tf.newaxis]
    return tf.where(real, cached, tf.stop_gradient(student_logits))
