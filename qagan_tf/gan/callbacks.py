"""Keras callbacks for `QAGAN.fit`: the metric table's metrics (FID by default) with the official
Inception, and sample grids."""

import os

import keras
import tensorflow as tf

from qagan_tf import sampling
from qagan_tf.utils import images as images_lib


def _generate(model, num, seed, batch_size=250):
  """uint8 (num, H, W, 3) samples of the model's generator (its EMA weights when it has them)
  for the fixed latents of `seed` (`sampling`'s stream, as every other sample of this project)."""
  with model.ema_weights() as generator:
    return sampling.generate(_Sampler(generator, model.latent_dim), num, batch_size, seed)


class _Sampler:
  """A user's generator as `sampling` draws from it: `z_dim` is the model's latent size."""

  def __init__(self, generator, z_dim):
    self.generator, self.z_dim = generator, z_dim

  def __call__(self, z, training=False):
    return self.generator(z, training=training)


class EvaluationCallback(keras.callbacks.Callback):
  """Metrics of the one metric table (`qagan_tf.metrics.table.METRICS`: FID, IS, KID,
  precision/recall, density/coverage, NIQE and any metric added there) of `num_samples` samples,
  every `every_n_epochs` epochs, computed as bin/evaluate computes them
  (`evaluation.evaluate_generator`, latents from `sampling`, the official 2015-12-05 Inception),
  of the EMA generator when the model has one.

  Each value goes into the epoch's logs under its table key (`fid`, `kid`, ...), so `History`,
  and a `keras.callbacks.TensorBoard` listed after this callback, record it.

  Args:
    stats: a statistics .npz (bin/compute_stats; with --keep_activations for KID,
      precision/recall and density/coverage) or a dict with "mu" and "sigma" (and
      "activations").
    metrics: table keys (default FID alone). A metric these inputs cannot give (IS without the
      softmax layer, KID without the reference activations) is refused here, with the fix.
    every_n_epochs: how often (the last epoch of a fit is not forced).
    num_samples: generated images per evaluation (the paper's protocol uses 50000:
      bin/evaluate).
    weights: Inception weights (default: as bin/fid: $QAGAN_INCEPTION_WEIGHTS, then the cache).
    seed: the latents' seed (the same samples at every evaluation).
    niqe_samples: the first this many samples are scored by the image metrics (NIQE).
  """

  def __init__(self, stats, metrics=("fid",), every_n_epochs=1, num_samples=5000, weights=None,
               seed=20191209, niqe_samples=1000):
    super().__init__()
    from qagan_tf.metrics import features
    from qagan_tf.metrics import stats_io
    from qagan_tf.metrics import table
    if isinstance(metrics, str):
      metrics = (metrics,)
    try:
      self.metrics = tuple(table.metric(key) for key in metrics)
    except KeyError as e:
      raise ValueError(f"{type(self).__name__}(metrics={list(metrics)!r}): {e.args[0]}") from None
    if not self.metrics:
      raise ValueError(f"{type(self).__name__} needs at least one metric (e.g. metrics=('fid',)).")
    self.every_n_epochs, self.num_samples, self.seed = int(every_n_epochs), int(num_samples), seed
    if self.num_samples < 2 or self.every_n_epochs < 1:
      raise ValueError(f"{type(self).__name__} needs num_samples >= 2 and every_n_epochs >= 1.")
    needs = {need for m in self.metrics for need in m.needs}
    self.reference = stats if isinstance(stats, dict) else stats_io.load_statistics(
        stats, dim=2048)
    if "activations" in needs and self.reference.get("activations") is None:
      missing = [m for m in self.metrics if "activations" in m.needs]
      raise ValueError(f"{missing[0].key}: {missing[0].unavailable} (these statistics have "
                       "mu and sigma only).")
    self.extractor = features.InceptionFeatures(
        weights, with_logits="logits" in needs,
        batch_size=features.batch_size_for(self.num_samples))
    self.kid_samples = (self.num_samples if "activations" in needs or self.num_samples <= 2048
                        else 0)  # Few samples: their activations give FID's exact route.
    self.niqe_samples = min(int(niqe_samples), self.num_samples) if "samples" in needs else 0

  def evaluate(self):
    """{key: value} of the asked metrics for the model's (EMA) generator now."""
    from qagan_tf import evaluation
    with self.model.ema_weights() as generator:  # As `_generate`'s samples.
      out = evaluation.evaluate_generator(
          _Sampler(generator, self.model.latent_dim), self.extractor, self.reference,
          self.num_samples, seed=self.seed, batch_size=250, kid_samples=self.kid_samples,
          niqe_samples=self.niqe_samples)
    missing = [m for m in self.metrics if m.key not in out]
    if missing:
      raise ValueError(f"{type(self).__name__}: {missing[0].key}: "
                       f"{missing[0].unavailable or 'these inputs do not give it'}.")
    return {m.key: out[m.key] for m in self.metrics}

  def on_epoch_end(self, epoch, logs=None):
    if (epoch + 1) % self.every_n_epochs:
      return
    values = self.evaluate()
    if logs is not None:
      logs.update(values)


class FIDCallback(EvaluationCallback):
  """`EvaluationCallback` of FID alone (logs["fid"]): FID of `num_samples` samples against
  reference statistics, every `every_n_epochs` epochs, with the official 2015-12-05 Inception
  (bin/fid's weights and preprocessing).

  Args:
    stats: a statistics .npz (bin/compute_stats) or a dict with "mu" and "sigma".
    every_n_epochs, num_samples, weights, seed: as `EvaluationCallback`'s.
  """

  def __init__(self, stats, every_n_epochs=1, num_samples=5000, weights=None, seed=20191209):
    super().__init__(stats, ("fid",), every_n_epochs, num_samples, weights, seed)


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
