"""Statistics files (TTUR-compatible `.npz`: `mu`, `sigma`, plus metadata) and image inputs."""

import json
import zipfile

import numpy as np

from qagan_tf.metrics.fid import StatisticsError, check_statistics
from qagan_tf.utils import files, npz

LAYER = "pool_3"
PREPROCESSING = "ttur:uint8->float[0,255]->resize_bilinear(299,legacy)->(x-128)/128"


def save_statistics(path, mu, sigma, count, weights_sha256, source="", activations=None):
  """Writes mu, sigma (float64) and metadata atomically (a partial file is never left).

  `activations` (float32 (M, D), optional): a sample of the pool_3 activations kept for KID.
  """
  mu, sigma = check_statistics(mu, sigma, path)
  meta = {"count": int(count), "layer": LAYER, "preprocessing": PREPROCESSING,
          "weights_sha256": weights_sha256, "source": source}
  extra = {} if activations is None else {"activations": np.asarray(activations, np.float32)}
  files.atomic_write(path, lambda tmp: np.savez(
      tmp, mu=mu, sigma=sigma, count=np.int64(count), layer=LAYER, preprocessing=PREPROCESSING,
      weights_sha256=weights_sha256, source=source, **extra))
  return meta


def _read_npz(path):
  if not files.isfile(path):
    raise StatisticsError(f"{path}: no such file.")
  return npz.read_arrays(path, StatisticsError, "")


def is_statistics_file(path):
  """True for an .npz holding `mu` and `sigma` (TTUR statistics), False for other .npz files."""
  if not path.lower().endswith(".npz") or not files.isfile(path):
    return False
  try:
    with files.open_file(path, "rb") as f, np.load(f, allow_pickle=False) as data:
      return "mu" in data.files and "sigma" in data.files  # (Only the zip directory is read.)
  except (OSError, ValueError, zipfile.BadZipFile):
    return False


def load_statistics(path, dim=None):
  """Reads a statistics file (ours or TTUR's).

  Returns:
    {"mu", "sigma", "count", "layer", "preprocessing", "weights_sha256", "source",
    "activations"} (metadata and activations None when the file has none, as TTUR's).

  Raises:
    StatisticsError: unreadable file, missing mu/sigma, bad shapes, or dimension != dim.
  """
  arrays = _read_npz(path)
  if "mu" not in arrays or "sigma" not in arrays:
    raise StatisticsError(f"{path}: a statistics file needs arrays 'mu' and 'sigma' (found "
                          f"{', '.join(sorted(arrays)) or 'none'}); make one with "
                          "bin/compute_stats.")
  mu, sigma = check_statistics(arrays["mu"], arrays["sigma"], path)
  if dim is not None and mu.shape[0] != dim:
    raise StatisticsError(f"{path}: statistics of dimension {mu.shape[0]}, expected {dim} "
                          "(Inception pool_3).")
  meta = {k: (arrays[k].item() if k in arrays else None)
          for k in ("count", "layer", "preprocessing", "weights_sha256", "source")}
  activations = arrays.get("activations")
  if activations is not None and (activations.ndim != 2 or activations.shape[1] != mu.shape[0]):
    raise StatisticsError(f"{path}: 'activations' has shape {activations.shape}, expected "
                          f"(M, {mu.shape[0]}).")
  return {"mu": mu, "sigma": sigma, "activations": activations, **meta}


def describe(stats):
  return json.dumps({k: v for k, v in stats.items() if k not in ("mu", "sigma", "activations")})
