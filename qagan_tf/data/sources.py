"""Image sources: each returns the whole training set as uint8 NHWC numpy at the model resolution."""

import os
import zipfile

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
TFDS_SOURCES = ("cifar10", "stl10", "celeb_a")
# Natural RGB photographs that scikit-image ships inside its wheel (no download needed).
_EMBEDDED_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
                    "immunohistochemistry", "retina")


class DataError(ValueError):
  """A dataset argument or file that cannot be used; the message names it and the fix."""


def check_dataset_name(dataset):
  """Raises DataError unless `dataset` has one of the accepted forms (no file access)."""
  ok = isinstance(dataset, str) and (
      dataset in TFDS_SOURCES + ("embedded",)
      or (dataset.startswith(("npz:", "folder:")) and dataset.split(":", 1)[1]))
  if not ok:
    raise DataError(f"Unknown dataset {dataset!r}; use one of {', '.join(dataset_names())}.")
  return dataset


def dataset_names():
  """The accepted forms of the `dataset` argument, for help texts and errors."""
  return ("cifar10", "stl10", "celeb_a", "folder:PATH", "npz:PATH", "embedded")


def load_images(dataset, resolution, data_dir=None, num_examples=0, seed=0, download=True):
  """Loads a training set.

  Args:
    dataset: "cifar10" (train split, 32 px), "stl10" (unlabelled split, 48 or 96 px),
      "celeb_a" (train split, centre crop 108 of the aligned images, 64 px), "folder:PATH"
      (PNG/JPEG files found recursively), "npz:PATH" (uint8 NHWC under key `images`) or
      "embedded" (deterministic random crops of photographs bundled with scikit-image).
    resolution: output height = width in pixels.
    data_dir: TFDS data directory (None: TFDS default, ~/tensorflow_datasets).
    num_examples: keep only the first N images (0: all; for "embedded", how many crops, default
      4096).
    seed: seed of the embedded crops.
    download: let TFDS download and prepare a missing dataset (False: fail at once).

  Returns:
    uint8 numpy array (N, resolution, resolution, 3), N >= 1.

  Raises:
    DataError: for an unknown name, a missing/empty/corrupt source or incompatible images.
  """
  check_dataset_name(dataset)
  if dataset == "embedded":
    images = embedded_images(resolution, num_examples or 4096, seed)
  elif dataset.startswith("npz:"):
    images = _load_npz(dataset[4:], resolution)
  elif dataset.startswith("folder:"):
    images = _load_folder(dataset[7:], resolution)
  else:
    images = _load_tfds(dataset, resolution, data_dir, num_examples, download)
  if num_examples:
    images = images[:num_examples]
  return images


def load_image_set(path):
  """Images for evaluation, at their own size: an .npz (uint8 NHWC under `images`) or a folder of
  PNG/JPEG files (all the same size, found recursively).

  Returns:
    uint8 numpy array (N, H, W, 3).

  Raises:
    DataError: missing/empty/corrupt input, wrong dtype or shape, mixed sizes.
  """
  if os.path.isdir(path):
    return _load_folder(path, None)
  if path.lower().endswith(".npz"):
    return _load_npz(path, None)
  if not os.path.exists(path):
    raise DataError(f"{path}: no such file or directory.")
  raise DataError(f"{path}: give an .npz of uint8 NHWC images (key 'images') or a folder of "
                  "PNG/JPEG images.")


def embedded_images(resolution, count, seed=0):
  """Deterministic random square crops of scikit-image's bundled photographs.

  Crops have a random side between 1/8 and 1/2 of the shorter image side, a random position and a
  random source image; each is resized with PIL's antialiasing bicubic filter.

  Returns:
    uint8 numpy array (count, resolution, resolution, 3).
  """
  import skimage.data  # Imported lazily: only the embedded source needs it.
  photos = [np.asarray(getattr(skimage.data, name)())[..., :3] for name in _EMBEDDED_IMAGES]
  rng = np.random.default_rng(seed)
  out = np.empty((count, resolution, resolution, 3), np.uint8)
  for i in range(count):
    photo = photos[rng.integers(len(photos))]
    h, w = photo.shape[:2]
    side = int(rng.integers(min(h, w) // 8, min(h, w) // 2 + 1))
    top = int(rng.integers(0, h - side + 1))
    left = int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(photo[top:top + side, left:left + side])
    out[i] = np.asarray(crop.resize((resolution, resolution), Image.BICUBIC))
  return out


def _check_images(images, where, resolution):
  if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.shape[0] == 0:
    raise DataError(f"{where}: expected uint8 images shaped (N, H, W, 3) with N >= 1, got "
                    f"shape {images.shape}.")
  if images.dtype != np.uint8:
    raise DataError(f"{where}: expected dtype uint8 (pixels 0..255), got {images.dtype}; "
                    "convert with np.clip(x, 0, 255).astype(np.uint8).")
  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  if resolution is not None and images.shape[1:3] != (resolution, resolution):
    images = np.stack([_resize(im, resolution) for im in images])
  return images


def _resize(image, resolution):
  """Resizes one uint8 HxWx3 image to resolution x resolution (bicubic, antialiased)."""
  if resolution is None or image.shape[:2] == (resolution, resolution):
    return image
  return np.asarray(Image.fromarray(image).resize((resolution, resolution), Image.BICUBIC))


def _load_npz(path, resolution):
  where = f"npz:{path}"
  if not os.path.isfile(path):
    raise DataError(f"{where}: no such file; give the path of an .npz with uint8 NHWC images "
                    "under the key 'images'.")
  try:
    with np.load(path, allow_pickle=False) as data:
      if "images" not in data.files:
        raise DataError(f"{where}: has no array 'images' (keys: {', '.join(data.files) or 'none'}"
                        "); save with np.savez(path, images=uint8_nhwc_array).")
      images = data["images"]
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    if isinstance(e, DataError):
      raise
    raise DataError(f"{where}: cannot be read as .npz ({e}).") from None
  return _check_images(images, where, resolution)


def _load_folder(path, resolution):
  where = f"folder:{path}"
  if not os.path.isdir(path):
    raise DataError(f"{where}: no such directory.")
  files = sorted(os.path.join(root, name)
                 for root, _, names in os.walk(path) for name in names
                 if name.lower().endswith(IMAGE_EXTENSIONS))
  if not files:
    raise DataError(f"{where}: no {'/'.join(IMAGE_EXTENSIONS)} files found (searched "
                    "recursively).")
  images = []
  for f in files:
    try:
      with Image.open(f) as im:
        images.append(_resize(np.asarray(im.convert("RGB")), resolution))
    except (OSError, ValueError) as e:
      raise DataError(f"{where}: cannot decode image {f} ({e}); remove or replace it.") from None
    if images[-1].shape != images[0].shape:
      raise DataError(f"{where}: mixed image sizes ({files[0]} is {images[0].shape[1]}x"
                      f"{images[0].shape[0]}, {f} is {images[-1].shape[1]}x"
                      f"{images[-1].shape[0]}); give a folder of equally sized images.")
  return np.stack(images)


def _tfds_image_fn(name, resolution):
  """Returns (split, fn: uint8 image tensor -> uint8 (resolution, resolution, 3))."""
  import tensorflow as tf

  def resize(image):
    image = tf.image.resize(tf.cast(image, tf.float32), [resolution, resolution],
                            method="bicubic", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)

  if name == "cifar10":
    if resolution != 32:
      raise DataError(f"dataset=cifar10 is 32x32; got resolution={resolution} (use 32).")
    return "train", lambda im: im
  if name == "stl10":
    if resolution not in (48, 96):
      raise DataError(f"dataset=stl10 trains at 48 or 96 px; got resolution={resolution}.")
    return "unlabelled", (lambda im: im) if resolution == 96 else resize
  if resolution != 64:
    raise DataError(f"dataset=celeb_a trains at 64 px; got resolution={resolution}.")

  def celeb_a(image):  # Aligned 218x178 -> centre 108x108 -> 64x64, as the authors.
    top = (tf.shape(image)[0] - 108) // 2
    left = (tf.shape(image)[1] - 108) // 2
    return resize(image[top:top + 108, left:left + 108])
  return "train", celeb_a


def _load_tfds(name, resolution, data_dir, num_examples, download):
  import tensorflow as tf
  import tensorflow_datasets as tfds
  split, fn = _tfds_image_fn(name, resolution)
  if num_examples:
    split = f"{split}[:{num_examples}]"
  try:
    ds = tfds.load(name, split=split, data_dir=data_dir, shuffle_files=False,
                   download=download)
  except Exception as e:  # TFDS raises many types (download errors, missing files, ...).
    raise DataError(
        f"dataset={name}: TFDS could not load split {split!r} ({type(e).__name__}: {e}). "
        f"Download it once with `tfds build {name}` (or python -c \"import tensorflow_datasets "
        f"as tfds; tfds.load('{name}')\") on a machine with network, and pass --data_dir if "
        "it is not in ~/tensorflow_datasets.") from None
  ds = ds.map(lambda ex: fn(ex["image"]), num_parallel_calls=tf.data.AUTOTUNE).batch(1024)
  batches = [b.numpy() for b in ds]
  if not batches:
    raise DataError(f"dataset={name}: split {split!r} is empty.")
  return np.concatenate(batches)
