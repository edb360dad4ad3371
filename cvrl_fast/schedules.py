"""Learning-rate schedule (cvrl.md §5) and the optional LARS optimizer.

lr(t) = ((t + 1) / W) * c(W) for t < W, c(t) otherwise, with c(t) = lr0/2 * (1 + cos(pi * min(t, D) / D)),
where t = 0, 1, ... counts the updates already made: the warmup ramps to c(W) (slightly below lr0) and the
cosine runs over the whole run, warmup included. The ramp counts the update being made (the k-th warmup
update gets k/W of c(W)), so the very first update has a learning rate above 0; the reference's ramp
starts at exactly 0, which wastes the first update and, in a run no longer than its warmup, every update.

Warmup never swallows the run: `warmup_steps_for` caps the warmup at a fifth of the run
(MAX_WARMUP_FRACTION), so a short run still reaches its peak rate and decays from it.
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf

REFERENCE_BATCH_SIZE = 1024


def scaled_learning_rate(base_learning_rate: float, global_batch_size: int,
                         base_batch_size: int = REFERENCE_BATCH_SIZE, lr_replica_factor: float = 1.0) -> float:
    """Linear scaling rule of cvrl.md §5: lr0 = base * (global batch / 1024) * lr_replica_factor."""
    if global_batch_size < 1 or base_batch_size < 1:
        raise ValueError(f"global_batch_size={global_batch_size}, base_batch_size={base_batch_size}: must be >= 1")
    return base_learning_rate * global_batch_size / base_batch_size * lr_replica_factor


def steps_for_epochs(epochs: float, num_videos: int, global_batch_size: int) -> int:
    """round(epochs * num_videos / global_batch_size), the reference's step count (cvrl.md §5)."""
    if num_videos < 1 or global_batch_size < 1:
        raise ValueError(f"num_videos={num_videos}, global_batch_size={global_batch_size}: must be >= 1")
    return int(round(epochs * num_videos / global_batch_size))


MAX_WARMUP_FRACTION = 0.2


def warmup_steps_for(total_steps: int, requested_steps: int) -> int:
    """The warmup a run of `total_steps` gets: the requested length, at most a fifth of the run."""
    if total_steps < 1:
        raise ValueError(f"total_steps={total_steps}: must be >= 1")
    if requested_steps < 0:
        raise ValueError(f"warmup steps={requested_steps}: must be >= 0")
    return int(min(requested_steps, math.floor(MAX_WARMUP_FRACTION * total_steps)))


def warmup_cosine_lr(step: float, lr0: float, total_steps: int, warmup_steps: int) -> float:
    """Plain-Python form of the schedule (logging, tests)."""
    def cosine(t):  # lr0/2 (1 + cos(pi x)) written as lr0 cos^2(pi x / 2), see WarmupCosine._cosine
        return lr0 * math.cos(0.5 * math.pi * min(t, total_steps) / total_steps) ** 2

    if step < warmup_steps:
        return (step + 1) / warmup_steps * cosine(warmup_steps)
    return cosine(step)


@keras.saving.register_keras_serializable(package="cvrl_fast")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to c(W), cosine decay to 0 at `total_steps` (cvrl.md §5; the ramp counts the update
    being made, see the module docstring)."""

    def __init__(self, learning_rate: float, total_steps: int, warmup_steps: int):
        if total_steps < 1:
            raise ValueError(f"total_steps={total_steps}: must be >= 1")
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"warmup_steps={warmup_steps}: must be in [0, total_steps={total_steps}]")
        self.learning_rate = float(learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)

    def _cosine(self, t):
        # lr0/2 (1 + cos(pi x)) = lr0 cos^2(pi x / 2): the same value, but in float32 1 + cos(pi x) rounds
        # to 0 for the last few steps of a long run, while cos^2 stays above 0 until x = 1.
        d = tf.constant(float(self.total_steps), tf.float32)
        return self.learning_rate * tf.square(tf.cos(0.5 * math.pi * tf.minimum(t, d) / d))

    def __call__(self, step):
        t = tf.cast(step, tf.float32)
        if self.warmup_steps == 0:
            return self._cosine(t)
        w = tf.constant(float(self.warmup_steps), tf.float32)
        return tf.where(t < w, (t + 1.0) / w * self._cosine(w), self._cosine(t))

    def get_config(self):
        return {"learning_rate": self.learning_rate, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps}


@keras.saving.register_keras_serializable(package="cvrl_fast")
class LARS(keras.optimizers.Optimizer):
    """SGD with momentum and layer-wise trust ratio (You et al. 2017), an option; the paper uses SGD.

    v <- m * v - lr * trust * g ; w <- w + v, with trust = eta * ||w|| / ||g|| for variables whose
    path does not match `exclude_from_adaptation` (biases and BN parameters by default), else 1.
    Weight decay stays in the loss (cvrl.md §4), so it is not applied here.
    """

    def __init__(self, learning_rate=0.01, momentum=0.9, eta=0.001,
                 exclude_from_adaptation=("bias", "beta", "gamma"), name="lars", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum={momentum}: must be in [0, 1)")
        self.momentum = momentum
        self.eta = eta
        self.exclude_from_adaptation = tuple(exclude_from_adaptation)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = [self.add_variable_from_reference(v, "momentum") for v in variables]

    def _adapt(self, variable) -> bool:
        path = getattr(variable, "path", None) or variable.name
        return not any(s in path for s in self.exclude_from_adaptation)

    def update_step(self, gradient, variable, learning_rate):
        lr = tf.cast(learning_rate, variable.dtype)
        g = tf.cast(gradient, variable.dtype)
        if self._adapt(variable):
            w_norm = tf.norm(variable)
            g_norm = tf.norm(g)
            trust = tf.where((w_norm > 0) & (g_norm > 0), self.eta * w_norm / g_norm, tf.ones_like(w_norm))
            g = g * trust
        m = self.momentums[self._get_variable_index(variable)]
        self.assign(m, self.momentum * m - lr * g)
        self.assign_add(variable, m)

    def get_config(self):
        cfg = super().get_config()
        cfg.update({"momentum": self.momentum, "eta": self.eta,
                    "exclude_from_adaptation": list(self.exclude_from_adaptation)})
        return cfg
