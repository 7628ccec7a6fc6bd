"""Batch normalisation for the generators: Keras' synchronised layer, with TF's fused kernel where
one replica holds the whole batch.

Keras 3's `BatchNormalization(synchronized=True)` computes its statistics with an all-reduce of
sums and squared sums even on one replica: about 12 small ops forward and 20 backward per layer
(a tensor of ones the size of the input included). On one replica the batch *is* the global
batch, so `FusedBatchNormV3` (one kernel forward, one backward; oneDNN's on CPUs, cuDNN's on
GPUs) computes the same normalisation. bin/benchmark's `train` section measures the difference.

The fused path runs when all of these hold; otherwise Keras' own code runs unchanged:
- training, with the layer trainable, no mask;
- a 4-D input normalised over its last axis; 16-bit inputs (mixed precision) enter the kernel
  as they are, and it computes the statistics and the normalisation in float32 and rounds the
  result to 16 bits, as Keras' own path does with casts;
- one replica in sync (several replicas must all-reduce their statistics);
- not a GPU under op determinism (the fused gradient to `offset` is not deterministic on GPUs).

Both paths normalise with the biased batch variance and feed the same biased variance into the
moving average (the fused kernel returns the unbiased one; it is rescaled by (n - 1) / n). They
agree to float32 round-off (tests/models/test_normalization.py).
"""

import keras
import tensorflow as tf


def _op_determinism_enabled():
  try:
    from tensorflow.python.framework import config as tf_config
    return bool(tf_config.is_op_determinism_enabled())
  except (ImportError, AttributeError):  # Unknown: assume on (the safe answer on GPUs).
    return True


def fused_path_allowed():
  """Whether this process may use the fused kernel at all (not a GPU under op determinism)."""
  return not (tf.config.list_logical_devices("GPU") and _op_determinism_enabled())


class BatchNormalization(keras.layers.BatchNormalization):
  """`keras.layers.BatchNormalization(synchronized=True)` whose one-replica training step is TF's
  fused kernel, in float32 (see the module docstring). Same variables, arguments and
  checkpoints."""

  def __init__(self, **kwargs):
    kwargs.setdefault("synchronized", True)
    super().__init__(**kwargs)

  def _fusable(self, inputs, training, mask):
    if not (training and self.trainable and mask is None):
      return False
    if self.renorm or not (self.center and self.scale):
      return False
    if len(inputs.shape) != 4 or self.axis not in (-1, 3):
      return False
    if inputs.dtype not in (tf.float32, tf.bfloat16, tf.float16):
      return False
    if self.compute_dtype not in ("float32", "bfloat16", "float16"):
      return False
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync != 1:
      return False
    return fused_path_allowed()

  def call(self, inputs, training=None, mask=None):
    inputs = tf.convert_to_tensor(inputs)
    if not self._fusable(inputs, training, mask):
      return super().call(inputs, training=training, mask=mask)
    # 16-bit inputs go in as they are: the kernel takes float32 scale and offset, accumulates
    # its statistics in float32 and rounds only its output (and, backward, its input gradient)
    # to 16 bits, which is what casting to float32 and back computes, without the two casts of
    # the activation each way (and with them out of the way, the remapper fuses the ReLU after).
    outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
        inputs, self.gamma, self.beta, epsilon=self.epsilon, data_format="NHWC",
        is_training=True)
    count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), tf.float32)
    # The kernel returns the unbiased variance; Keras averages the biased one.
    variance = variance * tf.math.divide_no_nan(count - 1.0, count)
    mean, variance = tf.stop_gradient(mean), tf.stop_gradient(variance)
    self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
    self.moving_variance.assign(
        self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
    return tf.cast(outputs, self.compute_dtype)
