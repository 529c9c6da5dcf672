"""AdamW with warmup and decay, as BERT fine-tuning recipes use it.

- Learning rate: linear warmup from 0 to the peak over `warmup_ratio` of all
  steps, then linear or cosine decay to 0 at the last step.
- Weight decay on every weight except biases and normalization parameters
  (LayerNorm `gamma`/`beta`, the embeddings' norm included).
- Gradients clipped by their global norm: under a distribution strategy, the
  norm of the gradient summed over all replicas (`AdamW`).
- Each variable's decay and Adam update run as one fused TensorFlow kernel
  apiece, the arithmetic of Keras' `AdamW` in two passes over the weights;
  sparse gradients are applied densely and bias correction counts each
  variable's own updates, as in PyTorch's `AdamW`.
- Optionally, per-variable learning-rate multipliers and start steps
  (`tfft.layerwise`: layer-wise decay, gradual unfreezing), and gradient
  accumulation over `gradient_accumulation_steps` batches, clipped and
  applied as one batch's gradient, under every strategy.

Example:

```python
optimizer = create_optimizer(config.train, total_steps=1000, variables=model.trainable_variables)
```
"""

from __future__ import annotations

import math
import re

import keras
import tensorflow as tf

from tfft.config import TrainConfig
from tfft.distribute import replica_context_with_peers

#: Variables whose path matches are never decayed: biases and norm parameters.
NO_DECAY_PATTERN = re.compile(r"(^|[/_])(bias|gamma|beta)(:0)?$|layer_?norm|LayerNorm", re.IGNORECASE)


@keras.saving.register_keras_serializable(package="tfft")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to `peak`, then linear or cosine decay to zero.

    The peak and the step counts are held in a variable, which a traced
    train step reads: `retarget` gives the same optimizer another schedule
    without tracing the step again (`tfft.warm_runs`).

    Args:
        peak: float. Learning rate at the end of warmup.
        warmup_steps: int. Steps of linear warmup (`lr(0) == 0`).
        total_steps: int. All training steps; `lr(total_steps) == 0`.
        decay: str. `linear` or `cosine`.
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, decay: str = "linear"):
        if decay not in ("linear", "cosine"):
            raise ValueError(f"Argument `decay` must be linear or cosine. Received: decay={decay!r}")
        self.decay = decay
        self._numbers = tf.Variable(self._checked(peak, warmup_steps, total_steps), trainable=False,
                                    dtype=tf.float64, name="warmup_decay")

    @staticmethod
    def _checked(peak: float, warmup_steps: int, total_steps: int) -> list[float]:
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(
                f"Argument `warmup_steps` must be between 0 and total_steps={total_steps}. "
                f"Received: warmup_steps={warmup_steps}"
            )
        return [float(peak), float(int(warmup_steps)), float(int(total_steps))]

    def retarget(self, peak: float, warmup_steps: int, total_steps: int) -> None:
        """Gives the schedule another peak and length, in place (checked as the constructor checks them)."""
        self._numbers.assign(self._checked(peak, warmup_steps, total_steps))

    @property
    def peak(self) -> float:
        return float(self._numbers[0].numpy())

    @property
    def warmup_steps(self) -> int:
        return int(self._numbers[1].numpy())

    @property
    def total_steps(self) -> int:
        return int(self._numbers[2].numpy())

    def __call__(self, step):
        ops = keras.ops
        step = ops.cast(step, "float32")
        peak, warmup_steps, total_steps = (ops.cast(n, "float32") for n in tf.unstack(self._numbers))
        warmup = ops.maximum(warmup_steps, 1.0)
        decay_steps = ops.maximum(total_steps - warmup_steps, 1.0)
        progress = ops.clip((step - warmup_steps) / decay_steps, 0.0, 1.0)
        if self.decay == "cosine":
            decayed = 0.5 * (1.0 + ops.cos(math.pi * progress))
        else:
            decayed = 1.0 - progress
        warming = step < warmup_steps
        return peak * ops.where(warming, step / warmup, decayed)

    def get_config(self):
        return dict(peak=self.peak, warmup_steps=self.warmup_steps, total_steps=self.total_steps, decay=self.decay)


@keras.saving.register_keras_serializable(package="tfft")
class AdamW(keras.optimizers.AdamW):
    """Keras' AdamW, fused per variable, with the gradients summed over the replicas before they are clipped.

    Keras 3 clips each replica's share of the gradient before the all-reduce,
    so `global_clipnorm` under Mirrored, multi-worker or TPU strategies clips a
    different gradient than on one device (tf.keras 2 refused clipping under
    strategies for this reason: tensorflow/tensorflow#33929). Here each replica
    clips the summed gradient, as one device clips the whole batch's. Each
    gradient also keeps its variable's static shape: gradients traced with
    unknown dimensions let the replicas pack the all-reduce differently, which
    aborts it with "Shape mismatch in the collective instance".

    Args:
        epsilon_after_bias_correction: bool. Add `epsilon` to the
            bias-corrected `sqrt(v_hat)`, as PyTorch's `AdamW` does, rather
            than to `sqrt(v)`, as Keras' does.
        **kwargs: those of `keras.optimizers.AdamW`.
    """

    def __init__(self, *args, epsilon_after_bias_correction: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if epsilon_after_bias_correction and self.amsgrad:
            raise ValueError(
                "Argument `epsilon_after_bias_correction` does not apply with `amsgrad`. "
                "Received: epsilon_after_bias_correction=True, amsgrad=True"
            )
        self.epsilon_after_bias_correction = bool(epsilon_after_bias_correction)
        # Read by the traced step, so that `retarget` can change it; `weight_decay` (0 or not) decides whether the
        # step decays at all.
        self._decay = tf.Variable(float(self.weight_decay or 0.0), trainable=False, dtype=tf.float32,
                                  name="weight_decay")

    def get_config(self):
        return {**super().get_config(), "epsilon_after_bias_correction": self.epsilon_after_bias_correction}

    def set_variable_rates(self, variables, rates) -> None:
        """Gives each of `variables` its own learning-rate multiplier and first update.

        Args:
            variables: list of variables. Those the optimizer trains.
            rates: list of `(multiplier, start_step)`, one per variable: it
                trains at `multiplier` x the schedule's rate, and only from
                optimizer update `start_step` on (before it, neither Adam nor
                weight decay touch the variable or its moments).
        """
        self._variable_rates = {self._var_key(v): (float(m), int(s)) for v, (m, s) in zip(variables, rates, strict=True)}

    def retarget(self, config: TrainConfig, total_batches: int) -> None:
        """Puts the optimizer on the schedule and weight decay `create_optimizer(config, total_batches, ...)`
        gives, in place.

        The train step traced for the old ones reads the new: a run that
        reuses this optimizer (`tfft.warm_runs`) traces nothing again. A
        weight decay of 0 where it was not, or the reverse, needs a new
        optimizer (a step traced without decay has none to change).
        """
        if bool(config.weight_decay) != bool(self.weight_decay):
            raise ValueError("Argument `weight_decay` can change in place only between values other than 0. "
                             f"Received: weight_decay={config.weight_decay} for an optimizer built with "
                             f"weight_decay={self.weight_decay}")
        self._learning_rate.retarget(**schedule_values(config, total_updates(config, total_batches)))
        self.weight_decay = float(config.weight_decay)
        self._decay.assign(self.weight_decay)

    @property
    def batches_seen(self) -> tf.Variable:
        """Batches applied so far: `iterations` counts updates, one per `gradient_accumulation_steps` batches."""
        return self._iterations

    def _get_current_learning_rate(self):
        # Keras evaluates a schedule at the batch count (`_iterations`) even when it accumulates gradients; tfft's
        # schedule runs over the updates, as `create_optimizer` sizes it.
        if isinstance(self._learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            return self._learning_rate(self.iterations)
        return super()._get_current_learning_rate()

    def _apply_weight_decay(self, variables):
        """Nothing here: `update_step` decays each variable just before its update, as Keras would."""

    def update_step(self, gradient, variable, learning_rate):
        """Weight decay and Adam for one variable, at its own rate, from its own first update on."""
        multiplier, start = getattr(self, "_variable_rates", {}).get(self._var_key(variable), (1.0, 0))
        learning_rate = tf.cast(learning_rate, variable.dtype) * multiplier
        if not start:
            return self._fused_update(gradient, variable, learning_rate, start)
        tf.cond(self.iterations >= start, lambda: self._fused_update(gradient, variable, learning_rate, start),
                lambda: None)

    def _fused_update(self, gradient, variable, learning_rate, start=0):
        """Decoupled weight decay, then Adam, each one fused TensorFlow kernel per variable.

        Keras' `AdamW` arithmetic (decay `var -= lr * wd * var`, then Adam
        with epsilon added to `sqrt(v)`) in two passes over the variable
        instead of about fifteen elementwise ops: on the CPU these took a
        fifth of tfft's training step. Where it differs from Keras', it does
        as PyTorch's `AdamW`:
        - bias correction counts the variable's own updates, from `start` on
          (PyTorch's per-parameter step);
        - a sparse gradient (a training embedding table) is applied densely
          (Keras' sparse Adam sums the squares of a repeated row's slices,
          not the square of their sum);
        - with `epsilon_after_bias_correction`, the kernel, which adds its
          `epsilon` to `sqrt(v)`, is passed `epsilon * sqrt(1 - beta_2^t)`:
          `epsilon` added to `sqrt(v_hat)`.
        AMSGrad takes Keras' own path.
        """
        dtype = variable.dtype
        lr = tf.cast(learning_rate, dtype)
        if self.weight_decay and self._use_weight_decay(variable):
            # `var * (1 - lr * wd)` assigned whole: one pass over the variable, where an in-place update of the
            # variable by its own value copies it first.
            keep = 1.0 - lr * tf.cast(self._decay, dtype)
            handle = _handle(variable)
            tf.raw_ops.AssignVariableOp(resource=handle, value=tf.raw_ops.ReadVariableOp(resource=handle, dtype=dtype) * keep)
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        step = tf.cast(self.iterations + 1 - start, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        beta_2_power = tf.pow(beta_2, step)
        epsilon = tf.cast(self.epsilon, dtype)
        if self.epsilon_after_bias_correction:
            epsilon *= tf.sqrt(1.0 - beta_2_power)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(self._momentums[index]), v=_handle(self._velocities[index]),
            beta1_power=tf.pow(beta_1, step), beta2_power=beta_2_power, lr=lr, beta1=beta_1, beta2=beta_2,
            epsilon=epsilon, grad=tf.cast(tf.convert_to_tensor(gradient), dtype), use_locking=False,
        )

    def _clip_gradients(self, grads):
        if replica_context_with_peers() is not None:
            return grads  # clipped after the all-reduce, in `_all_reduce_sum_gradients`
        return self._clip(grads)

    def _clip(self, grads):
        """Keras' clipping (it allows one kind), with `clip_by_global_norm`'s norm in one pass per gradient."""
        if self.global_clipnorm and self.global_clipnorm > 0:  # Keras' own condition for this kind
            return clip_by_global_norm(grads, self.global_clipnorm)
        return super()._clip_gradients(grads)

    def _all_reduce_sum_gradients(self, grads_and_vars):
        reduced = self._sum_over_replicas(grads_and_vars)
        if replica_context_with_peers() is None or self.gradient_accumulation_steps:
            return reduced  # accumulated gradients were clipped in `_backend_apply_gradients`
        clipped = self._clip([g for g, _ in reduced])
        return [(g, v) for g, (_, v) in zip(clipped, reduced, strict=True)]

    def _sum_over_replicas(self, grads_and_vars):
        grads_and_vars = [
            (g if g is None or isinstance(g, tf.IndexedSlices) else tf.ensure_shape(g, v.shape), v)
            for g, v in grads_and_vars
        ]
        return super()._all_reduce_sum_gradients(grads_and_vars)

    def _backend_apply_gradients(self, grads, trainable_variables):
        """Gradient accumulation that works under strategies, each replica updating its own copy.

        Keras' own accumulation puts its all-reduce inside a `cond`, which
        `tf.distribute` refuses (keras-team/keras#20582). Here the gradients
        are summed over the replicas at every batch, outside any `cond`; the
        `cond` then only adds them to Keras' accumulators or, every
        `gradient_accumulation_steps` batches, clips their mean and updates,
        on each replica's own copy of the variables: the same values everywhere.
        """
        steps = self.gradient_accumulation_steps
        if not steps:
            return super()._backend_apply_gradients(grads, trainable_variables)
        accumulators = [self._accumulated_gradients[self._get_variable_index(v)] for v in trainable_variables]
        variables = [v.value if isinstance(v, keras.Variable) else v for v in trainable_variables]
        grads = [tf.convert_to_tensor(g) for g, _ in self._sum_over_replicas(list(zip(grads, variables, strict=True)))]

        def update():
            mean = self._clip([(g + a) / steps for g, a in zip(grads, accumulators, strict=True)])
            for gradient, variable in zip(mean, variables, strict=True):
                self.update_step(gradient, variable, self.learning_rate)
            for accumulator in accumulators:
                tf.raw_ops.AssignVariableOp(resource=_handle(accumulator), value=tf.zeros_like(accumulator))

        def accumulate():
            for gradient, accumulator in zip(grads, accumulators, strict=True):
                tf.raw_ops.AssignAddVariableOp(resource=_handle(accumulator), value=gradient)

        tf.cond((self._iterations + 1) % steps == 0, update, accumulate)


def clip_by_global_norm(grads: list, clip_norm: float) -> list:
    """Keras' `clip_by_global_norm` (the same scale, NaN for a non-finite norm), its norm summed with `L2Loss`.

    Keras squares each gradient into a new tensor and then sums it; `L2Loss`
    (half the sum of squares) reads each gradient once and writes nothing.
    """
    dense = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads if g is not None]
    norm = tf.sqrt(2.0 * tf.add_n([tf.cast(tf.nn.l2_loss(g), tf.float32) for g in dense]))
    scale = clip_norm * tf.minimum(1.0 / norm, 1.0 / clip_norm) + (norm - norm)
    return [_scaled(g, scale) for g in grads]


def _scaled(gradient, scale):
    if gradient is None:
        return None
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(gradient.values * tf.cast(scale, gradient.dtype), gradient.indices, gradient.dense_shape)
    return gradient * tf.cast(scale, gradient.dtype)


def _handle(variable):
    """The resource handle of a Keras or TensorFlow variable (a mirrored one's local copy, inside an update)."""
    return (variable.value if isinstance(variable, keras.Variable) else variable).handle


def excluded_from_decay(variable) -> bool:
    """Whether AdamW leaves `variable` undecayed (a bias or a norm parameter)."""
    return bool(NO_DECAY_PATTERN.search(variable.path if hasattr(variable, "path") else variable.name))


def create_schedule(config: TrainConfig, total_steps: int) -> WarmupDecay:
    return WarmupDecay(**schedule_values(config, total_steps), decay=config.schedule)


def schedule_values(config: TrainConfig, total_steps: int) -> dict:
    """`WarmupDecay`'s peak and step counts for `config` over `total_steps` updates."""
    return dict(peak=config.learning_rate, warmup_steps=int(round(config.warmup_ratio * total_steps)),
                total_steps=total_steps)


def total_updates(config: TrainConfig, total_batches: int) -> int:
    """The optimizer updates `total_batches` batches make (one per `gradient_accumulation_steps`)."""
    return max(total_batches // config.gradient_accumulation_steps, 1)


def create_optimizer(config: TrainConfig, total_batches: int, variables, rates=None) -> AdamW:
    """AdamW on `create_schedule`, with bias/norm variables excluded from decay.

    Args:
        config: `TrainConfig`. Learning rate, schedule, decay, clipping and
            gradient accumulation.
        total_batches: int. All training batches of the run (epochs x steps);
            the schedule runs over the updates they make.
        variables: list of variables. The model's trainable variables.
        rates: list of `(multiplier, start_step)` per variable, or None
            (`AdamW.set_variable_rates`).
    """
    accumulation = config.gradient_accumulation_steps
    optimizer = AdamW(
        learning_rate=create_schedule(config, total_updates(config, total_batches)),
        weight_decay=config.weight_decay,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=config.adam_epsilon,
        epsilon_after_bias_correction=config.adam_epsilon_placement == "after_bias_correction",
        global_clipnorm=config.clipnorm or None,
        gradient_accumulation_steps=accumulation if accumulation > 1 else None,
    )
    optimizer.exclude_from_weight_decay(var_list=[v for v in variables if excluded_from_decay(v)])
    if rates is not None:
        optimizer.set_variable_rates(variables, rates)
    return optimizer


def batches_seen(optimizer) -> int:
    """Training batches an optimizer has applied (its updates x `gradient_accumulation_steps`)."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # under a LossScaleOptimizer
    return int(getattr(optimizer, "batches_seen", optimizer.iterations).numpy())
