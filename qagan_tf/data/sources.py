"""Image sources: each returns the whole training set as uint8 NHWC numpy at the model resolution."""

import contextlib
import dataclasses
import os
import warnings
import zipfile

import numpy as np
from absl import logging
from PIL import Image

from qagan_tf.utils import files

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
# Resizing by more than this factor (either way) is logged: usually a wrong --resolution.
RESIZE_WARNING_FACTOR = 2.0



@dataclasses.dataclass(frozen=True)
class Dataset:
  """One named training set: its TFDS split, the resolutions it trains at (the first is its
  native one) and how its images are prepared."""
  split: str
  resolutions: tuple
  preprocessing: str


# The one table of named datasets (bin/train, bin/fit_niqe_prior, bin/compute_stats, the loaders
# and the help texts read it). "embedded" needs no download: crops of scikit-image's photographs.
DATASETS = {
    "cifar10": Dataset("train", (32,), "as stored (32x32)"),
    "stl10": Dataset("unlabelled", (48, 96), "96x96 as stored; 48 px by antialiased bicubic"),
    "celeb_a": Dataset("train", (64,), "aligned 218x178, centre 108x108 crop, bicubic to 64"),
    "embedded": Dataset("", (32, 48, 64, 96), "deterministic random crops of photographs"),
}
TFDS_SOURCES = tuple(name for name, d in DATASETS.items() if d.split)
PATH_FORMS = ("folder:PATH", "npz:PATH")
# Natural RGB photographs that scikit-image ships inside its wheel (no download needed).
_EMBEDDED_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
                    "immunohistochemistry", "retina")


class DataError(ValueError):
  """A dataset argument or file that cannot be used; the message names it and the fix."""


def check_dataset_name(dataset):
  """Raises DataError unless `dataset` has one of the accepted forms (no file access)."""
  ok = isinstance(dataset, str) and (
      dataset in DATASETS
      or (dataset.startswith(("npz:", "folder:")) and dataset.split(":", 1)[1]))
  if not ok:
    raise DataError(f"Unknown dataset {dataset!r}; use one of {', '.join(dataset_names())}.")
  return dataset


def dataset_names():
  """The accepted forms of the `dataset` argument, for help texts and errors."""
  return TFDS_SOURCES + PATH_FORMS + tuple(n for n in DATASETS if n not in TFDS_SOURCES)


def native_resolution(dataset):
  """The resolution a named dataset trains at by default (None for folder:/npz: sources)."""
  return DATASETS[dataset].resolutions[0] if dataset in DATASETS else None


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


def warn_if_batch_exceeds(num_images, batch_size, where):
  """Logs a warning with the numbers when one batch needs more images than the dataset has
  (every batch then repeats images). Returns True when it warned."""
  if batch_size > num_images:
    logging.warning("%s has %d image(s) but --batch_size=%d: every batch repeats images; use "
                    "--batch_size=%d or fewer, or more data.", where, num_images, batch_size,
                    num_images)
    return True
  return False


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
  if count >= EMBEDDED_LOG_COUNT:  # About 0.6 ms a crop: 100K take a minute.
    logging.info("Making %d embedded %d-px crops (about %d s) ...", count, resolution,
                 max(1, round(count * 6e-4)))
  for i in range(count):
    photo = photos[rng.integers(len(photos))]
    h, w = photo.shape[:2]
    side = int(rng.integers(min(h, w) // 8, min(h, w) // 2 + 1))
    top = int(rng.integers(0, h - side + 1))
    left = int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(photo[top:top + side, left:left + side])
    out[i] = np.asarray(crop.resize((resolution, resolution), Image.BICUBIC))
  return out


EMBEDDED_LOG_COUNT = 10_000


def _check_images(images, where, resolution):
  if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.shape[0] == 0:
    raise DataError(f"{where}: expected uint8 images shaped (N, H, W, 3) with N >= 1, got "
                    f"shape {images.shape}.")
  if images.dtype != np.uint8:
    raise DataError(f"{where}: expected dtype uint8 (pixels 0..255), got {images.dtype}; "
                    f"{_uint8_fix(images)}")
  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  if resolution is not None and images.shape[1:3] != (resolution, resolution):
    _warn_resize(where, images.shape[1:3], resolution)
    images = np.stack([_resize(im, resolution) for im in images])
  return images


def _uint8_fix(images):
  """The conversion to uint8 that keeps the picture, from the array's dtype and value range
  (a NaN or Inf first: a conversion would silently make it a pixel value)."""
  if np.issubdtype(images.dtype, np.floating):
    bad = int(np.sum(~np.isfinite(images)))
    if bad:
      return (f"it holds {bad} NaN or Inf value(s), which no conversion keeps (np.round "
              "and astype would make them pixel values): replace or drop those images first "
              "(e.g. x[np.isfinite(x).all(axis=(1, 2, 3))]).")
    lo, hi = float(np.nanmin(images)), float(np.nanmax(images))
    rng = f"values in [{lo:.3g}, {hi:.3g}]"
    if lo >= 0.0 and hi <= 1.0:
      return (f"{rng}, so pixels in [0, 1]: convert with "
              "np.round(np.clip(x, 0, 1) * 255).astype(np.uint8).")
    if lo >= -1.0 and hi <= 1.0:
      return (f"{rng}, so pixels in [-1, 1]: convert with "
              "np.round((np.clip(x, -1, 1) + 1) * 127.5).astype(np.uint8).")
    if lo >= 0.0 and hi <= 255.0:
      return f"{rng}: convert with np.round(x).astype(np.uint8)."
    return (f"{rng}, not a known pixel range ([0, 1], [-1, 1] or [0, 255]): rescale to 0..255 "
            "first, then np.round(x).astype(np.uint8).")
  if images.dtype == np.uint16:
    return ("16-bit pixels: convert with np.round(x / 257).astype(np.uint8) "
            "(0..65535 -> 0..255).")
  if np.issubdtype(images.dtype, np.integer):
    lo, hi = int(images.min()), int(images.max())
    if lo >= 0 and hi <= 255:
      return f"values in [{lo}, {hi}]: convert with x.astype(np.uint8)."
    return f"values in [{lo}, {hi}]: rescale to 0..255, then x.astype(np.uint8)."
  return "save the images as uint8 (0..255)."


def _warn_resize(where, size, resolution):
  h, w = int(size[0]), int(size[1])
  factor = max(resolution / min(h, w), max(h, w) / resolution)
  if factor > RESIZE_WARNING_FACTOR:
    logging.warning("%s: images are %dx%d, resized to %dx%d (%.1fx %s); check --resolution.",
                    where, w, h, resolution, resolution, factor,
                    "up" if resolution > min(h, w) else "down")


def _resize(image, resolution):
  """Resizes one uint8 HxWx3 image to resolution x resolution (bicubic, antialiased)."""
  if resolution is None or image.shape[:2] == (resolution, resolution):
    return image
  return np.asarray(Image.fromarray(image).resize((resolution, resolution), Image.BICUBIC))


def _load_npz(path, resolution):
  where = f"npz:{path}"
  if not os.path.isfile(path):
    raise DataError(f"{where}: {files.not_a_file(path)}; give the path of an .npz with uint8 "
                    "NHWC images under the key 'images'.")
  if not zipfile.is_zipfile(path):
    with open(path, "rb") as f:
      started = f.read(4) == b"PK\x03\x04"  # A zip's first entry, without its directory.
    if started:
      raise DataError(f"{where}: cannot be read: a truncated or damaged .npz (its zip archive "
                      "ends early, e.g. a copy or a write that was cut off); write it again (bin/"
                      "compute_stats for statistics, np.savez(path, images=...) for images).")
    raise DataError(f"{where}: cannot be read: not an .npz file (an .npz is a zip archive of "
                    "arrays); save the images with np.savez(path, images=uint8_nhwc_array).")
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
    if os.path.exists(path):
      raise DataError(f"{where}: is a file, not a directory; give the folder that holds the "
                      "images (or npz:PATH for an .npz of images).")
    raise DataError(f"{where}: no such directory.")
  files = sorted(image_files(path))
  if not files:
    raise DataError(f"{where}: no {'/'.join(IMAGE_EXTENSIONS)} files found (searched "
                    "recursively).")
  images = []
  for f in files:
    image = read_image(f, where)
    if not images and resolution is not None and image.shape[:2] != (resolution, resolution):
      _warn_resize(where, image.shape[:2], resolution)
    images.append(_resize(image, resolution))
    if images[-1].shape != images[0].shape:
      raise DataError(f"{where}: mixed image sizes ({files[0]} is {images[0].shape[1]}x"
                      f"{images[0].shape[0]}, {f} is {images[-1].shape[1]}x"
                      f"{images[-1].shape[0]}); give a folder of equally sized images.")
  return np.stack(images)


def image_files(path):
  """Image files under a folder, recursively; symlinked folders are followed, each real folder
  once (a link loop is not followed twice)."""
  seen = set()
  for root, dirs, names in os.walk(path, followlinks=True):
    real = os.path.realpath(root)
    if real in seen:
      dirs[:] = []
      continue
    seen.add(real)
    for name in names:
      if name.lower().endswith(IMAGE_EXTENSIONS):
        yield os.path.join(root, name)


def read_image(path, where=None, keep_gray=False):
  """One image file as uint8 (H, W, 3): 8-bit as is, 16-bit (PNG/TIFF grayscale or RGB)
  scaled to 8 bits by /257 and rounded (0..65535 -> 0..255, exact for x * 257), palettes and
  alpha converted by PIL. A decompression-bomb-sized image is logged in one line naming it.
  With keep_gray, a grayscale file (8- or 16-bit) is returned as uint8 (H, W) (bin/niqe: the
  metric reads luminance from gray pixels as they are).

  Raises:
    DataError: naming the file, when it cannot be decoded or its pixels have no known scale.
  """
  where = f"{where}: " if where else ""
  try:
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always", Image.DecompressionBombWarning)
      with Image.open(path) as im:
        im.load()
        image = _to_rgb8(im, path, where)
        if keep_gray and (im.mode in ("L", "I") or im.mode.startswith("I;16")):
          image = image[..., 0]
    for w in caught:
      if issubclass(w.category, Image.DecompressionBombWarning):
        logging.warning("%s%s is very large (%s); loading it takes a lot of memory.", where,
                        path, w.message)
  except Image.DecompressionBombError as e:
    raise DataError(f"{where}cannot load image {path}: {e}; downscale it first.") from None
  except (OSError, ValueError, SyntaxError) as e:
    if isinstance(e, DataError):
      raise
    raise DataError(f"{where}cannot decode image {path} ({e}); remove or replace it.") from None
  return image


def _to_rgb8(im, path, where):
  mode = im.mode
  if mode.startswith("I;16") or mode == "I":
    a = np.asarray(im).astype(np.float64)
    if a.min() < 0 or a.max() > 65535:
      raise DataError(f"{where}image {path} has {mode} pixels outside 0..65535; save it as "
                      "8- or 16-bit.")
    a = np.clip(np.round(a / 257.0), 0, 255).astype(np.uint8)
    return np.repeat(a[..., None], 3, axis=-1)
  if mode == "F":
    raise DataError(f"{where}image {path} has floating-point pixels (mode F) of unknown scale; "
                    "save it as an 8- or 16-bit PNG.")
  if mode in ("RGB;16", "RGBA;16", "RGB;16B"):  # Not produced by current PIL; kept explicit.
    raise DataError(f"{where}image {path} has mode {mode}; save it as an 8-bit PNG.")
  return np.asarray(im.convert("RGB"))


def _tfds_image_fn(name, resolution):
  """Returns (split, fn: uint8 image tensor -> uint8 (resolution, resolution, 3))."""
  import tensorflow as tf

  def resize(image):
    image = tf.image.resize(tf.cast(image, tf.float32), [resolution, resolution],
                            method="bicubic", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)

  entry = DATASETS[name]
  if resolution not in entry.resolutions:
    raise DataError(f"dataset={name} trains at {' or '.join(map(str, entry.resolutions))} px; "
                    f"got resolution={resolution}.")
  if name == "celeb_a":
    def celeb_a(image):  # Aligned 218x178 -> centre 108x108 -> 64x64, as the authors.
      top = (tf.shape(image)[0] - 108) // 2
      left = (tf.shape(image)[1] - 108) // 2
      return resize(image[top:top + 108, left:left + 108])
    return entry.split, celeb_a
  native = entry.resolutions[-1] if name == "stl10" else entry.resolutions[0]
  return entry.split, (lambda im: im) if resolution == native else resize


# Where TFDS downloads the supported datasets from (its GCS mirror first); $QAGAN_TFDS_HOST
# (host:port) replaces it (tests: a name that never resolves, as offline).
DOWNLOAD_HOSTS = (("storage.googleapis.com", 443),)


def _download_hosts():
  override = os.environ.get("QAGAN_TFDS_HOST")
  if override:
    host, _, port = override.rpartition(":")
    return ((host, int(port)),)
  return DOWNLOAD_HOSTS


@contextlib.contextmanager
def _tfds_quiet():
  """TFDS warns of half-made folders while it looks for a prepared dataset: not our error."""
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    yield
  finally:
    logging.set_verbosity(verbosity)


def _check_reachable_before_download(name, data_dir, timeout=3.0):
  """Raises DataError within seconds when a dataset is not prepared here and its download host
  cannot be reached: offline, TFDS retries DNS for minutes before it gives up."""
  import socket
  import tensorflow_datasets as tfds
  try:
    with _tfds_quiet():
      if tfds.builder(name, data_dir=data_dir).is_prepared():
        return
  except Exception:  # noqa: BLE001 - an unknown builder state: let tfds.load say what it is.
    return
  hosts = _download_hosts()
  for host, port in hosts:
    try:
      socket.create_connection((host, port), timeout=timeout).close()
      return
    except OSError as e:
      reason = str(e) or type(e).__name__
  where = data_dir or "~/tensorflow_datasets"
  raise DataError(
      f"dataset={name} is not in {where} and its download host {hosts[0][0]} cannot be "
      f"reached ({reason}): prepare it where the network is (tfds build {name}) and pass "
      f"--data_dir=THAT_FOLDER, or use --dataset=embedded, folder:PATH or npz:PATH; "
      f"--nodownload fails at once instead of trying.")


def _load_tfds(name, resolution, data_dir, num_examples, download):
  import tensorflow as tf
  import tensorflow_datasets as tfds
  split, fn = _tfds_image_fn(name, resolution)
  if num_examples:
    split = f"{split}[:{num_examples}]"
  try:
    try:  # What is here already (or what a test mocks) needs no network.
      with _tfds_quiet():
        ds = tfds.load(name, split=split, data_dir=data_dir, shuffle_files=False,
                       download=False)
    except Exception:  # noqa: BLE001 - not prepared here: download it, if we may and can.
      if not download:
        raise
      _check_reachable_before_download(name, data_dir)
      ds = tfds.load(name, split=split, data_dir=data_dir, shuffle_files=False, download=True)
  except DataError:
    raise
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
