"""Density and coverage (Naeem et al. 2020) on Inception pool_3 activations.

Each real point's ball reaches its k-th nearest real neighbour (k = 5, as the paper and
StudioGAN). Density = sum over generated points of the number of real balls holding them, over
k x M (about 1 when the generated points spread like the real ones; above 1 where they crowd
into dense real regions); coverage = the fraction of real points whose ball holds at least one
generated point (in [0, 1]). Unlike precision and recall, neither builds balls around the
generated points, so outliers among them do not inflate the figures.
"""

import numpy as np

from qagan_tf.metrics.fid import _check_activations
from qagan_tf.metrics.precision_recall import _squared_distances, kth_neighbour_radii


def density_coverage(real_activations, fake_activations, k=5, max_samples=10_000, seed=0,
                     chunk=1024):
  """Density and coverage of generated activations against real ones.

  Args:
    real_activations, fake_activations: (N, D), (M, D) activations (float, finite).
    k: the real neighbour that sets each real ball's radius (5, as in the paper).
    max_samples: each set is subsampled to at most this many points (without replacement, with
      `seed`), as for precision/recall.

  Returns:
    {"density": float >= 0, "coverage": float in [0, 1], "k": k, "count_real": N,
     "count_fake": M}.
  """
  real = _check_activations(real_activations, "real activations").astype(np.float64)
  fake = _check_activations(fake_activations, "generated activations").astype(np.float64)
  if real.shape[1] != fake.shape[1]:
    raise ValueError(f"Activations of different dimensions: {real.shape[1]} vs {fake.shape[1]}.")
  rng = np.random.default_rng(seed)
  if len(real) > max_samples:
    real = real[rng.choice(len(real), max_samples, replace=False)]
  if len(fake) > max_samples:
    fake = fake[rng.choice(len(fake), max_samples, replace=False)]
  radii = kth_neighbour_radii(real, k)
  real_sq = (real * real).sum(axis=1)
  inside_count, covered = 0, np.zeros(len(real), bool)
  for start in range(0, len(fake), chunk):
    inside = _squared_distances(fake[start:start + chunk], real, real_sq) <= radii[None, :]
    inside_count += int(inside.sum())
    covered |= inside.any(axis=0)
  return {"density": inside_count / (k * len(fake)), "coverage": float(covered.mean()),
          "k": k, "count_real": len(real), "count_fake": len(fake)}
