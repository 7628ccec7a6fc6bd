"""FID of identical statistics is 0, not the square root's rounding below it."""

import numpy as np
import pytest

from qagan_tf.metrics import fid


def test_fid_of_identical_statistics_is_clamped_at_zero(monkeypatch):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(400, 64))
  mu, sigma = x.mean(0), np.cov(x, rowvar=False)
  value = fid.frechet_distance(mu, sigma, mu, sigma)
  assert 0.0 <= value < 1e-6
  # The square root's rounding overshooting by 5e-5 (as bin/fid's -0.000118 on 2048 features).
  exact = fid.trace_sqrt_product
  monkeypatch.setattr(fid, "trace_sqrt_product", lambda a, b, m: exact(a, b, m) + 5e-5)
  assert fid.frechet_distance(mu, sigma, mu, sigma) == 0.0
  monkeypatch.undo()
  assert fid.frechet_distance(mu, sigma, mu + 1.0, sigma) == pytest.approx(64.0, rel=1e-6)
