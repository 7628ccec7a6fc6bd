"""MATLAB `imresize` (bicubic, a = -0.5, antialiased when shrinking) as separable matrices.

Resizing is linear, so it is applied as out = A_rows @ image @ A_cols^T with matrices built here
from MATLAB's own recipe (`contributions` in imresize.m): differentiable, batchable, exact.
"""

import functools

import numpy as np
import tensorflow as tf


def _cubic(x):
  """Keys' cubic kernel with a = -0.5 (MATLAB's 'bicubic')."""
  ax = np.abs(x)
  ax2, ax3 = ax**2, ax**3
  return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
          + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


@functools.lru_cache(maxsize=64)
def resize_matrix(in_length, scale, antialias=True):
  """The (out_length, in_length) float64 matrix of MATLAB imresize along one axis.

  Args:
    in_length: input size along the axis.
    scale: output / input size ratio; out_length = ceil(in_length * scale).
    antialias: widen the kernel by 1 / scale when shrinking (MATLAB's default).
  """
  out_length = int(np.ceil(in_length * scale))
  kernel_width = 4.0
  if scale < 1 and antialias:
    kernel = lambda x: scale * _cubic(scale * x)
    kernel_width /= scale
  else:
    kernel = _cubic
  u = np.arange(1, out_length + 1, dtype=np.float64)
  x = u / scale + 0.5 * (1.0 - 1.0 / scale)  # Input-space position (1-based) of each output.
  left = np.floor(x - kernel_width / 2.0)
  taps = int(np.ceil(kernel_width)) + 2
  indices = left[:, None] + np.arange(taps)[None, :]  # 1-based, may fall outside the image.
  weights = kernel(x[:, None] - indices)
  weights /= weights.sum(axis=1, keepdims=True)
  # Out-of-range taps mirror back into the image (MATLAB: symmetric padding).
  mirror = np.concatenate([np.arange(in_length), np.arange(in_length)[::-1]])
  columns = mirror[np.mod(indices - 1, 2 * in_length).astype(int)]
  matrix = np.zeros((out_length, in_length))
  for row in range(out_length):
    np.add.at(matrix[row], columns[row], weights[row])
  return matrix


def imresize(images, scale, antialias=True):
  """Resizes the two spatial axes of float (N, H, W) or (N, H, W, C) images like MATLAB imresize.

  Returns:
    float tensor (N, ceil(H * scale), ceil(W * scale)[, C]) of the input dtype (no rounding).
  """
  images = tf.convert_to_tensor(images)
  h, w = images.shape[1], images.shape[2]
  rows = tf.constant(resize_matrix(int(h), float(scale), antialias), images.dtype)
  cols = tf.constant(resize_matrix(int(w), float(scale), antialias), images.dtype)
  if images.shape.rank == 3:
    return tf.einsum("ih,nhw,jw->nij", rows, images, cols)
  return tf.einsum("ih,nhwc,jw->nijc", rows, images, cols)
