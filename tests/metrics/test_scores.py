"""FID, IS and KID against SciPy/NumPy references and TF-GAN's own formulas; statistics files."""

import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf
from hypothesis import given, settings, strategies as st

from qagan_tf.metrics import fid, inception_score, kid, stats_io
from tests.metrics.tfgan import classifier_metrics


def _activations(n, d, seed, shift=0.0):
  rng = np.random.default_rng(seed)
  mixing = rng.normal(size=(d, d)) / np.sqrt(d)
  return (rng.normal(size=(n, d)) @ mixing + shift).astype(np.float32)


def _scipy_fid(a1, a2):
  a1, a2 = a1.astype(np.float64), a2.astype(np.float64)
  m1, m2 = a1.mean(0), a2.mean(0)
  s1, s2 = np.cov(a1, rowvar=False), np.cov(a2, rowvar=False)
  root = scipy.linalg.sqrtm(s1 @ s2).real
  return np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * root)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fid_equals_the_scipy_sqrtm_reference(seed):
  a1, a2 = _activations(300, 64, seed), _activations(250, 64, seed + 10, shift=0.3)
  ours = fid.fid_from_activations(a1, a2)
  assert ours == pytest.approx(_scipy_fid(a1, a2), rel=1e-6)
  assert fid.fid_from_activations(a1, a2, method="eigen") == pytest.approx(ours, rel=1e-6)
  assert ours > 1.0 and fid.fid_from_activations(a1, a1) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("n1, n2, d", [(300, 250, 64), (40, 70, 256)])
def test_the_gram_route_equals_the_sqrtm_of_the_covariances(n1, n2, d):
  """Full-rank (N > D) and rank-deficient (N < D, the quality benchmark's case) covariances:
  the trace from the activations' SVD is the covariances' sqrtm trace."""
  a1, a2 = _activations(n1, d, 3), _activations(n2, d, 4, shift=0.3)
  s1 = np.cov(a1.astype(np.float64), rowvar=False)
  s2 = np.cov(a2.astype(np.float64), rowvar=False)
  eigen = np.sum(np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)))
  assert fid.trace_sqrt_product_of_activations(a1, a2) == pytest.approx(eigen, rel=1e-6)
  ours = fid.fid_from_activations(a1, a2, method="gram")
  assert ours == pytest.approx(fid.fid_from_activations(a1, a2, method="eigen"), rel=1e-6)
  assert fid.fid_from_activations(a1, a1, method="gram") == pytest.approx(0.0, abs=1e-6)
  with pytest.raises(fid.StatisticsError, match="different dimensions"):
    fid.fid_from_activations(a1, a2[:, :d // 2], method="gram")


@pytest.mark.parametrize("n, d", [(40, 256), (256, 256), (300, 64)])
def test_the_trace_from_few_activations_equals_the_sqrtm_of_the_covariances(n, d):
  """FID of a set with N <= D (a singular covariance: an in-training evaluation of a few hundred
  samples) from its activations, an (N, N) eigenproblem, equals the (D, D) routes; with N > D
  the activations are not used (the sqrtm route)."""
  a1, a2 = _activations(n, d, 5, shift=0.2), _activations(500, d, 6)
  m1, s1 = fid.activation_statistics(a1)
  m2, s2 = fid.activation_statistics(a2)
  if n <= d:
    eigen = np.sum(np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)))
    assert fid.trace_sqrt_product_with_activations(a1, s2) == pytest.approx(eigen, rel=1e-6)
  ours = fid.frechet_distance(m1, s1, m2, s2, activations1=a1)
  assert ours == pytest.approx(fid.frechet_distance(m1, s1, m2, s2, method="eigen"), rel=1e-6)
  assert ours == pytest.approx(_scipy_fid(a1, a2), rel=1e-5) and ours > 1.0
  with pytest.raises(ValueError, match="not the activations of mu1"):
    fid.frechet_distance(m1, s1, m2, s2, activations1=a1[:-1] if n <= d else a1[:d])


def test_fid_matches_tf_gan():
  cm = classifier_metrics()
  a1, a2 = _activations(400, 32, 5), _activations(400, 32, 6, shift=0.2)
  theirs = float(cm.frechet_classifier_distance_from_activations(
      tf.constant(a1, tf.float64), tf.constant(a2, tf.float64)))
  assert fid.fid_from_activations(a1, a2) == pytest.approx(theirs, rel=1e-4)


def test_inception_score_matches_tf_gan_and_known_values():
  cm = classifier_metrics()
  logits = np.random.default_rng(0).normal(size=(500, 20)) * 3
  theirs = float(cm.classifier_score_from_logits(tf.constant(logits)))
  mean, std = inception_score.inception_score(logits, splits=1)
  assert mean == pytest.approx(theirs, rel=1e-4) and std == 0.0
  # Confident and uniformly spread predictions over C classes give IS = C in every split.
  confident = np.eye(10)[np.arange(1000) % 10] * 50.0
  mean, std = inception_score.inception_score(confident, splits=10)
  assert mean == pytest.approx(10.0, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)
  assert inception_score.inception_score(np.zeros((100, 7)))[0] == pytest.approx(1.0)


def test_kid_matches_tf_gan_and_a_direct_formula():
  cm = classifier_metrics()
  a1, a2 = _activations(120, 16, 3), _activations(100, 16, 4, shift=0.5)
  mean, _ = kid.kernel_inception_distance(a1, a2, num_subsets=1, subset_size=10**6)
  theirs = float(cm.kernel_classifier_distance_from_activations(
      tf.constant(a1, tf.float64), tf.constant(a2, tf.float64), max_block_size=10**6))
  assert mean == pytest.approx(theirs, rel=1e-4)
  x, y = a1.astype(np.float64), a2.astype(np.float64)
  k = lambda a, b: (a @ b.T / 16 + 1) ** 3  # noqa: E731
  direct = ((k(x, x).sum() - np.trace(k(x, x))) / (120 * 119)
            + (k(y, y).sum() - np.trace(k(y, y))) / (100 * 99) - 2 * k(x, y).mean())
  assert mean == pytest.approx(direct, rel=1e-10)
  m, s = kid.kernel_inception_distance(a1, a2, num_subsets=20, subset_size=50)
  assert s > 0 and abs(m - mean) < 5 * s


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=6), st.floats(-1e3, 1e3))
def test_streaming_statistics_equal_all_at_once(sizes, offset):
  a = _activations(sum(sizes) + 2, 8, 7, shift=offset)
  sizes = list(sizes) + [2]
  stream = fid.StreamingStatistics(8)
  start = 0
  for n in sizes:
    stream.update(a[start:start + n])
    start += n
  mu, sigma = stream.result()
  mu_ref, sigma_ref = fid.activation_statistics(a)
  np.testing.assert_allclose(mu, mu_ref, rtol=1e-12, atol=1e-9)
  np.testing.assert_allclose(sigma, sigma_ref, rtol=1e-9, atol=1e-9)
  assert stream.count == len(a)


def test_bad_inputs_are_refused():
  a = _activations(10, 4, 0)
  with pytest.raises(fid.StatisticsError, match="at least 2"):
    fid.fid_from_activations(a[:1], a)
  bad = a.copy()
  bad[3, 1] = np.nan
  with pytest.raises(fid.StatisticsError, match="NaN"):
    fid.fid_from_activations(bad, a)
  with pytest.raises(fid.StatisticsError, match="different dimensions"):
    fid.frechet_distance(np.zeros(4), np.eye(4), np.zeros(3), np.eye(3))
  with pytest.raises(fid.StatisticsError, match=r"shape \(D, D\)"):
    fid.frechet_distance(np.zeros(4), np.eye(3), np.zeros(4), np.eye(4))
  with pytest.raises(fid.StatisticsError, match="at least 2"):
    fid.StreamingStatistics(4).result()
  with pytest.raises(fid.StatisticsError, match="splits"):
    inception_score.inception_score(np.zeros((5, 3)), splits=10)


def test_statistics_files_round_trip_and_bad_files_are_refused(tmp_path):
  mu, sigma = fid.activation_statistics(_activations(50, 6, 1))
  path = str(tmp_path / "s.npz")
  stats_io.save_statistics(path, mu, sigma, 50, "abc", source="unit test")
  loaded = stats_io.load_statistics(path)
  np.testing.assert_array_equal(loaded["mu"], mu)
  assert loaded["count"] == 50 and loaded["layer"] == "pool_3" and loaded["weights_sha256"] == "abc"
  assert stats_io.is_statistics_file(path)
  ttur = str(tmp_path / "ttur.npz")
  np.savez(ttur, mu=mu, sigma=sigma)  # TTUR's own files carry no metadata.
  assert stats_io.load_statistics(ttur)["count"] is None
  np.savez(tmp_path / "images.npz", images=np.zeros((2, 8, 8, 3), np.uint8))
  assert not stats_io.is_statistics_file(str(tmp_path / "images.npz"))
  with pytest.raises(fid.StatisticsError, match="needs arrays 'mu' and 'sigma'"):
    stats_io.load_statistics(str(tmp_path / "images.npz"))
  with pytest.raises(fid.StatisticsError, match="expected 2048"):
    stats_io.load_statistics(path, dim=2048)
  with pytest.raises(fid.StatisticsError, match="no such file"):
    stats_io.load_statistics(str(tmp_path / "none.npz"))
  assert sorted(p.name for p in tmp_path.iterdir()) == ["images.npz", "s.npz", "ttur.npz"]


def test_is_logits_protocols_differ_by_the_softmax_bias_and_bad_names_are_refused():
  from qagan_tf import evaluation
  rng = np.random.default_rng(7)
  logits = rng.normal(size=(40, 1008)) * 3
  bias = rng.normal(size=1008) * 2

  class Generator:
    z_dim = 2

    def __call__(self, z, training=False):
      return tf.zeros([z.shape[0], 8, 8, 3])

  class Extractor:
    softmax_biases = bias

    def statistics(self, batches, **kwargs):
      count = sum(len(b) for b in batches)
      act = rng.normal(size=(count, 4))
      return {"mu": act.mean(0), "sigma": np.cov(act, rowvar=False), "count": count,
              "logits": logits[:count], "activations": None}

  reference = {"mu": np.zeros(4), "sigma": np.eye(4)}
  scores = {p: evaluation.evaluate_generator(Generator(), Extractor(), reference, 40, splits=4,
                                             niqe_samples=0, is_logits=p)["is_mean"]
            for p in ("tfgan", "openai")}
  assert scores["tfgan"] == pytest.approx(inception_score.inception_score(logits, 4)[0])
  assert scores["openai"] == pytest.approx(inception_score.inception_score(logits - bias, 4)[0])
  assert abs(scores["tfgan"] - scores["openai"]) > 0.01
  with pytest.raises(ValueError, match="is_logits='bias'.*tfgan, openai"):
    evaluation.evaluate_generator(Generator(), Extractor(), reference, 40, splits=4,
                                  niqe_samples=0, is_logits="bias")
