"""WGAN losses from critic scores, per example (averaging over the global batch is the caller's)."""

import tensorflow as tf


def wasserstein_discriminator_loss(d_real, d_fake):
  """Per-example critic loss D(G(z)) - D(x).

  Args:
    d_real: float (B,) critic scores of real images.
    d_fake: float (B,) critic scores of generated images.

  Returns:
    float (B,); its mean is the negative Wasserstein estimate.
  """
  return d_fake - d_real


def wasserstein_generator_loss(d_fake):
  """Per-example generator loss -D(G(z)); float (B,) -> float (B,)."""
  return -d_fake


def drift_penalty(d_real):
  """Per-example drift term D(x)^2 (Progressive GAN; keeps critic scores near 0); (B,) -> (B,)."""
  return tf.square(d_real)
