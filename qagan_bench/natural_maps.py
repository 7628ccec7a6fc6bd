"""Natural derivative maps: what a critic's input gradient looks like when it looks natural.

The NIQE penalty's semantics are measured on them (bin/benchmark --sections=niqe and the tests):
mixes of horizontal and vertical forward differences of grayscale crops of natural photographs
in [-1, 1], at random overall scales, with the three colour channels within +-10% of each other.
The photographs are scikit-image's that neither the embedded training data nor the priors use
(camera, coins, moon, grass, gravel, brick, the left motorcycle view).
"""

import functools

import numpy as np

PHOTOGRAPHS = ("camera", "coins", "moon", "grass", "gravel", "brick", "motorcycle_left")
_LUMA = np.array([0.299, 0.587, 0.114])


@functools.lru_cache(maxsize=1)
def _photographs():
  import skimage.data
  out = []
  for name in PHOTOGRAPHS:
    if name == "motorcycle_left":
      image = skimage.data.stereo_motorcycle()[0]
    else:
      image = getattr(skimage.data, name)()
    image = np.asarray(image, np.float64)
    out.append(image[..., :3] @ _LUMA if image.ndim == 3 else image)
  return tuple(out)


def gray_crops(size, count, seed):
  """float64 (count, size, size) grayscale crops in [-1, 1]: a random photograph, a random
  square of 1/8 to 1/2 of its shorter side, resized with PIL's bicubic filter."""
  from PIL import Image
  photos = _photographs()
  rng = np.random.default_rng(seed)
  out = np.empty((count, size, size))
  for i in range(count):
    photo = photos[rng.integers(len(photos))]
    h, w = photo.shape
    side = int(rng.integers(min(h, w) // 8, min(h, w) // 2 + 1))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(photo[top:top + side, left:left + side].astype(np.float32), mode="F")
    out[i] = np.asarray(crop.resize((size, size), Image.BICUBIC), np.float64) / 127.5 - 1.0
  return out


def derivative_maps(size, count, seed, scale=None):
  """float64 (count, size, size, 3) natural derivative maps (see the module docstring).

  Args:
    size: map side in pixels.
    count: number of maps.
    seed: crops, mixing angles, scales and channel factors.
    scale: overall scale of every map; None draws each from 10^U(-4, 1).
  """
  rng = np.random.default_rng([seed, 1])
  crops = gray_crops(size + 1, count, seed)
  dx = crops[:, :-1, 1:] - crops[:, :-1, :-1]
  dy = crops[:, 1:, :-1] - crops[:, :-1, :-1]
  angle = rng.uniform(0.0, 2.0 * np.pi, size=(count, 1, 1))
  maps = np.cos(angle) * dx + np.sin(angle) * dy
  maps *= 10.0 ** rng.uniform(-4.0, 1.0, size=(count, 1, 1)) if scale is None else scale
  channels = 1.0 + rng.uniform(-0.1, 0.1, size=(count, 1, 1, 3))
  return maps[..., None] * channels


def blurred(maps, sigma=1.5):
  """Each map's channels Gaussian-blurred with `sigma` px (replicated borders)."""
  from scipy import ndimage
  return ndimage.gaussian_filter(maps, (0, sigma, sigma, 0), mode="nearest")


def value_and_force(maps, **settings):
  """The batch mean of `qa.niqe_penalty(maps, **settings)`, and the RMS over examples of the
  force on each map (the gradient of the batch's summed penalty w.r.t. that map, times the map's
  RMS: the penalty is scale-invariant, so this is the scale-free size of the push each example's
  gradient gets)."""
  import tensorflow as tf
  from qagan_tf import qa
  g = tf.constant(maps, tf.float32)
  with tf.GradientTape() as tape:
    tape.watch(g)
    per_example = qa.niqe_penalty(g, **settings)
    total = tf.reduce_sum(per_example)
  grad = tape.gradient(total, g)
  rms = tf.sqrt(tf.reduce_mean(tf.square(g), axis=[1, 2, 3]))
  force = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=[1, 2, 3])) * rms
  return float(tf.reduce_mean(per_example)), float(tf.sqrt(tf.reduce_mean(tf.square(force))))
