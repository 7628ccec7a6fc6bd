"""The NIQE penalty's transform and distance: D's input gradients -> the maps its prior describes
(peak-normalised, luma, smoothed, magnitude, scaled) -> their differentiable NIQE distance."""

import numpy as np
import tensorflow as tf

from qagan_tf.iqa import naturalness
from qagan_tf.iqa.similarity import rgb_to_gray

# The magnitude transform is smoothed at 0 over this fraction of the map's RMS (see
# `penalty_inputs`); it raises values near 0 by at most that, far below the maps' contrast.
MAGNITUDE_SMOOTHING = 0.03
# The fixed map that stands in for an all-zero gradient (see `penalty_inputs`).
DEAD_MAP_SEED = 20191208


def _peak(x, axis):
  """max |x| over `axis` (keepdims), with 1 where the map is all zero (so x / peak stays 0)."""
  peak = tf.reduce_max(tf.abs(x), axis=axis, keepdims=True)
  return tf.where(peak > 0, peak, tf.ones_like(peak))


def local_contrast(x):
  """Mean local standard deviation (NIQE's 7x7 Gaussian sigma) of (N, H, W) -> (N,).

  Scale-equivariant down to the dtype's smallest numbers: the statistics are taken of each map
  divided by its peak |value|, so the eps under sigma's sqrt is relative to the map's scale.
  """
  peak = _peak(x, [1, 2])
  _, sigma = naturalness.mscn(x / peak, eps=1e-12)
  return tf.reduce_mean(sigma, axis=[1, 2]) * peak[:, 0, 0]


def normalize(x, normalization, scale):
  """Scales each (H, W) map of x (N, H, W) as the prior's inputs were scaled."""
  if normalization == "none":
    return x
  tiny = tf.constant(np.finfo(x.dtype.as_numpy_dtype).tiny, x.dtype)
  if normalization == "max":
    size = tf.reduce_max(tf.abs(x), axis=[1, 2])
  else:
    size = local_contrast(x)
  return x * (scale / (size + tiny))[:, None, None]


_BINOMIAL = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]) / 16.0


def binomial_smooth(x):
  """[1 2 1] x [1 2 1] / 16 smoothing of each channel of x (N, H, W, C), replicated borders."""
  kernel = tf.constant(np.tile(_BINOMIAL[:, :, None, None], (1, 1, x.shape[-1], 1)), x.dtype)
  padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")  # = replicate for 1.
  return tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")


def penalty_inputs(grads, settings):
  """D's input gradients -> the maps whose NIQE the penalty takes.

  Each gradient is first divided by its peak |value| (the penalty is scale-invariant, and this
  keeps every later statistic in float32's comfortable range, whatever D's scale), then turned
  into luma, smoothed (settings.smoothing), made a magnitude or kept signed, and scaled as the
  prior's inputs were. An all-zero gradient (a dead critic) is a deliberate dead zone: it is
  replaced by a fixed white-noise map (`DEAD_MAP_SEED`), so it scores what noise scores, with
  zero gradient (a scale-invariant penalty has no direction to push at 0; the 1-GP, or the
  adversarial loss, restores the gradient's norm there).

  Args:
    grads: float (B, H, W, 3) (or (B, H, W, 1)), D's gradient at the interpolates; H, W and
      the channels static.
    settings: `NiqeSettings`.

  Returns:
    float (B, H, W) (luma) or (B * 3, H, W) (each colour channel a map when not grayscale; the
    magnitude transform then combines the channels into one map per image, (B, H, W)).
  """
  peak = tf.reduce_max(tf.abs(grads), axis=[1, 2, 3], keepdims=True)
  dead = peak <= 0
  noise = np.random.default_rng(DEAD_MAP_SEED).uniform(-1.0, 1.0, grads.shape[1:])
  x = tf.where(dead, tf.constant(noise, grads.dtype)[None],
               grads / tf.where(dead, tf.ones_like(peak), peak))
  x = rgb_to_gray(x) if settings.grayscale and x.shape[-1] == 3 else x
  if settings.smoothing == "binomial":
    x = binomial_smooth(x)
  if settings.transform == "magnitude":
    # sqrt(sum x^2 + (delta rms)^2): the magnitude, made smooth where it is 0 (|g| has a kink
    # there) on a scale relative to the map's RMS, so that the transform is scale-equivariant.
    rms2 = tf.reduce_mean(tf.square(x), axis=[1, 2, 3], keepdims=True)
    x = tf.sqrt(tf.reduce_sum(tf.square(x), axis=-1, keepdims=True)
                + MAGNITUDE_SMOOTHING**2 * rms2 + 1e-30)
  x = tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [-1, x.shape[1], x.shape[2]])
  return normalize(x, settings.normalization, settings.scale)


def _scorer(prior, settings, dtype, images_per_score=1):
  return naturalness.NiqeScorer(
      prior.model, block_size=settings.block_size, scales=settings.scales,
      pooling=settings.pooling, group_size=settings.group_size * images_per_score,
      grayscale=False,
      covariance_regularization=settings.covariance_regularization, dtype=dtype,
      split=settings.split, temperature=settings.temperature)


def _mean_per_image(scores, images_per_score):
  if images_per_score > 1:
    scores = tf.reduce_mean(tf.reshape(scores, [-1, images_per_score]), axis=1)
  return scores


def distance(maps, prior, settings, images_per_score=1):
  """Per-image differentiable NIQE distance of prepared maps (see `penalty_inputs`).

  Returns:
    float (B,) where B = len(maps) / images_per_score (channel maps of one image averaged).
  """
  return _mean_per_image(_scorer(prior, settings, maps.dtype, images_per_score)(maps),
                         images_per_score)


class GradientDistance:
  """NIQE distance of D's input gradients (B, H, W, 3) under the prior: float (B,).

  compile_local: compile the per-replica part (the transform, the MSCN maps, the batched AGGD
  fits, the whitening: nearly all ops) with XLA on its own; the cross-replica pooling and the
  final solve stay outside, so it works under every tf.distribute strategy.
  """

  def __init__(self, prior, settings, compile_local=False):
    self.prior, self.settings = prior, settings
    self.images_per_score = 1 if settings.grayscale or settings.transform == "magnitude" else 3
    self._scorers = {}
    self._local = (tf.function(self._local_part, jit_compile=True, autograph=False) if compile_local
                   else self._local_part)

  def _scorer(self, dtype):
    if dtype not in self._scorers:
      self._scorers[dtype] = _scorer(self.prior, self.settings, dtype, self.images_per_score)
    return self._scorers[dtype]

  def _local_part(self, grads):
    return self._scorer(grads.dtype).local(penalty_inputs(grads, self.settings))

  def __call__(self, grads):
    scores = self._scorer(grads.dtype).pool(self._local(grads))
    return _mean_per_image(scores, self.images_per_score)


def gradient_distance(grads, prior, settings):
  """NIQE distance of D's input gradients (B, H, W, 3) under the prior: float (B,)."""
  return GradientDistance(prior, settings)(grads)
