"""The QAGAN penalties (paper eqs. 12-15), registered as `ssim` and `niqe`.

Both are unweighted and per example; the train step adds qa_weight x their batch mean to the
critic loss, in addition to the 1-GP.
- ssim: (|D(x_i) - D(G(z_i))| / dQ(x_i, G(z_i)) - 1)^2, the i-th real paired with the i-th fake.
- niqe: NIQE(T(grad_x_hat D(x_hat)) | mu_P, Sigma_P), the differentiable NIQE of D's input
  gradient at the interpolates after the transform T that the prior's inputs had (magnitude or
  signed, luma, scale; see `niqe_prior`); a second-order term in D's variables, as the 1-GP.
"""

import tensorflow as tf

from qagan_tf import iqa
from qagan_tf.iqa.similarity import rgb_to_gray
from qagan_tf.train import niqe_prior
from qagan_tf.train import penalties as penalties_lib

# dQ below this is treated as this (two nearly identical images would make the ratio explode).
DQ_FLOOR = 1e-4


def ssim_distance_penalty(inputs, config):
  """Paper eq. 12-13 per example; also returns dQ and the ratio for TensorBoard."""
  dq = iqa.ssim_distance(inputs.real, inputs.fake, window=config.ssim_window,
                         size=config.ssim_window_size, sigma=config.ssim_sigma,
                         max_val=config.ssim_max_val, grayscale=config.ssim_grayscale,
                         cs_denominator_offset=config.ssim_cs_offset)
  ratio = tf.abs(inputs.d_real - inputs.d_fake) / tf.maximum(dq, DQ_FLOOR)
  return tf.square(ratio - 1.0), {"ssim_dq": dq, "ssim_ratio": ratio}


def make_niqe_gradient_penalty(config):
  """The NIQE penalty with the settings its prior implies (see `niqe_prior.resolve_settings`)."""
  prior = niqe_prior.load_prior(config.niqe_prior)
  settings = niqe_prior.resolve_settings(config, prior)

  def fn(inputs):
    return niqe_prior.gradient_distance(inputs.grad_x_hat, prior, settings), {}

  return penalties_lib.QualityPenalty("niqe", "niqe_penalty", fn, prior=prior, settings=settings)


penalties_lib.register_penalty(
    "ssim", lambda config: penalties_lib.QualityPenalty(
        "ssim", "ssim_penalty", lambda inputs: ssim_distance_penalty(inputs, config),
        extra_tags=("ssim_dq", "ssim_ratio")))
penalties_lib.register_penalty("niqe", make_niqe_gradient_penalty)


def mscn_sample(images, max_values=4096):
  """Flattened MSCN coefficients of (B, H, W, 1|3) inputs (luma), at most max_values of them."""
  gray = images[..., 0] if images.shape[-1] == 1 else rgb_to_gray(images)[..., 0]
  coeffs, _ = iqa.mscn(tf.cast(gray, tf.float32), eps=1e-8)
  flat = tf.reshape(coeffs, [-1])
  return flat[:max_values]


