"""Intermediate-layer matching for `tfft distill` (`distill.hidden_weight`): the student learns the teacher's hidden states.

As TinyBERT's hidden-state loss (Jiao et al. 2020): student encoder layer
`m` of `M` (1-based) is pulled toward teacher layer `g(m) = m * N // M` of
`N`, so the student's top layer matches the teacher's top layer, by the mean
squared difference of their outputs over the tokens `padding_mask` marks,
averaged over the `M` pairs. A student of another width (another backbone
with the teacher's tokenizer) has its states mapped to the teacher's width
first, by one learnt linear map shared by every pair (TinyBERT's `W_h`),
trained with the student and dropped after training: it is the objective's
(`TaskModel.objective_weights`), not the student's, so neither the run's
weights nor its export hold it. Equal widths are compared as they are (a
student on the teacher's backbone, `model.keep_layers`).

The layers' outputs come from the forward passes the training step runs
anyway, the student's and the teacher's (which then runs in the step, not
from `tfft.teacher_cache`: its per-token, per-layer states would not fit in
memory). `LayerOutputs` keeps what each layer returned in the latest call;
the objective reads them in the same trace.

```python
match = HiddenStateMatch(source.layer_groups(student.backbone), teacher_source.layer_groups(teacher.backbone), 1.0)
logits = student(x, training=True)
teacher(x, training=False)
loss = match.loss(x["padding_mask"])
```
"""

from __future__ import annotations

import threading

import keras
import tensorflow as tf

from tfft.backbones import first_token
from tfft.config import ConfigError

__all__ = ["HiddenStateMatch", "LayerOutputs", "layer_pairs", "masked_mean_squared_difference", "projection"]


def layer_pairs(student_layers: int, teacher_layers: int) -> list[int]:
    """The teacher layer (0-based) each student layer matches: `g(m) = m * N // M`, for `m` counted from 1.

    Example: 3 student layers of 6 match teacher layers `[1, 3, 5]`; as many
    layers as the teacher's match their own.
    """
    return [(m * teacher_layers) // student_layers - 1 for m in range(1, student_layers + 1)]


def masked_mean_squared_difference(student: tf.Tensor, teacher: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """The squared difference of `[batch, length, width]` states, averaged over the width and the marked tokens.

    The teacher's side is a constant (no gradient); both are cast to float32.
    """
    mask = tf.cast(mask, tf.float32)
    difference = tf.cast(student, tf.float32) - tf.stop_gradient(tf.cast(teacher, tf.float32))
    per_token = tf.reduce_mean(tf.square(difference), axis=-1)
    return tf.reduce_sum(per_token * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def projection(student_width: int, teacher_width: int, seed: int) -> keras.layers.Dense | None:
    """The learnt map from the student's width to the teacher's, built, in float32; None when the widths are equal.

    One `Dense` layer with a bias (TinyBERT's `W_h`), Glorot-initialized from
    `seed`. Made inside a strategy's scope, its variables are the strategy's.
    """
    if student_width == teacher_width:
        return None
    layer = keras.layers.Dense(teacher_width, dtype="float32", name="hidden_state_projection",
                               kernel_initializer=keras.initializers.GlorotUniform(seed=seed))
    layer.build((None, None, student_width))
    return layer


class LayerOutputs:
    """What each of `layers` returned in its latest call, kept per thread.

    Each layer's `call` is wrapped (on the instance; the layer computes as
    before, for every token: `first_token.every_token`). Per thread, because
    a `MirroredStrategy` traces each replica's step in a thread of its own: a
    replica reads its own layers' outputs.

    Args:
        layers: list of `keras.layers.Layer`, each called once per forward
            pass (`LayerGroups.called_once`).
    """

    def __init__(self, layers: list):
        self._local = threading.local()
        self.count = len(layers)
        for index, layer in enumerate(layers):
            self._keep_outputs(layer, index)

    def _keep_outputs(self, layer: keras.layers.Layer, index: int) -> None:
        first_token.every_token(layer)  # a classifier's top block computes its first token alone (`build_model`)
        call = layer.call

        def call_and_keep(*args, **kwargs):
            outputs = call(*args, **kwargs)
            self._outputs()[index] = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
            return outputs

        layer.call = call_and_keep

    def _outputs(self) -> dict:
        if not hasattr(self._local, "outputs"):
            self._local.outputs = {}
        return self._local.outputs

    def latest(self) -> list[tf.Tensor]:
        """The layers' outputs in this thread's latest forward pass, in the order given."""
        outputs = self._outputs()
        if len(outputs) != self.count:
            raise RuntimeError(f"{self.count - len(outputs)} of {self.count} layers have not run in this thread.")
        return [outputs[i] for i in range(self.count)]


class HiddenStateMatch:
    """The hidden-state term of the distillation loss: `weight` times the mean over layer pairs of their difference.

    Args:
        student: `tfft.backbones.LayerGroups`. The student's.
        teacher: `tfft.backbones.LayerGroups`. The teacher's.
        weight: float. `distill.hidden_weight`.
        projection: `keras.layers.Dense` or None. Maps the student's states
            to the teacher's width before they are compared (`projection`);
            its weights are `trainable_weights`.

    Raises:
        ConfigError: a backbone whose encoder layers are not each called once
            per forward pass (`LayerGroups.called_once`).
    """

    def __init__(self, student, teacher, weight: float, projection: keras.layers.Dense | None = None):
        for name, groups in (("student", student), ("teacher", teacher)):
            if not groups.called_once:
                raise ConfigError(
                    f"Argument `distill.hidden_weight` needs a {name} whose encoder layers are blocks called once "
                    f"per forward pass (keras-hub encoders: BERT, RoBERTa, ELECTRA, DeBERTa-v3, ModernBERT; not "
                    f"ALBERT's shared block or `model.source: transformers`). Received: hidden_weight={weight}. "
                    "Set `distill.hidden_weight: 0`."
                )
        self.pairs = layer_pairs(len(student.encoder), len(teacher.encoder))
        self.student = LayerOutputs(student.encoder)
        self.teacher = LayerOutputs([teacher.encoder[j] for j in self.pairs])
        self.weight = weight
        self.projection = projection

    @property
    def trainable_weights(self) -> list:
        """The projection's kernel and bias, trained with the student (empty at equal widths)."""
        return [] if self.projection is None else list(self.projection.trainable_weights)

    def loss(self, padding_mask: tf.Tensor) -> tf.Tensor:
        """The weighted term, from both models' latest forward passes in this thread (the student's with gradient)."""
        students = self.student.latest()
        if self.projection is not None:
            students = [self.projection(tf.cast(s, tf.float32)) for s in students]
        pairs = zip(students, self.teacher.latest(), strict=True)
        total = tf.add_n([masked_mean_squared_difference(s, t, padding_mask) for s, t in pairs])
        return self.weight * total / len(self.pairs)
