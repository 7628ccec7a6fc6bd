"""Pristine NIQE models (mean and covariance of the block features): loading and validation."""

import dataclasses
import functools
import os
import zipfile

import numpy as np

_DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
NATURAL_MODEL_PATH = os.path.join(_DATA_DIR, "niqe_natural.npz")
_MU_KEYS = ("mu", "mu_prisparam")
_COV_KEYS = ("cov", "sigma", "cov_prisparam")


class ModelError(ValueError):
  """A NIQE model file that cannot be used; the message names it and the problem."""


@dataclasses.dataclass(frozen=True)
class NiqeModel:
  """A multivariate Gaussian of NIQE features: mu float64 (D,), cov float64 (D, D)."""
  mu: np.ndarray
  cov: np.ndarray
  source: str = ""

  def __post_init__(self):
    validate(self.mu, self.cov, self.source or "NIQE model")


def validate(mu, cov, where, require_positive_definite=False):
  """Checks shapes, finiteness and symmetry (and optionally positive definiteness).

  Raises:
    ModelError: naming `where` and what is wrong.
  """
  mu, cov = np.asarray(mu), np.asarray(cov)
  if mu.ndim != 1 or cov.shape != (mu.shape[0], mu.shape[0]):
    raise ModelError(f"{where}: expected a mean of shape (D,) and a covariance of shape (D, D), "
                     f"got {mu.shape} and {cov.shape}.")
  if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(cov))):
    raise ModelError(f"{where}: the mean or covariance contains NaN or Inf.")
  scale = max(np.abs(cov).max(), 1e-300)
  if np.abs(cov - cov.T).max() > 1e-6 * scale:
    raise ModelError(f"{where}: the covariance is not symmetric (max |C - C^T| = "
                     f"{np.abs(cov - cov.T).max():.3g}); re-fit the model or symmetrise it "
                     "with (C + C^T) / 2.")
  if require_positive_definite:
    smallest = np.linalg.eigvalsh(0.5 * (cov + cov.T)).min()
    if smallest <= 0:
      raise ModelError(f"{where}: the covariance is not positive definite (smallest eigenvalue "
                       f"{smallest:.3g}); re-fit it on more images or add a ridge.")


def read_arrays(path):
  """The arrays of a model file: MATLAB .mat (scipy; its __header__ keys dropped) or .npz (never
  unpickled).

  Raises:
    ModelError: for a missing or unreadable file.
  """
  if not os.path.isfile(path):
    from qagan_tf.utils import files
    raise ModelError(f"NIQE model {path}: {files.not_a_file(path)}.")
  try:
    if path.lower().endswith(".mat"):
      import scipy.io
      return {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    with np.load(path, allow_pickle=False) as data:
      return {k: data[k] for k in data.files}
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    raise ModelError(f"NIQE model {path}: cannot be read ({e}).") from None


def model_from_arrays(arrays, path, require_positive_definite=False):
  """The `NiqeModel` in a file's arrays (`read_arrays`): `mu` and `cov` (or `sigma`), or the
  MATLAB names mu_prisparam and cov_prisparam.

  Raises:
    ModelError: for missing arrays or an invalid covariance.
  """
  mu_key = next((k for k in _MU_KEYS if k in arrays), None)
  cov_key = next((k for k in _COV_KEYS if k in arrays), None)
  if mu_key is None or cov_key is None:
    raise ModelError(f"NIQE model {path}: expected arrays mu_prisparam and cov_prisparam (or mu "
                     f"and cov); found {', '.join(sorted(arrays)) or 'none'}.")
  mu = np.asarray(arrays[mu_key], np.float64).reshape(-1)
  cov = np.asarray(arrays[cov_key], np.float64)
  validate(mu, cov, f"NIQE model {path}", require_positive_definite)
  return NiqeModel(mu, cov, source=path)


def load_model(path, require_positive_definite=False):
  """Loads a pristine model from MATLAB .mat (mu_prisparam, cov_prisparam) or .npz.

  .npz keys: `mu` and `cov` (or `sigma`), or the MATLAB names. Never unpickles.

  Raises:
    ModelError: for a missing/unreadable file, missing arrays or an invalid covariance.
  """
  return model_from_arrays(read_arrays(path), path, require_positive_definite)


@functools.lru_cache(maxsize=1)
def natural_model():
  """The classic NIQE natural-image model (MATLAB release's modelparameters.mat), 36 features."""
  return load_model(NATURAL_MODEL_PATH)
