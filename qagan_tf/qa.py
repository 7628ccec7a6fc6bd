"""Differentiable image-quality penalties for any TensorFlow GAN: the public functional API.

Functions of tensors that return UNWEIGHTED per-example penalties (weight them and average them
yourself); they read no config and no flags, and bin/train's step and `qagan_tf.gan.QAGAN` call
the same functions. Images are NHWC in [-1, 1]; critic scores are (B,) or (B, 1). They work
eagerly, inside `tf.function`, in a replica context of a MirroredStrategy and under a
mixed-precision policy (16-bit inputs are computed in float32). A wrong static rank, shape or
dtype is a ValueError that names the argument; value ranges are checked on images only, eagerly.

  from qagan_tf import qa
  gp, grads = qa.gradient_penalty(discriminator, real, fake)   # (B,), (B, H, W, C)
  loss = (tf.reduce_mean(fake_scores - real_scores) + tf.reduce_mean(gp)
          + 0.1 * tf.reduce_mean(qa.niqe_penalty(grads)))
"""

import numpy as np
import tensorflow as tf

from qagan_tf.iqa import niqe_metric
from qagan_tf.objectives import lecam as lecam_lib
from qagan_tf.objectives import losses
from qagan_tf.objectives import penalties as penalties_lib
from qagan_tf.objectives import penalty_api
from qagan_tf.objectives import ssim as ssim_lib
from qagan_tf.objectives.niqe import fit as niqe_fit
from qagan_tf.objectives.niqe import priors as niqe_priors
from qagan_tf.objectives.niqe.penalty import niqe_gradient_penalty as niqe_penalty
from qagan_tf.utils import fields

__all__ = ["gradient_penalty", "r1_penalty", "r2_penalty", "lecam_penalty",
           "ssim_distance_penalty", "niqe_penalty", "penalty", "load_prior", "fit_prior", "niqe"]


def _float(x, name):
  """x as a float tensor (float32 for 16-bit and integer-free inputs); ValueError otherwise."""
  x = tf.convert_to_tensor(x)
  if not x.dtype.is_floating:
    raise ValueError(f"{name} must be a float tensor; got {x.dtype.name} (images: convert to "
                     "float in [-1, 1], e.g. x / 127.5 - 1).")
  return tf.cast(x, tf.float32) if x.dtype in (tf.float16, tf.bfloat16) else x


def _finite(x, name):
  """Eagerly: ValueError naming `name` when x holds NaN or Inf (a NaN passes a range check and
  would come out as a NaN penalty for its example, or for its whole NIQE group)."""
  if tf.executing_eagerly() and x.shape.num_elements():
    bad = int(tf.size(x)) - int(tf.reduce_sum(tf.cast(tf.math.is_finite(x), tf.int32)))
    if bad:
      raise ValueError(f"{name} holds {bad} NaN or Inf value(s); the penalties need finite "
                       "inputs (check the images and the critic's output before this call).")
  return x


def _images(x, name):
  """Checks an image batch: float (B, H, W, C) with a static H, W, C; finite and in [-1, 1]
  when eager."""
  x = _finite(_float(x, name), name)
  if x.shape.rank != 4 or None in x.shape[1:]:
    raise ValueError(f"{name} must be images shaped (B, H, W, C) with static H, W, C; got "
                     f"shape {x.shape}.")
  if tf.executing_eagerly() and x.shape.num_elements():
    lo, hi = float(tf.reduce_min(x)), float(tf.reduce_max(x))
    if lo < -1.0 - 1e-3 or hi > 1.0 + 1e-3:
      raise ValueError(f"{name} has values in [{lo:.3g}, {hi:.3g}]; the penalties expect images "
                       "in [-1, 1] (x / 127.5 - 1 for uint8).")
  return x


def _scores(x, name, batch):
  """Critic scores (B,) or (B, 1) -> float (B,), finite when eager; ValueError for any other
  static shape."""
  x = _finite(_float(x, name), name)
  if x.shape.rank not in (1, 2) or (x.shape.rank == 2 and x.shape[1] != 1):
    raise ValueError(f"{name} must be critic scores shaped (B,) or (B, 1); got shape {x.shape}.")
  x = tf.reshape(x, [-1])
  if batch is not None and x.shape[0] is not None and x.shape[0] != batch:
    raise ValueError(f"{name} has {x.shape[0]} scores for a batch of {batch} images.")
  return x


def _pair(real, fake):
  """real and fake images, checked, of one shape (the i-th real is paired with the i-th fake)."""
  real, fake = _images(real, "real"), _images(fake, "fake")
  if real.shape[1:] != fake.shape[1:] or (None not in (real.shape[0], fake.shape[0])
                                          and real.shape[0] != fake.shape[0]):
    raise ValueError(f"real and fake must be batches of the same shape (the i-th real is paired "
                     f"with the i-th fake); got {real.shape} and {fake.shape}.")
  if real.dtype != fake.dtype:
    fake = tf.cast(fake, real.dtype)
  return real, fake


def gradient_penalty(discriminator, real, fake, eps=None, target=1.0):
  """WGAN-GP's gradient penalty at the interpolates, per example, and D's input gradients there.

  x_hat = eps * fake + (1 - eps) * real; the penalty is (||grad_x_hat D(x_hat)||_2 - target)^2,
  differentiable w.r.t. D's variables (compute it inside the tape of your critic update).

  Args:
    discriminator: a callable (e.g. a keras.Model) from images to scores (B,) or (B, 1).
    real, fake: float (B, H, W, C) images in [-1, 1].
    eps: float (B,) in [0, 1], or None to draw it uniformly.
    target: the norm the gradient is pulled to (1: WGAN-GP).

  Returns:
    (per_example float32 (B,), input_gradients (B, H, W, C)): pass the gradients on to
    `niqe_penalty`.
  """
  real, fake = _pair(real, fake)
  if eps is None:
    eps = tf.random.uniform(tf.shape(real)[:1], dtype=real.dtype)
  eps = _float(eps, "eps")
  if eps.shape.rank != 1 or (eps.shape[0] is not None and real.shape[0] is not None
                             and eps.shape[0] != real.shape[0]):
    raise ValueError(f"eps must be (B,) interpolation weights in [0, 1], one per image of the "
                     f"batch of {real.shape[0]}; got shape {eps.shape}.")
  if tf.executing_eagerly() and eps.shape.num_elements():
    if float(tf.reduce_min(eps)) < 0 or float(tf.reduce_max(eps)) > 1:
      raise ValueError("eps must be interpolation weights in [0, 1].")
  grads = losses.input_gradients(discriminator, losses.interpolates(real, fake, eps))
  return losses.gradient_penalty(grads, target), grads


def _zero_centred(discriminator, images, name):
  images = _images(images, name)
  grads = losses.input_gradients(discriminator, images)
  return losses.squared_norm(grads), grads


def r1_penalty(discriminator, real):
  """R1 (Mescheder et al. 2018): ||grad_x D(x)||^2 at real images, per example, and the input
  gradients; unweighted (the loss is gamma/2 times its mean: the weight is the caller's).

  Args:
    discriminator: a callable (e.g. a keras.Model) from images to scores (B,) or (B, 1).
    real: float (B, H, W, C) images in [-1, 1].

  Returns:
    (per_example float (B,), input_gradients (B, H, W, C)), differentiable w.r.t. D's
    variables: pass the gradients on to `niqe_penalty` to score them without a second pass.
  """
  return _zero_centred(discriminator, real, "real")


def r2_penalty(discriminator, fake):
  """R2: ||grad D(G(z))||^2 at generated images, per example, and the input gradients; as
  `r1_penalty` (unweighted; gamma/2 is the caller's)."""
  return _zero_centred(discriminator, fake, "fake")


def lecam_penalty(d_real, d_fake, anchor_real, anchor_fake):
  """LeCam (Tseng et al. 2021) per example: (D(x_i) - a_F)^2 + (D(G(z_i)) - a_R)^2, with a_R and
  a_F exponential moving averages of D's mean scores on real and generated images (keep them
  yourself, e.g. a <- 0.99 a + 0.01 mean(D(x))). Unweighted.

  Args:
    d_real, d_fake: critic scores (B,) or (B, 1).
    anchor_real, anchor_fake: float scalars a_R and a_F.

  Returns:
    float (B,).
  """
  d_real = _scores(d_real, "d_real", None)
  d_fake = _scores(d_fake, "d_fake", d_real.shape[0])
  anchors = []
  for name, a in (("anchor_real", anchor_real), ("anchor_fake", anchor_fake)):
    a = _float(a, name)
    if a.shape.rank != 0:
      raise ValueError(f"{name} must be a scalar (an EMA of D's mean score); got shape "
                       f"{a.shape}.")
    anchors.append(tf.cast(a, d_real.dtype))
  return lecam_lib.lecam_penalty(d_real, d_fake, *anchors)


def ssim_distance_penalty(real, fake, d_real, d_fake, **settings):
  """The SSIM-distance penalty (paper eqs. 12-13) per example:
  (|D(x_i) - D(G(z_i))| / dQ(x_i, G(z_i)) - 1)^2, the i-th real paired with the i-th fake.

  Args:
    real, fake: float (B, H, W, C) images in [-1, 1].
    d_real, d_fake: float critic scores (B,) or (B, 1) (flattened to (B,)).
    **settings: the `--ssim_*` settings without the prefix (window, window_size, sigma, max_val,
      grayscale, cs_offset); bin/train's defaults for the others.

  Returns:
    float (B,).
  """
  config = fields.from_keywords(ssim_lib.SsimConfig, settings, "SSIM penalty setting(s)")
  real, fake = _pair(real, fake)
  if config.grayscale and real.shape[-1] not in (1, 3):
    raise ValueError(f"real and fake must be RGB or grayscale images (C = 3 or 1) for the luma "
                     f"SSIM (grayscale=True); got C = {real.shape[-1]}.")
  if config.window_size > min(real.shape[1], real.shape[2]):
    raise ValueError(f"window_size={config.window_size} does not fit images of "
                     f"{real.shape[1]}x{real.shape[2]}.")
  batch = real.shape[0]
  # The scores in the images' float type (float64 images with float32 scores are one penalty).
  scores = [tf.cast(_scores(x, name, batch), real.dtype)
            for x, name in ((d_real, "d_real"), (d_fake, "d_fake"))]
  penalty, _, _ = ssim_lib.ssim_penalty_terms(real, fake, *scores, config)
  return penalty


def penalty(name, *, xla=False, **settings):
  """Any registered quality-aware penalty (`--penalty` names: `objectives/penalties.py`'s
  `PENALTIES`, one added by docs/extending.md's recipe included) as a function of tensors, built
  as bin/train and `QAGAN` build it:

    fn = qa.penalty("niqe", pooling="batch")
    per_example = fn(real, fake, d_real, d_fake, grad_x_hat=grads)   # float (B,), unweighted

  Args:
    name: the penalty's registry name (ssim, niqe, ...).
    xla: compile the penalty's own work with XLA (leave False inside a step compiled whole).
    **settings: its settings by field name (the `--<name>_*` flags without the prefix); bin/
      train's defaults for the others.

  Returns:
    fn(real, fake, d_real, d_fake, *, x_hat=None, grad_x_hat=None) -> float (B,): images
    (B, H, W, C) in [-1, 1], critic scores (B,) or (B, 1), and, for a penalty of D's input
    gradients, the interpolates and D's gradient there (`gradient_penalty`'s second output).
    The penalty is built for the images' size at the first call of each size.

  Raises:
    ValueError: an unknown name or setting (naming the valid ones), a baseline without a
      quality penalty (wgan_gp, none), or a call without the gradient the penalty needs.
  """
  entry = penalties_lib.get_entry(name)
  if entry.settings is None:
    raise ValueError(f"penalty {name!r} has no quality-aware term (a baseline: the 1-GP alone, "
                     "qa.gradient_penalty); choose from "
                     f"{', '.join(n for n, e in penalties_lib.PENALTIES.items() if e.settings)}.")
  config = fields.from_keywords(entry.settings, settings, f"{name} penalty setting(s)")
  built = {}

  def fn(real, fake, d_real, d_fake, *, x_hat=None, grad_x_hat=None):
    real, fake = _pair(real, fake)
    batch = real.shape[0]
    scores = [tf.cast(_scores(x, label, batch), real.dtype)
              for x, label in ((d_real, "d_real"), (d_fake, "d_fake"))]
    resolution = int(real.shape[1])
    if resolution not in built:
      built[resolution] = penalties_lib.build(name, config, resolution, xla=xla)
    quality = built[resolution]
    if quality.needs_input_gradient and grad_x_hat is None:
      raise ValueError(f"the {name} penalty reads D's input gradients: pass grad_x_hat= (the "
                       "second output of qa.gradient_penalty).")
    inputs = penalty_api.PenaltyInputs(
        real=real, fake=fake, x_hat=None if x_hat is None else tf.convert_to_tensor(x_hat),
        d_real=scores[0], d_fake=scores[1],
        grad_x_hat=None if grad_x_hat is None else tf.convert_to_tensor(grad_x_hat))
    value, _ = quality.fn(inputs)
    return value
  return fn


def load_prior(name_or_path):
  """A NIQE prior by name (cifar_grad, stl_grad, natural_sobel64, natural) or .npz/.mat path,
  with the record of how it was fitted (`.spec`); pass it as `niqe_penalty(..., prior=...)`."""
  return niqe_priors.load_prior(name_or_path)


def fit_prior(images, source="sobel_magnitude", **settings):
  """Fits a NIQE prior on real images (as bin/fit_niqe_prior).

  Args:
    images: uint8 (N, R, R, 3) real images.
    source: sobel_magnitude (their Sobel magnitudes, as the authors' priors), image, or
      d_gradient / d_gradient_magnitude (with discriminator=... in settings).
    **settings: `niqe.fit.fit_prior`'s keywords (discriminator, block_size, scales,
      normalization, scale, grayscale, sharpness_threshold, provenance).

  Returns:
    a prior for `niqe_penalty(..., prior=...)`, its spec recording how it was fitted.
  """
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be uint8 (N, R, R, 3); got {images.dtype} {images.shape}.")
  model, spec, _ = niqe_fit.fit_prior(images, source, **settings)
  return niqe_priors.Prior("(fitted)", model, spec)


def niqe(images, model=None, block_size=96, data_range=None):
  """NIQE as the MATLAB release computes it (bin/niqe), one score per image.

  Args:
    images: uint8 (H, W, 3) or (H, W) image, or a batch (N, H, W, 3), in [0, 255]; or floats
      with their `data_range`.
    model: a `NiqeModel` (default: the classic natural-image model).
    block_size: block size (MATLAB: 96; the image must hold one block).
    data_range: for float images, the value of white (255 for floats in [0, 255], 1.0 for
      floats in [0, 1]); the images are scaled by 255 / data_range. As scikit-image's SSIM, a
      float image's range is not guessed: floats without it must be in [0, 255] and not all
      at most 1 (floats in [0, 1] would be scored as dark [0, 255] images).

  Returns:
    float64 numpy (N,) (lower is more natural).

  Raises:
    ValueError: images of another dtype or range (with the fix), non-finite values, or a flat
      (constant) image, for which NIQE is undefined (named by its index).
  """
  images = np.asarray(images)
  floating = np.issubdtype(images.dtype, np.floating)
  if floating and images.size and not np.all(np.isfinite(images)):
    raise ValueError(f"images hold {int(np.sum(~np.isfinite(images)))} NaN or Inf value(s); "
                     "NIQE needs finite pixels.")
  if data_range is not None:
    if not floating:
      raise ValueError(f"data_range applies to float images; these are {images.dtype} (uint8 "
                       "is [0, 255] already).")
    if not data_range > 0:
      raise ValueError(f"data_range={data_range!r} must be > 0 (the value of white).")
    images = images * (255.0 / data_range)
  elif floating and images.size and 0 <= images.min() and images.max() <= 1.0:
    raise ValueError(f"images are {images.dtype} in [{images.min():.3g}, {images.max():.3g}]: "
                     "floats in [0, 1] would be scored as very dark [0, 255] images. Pass "
                     "data_range=1.0 for images in [0, 1] (data_range=255 if these really are "
                     "dark [0, 255] images), or uint8.")
  if images.dtype != np.uint8 and not (floating and images.size and 0 <= images.min()
                                       and images.max() <= 255):
    raise ValueError(f"images must be uint8 (or floats in [0, 255]); got {images.dtype}"
                     + (f" in [{images.min():.3g}, {images.max():.3g}]" if images.size else "")
                     + " (from [-1, 1]: (x + 1) * 127.5).")
  batch = images if (images.ndim == 4 or (images.ndim == 3 and images.shape[-1] not in (1, 3))
                     ) else images[None]
  out = []
  for i, image in enumerate(batch):
    try:
      out.append(niqe_metric.niqe(image, model, block_size))
    except ValueError as e:
      raise ValueError(f"image {i}: {e}") from None
  return np.array(out)
