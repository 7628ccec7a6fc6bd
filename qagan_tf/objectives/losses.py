"""GAN losses from critic scores, per example, and the penalties every loss can add to D's.

The loss registry `LOSSES` maps a `--loss` name to a `Loss`: the discriminator's and the
generator's per-example losses and the extra per-example statistics it logs. Averaging over the
global batch is the caller's (update/critic.py). To add a loss, add its functions and one `LOSSES`
entry here, and its NumPy definition in tests/objectives/test_penalties_and_losses.py.
"""

import dataclasses
from typing import Callable

import tensorflow as tf

# Inside sqrt so that the norm and its second derivative stay finite when the gradient is 0.
NORM_EPSILON = 1e-12


def wasserstein_discriminator_loss(d_real, d_fake):
  """Per-example critic loss D(G(z)) - D(x): float (B,), (B,) -> (B,); its mean is the negative
  Wasserstein estimate."""
  return d_fake - d_real


def wasserstein_generator_loss(d_real, d_fake):
  """Per-example generator loss -D(G(z)); float (B,) -> float (B,) (d_real unused: None)."""
  del d_real
  return -d_fake


def hinge_discriminator_loss(d_real, d_fake):
  """Per-example hinge loss max(0, 1 - D(x)) + max(0, 1 + D(G(z))) (Lim & Ye 2017; SNGAN)."""
  return tf.nn.relu(1.0 - d_real) + tf.nn.relu(1.0 + d_fake)


def nonsaturating_discriminator_loss(d_real, d_fake):
  """Per-example logistic loss softplus(-D(x)) + softplus(D(G(z))) (D outputs logits)."""
  return tf.nn.softplus(-d_real) + tf.nn.softplus(d_fake)


def nonsaturating_generator_loss(d_real, d_fake):
  """Per-example non-saturating generator loss softplus(-D(G(z))) = -log sigmoid(D(G(z)))."""
  del d_real
  return tf.nn.softplus(-d_fake)


def rpgan_discriminator_loss(d_real, d_fake):
  """Per-example relativistic pairing loss softplus(D(G(z_i)) - D(x_i)) (Jolicoeur-Martineau
  2018; R3GAN, Huang et al. 2024): the i-th fake paired with the i-th real."""
  return tf.nn.softplus(d_fake - d_real)


def rpgan_generator_loss(d_real, d_fake):
  """Per-example relativistic pairing loss of G: softplus(D(x_i) - D(G(z_i)))."""
  return tf.nn.softplus(d_real - d_fake)


def wasserstein_estimate(d_real, d_fake):
  """Per-example D(x) - D(G(z)), the critic's Wasserstein estimate (logged for every loss)."""
  return d_real - d_fake


@dataclasses.dataclass(frozen=True)
class Loss:
  """One adversarial loss.

  discriminator(d_real, d_fake) and generator(d_real, d_fake) give per-example losses (float
  (B,)); the generator's d_real is None unless `generator_needs_real` (a relativistic loss: the
  G update then scores real images too, paired with its fakes). metrics maps a logged name
  (train/NAME) to a per-example statistic f(d_real, d_fake).
  """
  name: str
  discriminator: Callable
  generator: Callable
  metrics: tuple = (("wasserstein", wasserstein_estimate),)
  generator_needs_real: bool = False

  @property
  def metric_names(self):
    return tuple(name for name, _ in self.metrics)


LOSSES = {
    "wasserstein": Loss("wasserstein", wasserstein_discriminator_loss, wasserstein_generator_loss),
    "hinge": Loss("hinge", hinge_discriminator_loss, wasserstein_generator_loss),
    "nonsaturating": Loss("nonsaturating", nonsaturating_discriminator_loss,
                          nonsaturating_generator_loss),
    "rpgan": Loss("rpgan", rpgan_discriminator_loss, rpgan_generator_loss,
                  generator_needs_real=True),
}


def get_loss(name):
  """The `Loss` called `name`.

  Raises:
    ValueError: for an unknown name; the message lists the valid ones.
  """
  if name not in LOSSES:
    raise ValueError(f"Unknown loss {name!r}; valid losses: {', '.join(LOSSES)}.")
  return LOSSES[name]


def drift_penalty(d_real):
  """Per-example drift term D(x)^2 (Progressive GAN; keeps critic scores near 0); (B,) -> (B,)."""
  return tf.square(d_real)


def squared_norm(x):
  """||x||^2 per example over all but the first axis: R1's and R2's ||grad_x D(x)||^2 (smooth at
  0, unlike the norm); (B, ...) -> (B,)."""
  return tf.reduce_sum(tf.square(x), axis=tf.range(1, tf.rank(x)))


def safe_norm(x, axis):
  """sqrt(sum(x^2) + eps) over `axis`: finite value and finite first and second derivatives at 0."""
  return tf.sqrt(tf.reduce_sum(tf.square(x), axis=axis) + NORM_EPSILON)


def gradient_penalty(grad_x_hat, target=1.0):
  """WGAN-GP's two-sided 1-GP (||grad D(x_hat)||_2 - target)^2.

  Args:
    grad_x_hat: float (B, H, W, C), gradient of the critic at the interpolates.
    target: the norm the gradient is pulled to (1: WGAN-GP).

  Returns:
    float (B,).
  """
  return tf.square(safe_norm(grad_x_hat, axis=[1, 2, 3]) - target)


def interpolates(real, fake, eps):
  """x_hat = eps * fake + (1 - eps) * real per example: float (B, H, W, C) x2, eps (B,)."""
  e = tf.reshape(tf.cast(eps, real.dtype), [-1, 1, 1, 1])
  return e * fake + (1.0 - e) * real


def critic_scores(discriminator, images):
  """D's scores as float32 (B,): a critic that returns (B, 1), or 16-bit scores under a mixed
  policy, gives the same as one that returns float32 (B,).

  Raises:
    ValueError: (at trace time) a critic whose output is not one score per image.
  """
  scores = tf.convert_to_tensor(discriminator(images))
  batch = images.shape[0]
  if scores.shape.rank not in (1, 2) or (scores.shape.rank == 2 and scores.shape[1] not in (
      1, None)) or (batch is not None and scores.shape[0] not in (batch, None)):
    raise ValueError(f"the critic must give one score per image, (B,) or (B, 1); for images "
                     f"{images.shape} it gave shape {scores.shape}.")
  return tf.reshape(tf.cast(scores, tf.float32), [-1])


def input_gradients(discriminator, x_hat):
  """D's gradient at x_hat, differentiable w.r.t. D's variables: the caller's outer tape records
  them (this tape watches only x_hat), which makes a penalty on it a second-order term."""
  with tf.GradientTape(watch_accessed_variables=False) as inner:
    inner.watch(x_hat)
    d_hat = critic_scores(discriminator, x_hat)
  # Not loss-scaled: the loss (with the 1-GP and the quality penalty built on the gradient) then
  # does not depend on a float16 loss scale, so a non-finite loss is a real NaN/Inf, never an
  # overflow (d_hat is O(1); its 16-bit gradients do not underflow).
  grad = inner.gradient(d_hat, x_hat)
  if grad is None:
    raise ValueError("the critic's scores do not depend on its input images (their gradient "
                     "with respect to the images is None): a gradient penalty needs a critic "
                     "that computes its score from the image it is given.")
  return grad
