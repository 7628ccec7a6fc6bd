"""One discriminator update, one generator update and the EMA update (replica-context functions).

Losses are per-example vectors averaged over the GLOBAL batch (`tf.nn.compute_average_loss`), so
gradients summed across replicas (what Keras optimizers do under tf.distribute) equal the
single-device gradients of the same global batch.
"""

import tensorflow as tf

from qagan_tf.train import losses
from qagan_tf.train import penalties as penalties_lib


def _float32(x):
  """Critic scores in float32 (under a mixed-precision policy layers compute in 16 bits)."""
  return tf.cast(x, tf.float32)


def _average(per_example, global_batch_size):
  return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)


def apply_if_finite(optimizer, grads, variables, loss):
  """Applies `grads` unless the loss or any gradient is NaN/Inf on any replica.

  A dropped update leaves the variables, the optimizer's slots and its iteration count exactly
  as they were (a zero gradient would not: Adam's momentum would still move the weights).
  Every replica sees the same all-reduced decision, so they never diverge.

  Args:
    optimizer: Keras optimizer built on `variables`.
    grads: gradients, one per variable (this replica's share).
    variables: the variables to update.
    loss: this replica's loss (any shape).

  Returns:
    float32 scalar: this replica's share of the skip flag (summed over replicas: 1.0 when the
    update was dropped, else 0.0).
  """
  ctx = tf.distribute.get_replica_context()
  checks = [tf.reduce_all(tf.math.is_finite(loss))]
  checks += [tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None]
  bad_here = 1.0 - tf.cast(tf.reduce_all(tf.stack(checks)), tf.float32)
  bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, bad_here)
  finite = tf.equal(bad, 0.0)

  def cross_replica(strategy, grads, finite):
    # Keras' optimizer update may call merge_call, which a cond in replica context does not
    # allow; the cond therefore runs here, in cross-replica context (as Keras' LossScaleOptimizer
    # does). `finite` is the same on every replica: take the first.
    ok = strategy.experimental_local_results(finite)[0]

    def update():
      strategy.extended.call_for_each_replica(
          lambda g: optimizer.apply_gradients(zip(g, variables)), args=(grads,))
      return tf.constant(True)

    return tf.cond(ok, update, lambda: tf.constant(False))

  ctx.merge_call(cross_replica, args=(list(grads), finite))
  return (1.0 - tf.cast(finite, tf.float32)) / ctx.num_replicas_in_sync


def discriminator_gradients(generator, discriminator, real, z, eps, *, global_batch_size,
                            gp_weight, drift_weight, qa_weight=0.0, quality_penalty=None):
  """The critic loss with its penalties and its gradients (no update; XLA-compilable).

  Args:
    generator, discriminator: Keras models.
    real: float32 (B, H, W, 3) in [-1, 1]; z: float32 (B, z_dim); eps: float32 (B,) in [0, 1].
    global_batch_size: batch summed over replicas (B times the number of replicas).
    gp_weight, drift_weight, qa_weight: weights, applied here once each.
    quality_penalty: optional `penalties.QualityPenalty`.

  Returns:
    (loss, grads, metrics): this replica's share of the loss, the gradients for
    discriminator.trainable_variables, and a dict of scalar float32 tensors, each this replica's
    share of the global mean (sum them over replicas): d_loss, wasserstein, gp, drift, d_real,
    d_fake, grad_norm and, with a quality penalty, its summary tag and extra statistics.
  """
  fake = _float32(generator(z, training=True))
  e = eps[:, None, None, None]
  x_hat = e * fake + (1.0 - e) * real
  variables = discriminator.trainable_variables
  # The outer tape records the trainable variables D touches (G ran before it); the inner one
  # only x_hat, so grad_x_hat stays differentiable w.r.t. D's variables.
  with tf.GradientTape() as tape:
    with tf.GradientTape(watch_accessed_variables=False) as inner:
      inner.watch(x_hat)
      d_hat = _float32(discriminator(x_hat))
    grad_x_hat = inner.gradient(d_hat, x_hat)
    scores = _float32(discriminator(tf.concat([real, fake], axis=0)))
    d_real, d_fake = tf.split(scores, 2)
    gp = penalties_lib.gradient_penalty(grad_x_hat)
    drift = losses.drift_penalty(d_real)
    per_example = (losses.wasserstein_discriminator_loss(d_real, d_fake)
                   + gp_weight * gp + drift_weight * drift)
    metrics = {}
    if quality_penalty is not None:
      qa = quality_penalty.fn(penalties_lib.PenaltyInputs(
          real=real, fake=fake, x_hat=x_hat, d_real=d_real,
          d_fake=d_fake, grad_x_hat=grad_x_hat))
      qa, extras = qa if isinstance(qa, tuple) else (qa, {})
      per_example += qa_weight * qa
      metrics[quality_penalty.summary_tag] = _average(qa, global_batch_size)
      for key, value in extras.items():
        metrics[key] = _average(tf.stop_gradient(value), global_batch_size)
    loss = _average(per_example, global_batch_size)
  grads = tape.gradient(loss, variables)
  metrics.update(
      d_loss=loss,
      wasserstein=_average(d_real - d_fake, global_batch_size),
      gp=_average(gp, global_batch_size),
      drift=_average(drift, global_batch_size),
      d_real=_average(d_real, global_batch_size),
      d_fake=_average(d_fake, global_batch_size),
      grad_norm=_average(penalties_lib.safe_norm(grad_x_hat, [1, 2, 3]), global_batch_size))
  return loss, grads, metrics


def discriminator_update(generator, discriminator, optimizer, real, z, eps, *, global_batch_size,
                         gp_weight, drift_weight, qa_weight=0.0, quality_penalty=None,
                         gradients_fn=None):
  """Computes the critic loss with its penalties and applies one optimizer update.

  Arguments as `discriminator_gradients`, plus the Keras `optimizer` built on
  discriminator.trainable_variables and an optional `gradients_fn` to use instead of
  `discriminator_gradients` (e.g. its XLA-compiled version).

  Returns:
    the metrics of `discriminator_gradients` plus `skipped` (this replica's share of 1 when the
    update was dropped because a loss or gradient was NaN/Inf, see `apply_if_finite`).
  """
  loss, grads, metrics = (gradients_fn or discriminator_gradients)(
      generator, discriminator, real, z, eps, global_batch_size=global_batch_size,
      gp_weight=gp_weight, drift_weight=drift_weight, qa_weight=qa_weight,
      quality_penalty=quality_penalty)
  metrics["skipped"] = apply_if_finite(optimizer, grads, discriminator.trainable_variables, loss)
  return metrics


def generator_gradients(generator, discriminator, z, *, global_batch_size):
  """The generator loss -D(G(z)) (this replica's share) and its gradients; XLA-compilable."""
  with tf.GradientTape() as tape:
    fake = generator(z, training=True)
    loss = _average(losses.wasserstein_generator_loss(_float32(discriminator(fake))),
                    global_batch_size)
  return loss, tape.gradient(loss, generator.trainable_variables)


def generator_update(generator, discriminator, optimizer, z, *, global_batch_size,
                     gradients_fn=None):
  """One generator update on -D(G(z)); z float32 (B', z_dim).

  Returns:
    {"g_loss": share, "skipped": share of the skip flag (see `apply_if_finite`)}.
  """
  loss, grads = (gradients_fn or generator_gradients)(generator, discriminator, z,
                                                      global_batch_size=global_batch_size)
  return {"g_loss": loss,
          "skipped": apply_if_finite(optimizer, grads, generator.trainable_variables, loss)}


def ema_update(ema_variables, variables, decay):
  """ema <- decay * ema + (1 - decay) * value for paired variables (BN moving stats included)."""
  for ema, value in zip(ema_variables, variables):
    ema.assign(decay * ema + (1.0 - decay) * value)
