"""TensorFloat-32: float32 that stays float32 unless the user asks otherwise.

TensorFlow enables TF32 by default: on Ampere and later NVIDIA GPUs, float32 matmuls and
convolutions then round their inputs to 10 mantissa bits (CPUs are unaffected). That speeds up
G and D, but it also perturbs what qagan_tf promises to compute in float32: the SSIM and NIQE
statistics (Gaussian-window convolutions, the NIQE covariance) and their gradients, and the
Inception features behind FID/IS. Measured on an H100 after 3 smoke-config steps, GPU against
CPU: NIQE-penalty losses differ by 26% with TF32 and by 4.5% without it (SSIM 1.5% vs 0.08%).
So every qagan_tf script turns TF32 off; `--allow_tf32` turns it back on for training speed.

The setting is process-wide (TF has no per-op switch); the last call wins.
"""

import contextlib


def set_tensor_float_32(allowed):
  """Enables (True) or disables (False) TF32 execution for the whole process."""
  import tensorflow as tf
  tf.config.experimental.enable_tensor_float_32_execution(bool(allowed))


def tensor_float_32_enabled():
  import tensorflow as tf
  return bool(tf.config.experimental.tensor_float_32_execution_enabled())


@contextlib.contextmanager
def tensor_float_32(allowed):
  """Sets TF32 for the body and restores the previous setting afterwards (kernels read the
  setting when they run; XLA reads it when it compiles)."""
  before = tensor_float_32_enabled()
  set_tensor_float_32(allowed)
  try:
    yield
  finally:
    set_tensor_float_32(before)
