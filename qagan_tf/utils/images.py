"""Image conversions, grids and atomic PNG / .npz writing."""

import math

import numpy as np
from PIL import Image

from qagan_tf.utils import files


def to_uint8(images):
  """float images in [-1, 1] (any shape ..., H, W, 3) -> uint8 [0, 255], rounded and clipped."""
  images = np.asarray(images, np.float32)
  return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def make_grid(images, columns=None):
  """Tiles uint8 (N, H, W, C) images row-major into one (rows * H, columns * W, C) image."""
  images = np.asarray(images)
  n, h, w, c = images.shape
  columns = columns or int(math.ceil(math.sqrt(n)))
  rows = int(math.ceil(n / columns))
  grid = np.zeros((rows * h, columns * w, c), images.dtype)
  for i, im in enumerate(images):
    r, col = divmod(i, columns)
    grid[r * h:(r + 1) * h, col * w:(col + 1) * w] = im
  return grid


def save_png(path, image):
  """Writes a uint8 (H, W, 3) image as PNG atomically (no partial file on failure)."""
  files.atomic_write(path, lambda tmp: Image.fromarray(np.asarray(image)).save(tmp, format="PNG"))


def save_images_npz(path, images):
  """Writes uint8 NHWC images under key `images` atomically."""
  def write(tmp):
    with open(tmp, "wb") as f:
      np.savez(f, images=np.asarray(images, np.uint8))
  files.atomic_write(path, write)
