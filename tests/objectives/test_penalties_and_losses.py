"""Tests of the loss registry (against NumPy), the 1-GP, the penalty registry and the
learning-rate schedule."""

import numpy as np
import pytest
import tensorflow as tf

from qagan_tf.objectives import losses, penalties
from qagan_tf.train import schedule


def test_wasserstein_losses_and_drift():
  d_real = tf.constant([1.0, -2.0, 0.5])
  d_fake = tf.constant([0.0, 3.0, -1.0])
  np.testing.assert_allclose(losses.wasserstein_discriminator_loss(d_real, d_fake), [-1, 5, -1.5])
  np.testing.assert_allclose(losses.wasserstein_generator_loss(None, d_fake), [0, -3, 1])
  np.testing.assert_allclose(losses.drift_penalty(d_real), [1, 4, 0.25])


# name -> (D loss, G loss) in NumPy, from the papers' definitions.
NUMPY_LOSSES = {
    "wasserstein": (lambda r, f: f - r, lambda r, f: -f),
    "hinge": (lambda r, f: np.maximum(0, 1 - r) + np.maximum(0, 1 + f), lambda r, f: -f),
    "nonsaturating": (lambda r, f: -np.log(1 / (1 + np.exp(-r))) - np.log(1 - 1 / (1 + np.exp(-f))),
                      lambda r, f: -np.log(1 / (1 + np.exp(-f)))),
    # RpGAN (R3GAN eq. 2): D minimises log(1 + e^(D(fake) - D(real))), G the reverse pairing.
    "rpgan": (lambda r, f: np.log1p(np.exp(f - r)), lambda r, f: np.log1p(np.exp(r - f))),
}


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_every_registered_loss_matches_numpy(name):
  assert name in NUMPY_LOSSES, f"the {name} loss needs its NumPy definition in NUMPY_LOSSES"
  rng = np.random.default_rng(0)
  d_real, d_fake = rng.normal(0, 3, 64), rng.normal(0, 3, 64)
  d_real[:2], d_fake[:2] = [1.0, -1.0], [-1.0, 1.0]  # The hinge's kinks.
  loss = losses.get_loss(name)
  d_np, g_np = NUMPY_LOSSES[name]
  np.testing.assert_allclose(loss.discriminator(tf.constant(d_real), tf.constant(d_fake)),
                             d_np(d_real, d_fake), rtol=1e-5, atol=1e-7)
  d_real_g = tf.constant(d_real) if loss.generator_needs_real else None
  np.testing.assert_allclose(loss.generator(d_real_g, tf.constant(d_fake)), g_np(d_real, d_fake),
                             rtol=1e-5, atol=1e-7)
  for metric, fn in loss.metrics:
    assert np.all(np.isfinite(fn(tf.constant(d_real), tf.constant(d_fake)).numpy())), metric


def test_unknown_loss_lists_the_valid_ones():
  with pytest.raises(ValueError, match="valid losses: wasserstein, hinge, nonsaturating, rpgan"):
    losses.get_loss("lsgan")


def test_gradient_penalty_of_a_linear_critic_matches_numpy():
  rng = np.random.default_rng(0)
  w = rng.normal(size=(1, 4, 4, 3)).astype(np.float32)
  x_hat = tf.constant(rng.normal(size=(5, 4, 4, 3)).astype(np.float32))
  with tf.GradientTape() as tape:
    tape.watch(x_hat)
    scores = tf.reduce_sum(w * x_hat, axis=[1, 2, 3])
  gp = losses.gradient_penalty(tape.gradient(scores, x_hat)).numpy()
  np.testing.assert_allclose(gp, np.full(5, (np.linalg.norm(w) - 1.0) ** 2), rtol=1e-5)


def test_gradient_penalty_second_order_gradient_is_finite_at_zero_gradient():
  w = tf.Variable(tf.zeros([1, 2, 2, 1]))  # The critic's input gradient is exactly zero.
  x = tf.ones([3, 2, 2, 1])
  with tf.GradientTape() as outer:
    with tf.GradientTape() as inner:
      inner.watch(x)
      scores = tf.reduce_sum(w * x, axis=[1, 2, 3])
    gp = tf.reduce_mean(losses.gradient_penalty(inner.gradient(scores, x)))
  grad = outer.gradient(gp, w)
  assert float(gp) == pytest.approx(1.0, abs=1e-5)
  assert np.all(np.isfinite(grad.numpy()))


def test_safe_norm_is_close_to_the_norm():
  x = tf.constant([[3.0, 4.0], [0.0, 0.0]])
  np.testing.assert_allclose(losses.safe_norm(x, axis=1), [5.0, 1e-6], rtol=1e-4)


def test_registry_lists_valid_names_on_error():
  assert penalties.build("wgan_gp") is None
  with pytest.raises(ValueError, match="valid penalties: .*wgan_gp"):
    penalties.build("spectral")
  assert penalties.build("none") is None


def test_linear_decay_schedule():
  lr = schedule.LinearDecay(2e-4, 100)
  np.testing.assert_allclose([float(lr(s)) for s in (0, 25, 100, 150)], [2e-4, 1.5e-4, 0, 0],
                             atol=1e-12)
  assert float(schedule.LinearDecay(1e-3, 0)(10**6)) == pytest.approx(1e-3)
