"""One training iteration (`iteration`: disc_iters D updates, then one G update), the bundle it
runs on (`Parts`) and the EMA update; replica-context functions. bin/train's Trainer and Keras'
QAGAN both run `iteration`: they differ only in where their inputs, variables and metrics
live."""

import dataclasses
from typing import Any, Callable, Mapping, Optional

import tensorflow as tf

from qagan_tf.update import collector as collector_lib
from qagan_tf.update import critic
from qagan_tf.update import generator as generator_lib
from qagan_tf.update import numerics


@dataclasses.dataclass(frozen=True)
class Parts:
  """What the updates of an iteration run on.

  generator, discriminator: the models; d_optimizer, g_optimizer: their Keras optimizers (built
  on the models' trainable variables); objective: the `Objective`; states: {term name: state}
  (`Objective.make_states`); d_gradients, g_gradients: replacements of
  `critic.critic_gradients` / `generator.generator_gradients`, e.g. their XLA-compiled versions
  (`with_options`); d_loss_scale, g_loss_scale: float16's `numerics.LossScale`s, or None.
  """
  generator: Any
  discriminator: Any
  d_optimizer: Any
  g_optimizer: Any
  objective: Any
  states: Mapping = dataclasses.field(default_factory=dict)
  d_gradients: Optional[Callable] = None
  g_gradients: Optional[Callable] = None
  d_loss_scale: Optional[numerics.LossScale] = None
  g_loss_scale: Optional[numerics.LossScale] = None

  def with_options(self, jit_compile=False, replicas=1, loss_scales=None, log=None):
    """A copy for XLA (`jit_compile`: each D and G loss+gradient computation compiled, the
    optimizer steps outside; on several replicas G's stays plain, since its synchronised batch
    norm all-reduces) and float16 loss scaling (`loss_scales`: (d, g) `LossScale`s)."""
    d_scale, g_scale = loss_scales or (None, None)
    d_fn = g_fn = None
    if jit_compile:
      d_fn = tf.function(critic.critic_gradients, jit_compile=True, autograph=False)
      if replicas == 1:
        g_fn = tf.function(generator_lib.generator_gradients, jit_compile=True, autograph=False)
      elif log is not None:
        log(f"jit_compile on {replicas} replicas: the G update is not compiled (its "
            "synchronised batch norm all-reduces, which a compiled function cannot).")
    return dataclasses.replace(self, d_gradients=d_fn, g_gradients=g_fn, d_loss_scale=d_scale,
                               g_loss_scale=g_scale)


def generator_reals(real, multiplier, disc_iters):
  """The real images the G update pairs with its multiplier * B fakes (a relativistic loss):
  the iteration's D batches 0, 1, ... in turn (k, B, ...) -> (multiplier * B, ...)."""
  picked = [real[j % disc_iters] for j in range(multiplier)]
  return picked[0] if multiplier == 1 else tf.concat(picked, axis=0)


def iteration(parts, inputs, *, step, disc_iters, global_batch_size, g_global_batch_size,
              g_batch_multiplier=1):
  """One training iteration on one replica: disc_iters critic updates, each on its own real
  batch, latents and interpolation weights and with its lazy schedule, then one generator
  update. The D updates are unrolled (optimizer updates call merge_call).

  Args:
    parts: the `Parts`.
    inputs: this replica's {"real": (k, B, H, W, C), "z": (k, B, z_dim), "eps": (k, B),
      "z_gen": (B', z_dim)} (k = disc_iters), as `data.iteration_latents` draws them; with
      `objective.augment` also the augmentations' uniforms "u_real", "u_fake" (k, B, U) and
      "u_gen", "u_gen_real" (B', U).
    step: int64 scalar, the generator iteration (0-based): D update i of it is number
      step * k + i, the lazy schedule's counter.
    disc_iters: k, the D updates of the iteration (a Python int: they are unrolled; the inputs'
      shapes need not be static, as under a multi-worker strategy).
    global_batch_size, g_global_batch_size: the D and G batches summed over replicas.
    g_batch_multiplier: the G batch over the D batch (a relativistic loss pairs its fakes with
      that many of the iteration's real batches, `generator_reals`).

  Returns:
    the `collector.Collector` result: {name: (sum, count)}, this replica's shares.
  """
  objective = parts.objective
  k = int(disc_iters)
  augmented = bool(objective.augment)
  if augmented and "u_real" not in inputs:
    raise ValueError("an augmented objective needs the iteration's augmentation uniforms "
                     "(iteration_latents(..., augment=True)).")
  collector = collector_lib.Collector()
  step = tf.cast(step, tf.int64)
  for i in range(k):
    collector.report(*critic.discriminator_update(
        parts, inputs["real"][i], inputs["z"][i], inputs["eps"][i],
        global_batch_size=global_batch_size, d_update=step * k + i,
        uniforms=(inputs["u_real"][i], inputs["u_fake"][i]) if augmented else None))
  m = g_batch_multiplier if objective.loss.generator_needs_real else 0
  collector.report(*generator_lib.generator_update(
      parts, inputs["z_gen"], global_batch_size=g_global_batch_size,
      real=generator_reals(inputs["real"], m, k) if m else None,
      uniforms=(inputs["u_gen"], inputs["u_gen_real"]) if augmented else None))
  return collector.result()


def ema_update(ema_variables, variables, decay):
  """ema <- decay * ema + (1 - decay) * value for paired variables (BN moving stats included)."""
  for ema, value in zip(ema_variables, variables):
    ema.assign(decay * ema + (1.0 - decay) * value)
