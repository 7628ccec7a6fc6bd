"""QAGAN penalties: one-step tests with tiny networks, second-order gradients against finite
differences, the SSIM penalty's formula, priors (named, authors' .mat, fitted) and bad settings."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from qagan_tf import config as config_lib
from qagan_tf import iqa, models
from qagan_tf.iqa import model as niqe_model_lib
from qagan_tf.train import niqe_prior, penalties, quality_penalties as qp, step
from tests.reference import reference_path


def _config(**kw):
  base = dict(resolution=32, width=4, z_dim=8, batch_size=4, dataset="embedded")
  base.update(kw)
  return config_lib.TrainConfig(**base).validate()


def _tiny(seed=0):
  keras.utils.set_random_seed(seed)
  g, d = models.Generator(32, width=4, z_dim=8), models.Discriminator(32, width=4)
  g.build_for_inference()
  d.build_for_inference()
  return g, d


def _batch(seed=1, dtype=np.float32):
  rng = np.random.default_rng(seed)
  real = rng.uniform(-1, 1, (4, 32, 32, 3)).astype(dtype)
  z = rng.normal(size=(4, 8)).astype(np.float32)
  eps = rng.uniform(size=(4,)).astype(dtype)
  return tf.constant(real), tf.constant(z), tf.constant(eps)


def _penalty_and_grads(penalty, g, d, real, z, eps):
  """The penalty's mean and its gradient, and the full critic loss's gradient, w.r.t. D."""
  fake = tf.cast(g(z, training=True), real.dtype)
  e = eps[:, None, None, None]
  x_hat = e * fake + (1 - e) * real
  with tf.GradientTape(persistent=True) as tape:
    with tf.GradientTape(watch_accessed_variables=False) as inner:
      inner.watch(x_hat)
      d_hat = d(x_hat)
    grad_x_hat = inner.gradient(d_hat, x_hat)
    d_real, d_fake = d(real), d(fake)
    qa = penalty.fn(penalties.PenaltyInputs(real, fake, x_hat, d_real, d_fake, grad_x_hat))
    qa = qa[0] if isinstance(qa, tuple) else qa
    qa_mean = tf.reduce_mean(qa)
    # The critic loss as in the step. D's output bias cancels in D(fake) - D(real) and in
    # |D(real) - D(fake)| and does not enter grad_x D; only the drift term reaches it, by
    # ~1e-7 against the +-0.25 per-example terms, which float32 rounds away.
    total = tf.reduce_mean(d_fake - d_real + penalties.gradient_penalty(grad_x_hat)
                           + 1e-5 * tf.square(d_real)) + 0.1 * qa_mean
  variables = d.trainable_variables
  def zeros_for_none(grads):  # An unconnected variable's gradient is zero.
    return [tf.zeros(v.shape, v.dtype) if gr is None else gr for v, gr in zip(variables, grads)]
  return (qa_mean, zeros_for_none(tape.gradient(qa_mean, variables)),
          zeros_for_none(tape.gradient(total, variables)), variables)


@pytest.mark.parametrize("name,extra", [("ssim", {}), ("niqe", {"niqe_prior": "cifar_grad"}),
                                        ("niqe", {"niqe_prior": "natural",
                                                  "niqe_pooling": "batch",
                                                  "niqe_grayscale": False})])
def test_one_step_every_penalty_is_finite_and_reaches_every_d_variable(name, extra):
  config = _config(penalty=name, **extra)
  penalty = penalties.make_quality_penalty(name, config)
  g, d = _tiny()
  real, z, eps = _batch()
  value, qa_grads, total_grads, variables = _penalty_and_grads(penalty, g, d, real, z, eps)
  assert np.isfinite(float(value)) and float(value) > 0
  for v, gq, gt in zip(variables, qa_grads, total_grads):
    assert gq is not None and np.all(np.isfinite(gq.numpy())), v.path
    assert np.all(np.isfinite(gt.numpy())), v.path
    if v.path != "discriminator/dense/bias":
      assert np.any(gt.numpy() != 0), v.path
    if "kernel" in v.path:  # Biases: see test_penalty_gradient_reaches_biases_only_for_ssim.
      assert np.any(gq.numpy() != 0), v.path
  # And a real update through the train step: finite metrics, D changed.
  before = [v.numpy().copy() for v in d.trainable_variables]
  opt = keras.optimizers.Adam(1e-3)
  opt.build(d.trainable_variables)
  metrics = step.discriminator_update(g, d, opt, real, z, eps, global_batch_size=4,
                                      gp_weight=1.0, drift_weight=1e-5, qa_weight=0.1,
                                      quality_penalty=penalty)
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert f"{name}_penalty" in metrics
  changed = [not np.array_equal(b, v.numpy()) for b, v in zip(before, d.trainable_variables)]
  assert all(changed[:-1])


def test_penalty_gradient_reaches_biases_only_for_ssim():
  # D is piecewise linear in its input, so grad_x D does not move with D's biases (almost
  # everywhere): gradient penalties give biases exactly zero gradient; the SSIM penalty, built on
  # D's outputs, does not.
  g, d = _tiny()
  real, z, eps = _batch()
  for name, expect_nonzero in (("ssim", True), ("niqe", False)):
    penalty = penalties.make_quality_penalty(name, _config(penalty=name))
    _, qa_grads, _, variables = _penalty_and_grads(penalty, g, d, real, z, eps)
    bias = [gq.numpy() for v, gq in zip(variables, qa_grads) if "bias" in v.path]
    assert any(np.any(b != 0) for b in bias) == expect_nonzero, name


def test_ssim_penalty_matches_its_formula():
  config = _config(penalty="ssim")
  rng = np.random.default_rng(0)
  real = tf.constant(rng.uniform(-1, 1, (3, 32, 32, 3)).astype(np.float32))
  fake = tf.constant(rng.uniform(-1, 1, (3, 32, 32, 3)).astype(np.float32))
  d_real, d_fake = tf.constant([1.0, -2.0, 0.5]), tf.constant([0.0, 1.0, 0.5])
  inputs = penalties.PenaltyInputs(real, fake, real, d_real, d_fake, real)
  value, extras = qp.ssim_distance_penalty(inputs, config)
  dq = iqa.ssim_distance(real, fake, size=8, sigma=1.5, max_val=2.0, grayscale=True).numpy()
  expected = (np.abs(d_real.numpy() - d_fake.numpy()) / dq - 1) ** 2
  np.testing.assert_allclose(value.numpy(), expected, rtol=1e-5)
  np.testing.assert_allclose(extras["ssim_dq"].numpy(), dq, rtol=1e-6)
  # Identical images: dQ = 0 is floored, the value stays finite.
  same, _ = qp.ssim_distance_penalty(penalties.PenaltyInputs(
      real, real, real, d_real, d_fake, real), config)
  assert np.all(np.isfinite(same.numpy()))


def test_niqe_penalty_gradient_matches_finite_differences_on_a_float64_d():
  keras.config.set_dtype_policy("float64")
  try:
    keras.utils.set_random_seed(3)
    d = models.Discriminator(32, width=2)
    d(tf.zeros([1, 32, 32, 3], tf.float64))
  finally:
    keras.config.set_dtype_policy("float32")
  assert d.trainable_variables[0].dtype == "float64"
  config = _config(penalty="niqe", niqe_prior="cifar_grad", niqe_covariance_regularization=1e-2)
  penalty = penalties.make_quality_penalty("niqe", config)
  rng = np.random.default_rng(4)
  x_hat = tf.constant(rng.uniform(-1, 1, (2, 32, 32, 3)))

  def value():
    with tf.GradientTape(watch_accessed_variables=False) as inner:
      inner.watch(x_hat)
      d_hat = d(x_hat)
    grad = inner.gradient(d_hat, x_hat)
    zeros = tf.zeros([2], tf.float64)
    return tf.reduce_mean(penalty.fn(penalties.PenaltyInputs(
        x_hat, x_hat, x_hat, zeros, zeros, grad))[0])

  kernel = [v for v in d.trainable_variables if "kernel" in v.path][0]
  with tf.GradientTape() as tape:
    y = value()
  grad = tape.gradient(y, kernel).numpy()
  h = 1e-6
  flat_idx = rng.choice(kernel.numpy().size, 5, replace=False)
  original = kernel.numpy().copy()
  for idx in flat_idx:
    pos = np.unravel_index(idx, original.shape)
    plus, minus = original.copy(), original.copy()
    plus[pos] += h
    minus[pos] -= h
    kernel.assign(plus)
    f_plus = float(value())
    kernel.assign(minus)
    f_minus = float(value())
    kernel.assign(original)
    fd = (f_plus - f_minus) / (2 * h)
    assert grad[pos] == pytest.approx(fd, rel=1e-4, abs=1e-6), pos


def test_named_and_authors_priors_load_positive_definite():
  for name in qp.NAMED_PRIORS:
    prior = qp.load_prior(name)
    assert prior.mu.shape == (36,) and np.all(np.linalg.eigvalsh(prior.cov) > 0)
  for name in ("model_cifar_grad.mat", "model_STL_grad.mat", "model_face_grad.mat"):
    mat = qp.load_prior(reference_path("niqe", name))
    assert np.all(np.linalg.eigvalsh(mat.cov) > 0)
  np.testing.assert_array_equal(qp.load_prior(reference_path("niqe", "model_cifar_grad.mat")).mu,
                                qp.load_prior("cifar_grad").mu)
  assert qp.resolve_normalization("auto", qp.load_prior("face_grad")) == "none"
  assert qp.resolve_normalization("auto", qp.load_prior("cifar_grad")) == "max"
  with pytest.raises(ValueError, match="neither a named prior"):
    qp.load_prior("/nonexistent/prior.npz")


@pytest.mark.parametrize("source", ["sobel", "discriminator"])
def test_fitted_prior_is_spd_and_loads_back(tmp_path, source):
  from qagan_tf.data import sources
  images = sources.embedded_images(32, 48, seed=0)
  _, d = _tiny()
  model, info = niqe_prior.fit_prior(images, source, discriminator=d, block_size=16)
  assert info["blocks_kept"] > 36 and info["blocks_kept"] <= info["blocks_total"]
  path = str(tmp_path / "prior.npz")
  np.savez(path, mu=model.mu, cov=model.cov)
  loaded = qp.load_prior(path)
  np.testing.assert_array_equal(loaded.cov, loaded.cov.T)
  assert np.linalg.eigvalsh(loaded.cov).min() > 0
  with pytest.raises(ValueError, match="sharp blocks"):
    niqe_prior.fit_prior(images[:1], source, discriminator=d, block_size=16)


def test_bad_penalty_settings_are_refused():
  with pytest.raises(ValueError, match="Unknown penalty 'nique'.*ssim, niqe|Unknown penalty"):
    penalties.make_quality_penalty("nique", _config())
  with pytest.raises(ValueError, match="niqe_block_size=12"):
    _config(penalty="niqe", niqe_block_size=12, niqe_scales=3)
  with pytest.raises(ValueError, match="niqe_pooling"):
    _config(niqe_pooling="mean")
  with pytest.raises(ValueError, match="2 scales|needs 54"):
    penalties.make_quality_penalty("niqe", _config(penalty="niqe", niqe_scales=3,
                                                   niqe_block_size=16))
  bad = np.eye(36)
  bad[0, 0] = -1
  with pytest.raises(niqe_model_lib.ModelError, match="positive definite"):
    niqe_model_lib.validate(np.zeros(36), bad, "prior", require_positive_definite=True)
  assert dataclasses.asdict(_config())["penalty"] == "wgan_gp"
