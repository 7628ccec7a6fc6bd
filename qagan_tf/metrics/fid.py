"""Fréchet Inception Distance from activations or their statistics, in float64 as TTUR's fid.py.

FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2)), covariances normalised by N - 1.
"""

import threading
import warnings

import numpy as np
import scipy.linalg


class StatisticsError(ValueError):
  """Activations or statistics that cannot give a FID; the message says which and why."""


def _check_activations(activations, name="activations"):
  a = np.asarray(activations)
  if a.ndim != 2:
    raise StatisticsError(f"{name}: expected a 2-D (N, D) array, got shape {a.shape}.")
  if a.shape[0] < 2:
    raise StatisticsError(f"{name}: {a.shape[0]} sample(s); a covariance needs at least 2 "
                          "(FID protocols use 10K-50K).")
  if not np.all(np.isfinite(a)):
    raise StatisticsError(f"{name}: contains NaN or Inf.")
  return a


def activation_statistics(activations):
  """(mu, sigma) in float64 of (N, D) activations, sigma normalised by N - 1 (np.cov)."""
  a = _check_activations(activations).astype(np.float64)
  return a.mean(axis=0), np.cov(a, rowvar=False)


class StreamingStatistics:
  """Accumulates float64 sums of activations batch by batch: mean and covariance at the end
  without holding all N x D activations (50K x 2048 float32 would be 400 MB)."""

  def __init__(self, dim):
    self.dim = dim
    self.count = 0
    self._sum = np.zeros(dim, np.float64)
    self._outer = np.zeros((dim, dim), np.float64)
    self._shift = None  # The first batch's mean: summing around it keeps the sums well scaled.

  def update(self, activations):
    a = np.asarray(activations, np.float64)
    if a.ndim != 2 or a.shape[1] != self.dim:
      raise StatisticsError(f"Expected activations of shape (N, {self.dim}), got {a.shape}.")
    if not np.all(np.isfinite(a)):
      raise StatisticsError("Activations contain NaN or Inf.")
    if len(a) == 0:
      return
    if self._shift is None:
      self._shift = a.mean(axis=0)
    centred = a - self._shift
    self.count += len(a)
    self._sum += centred.sum(axis=0)
    self._outer += centred.T @ centred

  def result(self):
    """(mu, sigma) equal to `activation_statistics` of everything seen."""
    if self.count < 2:
      raise StatisticsError(f"{self.count} sample(s) seen; a covariance needs at least 2.")
    mean_c = self._sum / self.count
    sigma = (self._outer - self.count * np.outer(mean_c, mean_c)) / (self.count - 1)
    return self._shift + mean_c, 0.5 * (sigma + sigma.T)


def check_statistics(mu, sigma, name="statistics"):
  """Validates one (mu, sigma) pair; returns float64 copies."""
  mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
  if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
    raise StatisticsError(f"{name}: expected mu of shape (D,) and sigma of shape (D, D), got "
                          f"{mu.shape} and {sigma.shape}.")
  if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
    raise StatisticsError(f"{name}: mu or sigma contains NaN or Inf.")
  return mu, sigma


def _interruptible(fn, *args):
  """fn(*args) in a worker thread while the main thread waits in Python: a sqrtm of 2048 x 2048
  matrices otherwise holds the main thread, and Ctrl-C is answered only after it."""
  if threading.current_thread() is not threading.main_thread():
    return fn(*args)
  result = {}

  def work():
    try:
      result["value"] = fn(*args)
    except BaseException as e:  # Re-raised in the caller's thread.
      result["error"] = e

  worker = threading.Thread(target=work, daemon=True)
  worker.start()
  while worker.is_alive():
    worker.join(0.2)
  if "error" in result:
    raise result["error"]
  return result["value"]


def _sqrtm(matrix):
  with warnings.catch_warnings():
    # Singular with fewer samples than dimensions: the callers warn once, in words, about the
    # sample count (stats_io.reference_warnings), instead of SciPy's LinAlgWarning.
    warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
    return _interruptible(scipy.linalg.sqrtm, matrix)


def trace_sqrt_product(sigma1, sigma2, method="sqrtm"):
  """tr(sqrtm(sigma1 @ sigma2)) for covariance matrices.

  Args:
    method: "sqrtm" (TTUR: scipy.linalg.sqrtm of the product; the real part, after checking that
      the imaginary part is negligible) or "eigen" (TF-GAN: the eigenvalues of
      sqrt(S1) S2 sqrt(S1), which is symmetric positive semi-definite).
  """
  if method == "sqrtm":
    covmean = _sqrtm(sigma1 @ sigma2)
    if not np.all(np.isfinite(covmean)):
      # Singular product (fewer samples than dimensions): TTUR's remedy, a tiny ridge.
      offset = np.eye(sigma1.shape[0]) * 1e-6
      covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
      imag = np.max(np.abs(np.diagonal(covmean).imag))
      if imag > 1e-3:
        raise StatisticsError(f"sqrtm(S1 S2) has a large imaginary part ({imag:.3g}); the "
                              "covariances are not valid (too few samples?).")
      covmean = covmean.real
    return float(np.trace(covmean))
  if method == "eigen":
    w, v = np.linalg.eigh(sigma1)
    sqrt1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = sqrt1 @ sigma2 @ sqrt1
    return float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (inner + inner.T)), 0, None))))
  raise ValueError(f"method={method!r}: use 'sqrtm' or 'eigen'.")


def trace_sqrt_product_with_activations(activations1, sigma2):
  """tr(sqrtm(S1 S2)) where S1 is the covariance (N - 1) of the (N, D) `activations1`, exactly:
  with Y the centred activations, S1 S2 = Y'Y S2 / (N - 1) has the non-zero eigenvalues of
  Y S2 Y' / (N - 1), an (N, N) symmetric positive semi-definite matrix. For N <= D this is an
  (N, N) eigenproblem instead of a (D, D) matrix square root (12 s at D = 2048 on 2 cores), and
  needs no ridge for the singular S1 of fewer samples than dimensions (TTUR's sqrtm agrees to
  its rounding: tests/metrics/test_scores.py)."""
  y = np.asarray(activations1, np.float64)
  y = y - y.mean(axis=0)
  inner = y @ sigma2 @ y.T / (len(y) - 1)
  eigenvalues = np.linalg.eigvalsh(0.5 * (inner + inner.T))
  return float(np.sum(np.sqrt(np.clip(eigenvalues, 0, None))))


def frechet_distance(mu1, sigma1, mu2, sigma2, method="sqrtm", activations1=None):
  """FID between two Gaussians (float64), clamped at 0.

  The distance is >= 0 in exact arithmetic; for (nearly) identical statistics the rounding of
  the matrix square root of two 2048x2048 matrices leaves about -1e-4, which is reported as 0.

  Args:
    method: of `trace_sqrt_product`.
    activations1: optionally, the (N, D) activations that mu1 and sigma1 were computed from.
      With N <= D (a singular sigma1: an in-training evaluation of a few hundred samples) the
      trace term is computed exactly from them (`trace_sqrt_product_with_activations`) instead
      of `method`'s (D, D) matrix square root; with N > D they are not used.

  Raises:
    StatisticsError: for shapes that differ or non-finite values.
    ValueError: for activations1 whose mean is not mu1.
  """
  mu1, sigma1 = check_statistics(mu1, sigma1, "first statistics")
  mu2, sigma2 = check_statistics(mu2, sigma2, "second statistics")
  if mu1.shape != mu2.shape:
    raise StatisticsError(f"The statistics have different dimensions ({mu1.shape[0]} vs "
                          f"{mu2.shape[0]}); both must come from the same layer (pool_3: 2048).")
  diff = mu1 - mu2
  if activations1 is not None and len(activations1) <= mu1.shape[0]:
    activations1 = np.asarray(activations1, np.float64)
    if activations1.shape[1:] != mu1.shape or not np.allclose(
        activations1.mean(axis=0), mu1, rtol=1e-5, atol=1e-6):
      raise ValueError("activations1 are not the activations of mu1 (their shape or mean "
                       "differs): pass all the activations the statistics were computed from.")
    trace = trace_sqrt_product_with_activations(activations1, sigma2)
  else:
    trace = trace_sqrt_product(sigma1, sigma2, method)
  return max(0.0, float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace))


def trace_sqrt_product_of_activations(activations1, activations2):
  """tr(sqrtm(S1 S2)) of the covariances (N - 1) of two sets of activations, exactly, through
  their centred data: with S1 = X'X / (n1 - 1) and S2 = Y'Y / (n2 - 1), the non-zero
  eigenvalues of S1 S2 are the squared singular values of X Y' over (n1 - 1)(n2 - 1), so the
  trace is the nuclear norm of X Y' / sqrt((n1 - 1)(n2 - 1)). An (n1, n2) SVD instead of a
  (D, D) matrix square root: milliseconds instead of a minute for a few hundred samples, and
  no ridge for the rank-deficient covariances of fewer samples than dimensions (TTUR's sqrtm
  of such a product is the same value up to its rounding, about 1e-3 at D = 2048; tested)."""
  x = np.asarray(activations1, np.float64)
  y = np.asarray(activations2, np.float64)
  x = x - x.mean(axis=0)
  y = y - y.mean(axis=0)
  singular = np.linalg.svd(x @ y.T, compute_uv=False)
  return float(np.sum(singular) / np.sqrt((len(x) - 1) * (len(y) - 1)))


def fid_from_activations(activations1, activations2, method="sqrtm"):
  """FID between two sets of (N, D) activations.

  Args:
    method: "sqrtm" (TTUR) or "eigen" (TF-GAN) through the (D, D) covariances, or "gram": the
      exact trace from the activations themselves (`trace_sqrt_product_of_activations`), for
      sets of fewer samples than dimensions (the cost grows with N1 N2 D).
  """
  a1 = _check_activations(activations1, "first activations")
  a2 = _check_activations(activations2, "second activations")
  if a1.shape[1] != a2.shape[1]:
    raise StatisticsError(f"The activations have different dimensions ({a1.shape[1]} vs "
                          f"{a2.shape[1]}); both must come from the same layer (pool_3: 2048).")
  if method == "gram":  # tr(S) is the centred data's squared norm over N - 1: no (D, D) matrix.
    x, y = a1.astype(np.float64), a2.astype(np.float64)
    diff = x.mean(axis=0) - y.mean(axis=0)
    traces = sum(np.sum((a - a.mean(axis=0)) ** 2) / (len(a) - 1) for a in (x, y))
    return max(0.0, float(diff @ diff + traces - 2.0 * trace_sqrt_product_of_activations(x, y)))
  return frechet_distance(*activation_statistics(a1), *activation_statistics(a2), method=method)
