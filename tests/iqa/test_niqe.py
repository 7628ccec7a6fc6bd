"""Tests of NIQE: MATLAB calibration, imresize, the differentiable score and its gradients, model
loading and the errors for bad input."""

import json
import os
import sys

import numpy as np
import pytest
import scipy.io
import tensorflow as tf

from qagan_tf.iqa import aggd, model as model_lib, naturalness, niqe_metric, resize
from tests.reference import reference_path

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MATLAB = {"I03.bmp": 15.7536293917814, "I04.bmp": 3.65492152353770, "I06.bmp": 3.23547743716998}


def _load_bmp(path):
  from PIL import Image
  with Image.open(path) as im:
    return np.asarray(im.convert("RGB"))


def _natural_gray(size=64, seed=0):
  """A grayscale crop of a natural image from scikit-image, float64 [0, 255]."""
  from skimage import data
  image = data.astronaut().astype(np.float64) @ np.asarray([0.299, 0.587, 0.114])
  rng = np.random.default_rng(seed)
  top, left = rng.integers(0, image.shape[0] - size, 2)
  return image[top:top + size, left:left + size]


# --- metric mode -------------------------------------------------------------------------------

# Exact arithmetic (|MSCN| < 1e-10 is 0; see naturalness.mscn): reference/iqa_calibration/README.
EXACT = {"I03.bmp": 15.745958, "I04.bmp": 3.654922, "I06.bmp": 3.234328}


@pytest.mark.parametrize("name", sorted(MATLAB))
def test_metric_mode_gives_the_exact_arithmetic_scores(name):
  model = model_lib.load_model(reference_path("niqe", "modelparameters.mat"))
  image = _load_bmp(reference_path("iqa_calibration", name))
  score = niqe_metric.niqe(image, model)
  assert score == pytest.approx(EXACT[name], rel=1e-4)
  # And MATLAB's own figure within 0.1% (its filter rounds flat windows to +-1e-14).
  assert abs(score - MATLAB[name]) / MATLAB[name] < 1e-3


def test_mscn_of_flat_windows_is_exactly_zero():
  flat = np.full((1, 24, 24), 117.3)
  flat[0, 12:, 12:] = 41.0  # A step: flat windows on both sides, non-zero values at the edge.
  coeffs, _ = naturalness.mscn(tf.constant(flat))
  coeffs = coeffs.numpy()[0]
  assert np.all(coeffs[:5, :5] == 0.0) and np.all(coeffs[-5:, -5:] == 0.0)
  assert np.abs(coeffs[10:14, 10:14]).max() > 0.1


def test_shipped_natural_model_equals_the_matlab_release():
  mat = model_lib.load_model(reference_path("niqe", "modelparameters.mat"))
  shipped = model_lib.natural_model()
  np.testing.assert_array_equal(shipped.mu, mat.mu)
  np.testing.assert_array_equal(shipped.cov, mat.cov)


def test_metric_mode_ranks_a_blurred_and_noisy_image_worse():
  from skimage import data, filters
  image = data.astronaut()
  score = niqe_metric.niqe(image)
  blurred = (filters.gaussian(image, sigma=3, channel_axis=-1) * 255).round().astype(np.uint8)
  noisy = np.clip(image + np.random.default_rng(0).normal(0, 40, image.shape), 0,
                  255).astype(np.uint8)
  assert niqe_metric.niqe(blurred) > score + 1 and niqe_metric.niqe(noisy) > score + 1


def test_matlab_rgb2gray_rounds_half_away_from_zero():
  pixel = np.array([[[1, 1, 1], [255, 255, 255], [0, 0, 0]]], np.uint8)
  np.testing.assert_array_equal(niqe_metric.matlab_rgb2gray(pixel), [[1, 255, 0]])


# --- imresize ----------------------------------------------------------------------------------

def test_imresize_keeps_constants_and_halves_a_ramp_like_matlab():
  const = tf.fill([1, 16, 12], tf.constant(7.0, tf.float64))
  out = resize.imresize(const, 0.5)
  assert out.shape == (1, 8, 6)
  np.testing.assert_allclose(out.numpy(), 7.0, rtol=1e-12)
  # A linear ramp stays linear away from the borders; the output sample u sits at input position
  # 2u - 0.5 (1-based), i.e. the mean of the two pixels it replaces.
  ramp = tf.constant(np.tile(np.arange(32.0), (1, 32, 1)))
  out = resize.imresize(ramp, 0.5).numpy()[0]
  expected = np.arange(16) * 2 + 0.5
  np.testing.assert_allclose(out[4, 3:-3], expected[3:-3], atol=1e-10)


def test_imresize_rows_sum_to_one_and_mirror_at_borders():
  m = resize.resize_matrix(10, 0.5)
  assert m.shape == (5, 10)
  np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)
  # Mirrored padding makes the first and last rows reverses of each other.
  np.testing.assert_allclose(m[0], m[-1][::-1], atol=1e-12)


# --- differentiable mode -----------------------------------------------------------------------

def test_root_features_agree_with_grid_features():
  images = tf.constant(np.stack([_natural_gray(64, s) for s in range(2)]))
  grid = naturalness.niqe_features(images, 32, 2, method="grid").numpy()
  root = naturalness.niqe_features(images, 32, 2, method="root").numpy()
  alphas = [0, 2, 6, 10, 14, 18, 20, 24, 28, 32]
  assert np.abs(grid[..., alphas] - root[..., alphas]).max() <= aggd.GRID_STEP
  np.testing.assert_allclose(root, grid, rtol=2e-3, atol=2e-3)


def test_niqe_score_gradient_matches_central_differences():
  model = model_lib.natural_model()
  x0 = _natural_gray(32, 3)[None]

  def f(x):
    return naturalness.niqe_score(x, model, block_size=16, scales=2, dtype=tf.float64)[0]

  x = tf.constant(x0)
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = f(x)
  grad = tape.gradient(y, x).numpy()[0]
  rng = np.random.default_rng(0)
  h = 1e-4
  for _ in range(6):
    i, j = rng.integers(0, 32, 2)
    e = np.zeros_like(x0)
    e[0, i, j] = h
    fd = (f(tf.constant(x0 + e)) - f(tf.constant(x0 - e))).numpy() / (2 * h)
    assert grad[i, j] == pytest.approx(fd, rel=1e-4, abs=1e-7)
  # A random direction checks the whole gradient at once.
  v = rng.normal(size=x0.shape)
  fd = (f(tf.constant(x0 + h * v)) - f(tf.constant(x0 - h * v))).numpy() / (2 * h)
  assert float(np.sum(grad * v[0])) == pytest.approx(fd, rel=1e-4)


@pytest.mark.parametrize("kind", ["random", "constant", "positive", "zero", "gradient_like"])
def test_niqe_score_gradients_are_finite(kind):
  rng = np.random.default_rng(1)
  shape = (3, 32, 32, 3)
  x = {"random": rng.normal(size=shape),
       "constant": np.full(shape, 0.3),
       "positive": np.abs(rng.normal(size=shape)) + 0.1,
       "zero": np.zeros(shape),
       "gradient_like": rng.normal(size=shape) * 1e-4}[kind].astype(np.float32)
  x = tf.constant(x)
  for pooling in naturalness.POOLINGS:
    with tf.GradientTape() as tape:
      tape.watch(x)
      score = naturalness.niqe_score(x, model_lib.natural_model(), block_size=16,
                                     pooling=pooling)
      total = tf.reduce_sum(score)
    grad = tape.gradient(total, x)
    assert score.shape == (3,)
    assert np.all(np.isfinite(score.numpy())) and np.all(np.isfinite(grad.numpy())), pooling


def test_niqe_score_under_tf_function_and_xla_matches_eager():
  model = model_lib.natural_model()
  x = np.stack([_natural_gray(32, s) for s in range(3)])[..., None]
  # float64 shows the compiled graph computes the same function; float32 rounding differs with
  # XLA's fused reductions (about 1e-4 relative after the MVG solve).
  for dtype, rtol in ((tf.float64, 1e-9), (tf.float32, 1e-3)):
    eager = naturalness.niqe_score(x, model, block_size=16, dtype=dtype)
    fn = tf.function(lambda t: naturalness.niqe_score(t, model, block_size=16, dtype=dtype),
                     jit_compile=True)
    np.testing.assert_allclose(fn(tf.constant(x, dtype)).numpy(), eager.numpy(), rtol=rtol)


def _reference_distance(model, feats_mean, feats_cov):
  """NumPy/SciPy reference: sqrt(d^T ((Sigma_P + Sigma_T) / 2)^-1 d) in the raw coordinates."""
  d = model.mu - feats_mean
  return float(np.sqrt(d @ np.linalg.solve((model.cov + feats_cov) / 2.0, d)))


def test_niqe_score_poolings_match_a_numpy_reference():
  model = model_lib.natural_model()
  imgs = np.stack([_natural_gray(32, s) for s in range(3)])
  feats = naturalness.niqe_features(tf.constant(imgs), 16, 2, method="root", eps=1e-8,
                                    split="soft").numpy()  # (3, 4 blocks, 36)
  every_block = feats.reshape(-1, 36)
  batch_cov = np.cov(every_block, rowvar=False)
  expected = {
      "image": [_reference_distance(model, f.mean(0), np.cov(f, rowvar=False)) for f in feats],
      "pooled": [_reference_distance(model, f.mean(0), batch_cov) for f in feats],
      "batch": [_reference_distance(model, every_block.mean(0), batch_cov)] * 3}
  for pooling, values in expected.items():
    got = naturalness.niqe_score(imgs, model, block_size=16, pooling=pooling,
                                 dtype=tf.float64).numpy()
    np.testing.assert_allclose(got, values, rtol=1e-6, err_msg=pooling)
  # Per image, "image" and "pooled" agree for a batch of one.
  one = [naturalness.niqe_score(imgs[:1], model, block_size=16, pooling=p,
                                dtype=tf.float64).numpy()[0] for p in ("image", "pooled")]
  assert one[0] == pytest.approx(one[1], rel=1e-10)


def test_the_whitened_solve_needs_no_ridge_in_float32():
  # The priors' covariances have eigenvalues down to 1e-5: the float32 score must still match
  # float64 (the ridge of 1e-3 moved the per-image score from 9.59 to 5.96).
  prior = model_lib.load_model(reference_path("niqe", "model_cifar_grad.mat"))
  assert np.linalg.eigvalsh(prior.cov).min() < 2e-5
  imgs = np.stack([_natural_gray(64, s) for s in range(4)])
  scores = {dtype: naturalness.niqe_score(imgs, prior, block_size=32, pooling="image",
                                          dtype=dtype).numpy() for dtype in (tf.float32, tf.float64)}
  np.testing.assert_allclose(scores[tf.float32], scores[tf.float64], rtol=2e-3)
  ridged = naturalness.niqe_score(imgs, prior, block_size=32, pooling="image",
                                  covariance_regularization=1e-3, dtype=tf.float64).numpy()
  assert np.all(ridged < 0.9 * scores[tf.float64])  # What a ridge of that size does.


def test_grayscale_false_scores_each_channel():
  model = model_lib.natural_model()
  rgb = np.stack([_natural_gray(32, s) for s in range(3)], axis=-1)[None]
  per_channel = naturalness.niqe_score(rgb, model, block_size=16, grayscale=False,
                                       pooling="image", dtype=tf.float64).numpy()
  assert per_channel.shape == (3,)
  alone = naturalness.niqe_score(rgb[..., 1], model, block_size=16, pooling="image",
                                 dtype=tf.float64).numpy()
  assert per_channel[1] == pytest.approx(alone[0], rel=1e-10)


# --- errors ------------------------------------------------------------------------------------

def test_bad_inputs_give_clear_errors():
  model = model_lib.natural_model()
  with pytest.raises(ValueError, match="expects"):
    niqe_metric.niqe(np.zeros((2, 96, 96, 3), np.uint8))
  with pytest.raises(ValueError, match="NaN or Inf"):
    niqe_metric.niqe(np.full((96, 96), np.nan))
  with pytest.raises(ValueError, match="smaller than one 96x96"):
    niqe_metric.niqe(np.zeros((64, 200, 3), np.uint8))
  with pytest.raises(ValueError, match="expects"):
    naturalness.niqe_score(np.zeros((32, 32)), model)
  with pytest.raises(ValueError, match="pooling"):
    naturalness.niqe_score(np.zeros((1, 32, 32)), model, pooling="mean")
  with pytest.raises(ValueError, match="36 features; 3 scale"):
    naturalness.niqe_score(np.zeros((1, 64, 64)), model, block_size=32, scales=3)
  with pytest.raises(ValueError, match="multiple of 2"):
    naturalness.niqe_score(np.zeros((1, 64, 64)), model, block_size=15)


def test_model_files_load_and_bad_ones_are_refused(tmp_path):
  mu, cov = np.arange(4.0), np.eye(4) * 2
  npz = tmp_path / "m.npz"
  np.savez(npz, mu=mu, cov=cov)
  loaded = model_lib.load_model(str(npz))
  np.testing.assert_array_equal(loaded.cov, cov)
  mat = tmp_path / "m.mat"
  scipy.io.savemat(mat, {"mu_prisparam": mu[None], "cov_prisparam": cov})
  np.testing.assert_array_equal(model_lib.load_model(str(mat)).mu, mu)

  np.savez(tmp_path / "missing.npz", mean=mu)
  with pytest.raises(model_lib.ModelError, match="expected arrays mu_prisparam"):
    model_lib.load_model(str(tmp_path / "missing.npz"))
  skew = cov.copy()
  skew[0, 1] = 1.0
  np.savez(tmp_path / "skew.npz", mu=mu, cov=skew)
  with pytest.raises(model_lib.ModelError, match="not symmetric"):
    model_lib.load_model(str(tmp_path / "skew.npz"))
  np.savez(tmp_path / "indef.npz", mu=mu, cov=-cov)
  with pytest.raises(model_lib.ModelError, match="not positive definite"):
    model_lib.load_model(str(tmp_path / "indef.npz"), require_positive_definite=True)
  np.savez(tmp_path / "shape.npz", mu=mu, cov=np.eye(3))
  with pytest.raises(model_lib.ModelError, match="shape"):
    model_lib.load_model(str(tmp_path / "shape.npz"))
  (tmp_path / "junk.npz").write_bytes(b"not a zip")
  with pytest.raises(model_lib.ModelError, match="cannot be read"):
    model_lib.load_model(str(tmp_path / "junk.npz"))
  with pytest.raises(model_lib.ModelError, match="no such file"):
    model_lib.load_model(str(tmp_path / "absent.npz"))
  np.savez(tmp_path / "pickled.npz", mu=np.array([object()], dtype=object), cov=cov)
  with pytest.raises(model_lib.ModelError, match="cannot be read"):
    model_lib.load_model(str(tmp_path / "pickled.npz"))


@pytest.mark.parametrize("name", ["model_cifar_grad.mat", "model_STL_grad.mat",
                                  "model_face_grad.mat"])
def test_the_authors_gradient_priors_load(name):
  prior = model_lib.load_model(reference_path("niqe", name))
  assert prior.mu.shape == (36,) and prior.cov.shape == (36, 36)


# --- bin/niqe ----------------------------------------------------------------------------------

def _niqe_cli(*args):
  from tests import scripts  # bin/niqe in this process.
  return scripts.run("niqe", *args)


@pytest.mark.slow
def test_bin_niqe_json_matches_matlab_and_reports_errors(tmp_path):
  paths = [reference_path("iqa_calibration", n) for n in sorted(MATLAB)]
  proc = _niqe_cli("--model=" + reference_path("niqe", "modelparameters.mat"), "--json", *paths)
  assert proc.returncode == 0, proc.stderr[-2000:]
  results = json.loads(proc.stdout)
  assert [r["path"] for r in results] == paths
  for r in results:
    expected = MATLAB[os.path.basename(r["path"])]
    assert r["niqe"] == pytest.approx(EXACT[os.path.basename(r["path"])], rel=1e-4)
    assert abs(r["niqe"] - expected) / expected < 1e-3

  text = _niqe_cli(paths[1])
  assert text.returncode == 0 and text.stdout.split()[1] == paths[1]
  assert float(text.stdout.split()[0]) == pytest.approx(results[1]["niqe"], rel=1e-6)

  bad = tmp_path / "bad.png"
  bad.write_bytes(b"garbage")
  for args, message in [((str(bad),), "cannot decode image"),
                        ((str(tmp_path / "none.png"),), "no such file"),
                        (("--block_size=1024", paths[0]), "smaller than one 1024x1024"),
                        (("--block_size=7", paths[0]), "even number"),
                        (("--model=" + str(tmp_path / "m.npz"), paths[0]), "no such file")]:
    proc = _niqe_cli(*args)
    assert proc.returncode != 0 and message in proc.stderr, (args, proc.stderr[-500:])
    assert "Traceback" not in proc.stderr
