"""Improved precision and recall (Kynkäänniemi et al. 2019) on Inception pool_3 activations.

Each set's manifold is the union of balls around its points, each ball reaching the point's k-th
nearest neighbour in the same set (k = 3 in the paper). Precision is the fraction of generated
points inside the real manifold (fidelity), recall the fraction of real points inside the
generated one (coverage). The paper uses VGG-16 features; we use the pool_3 features FID uses, so
no new weights are needed: the numbers are comparable between runs of this project, not with
papers that used VGG features.
"""

import numpy as np

from qagan_tf.metrics.fid import _check_activations


def _squared_distances(a, b, b_sq):
  """(len(a), len(b)) squared Euclidean distances in float64, never negative."""
  d = (a * a).sum(axis=1)[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)
  return np.maximum(d, 0.0)


def kth_neighbour_radii(points, k=3, chunk=1024):
  """Squared distance from each point to its k-th nearest other point of the same set.

  A point's distance to itself (0) is not counted; duplicates of it are (at distance 0).
  """
  n = len(points)
  if n <= k:
    raise ValueError(f"Precision/recall with k={k} needs more than {k} points per set, got {n}.")
  sq = (points * points).sum(axis=1)
  radii = np.empty(n)
  for start in range(0, n, chunk):
    d = _squared_distances(points[start:start + chunk], points, sq)
    rows = np.arange(d.shape[0])
    d[rows, start + rows] = np.inf  # Not its own neighbour.
    radii[start:start + chunk] = np.partition(d, k - 1, axis=1)[:, k - 1]
  return radii


def _coverage(queries, points, radii, chunk=1024):
  """Fraction of `queries` within radius of at least one of `points` (squared radii)."""
  sq = (points * points).sum(axis=1)
  inside = 0
  for start in range(0, len(queries), chunk):
    d = _squared_distances(queries[start:start + chunk], points, sq)
    inside += int(np.any(d <= radii[None, :], axis=1).sum())
  return inside / len(queries)


def checked_subsets(real_activations, fake_activations, max_samples, seed):
  """Both activation sets checked (finite, same dimension) as float64, each subsampled to at
  most `max_samples` points without replacement with `seed` (real first, then fake)."""
  real = _check_activations(real_activations, "real activations").astype(np.float64)
  fake = _check_activations(fake_activations, "generated activations").astype(np.float64)
  if real.shape[1] != fake.shape[1]:
    raise ValueError(f"Activations of different dimensions: {real.shape[1]} vs {fake.shape[1]}.")
  rng = np.random.default_rng(seed)
  if len(real) > max_samples:
    real = real[rng.choice(len(real), max_samples, replace=False)]
  if len(fake) > max_samples:
    fake = fake[rng.choice(len(fake), max_samples, replace=False)]
  return real, fake


def precision_recall(real_activations, fake_activations, k=3, max_samples=10_000, seed=0):
  """Improved precision and recall of generated activations against real ones.

  Args:
    real_activations, fake_activations: (N, D) activations (float, finite).
    k: the neighbour that sets each ball's radius (3, as in the paper).
    max_samples: each set is subsampled to at most this many points (without replacement, with
      `seed`); the cost is quadratic in it (10K x 10K distances take ~10 s on 2 cores).
    seed: subsampling seed.

  Returns:
    {"precision": float in [0, 1], "recall": float in [0, 1], "k": k, "count_real": n,
     "count_fake": m}.
  """
  real, fake = checked_subsets(real_activations, fake_activations, max_samples, seed)
  real_radii = kth_neighbour_radii(real, k)
  fake_radii = kth_neighbour_radii(fake, k)
  return {"precision": _coverage(fake, real, real_radii),
          "recall": _coverage(real, fake, fake_radii),
          "k": k, "count_real": len(real), "count_fake": len(fake)}
