"""Statistics files (TTUR-compatible `.npz`: `mu`, `sigma`, plus metadata) and image inputs."""

import json
import zipfile

import numpy as np

from qagan_tf.metrics.fid import StatisticsError, check_statistics
from qagan_tf.utils import files, npz

LAYER = "pool_3"
PREPROCESSING = "ttur:uint8->float[0,255]->resize_bilinear(299,legacy)->(x-128)/128"


# FID's covariance is full rank (2048 x 2048) only from this many images on.
FULL_RANK_COUNT = 2048


def save_statistics(path, mu, sigma, count, weights_sha256, source="", activations=None,
                    resolution=None, dataset=None):
  """Writes mu, sigma (float64) and metadata atomically (a partial file is never left).

  `activations` (float32 (M, D), optional): a sample of the pool_3 activations kept for KID.
  `resolution` (the images' side in pixels) and `dataset` (its name, when there is one) are
  recorded so that bin/evaluate and bin/fid can warn about a mismatched reference.
  """
  mu, sigma = check_statistics(mu, sigma, path)
  meta = {"count": int(count), "layer": LAYER, "preprocessing": PREPROCESSING,
          "weights_sha256": weights_sha256, "source": source}
  extra = {} if activations is None else {"activations": np.asarray(activations, np.float32)}
  if resolution is not None:
    meta["resolution"] = extra["resolution"] = int(resolution)
  if dataset:
    meta["dataset"] = extra["dataset"] = str(dataset)
  files.atomic_write(path, lambda tmp: np.savez(
      tmp, mu=mu, sigma=sigma, count=np.int64(count), layer=LAYER, preprocessing=PREPROCESSING,
      weights_sha256=weights_sha256, source=source, **extra))
  return meta


def file_sha256(path):
  """The sha256 of a file's bytes (the statistics a report was computed against)."""
  import hashlib
  digest = hashlib.sha256()
  with files.open_file(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def reference_warnings(stats, name, resolution=None, dataset=None, weights_sha256=None,
                       other="the run"):
  """One-line warnings about statistics `stats` (load_statistics' dict, called `name`) used
  against images of `resolution` px from `dataset` with Inception weights `weights_sha256`
  (None: not known): what differs, named with both values, and too few images for a full-rank
  covariance. A file that records no resolution gets a note."""
  out = []
  recorded = stats.get("resolution")
  if recorded is None:
    out.append(f"{name} records no resolution (made before bin/compute_stats recorded it, or "
               "by TTUR); check that it matches the images.")
  elif resolution is not None and int(recorded) != int(resolution):
    out.append(f"{name} are {int(recorded)} px, {other} is {int(resolution)} px; the FID "
               "compares different resolutions.")
  if dataset and stats.get("dataset") and stats["dataset"] != dataset:
    out.append(f"{name} are of dataset {stats['dataset']}, {other} is of {dataset}.")
  if weights_sha256 and stats.get("weights_sha256") and stats["weights_sha256"] != weights_sha256:
    out.append(f"{name} were computed with Inception weights {stats['weights_sha256'][:12]}, "
               f"{other} with {weights_sha256[:12]}; the FID is not comparable.")
  if stats.get("count") is not None and int(stats["count"]) < FULL_RANK_COUNT:
    out.append(f"{name} are of {int(stats['count'])} images, fewer than the "
               f"{FULL_RANK_COUNT} that FID's covariance needs to be full rank; the FID is "
               "biased (the protocols use 10K-50K).")
  return out


def _read_npz(path):
  if not files.isfile(path):
    raise StatisticsError(f"{path}: {files.not_a_file(path)}; give a statistics .npz "
                          "(bin/compute_stats writes one).")
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
          for k in ("count", "layer", "preprocessing", "weights_sha256", "source", "resolution",
                    "dataset")}
  activations = arrays.get("activations")
  if activations is not None and (activations.ndim != 2 or activations.shape[1] != mu.shape[0]):
    raise StatisticsError(f"{path}: 'activations' has shape {activations.shape}, expected "
                          f"(M, {mu.shape[0]}).")
  return {"mu": mu, "sigma": sigma, "activations": activations, **meta}


def describe(stats):
  return json.dumps({k: v for k, v in stats.items() if k not in ("mu", "sigma", "activations")})
