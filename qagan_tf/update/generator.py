"""The generator's update: its loss (the adversarial loss's generator term), its gradients and
one optimizer step (dropped whole for a non-finite value)."""

import tensorflow as tf

from qagan_tf import augment
from qagan_tf.objectives import losses
from qagan_tf.update import collector
from qagan_tf.update import numerics
from qagan_tf.update.critic import average, float32, state_values


def generator_gradients(generator, discriminator, z, loss, *, global_batch_size,
                        loss_scale=None, real=None, augment_policy=(), uniforms=None,
                        augment_p=None):
  """The generator's `loss` (a `losses.Loss`; this replica's share) and its gradients (of
  loss * loss_scale when given); XLA-compilable. `real`: images paired with the fakes, for a
  loss that scores them too (`Loss.generator_needs_real`); with `augment_policy`, the critic
  sees the fakes (and reals) augmented with `uniforms` = (fakes', reals') and `augment_p`
  (ADA's p), inside the tape, so the gradient reaches G through the augmentation."""
  with tf.GradientTape() as tape:
    fake = generator(z, training=True)
    if augment_policy:
      fake = augment.apply(float32(fake), uniforms[0], augment_policy, augment_p)
    d_real = None
    if loss.generator_needs_real:
      if real is None:
        raise ValueError(f"the {loss.name} loss scores real images in the generator update too; "
                         "pass real=... (paired with the fakes).")
      if augment_policy:
        real = augment.apply(real, uniforms[1], augment_policy, augment_p)
      d_real = losses.critic_scores(discriminator, real)
    value = average(loss.generator(d_real, losses.critic_scores(discriminator, fake)),
                    global_batch_size)
    scaled = value if loss_scale is None else value * loss_scale
  return value, tape.gradient(scaled, generator.trainable_variables)


def generator_update(parts, z, *, global_batch_size, real=None, uniforms=None):
  """One generator update on the objective's loss; z float32 (B', z_dim); `real` and `uniforms`
  as `generator_gradients`' (the augmentation is the objective's, with the state it reads).

  Returns:
    a `collector.UpdateReport` with the value g_loss.
  """
  scale = parts.g_loss_scale
  objective = parts.objective
  p = objective.augmentation_input(state_values(parts)) if objective.augment else None
  value, grads = (parts.g_gradients or generator_gradients)(
      parts.generator, parts.discriminator, z, objective.loss,
      global_batch_size=global_batch_size, loss_scale=None if scale is None else scale.value(),
      real=real, augment_policy=objective.augment, uniforms=uniforms, augment_p=p)
  return collector.UpdateReport({"g_loss": value}, {}, numerics.apply_if_finite(
      parts.g_optimizer, grads, parts.generator.trainable_variables, value, scale))
