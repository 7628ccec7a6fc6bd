"""The checks of `QAGAN.fit`'s and `evaluate`'s input, run eagerly on the first batch before
any training (a tf.data graph has no static batch size: a check inside it would surface as a
"Graph execution error")."""

import numpy as np
import tensorflow as tf


def check_input(gan, data, batch_size, where, split=True):
  """Raises ValueError naming `where` and the fix when the first batch of `data` (a
  tf.data.Dataset, NumPy or tensor images, or a tuple of them) does not suit `gan`."""
  if gan.image_shape is None:
    raise ValueError("QAGAN: call compile(d_optimizer, g_optimizer) before fit or evaluate.")
  if isinstance(data, (tuple, list)) and data:
    data = data[0]
  if isinstance(data, tf.data.Dataset):
    spec = data.element_spec
    if isinstance(spec, (tuple, list)):
      spec = spec[0]
    if isinstance(spec, dict):  # bin/train's per-iteration inputs (exact reproduction).
      return
    first = next(iter(data.take(1)), None)
    if first is None:
      raise ValueError(f"{where} is an empty tf.data.Dataset: it yields no batch (check its "
                       "source, and that .batch(..., drop_remainder=True) leaves one).")
    first = first[0] if isinstance(first, (tuple, list)) else first
    check_batch(gan, first, where, split, f"the first batch of {where}")
  elif isinstance(data, (np.ndarray, tf.Tensor)) or hasattr(data, "__array__"):
    array = np.asarray(data) if not isinstance(data, tf.Tensor) else data
    if len(array.shape) and not int(array.shape[0]):
      raise ValueError(f"{where} holds no images (shape {tuple(array.shape)}).")
    size = batch_size or 32
    check_batch(gan, array[:size], where, split, where)
    n = int(array.shape[0]) if len(array.shape) else 0
    if split and n % size and (n % size) % gan.disc_iters:
      raise ValueError(
          f"{where} has {n} images: its last batch of {n % size} does not split into "
          f"disc_iters={gan.disc_iters} equal critic batches; use a batch_size that divides "
          f"{n}, or drop the last {n % size} images.")


def check_batch(gan, batch, where, split, what):
  """Raises ValueError naming `what` for a batch of the wrong shape, dtype or range, or one that
  does not split into gan.disc_iters critic batches (when `split`)."""
  batch = tf.convert_to_tensor(batch)
  expected = gan.image_shape
  if batch.shape.rank != 4 or tuple(batch.shape[1:]) != expected:
    layout = (" (NCHW? the critic takes NHWC)" if batch.shape.rank == 4
              and batch.shape[1] == expected[-1] else "")
    raise ValueError(f"{what}: images of shape {batch.shape}{layout}, but the generator makes "
                     f"(B, {', '.join(map(str, expected))}) and the critic sees both; give "
                     f"real images of that shape.")
  if not batch.dtype.is_floating:
    raise ValueError(f"{what}: {batch.dtype.name} images; the critic compares them with the "
                     f"generator's floats in [-1, 1]: scale to [-1, 1] first (x / 127.5 - 1 "
                     f"for uint8).")
  if batch.shape.num_elements():
    lo, hi = float(tf.reduce_min(batch)), float(tf.reduce_max(batch))
    if not (np.isfinite(lo) and np.isfinite(hi)):
      raise ValueError(f"{what}: the images hold NaN or Inf.")
    if lo < -1.0 - 1e-3 or hi > 1.0 + 1e-3:
      raise ValueError(f"{what}: values in [{lo:.3g}, {hi:.3g}]; the generator makes images "
                       f"in [-1, 1]: scale to [-1, 1] (x / 127.5 - 1 for [0, 255]).")
  n, k = int(batch.shape[0]), gan.disc_iters
  if split and (n % k or n // k < 1):
    raise ValueError(f"{what}: a batch of {n} images does not split into disc_iters={k} equal "
                     f"critic batches of at least 1 image; use a batch size that is a "
                     f"multiple of {k}.")
