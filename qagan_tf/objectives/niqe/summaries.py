"""The NIQE penalty's TensorBoard diagnostics (the paper's supplementary Figs. 1 and 4)."""

import tensorflow as tf

from qagan_tf.iqa import naturalness
from qagan_tf.iqa.similarity import rgb_to_gray
from qagan_tf.objectives.niqe import transform


def write_gradient_summaries(discriminator, real, fake, step, prior, settings):
  """NIQE (under the penalty's prior and transform) of D's input gradients at real and
  interpolated images, and MSCN histograms of the images and of those transformed gradients,
  real vs generated (the paper's supplementary Figs. 1 and 4)."""
  x_hat = 0.5 * real + 0.5 * fake
  grads = {}
  for name, x in (("real", real), ("fake", fake), ("interpolated", x_hat)):
    with tf.GradientTape() as tape:
      tape.watch(x)
      score = tf.reduce_sum(tf.cast(discriminator(x), tf.float32))
    grads[name] = tape.gradient(score, x)
  for name in ("real", "interpolated"):
    tf.summary.scalar(f"quality/niqe_grad_{name}", tf.reduce_mean(
        transform.gradient_distance(grads[name], prior, settings)), step=step)
  for name, images in (("real", real), ("fake", fake)):
    tf.summary.histogram(f"quality/mscn_spatial_{name}", mscn_sample((images + 1.0) * 127.5),
                         step=step)
    maps = transform.penalty_inputs(grads[name], settings)
    tf.summary.histogram(f"quality/mscn_grad_{name}", mscn_sample(maps[..., None]), step=step)


def mscn_sample(images, max_values=4096):
  """Flattened MSCN coefficients of (B, H, W, 1|3) inputs (luma), at most max_values of them."""
  gray = images[..., 0] if images.shape[-1] == 1 else rgb_to_gray(images)[..., 0]
  coeffs, _ = naturalness.mscn(tf.cast(gray, tf.float32), eps=1e-8)
  flat = tf.reshape(coeffs, [-1])
  return flat[:max_values]
