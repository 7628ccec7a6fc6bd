"""What a run writes for TensorBoard: metric means, sample grids, histograms, HParams."""

import os

import tensorflow as tf

from qagan_tf import sampling
from qagan_tf.metrics import table
from qagan_tf.utils import images as images_lib

SAMPLE_SEED = 20191208  # The fixed latents of every sample grid (the same at every step).

# The metrics the HParams dashboard shows beside each run's configuration (logged scalars).
HPARAMS_METRICS = tuple(m.tag for m in table.METRICS if m.column) + (
    "train/d_loss", "train/g_loss", "train/wasserstein")


def hparams_values(config):
  """The configuration as HParams values: numbers, booleans and strings (None and lists as text)."""
  values = {}
  for key, value in config.to_dict().items():
    values[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
  return values


def write_hparams(config, trial_id):
  """Writes the run's HParams summary (its configuration, and which logged scalars are its
  metrics) to the default summary writer, so that runs can be compared in TensorBoard's HParams
  dashboard. Written at every start of training: a resumed run shows its current settings."""
  from tensorboard.plugins.hparams import api as hp
  hp.hparams_config(hparams=[hp.HParam(k) for k in sorted(hparams_values(config))],
                    metrics=[hp.Metric(tag) for tag in HPARAMS_METRICS])
  hp.hparams(hparams_values(config), trial_id=trial_id)


class MetricSums:
  """Running sums of the per-step metrics over the finite steps since the last `pop_means`
  (variables, so that they accumulate inside the compiled training loop). It reads the
  collector's {name: (sum, count)} (update/collector.py): a mean is over the updates that computed
  the value (a lazy regulariser's metric over the D updates that carried it)."""

  def __init__(self, names):
    with tf.init_scope():
      self.sums = {k: tf.Variable(0.0, trainable=False) for k in names}
      self.counts = {k: tf.Variable(0.0, trainable=False) for k in names}

  def add(self, result, dropped):
    """Adds one step's collector result (cross-replica reduced) unless `dropped` (a step whose
    update was not applied)."""
    for k, (total, count) in result.items():
      if k in self.sums:
        self.sums[k].assign_add(tf.where(dropped, 0.0, total))
        self.counts[k].assign_add(tf.where(dropped, 0.0, count))

  def pop_means(self):
    """Means over the finite steps since the last call, and reset; a metric that no update
    computed (every step dropped, or a lazy one not due) is left out."""
    means = {}
    for k, v in self.sums.items():
      n = float(self.counts[k].numpy())
      if n:
        means[k] = float(v.numpy()) / n
    for v in list(self.sums.values()) + list(self.counts.values()):
      v.assign(0.0)
    return means


def write_scalars(means, step, extra):
  """train/NAME for every metric mean and every (name, value) of `extra`."""
  for k, v in list(means.items()) + list(extra.items()):
    tf.summary.scalar(f"train/{k}", v, step=step)


def write_samples(model_dir, generators, num_images, step):
  """Sample grids of each {tag: generator} (fixed latents) as PNGs and TensorBoard images."""
  for tag, generator in generators.items():
    grid = images_lib.make_grid(sampling.generate(generator, num_images, batch_size=num_images,
                                                  seed=SAMPLE_SEED))
    images_lib.save_png(os.path.join(model_dir, "samples", f"step_{step:07d}_{tag}.png"), grid)
    tf.summary.image(f"samples/{tag}", grid[None], step=step)


def write_histograms(discriminator, generator, real_images, quality_penalty, step):
  """D's weight histograms (supplementary Fig. 5) and the quality penalty's own summaries (its
  `write_summaries` hook) on up to 16 real images and as many generated ones."""
  for v in discriminator.trainable_variables:
    tf.summary.histogram(v.path, v, step=step)  # v.path starts with "discriminator/".
  if quality_penalty is not None and quality_penalty.write_summaries is not None:
    n = min(16, len(real_images))
    real = tf.constant(real_images[:n], tf.float32) / 127.5 - 1.0
    fake = tf.constant(sampling.generate(generator, n, batch_size=n, seed=SAMPLE_SEED + 2,
                                         uint8=False))
    quality_penalty.write_summaries(discriminator, real, fake, step)
