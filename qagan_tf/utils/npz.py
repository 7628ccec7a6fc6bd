"""Reading .npz files safely (never unpickling) with errors that name the file."""

import zipfile

import numpy as np


def read_arrays(path, error_class, what):
  """All arrays of an .npz as a dict.

  Raises:
    error_class: "<what> <path>: cannot be read as .npz (...)" for unreadable, non-zip or pickled
      content.
  """
  try:
    source = path
    if "://" in str(path) and not str(path).startswith("file://"):
      import io
      import tensorflow as tf
      with tf.io.gfile.GFile(path, "rb") as f:  # gs://, ram://, ...: np.load needs a local file.
        source = io.BytesIO(f.read())
    with np.load(source, allow_pickle=False) as data:
      return {k: data[k] for k in data.files}
  except (OSError, ValueError, zipfile.BadZipFile) as e:  # (tf.errors.OpError is no OSError.)
    raise error_class(f"{what}{path}: cannot be read as .npz ({e}).") from None
