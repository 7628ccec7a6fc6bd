"""Improved precision/recall (Kynkäänniemi et al. 2019): known answers on synthetic point clouds
and a brute-force definition."""

import numpy as np
import pytest

from qagan_tf.metrics import fid, precision_recall as pr


def _brute_force(real, fake, k):
  """The definition, one point at a time, with square roots (independent of the chunked code)."""
  def radii(x):
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, k - 1]

  def inside(queries, points, r):
    d = np.sqrt(((queries[:, None, :] - points[None, :, :]) ** 2).sum(-1))
    return float(np.mean(np.any(d <= r[None, :] + 1e-9, axis=1)))

  return inside(fake, real, radii(real)), inside(real, fake, radii(fake))


def test_identical_sets_give_precision_and_recall_one():
  x = np.random.default_rng(0).normal(size=(300, 16))
  out = pr.precision_recall(x, x.copy())
  assert (out["precision"], out["recall"]) == (1.0, 1.0)
  assert out["k"] == 3 and out["count_real"] == out["count_fake"] == 300


def test_disjoint_sets_give_zero():
  rng = np.random.default_rng(1)
  real = rng.normal(size=(200, 8))
  fake = rng.normal(size=(250, 8)) + 100.0
  out = pr.precision_recall(real, fake)
  assert (out["precision"], out["recall"]) == (0.0, 0.0)


def test_a_generator_covering_one_of_two_modes_has_full_precision_and_half_recall():
  rng = np.random.default_rng(2)
  mode_a = rng.normal(size=(200, 8))
  real = np.concatenate([mode_a, rng.normal(size=(200, 8)) + 50.0])
  out = pr.precision_recall(real, mode_a[:150])  # A subset of one mode.
  assert out["precision"] == 1.0
  assert 0.3 < out["recall"] < 0.5  # Most of mode A and none of mode B.


@pytest.mark.parametrize("k", [1, 3, 5])
def test_chunked_computation_matches_the_definition(k):
  rng = np.random.default_rng(k)
  real = rng.normal(size=(120, 6))
  fake = 0.8 * rng.normal(size=(90, 6)) + 0.3
  expected = _brute_force(real, fake, k)
  radii = pr.kth_neighbour_radii(real, k, chunk=7)
  assert pr._coverage(fake, real, radii, chunk=11) == pytest.approx(expected[0])
  out = pr.precision_recall(real, fake, k=k)
  assert (out["precision"], out["recall"]) == pytest.approx(expected)
  assert 0.0 < out["precision"] < 1.0 and 0.0 < out["recall"] < 1.0


def test_subsampling_and_bad_inputs():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(500, 4))
  out = pr.precision_recall(x, x[::-1], max_samples=100)
  assert out["count_real"] == out["count_fake"] == 100
  with pytest.raises(ValueError, match="more than 3 points"):
    pr.precision_recall(x[:3], x)
  with pytest.raises(ValueError, match="different dimensions"):
    pr.precision_recall(x, x[:, :3])
  with pytest.raises(fid.StatisticsError, match="generated activations: contains NaN"):
    pr.precision_recall(x, np.full((10, 4), np.nan))
