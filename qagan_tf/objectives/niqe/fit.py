"""Fitting a NIQE prior (bin/fit_niqe_prior): the maps of each source (Sobel magnitudes, images,
D's gradients), their block features, and the MVG with the spec that records how."""

import datetime

import numpy as np
import tensorflow as tf

from qagan_tf.iqa import aggd
from qagan_tf.iqa import model as niqe_model_lib
from qagan_tf.iqa import naturalness
from qagan_tf.iqa import niqe_metric
from qagan_tf.objectives.niqe.priors import (GRADIENT_SOURCES, MAGNITUDE_SOURCES, SOURCE_ALIASES,
                                             SOURCES, PriorSpec)
from qagan_tf.objectives.niqe.settings import NiqeSettings
from qagan_tf.objectives.niqe.transform import local_contrast, normalize, penalty_inputs
from qagan_tf.utils.progress import Progress

# Contrast that `bin/fit_niqe_prior` gives D's gradients by default: the median mean local
# sigma of Sobel magnitudes of natural 32 px crops (measured on the embedded crops), so that a
# fitted gradient prior works in the same MSCN regime as the authors' Sobel priors.
DEFAULT_GRADIENT_CONTRAST = 50.0


def sobel_magnitude(gray):
  """MATLAB imgradient(I, 'sobel') magnitude of float (N, H, W) (replicate borders), a tensor."""
  x = tf.convert_to_tensor(gray)
  kx = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
  kernel = tf.constant(np.stack([kx, kx.T], axis=-1)[:, :, None, :], x.dtype)
  padded = naturalness.replicate_pad(x, 1)[..., None]
  g = tf.nn.conv2d(padded, kernel, 1, "VALID")
  return tf.sqrt(tf.reduce_sum(tf.square(g), axis=-1))


def critic_input_gradients(discriminator, images):
  """float (B, H, W, 3) in [-1, 1] -> grad_x D(x), same shape."""
  with tf.GradientTape() as tape:
    tape.watch(images)
    score = tf.reduce_sum(discriminator(images))
  return tape.gradient(score, images)


def fit_inputs(images, source, discriminator=None, normalization="none", scale=None,
               grayscale=True):
  """The maps a prior of `source` is fitted on, from uint8 (B, R, R, 3) images: float64 (M, R, R).

  "sobel_magnitude" and "image" use MATLAB's uint8-rounded luma; the D-gradient sources run
  `discriminator` on the images in [-1, 1] and transform its gradients as the penalty does.
  """
  if source in ("sobel_magnitude", "image"):
    gray = tf.constant(niqe_metric.matlab_rgb2gray(images).astype(np.float64))
    x = sobel_magnitude(gray) if source == "sobel_magnitude" else gray
  else:
    grads = critic_input_gradients(discriminator,
                                   tf.constant(images, tf.float32) / 127.5 - 1.0)
    settings = NiqeSettings(transform="magnitude" if source in MAGNITUDE_SOURCES else "signed",
                            grayscale=grayscale, normalization="none", scale=0.0, block_size=0,
                            scales=0, pooling="pooled", split="soft", temperature=0.0,
                            covariance_regularization=0.0)
    x = tf.cast(penalty_inputs(tf.cast(grads, tf.float64), settings), tf.float64)
  return normalize(x, normalization, scale)


def fit_prior(images, source, *, discriminator=None, block_size=0, scales=2, normalization=None,
              scale=None, grayscale=True, sharpness_threshold=0.75, batch_size=64,
              temperature=None, progress=False, provenance=None):
  """Fits mu_P and Sigma_P on `images` and records how.

  Args:
    images: uint8 (N, R, R, 3) real images.
    source: one of SOURCES (or an alias: sobel, discriminator); the D-gradient sources need
      `discriminator`.
    block_size: block size at scale 1 (0: R, one block per image, as the authors).
    scales: number of scales.
    normalization, scale: the inputs' scaling (default: "none" for Sobel magnitudes and images,
      recording their median local contrast as the scale; "contrast" to
      DEFAULT_GRADIENT_CONTRAST for D's gradients).
    grayscale: D-gradient sources only: luma first (Sobel and image sources are always luma).
    sharpness_threshold: keep blocks with sharpness > threshold x the image's maximum.
    temperature: the AGGD split's temperature (default: the penalty's soft split).
    provenance: facts to record (dataset, ...).

  Returns:
    (NiqeModel, PriorSpec, info dict with counts).

  Raises:
    ValueError: unknown source, missing discriminator, too few blocks, or a covariance that is
      not positive definite.
  """
  source = SOURCE_ALIASES.get(source, source)
  if source not in SOURCES:
    raise ValueError(f"source={source!r}: use one of {', '.join(SOURCES)}.")
  if source in GRADIENT_SOURCES and discriminator is None:
    raise ValueError(f"source={source} needs a discriminator (--model_dir of a run).")
  grayscale = grayscale or source not in GRADIENT_SOURCES
  resolution = int(images.shape[1])
  block_size = block_size or resolution
  if normalization is None:
    normalization = "contrast" if source in GRADIENT_SOURCES else "none"
  if normalization == "contrast" and scale is None:
    scale = DEFAULT_GRADIENT_CONTRAST
  if normalization == "max" and scale is None:
    scale = 255.0
  temperature = aggd.DEFAULT_TEMPERATURE if temperature is None else temperature
  feats, contrasts, total_blocks = [], [], 0
  with Progress(len(images), "NIQE prior", enabled=progress) as bar:
    for start in range(0, len(images), batch_size):
      batch = images[start:start + batch_size]
      x = fit_inputs(batch, source, discriminator, normalization, scale, grayscale)
      contrasts.append(local_contrast(x).numpy())
      f, sharp = naturalness.niqe_features(x, block_size, scales, method="root", eps=1e-8,
                                           return_sharpness=True, split="soft",
                                           temperature=temperature)
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
  niqe_model_lib.validate(mu, cov, "fitted prior", require_positive_definite=True)
  model = niqe_model_lib.NiqeModel(mu, cov, source=f"fitted ({source})")
  info = {"blocks_kept": int(len(feats)), "blocks_total": int(total_blocks),
          "images": int(len(images)), "features": int(dim),
          "median_contrast": float(np.median(np.concatenate(contrasts)))}
  if normalization == "none" and source not in GRADIENT_SOURCES:
    scale = info["median_contrast"]
  spec = PriorSpec(source=source, grayscale=grayscale, block_size=block_size, scales=scales,
                   normalization=normalization, scale=scale, resolution=resolution,
                   sharpness_threshold=sharpness_threshold,
                   provenance={"fitted_by": "bin/fit_niqe_prior", "split": "soft",
                               "temperature": temperature,
                               "date": datetime.date.today().isoformat(),
                               **{k: info[k] for k in ("images", "blocks_kept")},
                               **(provenance or {})})
  return model, spec, info
