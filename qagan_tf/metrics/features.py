"""Batched Inception feature extraction for numpy images, with input checks and progress."""

import os

import numpy as np
import tensorflow as tf

from qagan_tf.metrics import fid as fid_lib
from qagan_tf.metrics import inception_weights
from qagan_tf.metrics.inception import POOL3_DIM
from qagan_tf.utils import precision
from qagan_tf.utils.progress import Progress


class ImageInputError(ValueError):
  """Images that the Inception pipeline cannot take; the message names the input and the fix."""


def check_images(images, where="images"):
  """Validates a batch for the official preprocessing.

  Args:
    images: (N, H, W, 3) or (N, H, W, 1) uint8, or float in [0, 255].

  Returns:
    The images as (N, H, W, 3) (grayscale repeated), same dtype.
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ImageInputError(f"{where}: expected (N, H, W, 3) images, got shape {images.shape}.")
  if images.shape[0] == 0:
    raise ImageInputError(f"{where}: no images.")
  if images.dtype != np.uint8:
    if not np.issubdtype(images.dtype, np.floating):
      raise ImageInputError(f"{where}: dtype {images.dtype}; give uint8 or float pixels in "
                            "[0, 255].")
    if not np.all(np.isfinite(images)):
      raise ImageInputError(f"{where}: contains NaN or Inf.")
    lo, hi = float(images.min()), float(images.max())
    if lo < 0.0 or hi > 255.0:
      hint = (" (they look like [-1, 1] generator outputs: map them with (x + 1) * 127.5)"
              if lo >= -1.0 and hi <= 1.0 else "")
      raise ImageInputError(f"{where}: float pixels in [{lo:.3g}, {hi:.3g}], outside [0, 255]"
                            f"{hint}.")
  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  return images


def _traced(model, jit_compile):
  # No AutoGraph: the network has no tensor-dependent Python control flow, and its conversion
  # writes temporary source files (on a full disk it fails with four lines of warning).
  return tf.function(model, jit_compile=jit_compile, reduce_retracing=True, autograph=False)


# Networks loaded in this process, by weights file (path, size, modification time) and options:
# a second extractor of the same weights (a callback beside bin/evaluate's, each in-training
# evaluation, tests) reuses the network and its traced function instead of reading, checking
# and tracing 95 MB again (about 2 s, then a trace per batch shape).
_NETWORKS = {}


def _network(weights, with_logits, verify, jit_compile):
  """(model, info, traced function) of the weights, loaded once per process."""
  path = os.path.abspath(inception_weights.resolve_path(weights))
  stat = os.stat(path)
  key = (path, stat.st_size, stat.st_mtime_ns, with_logits, verify, jit_compile)
  if key not in _NETWORKS:
    model, info = inception_weights.load_inception(path, with_logits, verify)
    _NETWORKS[key] = (model, info, _traced(model, jit_compile))
  return _NETWORKS[key]


def batch_size_for(num_images, batch_size=64):
  """Images per network call for sets of `num_images`: `batch_size`, or `num_images` when fewer.
  A call is padded to the batch size, so 20 images in calls of 64 would cost 64; the features do
  not depend on the batch size (tests/metrics/test_inception.py)."""
  return max(1, min(int(batch_size), int(num_images)))


class InceptionFeatures:
  """pool_3 features and logits of numpy images through the official network.

  Args:
    weights: weights path (None: the search order of `inception_weights.resolve_path`).
    with_logits: see `inception_weights.load_inception`.
    batch_size: images per network call (the last batch is padded so one graph serves all).
    jit_compile: compile the network with XLA.
    model, info: an already built model and its info (tests); skips loading.
  """

  def __init__(self, weights=None, with_logits=None, batch_size=64, jit_compile=False,
               verify=True, model=None, info=None):
    if model is None:
      model, info, self._fn = _network(weights, with_logits, verify, jit_compile)
    else:
      self._fn = _traced(model, jit_compile)
    self.model, self.info, self.batch_size = model, dict(info or {}), batch_size
    self.has_logits = model.with_logits

  @property
  def softmax_biases(self):
    """float64 (1008,) biases of the softmax layer (None without logits): `evaluation`'s
    is_logits="openai" subtracts them, as OpenAI's IS code (pool_3 times the weights only)."""
    if not self.has_logits:
      return None
    return self.model.softmax_biases.numpy().astype(np.float64)

  def _run(self, batch):
    n = len(batch)
    if n < self.batch_size:
      batch = np.concatenate([batch, np.zeros((self.batch_size - n,) + batch.shape[1:],
                                              batch.dtype)])
    with precision.tensor_float_32(False):  # The reference statistics are true float32.
      out = self._fn(tf.constant(batch))
    return {k: v.numpy()[:n] for k, v in out.items()}

  def batches(self, images, where="images", progress=False, label="Inception features"):
    """Yields the outputs of consecutive batches of `images` (checked once up front)."""
    images = check_images(images, where)
    with Progress(len(images), label, enabled=progress) as bar:
      for start in range(0, len(images), self.batch_size):
        out = self._run(images[start:start + self.batch_size])
        bar.update(len(out["pool3"]))
        yield out

  def __call__(self, images, where="images", progress=False):
    """{"pool3": float32 (N, 2048)[, "logits": float32 (N, 1008)]} of all images."""
    outs = list(self.batches(images, where, progress))
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

  def statistics(self, image_batches, total=None, progress=False, keep_logits=True,
                 keep_activations=0, label="Inception statistics"):
    """Streaming statistics over an iterable of image batches (e.g. a generator's output).

    Returns:
      {"mu", "sigma", "count", "logits" (or None), "activations" (the first `keep_activations`
      pool_3 rows, or None)}.
    """
    stats = fid_lib.StreamingStatistics(POOL3_DIM)
    logits, kept = [], []
    with Progress(total or 0, label, enabled=progress) as bar:
      for i, batch in enumerate(image_batches):
        for start in range(0, len(batch), self.batch_size):
          chunk = check_images(batch[start:start + self.batch_size], f"batch {i}")
          out = self._run(chunk)
          stats.update(out["pool3"])
          if keep_logits and "logits" in out:
            logits.append(out["logits"])
          if sum(map(len, kept)) < keep_activations:
            kept.append(out["pool3"])
          bar.update(len(chunk))
    mu, sigma = stats.result()
    return {"mu": mu, "sigma": sigma, "count": stats.count,
            "logits": np.concatenate(logits) if logits else None,
            "activations": np.concatenate(kept)[:keep_activations] if kept else None}
