"""One discriminator update, one generator update and the EMA update (replica-context functions).

Losses are per-example vectors averaged over the GLOBAL batch (`tf.nn.compute_average_loss`), so
gradients summed across replicas (what Keras optimizers do under tf.distribute) equal the
single-device gradients of the same global batch.
"""

import dataclasses
from typing import Optional

import tensorflow as tf

from qagan_tf.train import losses
from qagan_tf.train import penalty_api


def _float32(x):
  """Critic scores in float32 (under a mixed-precision policy layers compute in 16 bits)."""
  return tf.cast(x, tf.float32)


def _average(per_example, global_batch_size):
  return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)


class LossScale:
  """Dynamic loss scaling for float16 (as Keras' LossScaleOptimizer): gradients are computed of
  loss * scale and divided by it; an overflow halves the scale and drops that update, 2000
  finite updates in a row double it. Create under the strategy's scope."""

  GROWTH_STEPS = 2000

  def __init__(self, initial=2.0**15, name="loss_scale"):
    self.scale = tf.Variable(initial, dtype=tf.float32, trainable=False, name=name)
    self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name=name + "_good_steps")

  def grow(self):
    grown = self.good_steps + 1 >= self.GROWTH_STEPS
    self.scale.assign(tf.where(grown, self.scale * 2.0, self.scale))
    self.good_steps.assign(tf.where(grown, tf.constant(0, tf.int64), self.good_steps + 1))

  def shrink(self):
    self.scale.assign(tf.maximum(self.scale * 0.5, 1.0))
    self.good_steps.assign(0)


def apply_if_finite(optimizer, grads, variables, loss, loss_scale=None):
  """Applies `grads` unless the loss or any gradient is NaN/Inf on any replica.

  A dropped update leaves the variables, the optimizer's slots and its iteration count exactly
  as they were (a zero gradient would not: Adam's momentum would still move the weights).
  Every replica sees the same all-reduced decision, so they never diverge.

  Args:
    optimizer: Keras optimizer built on `variables`.
    grads: gradients, one per variable (this replica's share).
    variables: the variables to update.
    loss: this replica's loss (any shape), unscaled.
    loss_scale: optional `LossScale`; then `grads` are of loss * scale: they are divided by it,
      and non-finite gradients with a finite loss are an overflow: the scale halves, the update
      is dropped, and it counts as skipped only once the scale is down to 1.

  Returns:
    float32 scalar: this replica's share of the skip flag (summed over replicas: 1.0 when the
    update was dropped for a non-finite value, else 0.0).
  """
  ctx = tf.distribute.get_replica_context()
  if loss_scale is not None:
    grads = [None if g is None else g / loss_scale.scale for g in grads]

  def finite_here(tensors):
    return tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(t)) for t in tensors]))
  here = tf.stack([finite_here([loss]), finite_here([g for g in grads if g is not None])])
  # One all-reduce for both flags: how many replicas saw a non-finite loss / gradient.
  bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(here, tf.float32))
  loss_ok, grads_ok = tf.equal(bad[0], 0.0), tf.equal(bad[1], 0.0)

  def cross_replica(strategy, grads, loss_ok, grads_ok):
    # Keras' optimizer update may call merge_call, which a cond in replica context does not
    # allow; the cond therefore runs here, in cross-replica context (as Keras' LossScaleOptimizer
    # does). The flags are the same on every replica: take the first.
    loss_ok = strategy.experimental_local_results(loss_ok)[0]
    ok = tf.logical_and(loss_ok, strategy.experimental_local_results(grads_ok)[0])

    def update():
      strategy.extended.call_for_each_replica(
          lambda g: optimizer.apply_gradients(zip(g, variables)), args=(grads,))
      if loss_scale is not None:
        loss_scale.grow()
      return tf.constant(True)

    def drop():
      if loss_scale is not None:
        loss_scale.shrink()
      return tf.constant(False)

    return tf.cond(ok, update, drop)

  scale_before = None if loss_scale is None else tf.identity(loss_scale.scale)
  ctx.merge_call(cross_replica, args=(list(grads), loss_ok, grads_ok))
  dropped = tf.logical_not(tf.logical_and(loss_ok, grads_ok))
  if loss_scale is not None:  # An overflow is routine while the scale is above 1.
    overflow = tf.logical_and(loss_ok, tf.logical_not(grads_ok))
    dropped = tf.logical_and(dropped, tf.logical_not(
        tf.logical_and(overflow, scale_before > 1.0)))
  return tf.cast(dropped, tf.float32) / ctx.num_replicas_in_sync


@dataclasses.dataclass(frozen=True)
class Objective:
  """What the critic minimises: an adversarial loss plus weighted penalties.

  loss: a `losses.Loss` (also gives the generator's loss). gp_weight: the 1-GP's weight (0: no
  1-GP). drift_weight: the drift term's. qa_weight and quality_penalty: the optional
  quality-aware penalty (`penalty_api.QualityPenalty`) and its weight.
  """
  loss: losses.Loss = losses.LOSSES["wasserstein"]
  gp_weight: float = 1.0
  drift_weight: float = 0.0
  qa_weight: float = 0.0
  quality_penalty: Optional[penalty_api.QualityPenalty] = None

  @classmethod
  def from_config(cls, config, quality_penalty=None):
    return cls(losses.get_loss(config.loss), config.gp_weight, config.drift_weight,
               config.qa_weight, quality_penalty)

  @property
  def needs_input_gradient(self):
    """Whether D's gradient at the interpolates is needed (second-order terms)."""
    return self.gp_weight > 0 or bool(
        self.quality_penalty and self.quality_penalty.needs_input_gradient)

  @property
  def metric_names(self):
    """The names of every metric the D and G updates return (logged as train/NAME)."""
    names = ("d_loss", "g_loss") + self.loss.metric_names + ("drift", "d_real", "d_fake")
    if self.needs_input_gradient:
      names += ("gp", "grad_norm")
    if self.quality_penalty is not None:
      names += self.quality_penalty.metric_names
    return names


def discriminator_gradients(generator, discriminator, real, z, eps, objective, *,
                            global_batch_size, loss_scale=None):
  """The critic loss with its penalties and its gradients (no update; XLA-compilable).

  Args:
    generator, discriminator: Keras models.
    real: float32 (B, H, W, 3) in [-1, 1]; z: float32 (B, z_dim); eps: float32 (B,) in [0, 1].
    objective: `Objective` (loss, penalties and their weights, each applied here once).
    global_batch_size: batch summed over replicas (B times the number of replicas).
    loss_scale: optional float32 scalar (float16 training): the returned `grads` are of
      loss * loss_scale, so that small float16 gradients do not underflow in the backward pass
      (the second-order one through the 1-GP included).

  Returns:
    (loss, grads, metrics): this replica's share of the loss, the gradients for
    discriminator.trainable_variables, and a dict of scalar float32 tensors, each this replica's
    share of the global mean (sum them over replicas), named as `objective.metric_names` (all
    but g_loss).
  """
  fake = _float32(generator(z, training=True))
  e = eps[:, None, None, None]
  x_hat = e * fake + (1.0 - e) * real
  variables = discriminator.trainable_variables
  penalty = objective.quality_penalty
  # The outer tape records the trainable variables D touches (G ran before it); the inner one
  # only x_hat, so grad_x_hat stays differentiable w.r.t. D's variables.
  with tf.GradientTape() as tape:
    grad_x_hat = None
    if objective.needs_input_gradient:
      with tf.GradientTape(watch_accessed_variables=False) as inner:
        inner.watch(x_hat)
        d_hat = _float32(discriminator(x_hat))
      # Not loss-scaled: the loss (with the 1-GP and the quality penalty built on grad_x_hat)
      # then does not depend on the scale, so a non-finite loss is a real NaN/Inf, never an
      # overflow (d_hat is O(1); its 16-bit gradients do not underflow).
      grad_x_hat = inner.gradient(d_hat, x_hat)
    scores = _float32(discriminator(tf.concat([real, fake], axis=0)))
    d_real, d_fake = tf.split(scores, 2)
    drift = losses.drift_penalty(d_real)
    per_example = objective.loss.discriminator(d_real, d_fake) + objective.drift_weight * drift
    metrics = {}
    if grad_x_hat is not None:
      gp = losses.gradient_penalty(grad_x_hat)
      per_example += objective.gp_weight * gp
      metrics["gp"] = _average(gp, global_batch_size)
      metrics["grad_norm"] = _average(losses.safe_norm(grad_x_hat, [1, 2, 3]), global_batch_size)
    if penalty is not None:
      qa, extras = penalty.fn(penalty_api.PenaltyInputs(
          real=real, fake=fake, x_hat=x_hat, d_real=d_real, d_fake=d_fake,
          grad_x_hat=grad_x_hat))
      per_example += objective.qa_weight * qa
      metrics[penalty.summary_tag] = _average(qa, global_batch_size)
      for key, value in extras.items():
        metrics[key] = _average(tf.stop_gradient(value), global_batch_size)
    loss = _average(per_example, global_batch_size)
    scaled = loss if loss_scale is None else loss * loss_scale  # Recorded: inside the tape.
  grads = tape.gradient(scaled, variables)
  for name, fn in objective.loss.metrics:
    metrics[name] = _average(fn(d_real, d_fake), global_batch_size)
  metrics.update(d_loss=loss, drift=_average(drift, global_batch_size),
                 d_real=_average(d_real, global_batch_size),
                 d_fake=_average(d_fake, global_batch_size))
  return loss, grads, metrics


def discriminator_update(generator, discriminator, optimizer, real, z, eps, objective, *,
                         global_batch_size, gradients_fn=None, loss_scale=None):
  """One critic update: a power iteration of D's spectral norms (with --d_norm=spectral), then
  the loss with its penalties and one optimizer update.

  Arguments as `discriminator_gradients`, plus the Keras `optimizer` built on
  discriminator.trainable_variables, an optional `gradients_fn` to use instead of
  `discriminator_gradients` (e.g. its XLA-compiled version) and an optional `LossScale`.

  Returns:
    the metrics of `discriminator_gradients` plus `skipped` (this replica's share of 1 when the
    update was dropped because a loss or gradient was NaN/Inf, see `apply_if_finite`).
  """
  if getattr(discriminator, "spectral_norm", False):
    discriminator.update_spectral_norm()
  loss, grads, metrics = (gradients_fn or discriminator_gradients)(
      generator, discriminator, real, z, eps, objective, global_batch_size=global_batch_size,
      loss_scale=None if loss_scale is None else loss_scale.scale)
  metrics["skipped"] = apply_if_finite(optimizer, grads, discriminator.trainable_variables, loss,
                                       loss_scale)
  return metrics


def generator_gradients(generator, discriminator, z, loss, *, global_batch_size,
                        loss_scale=None):
  """The generator's `loss` (a `losses.Loss`; this replica's share) and its gradients (of
  loss * loss_scale when given); XLA-compilable."""
  with tf.GradientTape() as tape:
    fake = generator(z, training=True)
    value = _average(loss.generator(_float32(discriminator(fake))), global_batch_size)
    scaled = value if loss_scale is None else value * loss_scale
  return value, tape.gradient(scaled, generator.trainable_variables)


def generator_update(generator, discriminator, optimizer, z, loss, *, global_batch_size,
                     gradients_fn=None, loss_scale=None):
  """One generator update on the loss's generator term; z float32 (B', z_dim).

  Returns:
    {"g_loss": share, "skipped": share of the skip flag (see `apply_if_finite`)}.
  """
  value, grads = (gradients_fn or generator_gradients)(
      generator, discriminator, z, loss, global_batch_size=global_batch_size,
      loss_scale=None if loss_scale is None else loss_scale.scale)
  return {"g_loss": value, "skipped": apply_if_finite(
      optimizer, grads, generator.trainable_variables, value, loss_scale)}


def ema_update(ema_variables, variables, decay):
  """ema <- decay * ema + (1 - decay) * value for paired variables (BN moving stats included)."""
  for ema, value in zip(ema_variables, variables):
    ema.assign(decay * ema + (1.0 - decay) * value)
