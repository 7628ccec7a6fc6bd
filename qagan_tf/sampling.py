"""Loading a trained generator from a run directory and drawing samples from it."""

import logging as py_logging
import os

import numpy as np
import tensorflow as tf

from qagan_tf import config as config_lib
from qagan_tf import models
from qagan_tf.utils import files
from qagan_tf.utils import images as images_lib


def load_generator(model_dir, ema=True, checkpoint=None):
  """Rebuilds a run's generator from model_dir/config.json and restores its weights.

  Args:
    model_dir: a directory written by bin/train.
    ema: restore the EMA generator (True) or the raw one (False).
    checkpoint: a checkpoint prefix (e.g. DIR/ckpt-1000); default: the latest in model_dir.

  Returns:
    (generator, step): the run's generator (models/registry.py protocol) and the training step
    of the checkpoint.

  Raises:
    FileNotFoundError: when model_dir has no config.json or no checkpoint.
    ValueError: when the checkpoint does not fit the configured architecture.
  """
  config = config_lib.load_config(model_dir)
  if (checkpoint and not tf.io.gfile.exists(checkpoint + ".index") and os.sep not in checkpoint
      and tf.io.gfile.exists(os.path.join(model_dir, checkpoint) + ".index")):
    checkpoint = os.path.join(model_dir, checkpoint)  # A bare name: the run's own ckpt-N.
  path = checkpoint or files.latest_checkpoint(model_dir,
                                               log=py_logging.getLogger("qagan_tf").warning)
  if checkpoint and not tf.io.gfile.exists(checkpoint + ".index"):
    found = sorted(os.path.basename(p)[:-len(".index")]
                   for p in tf.io.gfile.glob(os.path.join(model_dir, "ckpt-*.index")))
    raise FileNotFoundError(f"--checkpoint={checkpoint}: no such checkpoint ({checkpoint}.index "
                            f"not found); {model_dir} has {', '.join(found) or 'none'} (omit "
                            "--checkpoint for the latest).")
  if not path:
    raise FileNotFoundError(f"No checkpoint in --model_dir={model_dir}; train first or pass "
                            "--checkpoint=PREFIX.")
  generator = models.build_generator(config.architecture, config.resolution,
                                     config.generator_width, config.z_dim,
                                     settings=models.settings_of(config))
  generator.build_for_inference()
  step = tf.Variable(0, dtype=tf.int64)
  key = "ema_generator" if ema else "generator"
  ckpt = tf.train.Checkpoint(step=step, **{key: generator})
  try:
    ckpt.restore(path).expect_partial().assert_existing_objects_matched()
  except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError, AssertionError) as e:
    # The half-restored checkpoint's collection would log one "Value in checkpoint could not
    # be found" line per variable after the error; the script is ending anyway.
    py_logging.getLogger("tensorflow").setLevel(py_logging.ERROR)
    raise ValueError(f"Checkpoint {path} does not hold a {key} matching {model_dir}/config.json "
                     f"(architecture {config.architecture}, resolution {config.resolution}, "
                     f"width {config.generator_width}): "
                     f"{str(e).splitlines()[0]}") from None
  return generator, int(step.numpy())


def latents(num, z_dim, seed, offset=0):
  """`num` latent codes from the stateless normal stream keyed (seed, offset). Every sample this
  project draws (sample grids, evaluation, bin/sample) comes from here: batch k of size B uses
  offset k * B, so a set of samples is fixed by (seed, batch size)."""
  return tf.random.stateless_normal([num, z_dim], [seed, offset])


def generate_batches(generator, num, batch_size=256, seed=0, uint8=True):
  """Yields batches of `num` samples: uint8 numpy (n, R, R, 3), or float32 in [-1, 1]; the
  latents of the batch at `start` are `latents(n, z_dim, seed, start)`."""
  for start in range(0, num, batch_size):
    n = min(batch_size, num - start)
    images = generator(latents(n, generator.z_dim, seed, start), training=False).numpy()
    yield images_lib.to_uint8(images) if uint8 else images


def generate(generator, num, batch_size=256, seed=0, uint8=True):
  """Draws `num` images (see `generate_batches`) as one numpy array (num, R, R, 3)."""
  out = list(generate_batches(generator, num, batch_size, seed, uint8))
  if out:
    return np.concatenate(out)
  shape = (0,) + (generator.resolution,) * 2 + (3,)
  return np.zeros(shape, np.uint8 if uint8 else np.float32)
