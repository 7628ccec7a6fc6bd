"""NIQE as a metric, as MATLAB `computequality.m` (float64: rgb2gray rounded to uint8, replicate
borders, 7x7 Gaussian sigma 7/6, 96x96 blocks, MATLAB's antialiased bicubic 0.5 resize, the
0.2:0.001:10 alpha grid, nan-aware mean/covariance, pinv), on the features of `naturalness`."""

import numpy as np

from qagan_tf.iqa.naturalness import niqe_features
from qagan_tf.iqa.similarity import RGB_TO_GRAY

def matlab_rgb2gray(image):
  """MATLAB rgb2gray of a uint8 (H, W, 3) image: weighted sum rounded half away from 0 to uint8."""
  gray = np.asarray(image, np.float64) @ np.asarray(RGB_TO_GRAY)
  return np.clip(np.floor(gray + 0.5), 0, 255).astype(np.uint8)


def _nan_mvg(feats):
  """MATLAB nanmean (per column) and nancov (rows with a NaN dropped, N - 1) of (n, D)."""
  mu = np.nanmean(feats, axis=0)
  complete = feats[~np.isnan(feats).any(axis=1)]
  if len(complete) < 2:
    return mu, np.zeros((feats.shape[1],) * 2)
  return mu, np.cov(complete, rowvar=False, ddof=1)


def niqe(image, model=None, block_size=96):
  """NIQE of one image, as MATLAB `computequality.m` (metric mode, float64, 2 scales).

  Args:
    image: uint8 (H, W, 3) RGB or (H, W) grayscale; float input in [0, 255] is accepted too
      (its grayscale conversion is not rounded: MATLAB rounds only uint8 input).
    model: `NiqeModel`; default: the classic natural-image model shipped with the package.
    block_size: block size (MATLAB: 96).

  Returns:
    float, the NIQE score (lower is more natural).

  Raises:
    ValueError: wrong rank/channels, non-finite values, an image smaller than one block, or a
      flat image (NIQE is undefined without local contrast).
  """
  from qagan_tf.iqa import model as model_lib
  model = model or model_lib.natural_model()
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[-1] == 3:
    if image.dtype == np.uint8:
      gray = matlab_rgb2gray(image).astype(np.float64)
    else:
      gray = np.asarray(image, np.float64) @ np.asarray(RGB_TO_GRAY)
  elif image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 1):
    gray = np.asarray(image, np.float64).reshape(image.shape[:2])
  else:
    raise ValueError(f"NIQE expects one (H, W, 3) RGB or (H, W) grayscale image, got shape "
                     f"{image.shape}.")
  if not np.all(np.isfinite(gray)):
    raise ValueError("The image contains NaN or Inf values.")
  feats = niqe_features(gray[None], block_size, 2, method="grid", eps=0.0)[0].numpy()
  if gray.max() == gray.min():
    raise ValueError(f"the image is flat (every pixel {gray.flat[0]:.6g}): it has no local "
                     "contrast, and NIQE, a distance between contrast statistics, is undefined "
                     "for it.")
  mu_t, cov_t = _nan_mvg(feats)
  if not np.all(np.isfinite(mu_t)):
    raise ValueError("no block of the image has local contrast (each is flat): NIQE is "
                     "undefined for it.")
  d = model.mu - mu_t
  return float(np.sqrt(d @ np.linalg.pinv((model.cov + cov_t) / 2.0) @ d))


def niqe_of_images(images, model=None, block_size=None, batch_size=256):
  """Metric-mode NIQE (as `niqe`) of many small images at once, e.g. a GAN's samples.

  MATLAB's 96 px blocks do not fit 32-96 px images; the default block is half the image side
  (4 blocks per image at scale 1), so each score rests on 4 block feature vectors (the test
  covariance has rank <= 3, and `pinv` handles that as MATLAB does). Compare such scores only
  with scores at the same resolution and block size.

  Args:
    images: uint8 (N, H, W, 3) RGB (or (N, H, W) grayscale).
    model: `NiqeModel` (default: the classic natural-image model).
    block_size: block size (default: min(H, W) // 2, rounded down to an even number).

  Returns:
    float64 numpy (N,).
  """
  from qagan_tf.iqa import model as model_lib
  model = model or model_lib.natural_model()
  images = np.asarray(images)
  if images.ndim == 4 and images.shape[-1] == 3:
    gray = matlab_rgb2gray(images).astype(np.float64)
  elif images.ndim == 3:
    gray = images.astype(np.float64)
  else:
    raise ValueError(f"niqe_of_images expects (N, H, W, 3) or (N, H, W) images, got shape "
                     f"{images.shape}.")
  block = block_size or (min(gray.shape[1:3]) // 2) // 2 * 2
  scores = []
  for start in range(0, len(gray), batch_size):
    feats = niqe_features(gray[start:start + batch_size], block, 2, method="grid").numpy()
    for f in feats:
      mu_t, cov_t = _nan_mvg(f)
      d = model.mu - mu_t
      scores.append(float(np.sqrt(d @ np.linalg.pinv((model.cov + cov_t) / 2.0) @ d)))
  return np.asarray(scores)
