"""Density and coverage (Naeem et al. 2020, k = 5): a brute-force NumPy definition, known answers,
and their place in the metric table, the evaluation JSON and bin/report's table."""

import numpy as np
import pytest

from qagan_tf import evaluation
from qagan_tf import report
from qagan_tf.metrics import density_coverage as dc
from qagan_tf.metrics import table


def _brute_force(real, fake, k=5):
  """The paper's definitions, one pair at a time, with square roots."""
  d_rr = np.sqrt(((real[:, None, :] - real[None, :, :]) ** 2).sum(-1))
  np.fill_diagonal(d_rr, np.inf)
  radii = np.sort(d_rr, axis=1)[:, k - 1]
  d_fr = np.sqrt(((fake[:, None, :] - real[None, :, :]) ** 2).sum(-1))
  inside = d_fr <= radii[None, :] + 1e-9
  return inside.sum() / (k * len(fake)), float(np.mean(inside.any(axis=0)))


@pytest.mark.parametrize("shift", [0.0, 0.5, 3.0])
def test_density_and_coverage_equal_the_brute_force_definition(shift):
  rng = np.random.default_rng(4)
  real = rng.normal(size=(180, 12))
  fake = rng.normal(size=(150, 12)) * 0.7 + shift
  out = dc.density_coverage(real, fake)
  density, coverage = _brute_force(real, fake)
  assert out["density"] == pytest.approx(density, abs=1e-12)
  assert out["coverage"] == pytest.approx(coverage, abs=1e-12)
  assert (out["k"], out["count_real"], out["count_fake"]) == (5, 180, 150)


def test_known_answers():
  rng = np.random.default_rng(5)
  real = rng.normal(size=(300, 8))
  same = dc.density_coverage(real, real.copy())
  assert same["coverage"] == 1.0 and same["density"] > 0.9  # Each point lies in its own ball.
  far = dc.density_coverage(real, rng.normal(size=(300, 8)) + 100.0)
  assert (far["density"], far["coverage"]) == (0.0, 0.0)
  # A generator that only makes the real set's densest point: high density, low coverage.
  crowd = dc.density_coverage(real, np.repeat(real[:1], 100, axis=0))
  assert crowd["coverage"] < 0.1 and crowd["density"] > 0.0
  with pytest.raises(ValueError, match="different dimensions"):
    dc.density_coverage(real, real[:, :4])


def test_the_table_puts_density_and_coverage_in_the_json_and_the_report():
  rng = np.random.default_rng(6)
  real, fake = rng.normal(size=(120, 16)), rng.normal(size=(110, 16))
  generated = {"mu": fake.mean(0), "sigma": np.cov(fake, rowvar=False), "logits": None,
               "activations": fake}
  reference = {"mu": real.mean(0), "sigma": np.cov(real, rowvar=False), "activations": real}
  result = table.compute(table.Inputs(generated, reference))
  density, coverage = _brute_force(real, fake)
  assert result["density"] == pytest.approx(density) and result["coverage"] == pytest.approx(
      coverage)
  assert {"fid", "kid", "precision", "recall", "density", "coverage"} <= set(result)
  assert "is_mean" not in result and "niqe" not in result  # No logits, no samples.
  summary = evaluation.summarize([result, result])
  assert summary["density"]["mean"] == pytest.approx(density)
  md = evaluation.markdown_table({
      "model_dir": "m", "step": 1, "num_samples": 110, "repeats": 2, "stats": "s",
      "weights_sha256": "0" * 64, "splits": 10, "summary": {"ema": summary}})
  assert "| density | coverage |" in md and f"{density:.3f} ± 0.000" in md
  assert [name for _, name, _ in report.METRICS] == [m.label for m in table.COLUMNS]
  assert {"density", "coverage"} <= {key for key, _, _ in report.METRICS}
  # Without activations there is none of them, and the table says why.
  plain = table.compute(table.Inputs(dict(generated, activations=None), reference))
  assert set(plain) == {"fid"}
