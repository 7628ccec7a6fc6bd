"""Loading a trained generator from a run directory and drawing samples from it."""

import os

import numpy as np
import tensorflow as tf

from qagan_tf import config as config_lib
from qagan_tf import models
from qagan_tf.utils import images as images_lib


def load_generator(model_dir, ema=True, checkpoint=None):
  """Rebuilds a run's generator from model_dir/config.json and restores its weights.

  Args:
    model_dir: a directory written by bin/train.
    ema: restore the EMA generator (True) or the raw one (False).
    checkpoint: a checkpoint prefix (e.g. DIR/ckpt-1000); default: the latest in model_dir.

  Returns:
    (generator, step): a `models.Generator` and the training step of the checkpoint.

  Raises:
    FileNotFoundError: when model_dir has no config.json or no checkpoint.
    ValueError: when the checkpoint does not fit the configured architecture.
  """
  config = config_lib.load_config(model_dir)
  path = checkpoint or tf.train.latest_checkpoint(model_dir)
  if checkpoint and not tf.io.gfile.exists(checkpoint + ".index"):
    found = sorted(os.path.basename(p)[:-len(".index")]
                   for p in tf.io.gfile.glob(os.path.join(model_dir, "ckpt-*.index")))
    raise FileNotFoundError(f"--checkpoint={checkpoint}: no such checkpoint ({checkpoint}.index "
                            f"not found); {model_dir} has {', '.join(found) or 'none'} (omit "
                            "--checkpoint for the latest).")
  if not path:
    raise FileNotFoundError(f"No checkpoint in --model_dir={model_dir}; train first or pass "
                            "--checkpoint=PREFIX.")
  generator = models.Generator(config.resolution, config.width, config.z_dim)
  generator.build_for_inference()
  step = tf.Variable(0, dtype=tf.int64)
  key = "ema_generator" if ema else "generator"
  ckpt = tf.train.Checkpoint(step=step, **{key: generator})
  try:
    ckpt.restore(path).expect_partial().assert_existing_objects_matched()
  except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError, AssertionError) as e:
    raise ValueError(f"Checkpoint {path} does not hold a {key} matching {model_dir}/config.json "
                     f"(resolution {config.resolution}, width {config.width}): "
                     f"{str(e).splitlines()[0]}") from None
  return generator, int(step.numpy())


def generate(generator, num, batch_size=256, seed=0):
  """Draws `num` images with latent codes from a stateless normal stream seeded by `seed`.

  Returns:
    uint8 numpy (num, R, R, 3).
  """
  out = []
  for start in range(0, num, batch_size):
    n = min(batch_size, num - start)
    z = tf.random.stateless_normal([n, generator.z_dim], [seed, start])
    out.append(images_lib.to_uint8(generator(z, training=False).numpy()))
  return np.concatenate(out) if out else np.zeros((0,) + (generator.architecture.resolution,) * 2
                                                   + (3,), np.uint8)
