"""The update functions with their loose-argument signatures from before qagan_tf/update took
the bundle (`update.iteration.Parts`): for code that calls one update of a model pair directly
(tests, qagan_bench). Each builds the bundle and calls the one implementation there."""

from qagan_tf.update import critic
from qagan_tf.update import iteration as iteration_lib
from qagan_tf.update.collector import UpdateReport  # noqa: F401  (re-exported)
from qagan_tf.update.generator import generator_gradients
from qagan_tf.update.iteration import ema_update, generator_reals  # noqa: F401
from qagan_tf.update.numerics import LossScale, apply_if_finite  # noqa: F401

# The state that an update before the bundle took by name: LeCam's anchors.
_ANCHORED = "lecam"


def critic_gradients(discriminator, real, fake, eps, objective, *, global_batch_size,
                     loss_scale=None, d_update=None, anchors=None):
  """`critic.critic_gradients`, with LeCam's anchors (a_R, a_F) as `anchors`."""
  return critic.critic_gradients(
      discriminator, real, fake, eps, objective, global_batch_size=global_batch_size,
      loss_scale=loss_scale, d_update=d_update,
      states=None if anchors is None else {_ANCHORED: anchors})


class _Fixed:
  """A loss scale that is a given value (the bundle holds a `LossScale`)."""

  def __init__(self, value):
    self._value = value

  def value(self):
    return self._value


def _parts(generator, discriminator, objective, d_optimizer=None, g_optimizer=None,
           d_gradients=None, g_gradients=None, lecam=None, d_loss_scale=None,
           g_loss_scale=None):
  return iteration_lib.Parts(
      generator, discriminator, d_optimizer, g_optimizer, objective,
      states={} if lecam is None else {_ANCHORED: lecam}, d_gradients=d_gradients,
      g_gradients=g_gradients, d_loss_scale=d_loss_scale, g_loss_scale=g_loss_scale)


def discriminator_gradients(generator, discriminator, real, z, eps, objective, *,
                            global_batch_size, loss_scale=None, d_update=None, critic_fn=None,
                            anchors=None, uniforms=None):
  """`critic.discriminator_gradients` (`loss_scale` a float32 scalar here)."""
  parts = _parts(generator, discriminator, objective, d_gradients=critic_fn,
                 d_loss_scale=None if loss_scale is None else _Fixed(loss_scale))
  return critic.discriminator_gradients(
      parts, real, z, eps, global_batch_size=global_batch_size, d_update=d_update,
      states=None if anchors is None else {_ANCHORED: anchors}, uniforms=uniforms)


def discriminator_update(generator, discriminator, optimizer, real, z, eps, objective, *,
                         global_batch_size, gradients_fn=None, loss_scale=None, d_update=None,
                         lecam=None, uniforms=None):
  """`critic.discriminator_update` (LeCam's `Anchors` as `lecam`, a `LossScale`)."""
  return critic.discriminator_update(
      _parts(generator, discriminator, objective, d_optimizer=optimizer,
             d_gradients=gradients_fn, lecam=lecam, d_loss_scale=loss_scale),
      real, z, eps, global_batch_size=global_batch_size, d_update=d_update, uniforms=uniforms)


def generator_update(generator, discriminator, optimizer, z, loss, *, global_batch_size,
                     gradients_fn=None, loss_scale=None, real=None, augment_policy=(),
                     uniforms=None):
  """`generator.generator_update` for `loss` (and `augment_policy`) alone."""
  from qagan_tf.objectives.objective import Objective
  from qagan_tf.update import generator as generator_lib
  objective = Objective(loss=loss, augment=augment_policy)
  return generator_lib.generator_update(
      _parts(generator, discriminator, objective, g_optimizer=optimizer,
             g_gradients=gradients_fn or generator_gradients, g_loss_scale=loss_scale),
      z, global_batch_size=global_batch_size, real=real, uniforms=uniforms)
