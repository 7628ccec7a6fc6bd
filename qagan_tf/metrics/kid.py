"""Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel, over subsets."""

import numpy as np

from qagan_tf.metrics.fid import _check_activations


def _unbiased_mmd2(x, y):
  """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3 for float64 (m, d) and (n, d)."""
  d = x.shape[1]
  kxx = (x @ x.T / d + 1.0) ** 3
  kyy = (y @ y.T / d + 1.0) ** 3
  kxy = (x @ y.T / d + 1.0) ** 3
  m, n = len(x), len(y)
  return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
          - 2.0 * kxy.mean())


def kernel_inception_distance(activations1, activations2, num_subsets=100, subset_size=1000,
                              seed=0):
  """KID (Binkowski et al. 2018) between two sets of (N, D) activations.

  Each of `num_subsets` draws takes min(subset_size, N) samples (without replacement) from each
  set; with subset_size >= both N and num_subsets = 1 it is the unbiased MMD^2 of all samples.

  Returns:
    (mean, std) of MMD^2 over the subsets.
  """
  a1 = _check_activations(activations1, "first activations").astype(np.float64)
  a2 = _check_activations(activations2, "second activations").astype(np.float64)
  if a1.shape[1] != a2.shape[1]:
    raise ValueError(f"Activations of different dimensions: {a1.shape[1]} vs {a2.shape[1]}.")
  size1, size2 = min(subset_size, len(a1)), min(subset_size, len(a2))
  rng = np.random.default_rng(seed)
  values = []
  for _ in range(num_subsets):
    x = a1 if size1 == len(a1) else a1[rng.choice(len(a1), size1, replace=False)]
    y = a2 if size2 == len(a2) else a2[rng.choice(len(a2), size2, replace=False)]
    values.append(_unbiased_mmd2(x, y))
  return float(np.mean(values)), float(np.std(values))
