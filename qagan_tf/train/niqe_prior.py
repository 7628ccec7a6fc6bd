"""Fitting a pristine NIQE model (mu_P, Sigma_P) for the NIQE gradient penalty (paper §3.3).

Sources: "discriminator" (D's input gradients at real images, from a given, e.g. minimally
trained, critic) or "sobel" (Sobel gradient magnitudes of the real images, as the authors' MATLAB
script for CIFAR-10). Blocks are kept when their local sharpness (mean MSCN sigma) exceeds
`sharpness_threshold` x the image's sharpest block (the authors: 0.75), as NIQE's own model fitting.
The features are computed exactly as in training (`quality_penalties.prepare_gradients`,
differentiable-mode features), so the prior matches what the penalty measures.
"""

import numpy as np
import tensorflow as tf

from qagan_tf.iqa import model as niqe_model_lib
from qagan_tf.iqa import naturalness
from qagan_tf.iqa.similarity import rgb_to_gray
from qagan_tf.train import quality_penalties as qp
from qagan_tf.utils.progress import ProgressBar

SOURCES = ("discriminator", "sobel")


def sobel_magnitude(images):
  """float (B, H, W, 3) in [0, 255] -> Sobel gradient magnitude of the luma, (B, H, W, 1)."""
  edges = tf.image.sobel_edges(rgb_to_gray(images))  # (B, H, W, 1, 2)
  return tf.sqrt(tf.reduce_sum(tf.square(edges), axis=-1) + 1e-12)


def discriminator_gradients(discriminator, images):
  """float (B, H, W, 3) in [-1, 1] -> grad_x D(x), same shape."""
  with tf.GradientTape() as tape:
    tape.watch(images)
    score = tf.reduce_sum(discriminator(images))
  return tape.gradient(score, images)


def fit_prior(images, source, *, discriminator=None, block_size=16, scales=2,
              normalization="max", grayscale=True, sharpness_threshold=0.75, batch_size=64,
              progress=False):
  """Fits mu_P and Sigma_P.

  Args:
    images: uint8 (N, R, R, 3) real images.
    source: "discriminator" (needs `discriminator`) or "sobel".
    block_size, scales, normalization, grayscale: as the penalty's flags (niqe_*).
    sharpness_threshold: keep blocks with sharpness > threshold x the image's maximum.

  Returns:
    (NiqeModel, info dict with counts).

  Raises:
    ValueError: unknown source, missing discriminator, too few blocks, or a covariance that is
      not positive definite.
  """
  if source not in SOURCES:
    raise ValueError(f"source={source!r}: use one of {', '.join(SOURCES)}.")
  if source == "discriminator" and discriminator is None:
    raise ValueError("source=discriminator needs a discriminator (--model_dir of a run).")
  if normalization == "auto":
    normalization = "max"
  feats, total_blocks = [], 0
  with ProgressBar(len(images), "NIQE prior", enabled=progress) as bar:
    for start in range(0, len(images), batch_size):
      batch = tf.constant(images[start:start + batch_size], tf.float32)
      if source == "sobel":
        g = sobel_magnitude(batch)
      else:
        g = discriminator_gradients(discriminator, batch / 127.5 - 1.0)
      g = qp.prepare_gradients(g, normalization, grayscale and source == "discriminator")
      gray = tf.transpose(g, [0, 3, 1, 2])
      gray = tf.reshape(gray, [-1, gray.shape[2], gray.shape[3]])  # Channels as images.
      f, sharp = naturalness.niqe_features(gray, block_size, scales, method="root", eps=1e-8,
                                           return_sharpness=True)
      f, sharp = f.numpy(), sharp.numpy()
      keep = sharp > sharpness_threshold * sharp.max(axis=1, keepdims=True)
      feats.append(f[keep])
      total_blocks += keep.size
      bar.update(len(batch))
  feats = np.concatenate(feats).astype(np.float64)
  feats = feats[np.all(np.isfinite(feats), axis=1)]
  dim = feats.shape[1]
  if len(feats) <= dim:
    raise ValueError(f"Only {len(feats)} sharp blocks for {dim} features; use more images "
                     "(--num_images) or a smaller --sharpness_threshold.")
  mu, cov = feats.mean(axis=0), np.cov(feats, rowvar=False)
  cov = 0.5 * (cov + cov.T)
  model = niqe_model_lib.NiqeModel(mu, cov, source=f"fitted ({source})")
  niqe_model_lib.validate(mu, cov, "fitted prior", require_positive_definite=True)
  return model, {"blocks_kept": int(len(feats)), "blocks_total": int(total_blocks),
                 "images": int(len(images)), "features": int(dim)}
