"""The QAGAN penalties (paper eqs. 12-15), registered as `ssim` and `niqe`.

Both are unweighted and per example; the train step adds qa_weight x their batch mean to the
critic loss, in addition to the 1-GP.
- ssim: (|D(x_i) - D(G(z_i))| / dQ(x_i, G(z_i)) - 1)^2, the i-th real paired with the i-th fake.
- niqe: NIQE(grad_x_hat D(x_hat) | mu_P, Sigma_P), the differentiable NIQE of D's input gradient
  at the interpolates (a second-order term in D's variables, as the 1-GP).
"""

import functools
import os

import tensorflow as tf

from qagan_tf import iqa
from qagan_tf.iqa import model as niqe_model_lib
from qagan_tf.iqa.similarity import rgb_to_gray
from qagan_tf.train import penalties as penalties_lib

# dQ below this is treated as this (two nearly identical images would make the ratio explode).
DQ_FLOOR = 1e-4
NAMED_PRIORS = {"natural": "niqe_natural.npz", "cifar_grad": "niqe_cifar_grad.npz",
                "stl_grad": "niqe_stl_grad.npz", "face_grad": "niqe_face_grad.npz"}
# Features of image-scale inputs have MSCN betas near 1; a prior with betas below this was fitted
# on raw (tiny) gradients, so `auto` normalisation then leaves gradients unscaled.
_RAW_SCALE_BETA = 0.05
GRADIENT_PEAK = 255.0


def ssim_distance_penalty(inputs, config):
  """Paper eq. 12-13 per example; also returns dQ and the ratio for TensorBoard."""
  dq = iqa.ssim_distance(inputs.real, inputs.fake, window=config.ssim_window,
                         size=config.ssim_window_size, sigma=config.ssim_sigma,
                         max_val=config.ssim_max_val, grayscale=config.ssim_grayscale,
                         cs_denominator_offset=config.ssim_cs_offset)
  ratio = tf.abs(inputs.d_real - inputs.d_fake) / tf.maximum(dq, DQ_FLOOR)
  return tf.square(ratio - 1.0), {"ssim_dq": dq, "ssim_ratio": ratio}


@functools.lru_cache(maxsize=8)
def load_prior(name_or_path):
  """A pristine model by name (natural, cifar_grad, stl_grad, face_grad) or .npz/.mat path.

  Raises:
    ValueError (iqa.ModelError): unknown name, unreadable file, or a covariance that is not
      symmetric positive definite.
  """
  if name_or_path in NAMED_PRIORS:
    path = os.path.join(os.path.dirname(niqe_model_lib.NATURAL_MODEL_PATH),
                        NAMED_PRIORS[name_or_path])
    return niqe_model_lib.load_model(path, require_positive_definite=True)
  if not os.path.exists(name_or_path):
    raise niqe_model_lib.ModelError(
        f"--niqe_prior={name_or_path}: neither a named prior ({', '.join(NAMED_PRIORS)}) nor an "
        "existing .npz/.mat file.")
  return niqe_model_lib.load_model(name_or_path, require_positive_definite=True)


def resolve_normalization(normalization, prior):
  """'auto' -> 'none' for priors fitted on raw gradients (betas ~ 0), else 'max'."""
  if normalization != "auto":
    return normalization
  return "none" if float(prior.mu[1]) < _RAW_SCALE_BETA else "max"


def prepare_gradients(grads, normalization, grayscale):
  """D's input gradients -> the 'images' NIQE sees.

  Args:
    grads: float (B, H, W, 3).
    normalization: "max" (each gradient scaled so its peak |value| is 255) or "none".
    grayscale: to luma with MATLAB's rgb2gray weights (the authors did this).

  Returns:
    float (B, H, W, 1) or (B, H, W, 3).
  """
  g = rgb_to_gray(grads) if grayscale else grads
  if normalization == "max":
    peak = tf.reduce_max(tf.abs(g), axis=[1, 2, 3], keepdims=True)
    g = g * (GRADIENT_PEAK / (peak + 1e-12))
  return g


def niqe_scores(images, prior, config):
  """Per-example differentiable NIQE of prepared (B, H, W, C) inputs (channel mean if C > 1)."""
  block = config.niqe_block_size or config.resolution // 2
  scores = iqa.niqe_score(images, prior, block_size=block, scales=config.niqe_scales,
                          pooling=config.niqe_pooling, grayscale=False,
                          covariance_regularization=config.niqe_covariance_regularization,
                          dtype=images.dtype)
  channels = images.shape[-1]
  if channels > 1:  # niqe_score scored each channel as an image.
    scores = tf.reduce_mean(tf.reshape(scores, [-1, channels]), axis=1)
  return scores


def make_niqe_gradient_penalty(config):
  prior = load_prior(config.niqe_prior)
  if prior.mu.shape[0] != 18 * config.niqe_scales:
    raise ValueError(f"--niqe_prior={config.niqe_prior} has {prior.mu.shape[0]} features; "
                     f"--niqe_scales={config.niqe_scales} needs {18 * config.niqe_scales}.")
  normalization = resolve_normalization(config.niqe_normalization, prior)

  def fn(inputs):
    g = prepare_gradients(inputs.grad_x_hat, normalization, config.niqe_grayscale)
    return niqe_scores(g, prior, config), {}

  penalty = penalties_lib.QualityPenalty("niqe", "niqe_penalty", fn)
  return penalty


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


