"""Keras callbacks for `QAGAN.fit`: FID with the official Inception, and sample grids."""

import os

import keras
import numpy as np
import tensorflow as tf

from qagan_tf import sampling
from qagan_tf.utils import images as images_lib


def _generate(model, num, seed, batch_size=250):
  """uint8 (num, H, W, 3) samples of the model's generator (its EMA weights when it has them)
  for the fixed latents of `seed`."""
  out = []
  with model.ema_weights() as generator:
    for start in range(0, num, batch_size):
      n = min(batch_size, num - start)
      z = sampling.latents(n, model.latent_dim, seed, start)
      out.append(images_lib.to_uint8(generator(z, training=False).numpy()))
  return np.concatenate(out)


class FIDCallback(keras.callbacks.Callback):
  """FID of `num_samples` samples against reference statistics, every `every_n_epochs` epochs,
  with the official 2015-12-05 Inception (bin/fid's weights and preprocessing).

  The value goes into the epoch's logs as `fid` (so `History`, and a `keras.callbacks.
  TensorBoard` listed after this callback, record it).

  Args:
    stats: a statistics .npz (bin/compute_stats) or a dict with "mu" and "sigma".
    every_n_epochs: how often (the last epoch of a fit is not forced).
    num_samples: generated images per FID (the paper's protocol uses 50000: bin/evaluate).
    weights: Inception weights (default: as bin/fid: $QAGAN_INCEPTION_WEIGHTS, then the cache).
    seed: the latents' seed (the same samples at every evaluation).
  """

  def __init__(self, stats, every_n_epochs=1, num_samples=5000, weights=None, seed=20191209):
    super().__init__()
    from qagan_tf.metrics import features
    from qagan_tf.metrics import stats_io
    self.reference = stats if isinstance(stats, dict) else stats_io.load_statistics(stats,
                                                                                     dim=2048)
    self.extractor = features.InceptionFeatures(weights, with_logits=False)
    self.every_n_epochs, self.num_samples, self.seed = int(every_n_epochs), int(num_samples), seed
    if self.num_samples < 2 or self.every_n_epochs < 1:
      raise ValueError("FIDCallback needs num_samples >= 2 and every_n_epochs >= 1.")

  def on_epoch_end(self, epoch, logs=None):
    if (epoch + 1) % self.every_n_epochs:
      return
    from qagan_tf.metrics import fid as fid_lib
    samples = _generate(self.model, self.num_samples, self.seed)
    # Fewer samples than Inception's 2048 dimensions: their activations give FID's trace term
    # exactly, without the (2048, 2048) matrix square root (fid.frechet_distance).
    few = len(samples) <= 2048
    out = self.extractor.statistics([samples], total=len(samples), keep_logits=False,
                                    keep_activations=len(samples) if few else 0)
    value = fid_lib.frechet_distance(out["mu"], out["sigma"], self.reference["mu"],
                                     self.reference["sigma"],
                                     activations1=out["activations"] if few else None)
    if logs is not None:
      logs["fid"] = value


class SampleGrid(keras.callbacks.Callback):
  """A grid of samples for fixed latents every `every_n_epochs` epochs, written as
  `directory/epoch_NNNN.png` and, with `log_dir`, as the TensorBoard image `samples/grid`."""

  def __init__(self, directory, every_n_epochs=1, num_images=36, log_dir=None, seed=20191208):
    super().__init__()
    self.directory, self.every_n_epochs, self.num_images = directory, every_n_epochs, num_images
    self.seed = seed
    self.writer = tf.summary.create_file_writer(log_dir) if log_dir else None

  def on_epoch_end(self, epoch, logs=None):
    if (epoch + 1) % self.every_n_epochs:
      return
    grid = images_lib.make_grid(_generate(self.model, self.num_images, self.seed))
    images_lib.save_png(os.path.join(self.directory, f"epoch_{epoch + 1:04d}.png"), grid)
    if self.writer is not None:
      with self.writer.as_default():
        tf.summary.image("samples/grid", grid[None], step=epoch + 1)
      self.writer.flush()
