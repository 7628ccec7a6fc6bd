"""Flags and helpers shared by the evaluation scripts (bin/compute_stats, bin/fid, bin/evaluate)."""

import os

from absl import flags

from qagan_tf.utils import cli

flags.DEFINE_string("inception_weights", None,
                    "Inception weights: the .npz export or classify_image_graph_def.pb (default: "
                    "$QAGAN_INCEPTION_WEIGHTS, then the cache filled by bin/fetch_inception).")
flags.DEFINE_integer("inception_batch_size", 64,
                     "Images per Inception call (fewer when the images are fewer: a call is "
                     "padded to it).")
flags.DEFINE_bool("jit_compile", False, "Compile the Inception network with XLA.")
flags.DEFINE_bool("progress", True, "Print progress with rate and ETA to stderr.")
FLAGS = flags.FLAGS


def user_errors():
  """The exception types that mean bad input (reported as one line), imported lazily."""
  from qagan_tf.data.sources import DataError
  from qagan_tf.metrics.features import ImageInputError
  from qagan_tf.metrics.fid import StatisticsError
  from qagan_tf.metrics.inception_weights import WeightsError
  return (DataError, ImageInputError, StatisticsError, WeightsError, ValueError, OSError)


def make_extractor(with_logits=None, num_images=None):
  """The Inception of the flags, in calls of --inception_batch_size images, or of `num_images`
  when that is fewer."""
  from qagan_tf.metrics import features
  from qagan_tf.utils import precision
  precision.set_tensor_float_32(False)  # Generators and Inception in true float32 (no TF32).
  if FLAGS.inception_batch_size < 1:
    cli.fail(f"--inception_batch_size={FLAGS.inception_batch_size} must be positive.")
  return features.InceptionFeatures(FLAGS.inception_weights, with_logits=with_logits,
                                    batch_size=features.batch_size_for(
                                        num_images or FLAGS.inception_batch_size,
                                        FLAGS.inception_batch_size),
                                    jit_compile=FLAGS.jit_compile)


def check_output_path(path, suffixes, flag="--output"):
  """Refuses an output path with the wrong suffix or an unwritable directory, before any work."""
  if not path.lower().endswith(suffixes):
    cli.fail(f"{flag}={path} must end in {' or '.join(suffixes)}.")
  from qagan_tf.utils import files
  try:
    files.check_writable_directory(path)
  except OSError as e:
    cli.fail(f"{flag}={path}: {e}")
  if os.path.isdir(path):
    cli.fail(f"{flag}={path} is a directory; give a file name.")
