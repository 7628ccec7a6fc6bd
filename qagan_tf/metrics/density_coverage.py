"""Density and coverage (Naeem et al. 2020) on Inception pool_3 activations.

Each real point's ball reaches its k-th nearest real neighbour (k = 5, as the paper and
StudioGAN). Density = sum over generated points of the number of real balls holding them, over
k x M (about 1 when the generated points spread like the real ones; above 1 where they crowd
into dense real regions); coverage = the fraction of real points whose ball holds at least one
generated point (in [0, 1]). Unlike precision and recall, neither builds balls around the
generated points, so outliers among them do not inflate the figures.
"""

import numpy as np

from qagan_tf.metrics.precision_recall import (_squared_distances, checked_subsets,
                                               kth_neighbour_radii)


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
  real, fake = checked_subsets(real_activations, fake_activations, max_samples, seed)
  radii = kth_neighbour_radii(real, k)
  real_sq = (real * real).sum(axis=1)
  inside_count, covered = 0, np.zeros(len(real), bool)
  for start in range(0, len(fake), chunk):
    inside = _squared_distances(fake[start:start + chunk], real, real_sq) <= radii[None, :]
    inside_count += int(inside.sum())
    covered |= inside.any(axis=0)
  return {"density": inside_count / (k * len(fake)), "coverage": float(covered.mean()),
          "k": k, "count_real": len(real), "count_fake": len(fake)}
