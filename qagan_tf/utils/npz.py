"""Reading .npz files safely (never unpickling) with errors that name the file."""

import io
import zipfile

import numpy as np

from qagan_tf.utils import files


def read_arrays(path, error_class, what):
  """All arrays of an .npz as a dict.

  Raises:
    error_class: "<what> <path>: cannot be read as .npz (...)" for unreadable, non-zip or pickled
      content.
  """
  try:
    source = path
    if files.is_remote(path):  # gs://, ram://, ...: read through tf.io.gfile.
      with files.open_file(path, "rb") as f:
        source = io.BytesIO(f.read())
    with np.load(source, allow_pickle=False) as data:
      return {k: data[k] for k in data.files}
  except (OSError, ValueError, zipfile.BadZipFile) as e:  # (tf.errors.OpError is no OSError.)
    raise error_class(f"{what}{path}: cannot be read as .npz ({e}).") from None
