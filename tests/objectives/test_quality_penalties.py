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
from qagan_tf.objectives import losses, penalties, penalty_api
from qagan_tf.objectives.niqe import priors as niqe_priors
from qagan_tf.objectives.niqe import settings as niqe_settings
from qagan_tf.objectives.niqe import transform as niqe_transform
from qagan_tf.objectives.objective import Objective
from qagan_tf.train import distribution, step
from tests.reference import reference_path


def _config(**kw):
  base = dict(resolution=32, width=4, z_dim=8, batch_size=4, dataset="embedded")
  base.update(kw)
  return config_lib.TrainConfig.create(**base).validate()


def _resolve(config, prior):
  """The penalty's settings for a TrainConfig, as bin/train resolves them."""
  return niqe_settings.resolve_settings(config.niqe, prior, config.resolution)


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
    qa = penalty.fn(penalty_api.PenaltyInputs(real, fake, x_hat, d_real, d_fake, grad_x_hat))
    qa = qa[0] if isinstance(qa, tuple) else qa
    qa_mean = tf.reduce_mean(qa)
    # The critic loss as in the step. D's output bias cancels in D(fake) - D(real) and in
    # |D(real) - D(fake)| and does not enter grad_x D; only the drift term reaches it, by
    # ~1e-7 against the +-0.25 per-example terms, which float32 rounds away.
    total = tf.reduce_mean(d_fake - d_real + losses.gradient_penalty(grad_x_hat)
                           + 1e-5 * tf.square(d_real)) + 0.1 * qa_mean
  variables = d.trainable_variables
  def zeros_for_none(grads):  # An unconnected variable's gradient is zero.
    return [tf.zeros(v.shape, v.dtype) if gr is None else gr for v, gr in zip(variables, grads)]
  return (qa_mean, zeros_for_none(tape.gradient(qa_mean, variables)),
          zeros_for_none(tape.gradient(total, variables)), variables)


@pytest.mark.parametrize("name,extra", [("ssim", {}), ("niqe", {"niqe_prior": "cifar_grad"}),
                                        ("niqe", {"niqe_prior": "natural", "niqe_block_size": 16,
                                                  "niqe_pooling": "image",
                                                  "niqe_grayscale": False,
                                                  "niqe_allow_prior_mismatch": True})])
def test_one_step_every_penalty_is_finite_and_reaches_every_d_variable(name, extra):
  config = _config(penalty=name, **extra)
  penalty = penalties.build_for_config(config)
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
  objective = Objective(gp_weight=1.0, drift_weight=1e-5, qa_weight=0.1, quality_penalty=penalty)
  metrics = step.discriminator_update(g, d, opt, real, z, eps, objective,
                                      global_batch_size=4).values
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
    penalty = penalties.build_for_config(_config(penalty=name))
    _, qa_grads, _, variables = _penalty_and_grads(penalty, g, d, real, z, eps)
    bias = [gq.numpy() for v, gq in zip(variables, qa_grads) if "bias" in v.path]
    assert any(np.any(b != 0) for b in bias) == expect_nonzero, name


def test_ssim_penalty_matches_its_formula():
  config = _config(penalty="ssim")
  rng = np.random.default_rng(0)
  real = tf.constant(rng.uniform(-1, 1, (3, 32, 32, 3)).astype(np.float32))
  fake = tf.constant(rng.uniform(-1, 1, (3, 32, 32, 3)).astype(np.float32))
  d_real, d_fake = tf.constant([1.0, -2.0, 0.5]), tf.constant([0.0, 1.0, 0.5])
  inputs = penalty_api.PenaltyInputs(real, fake, real, d_real, d_fake, real)
  value, extras = penalties.build_for_config(config).fn(inputs)
  dq = iqa.ssim_distance(real, fake, size=8, sigma=1.5, max_val=2.0, grayscale=True).numpy()
  expected = (np.abs(d_real.numpy() - d_fake.numpy()) / dq - 1) ** 2
  np.testing.assert_allclose(value.numpy(), expected, rtol=1e-5)
  np.testing.assert_allclose(extras["ssim_dq"].numpy(), dq, rtol=1e-6)
  # Identical images: dQ = 0 is floored, the value stays finite.
  same, _ = penalties.build_for_config(config).fn(penalty_api.PenaltyInputs(
      real, real, real, d_real, d_fake, real))
  assert np.all(np.isfinite(same.numpy()))


def _float64_critic_loss(split="soft", pooling="batch", seed=3):
  """A tiny float64 D and the full critic loss (Wasserstein + 1-GP + drift + 0.1 NIQE) on
  fixed real, fake and interpolated images, as the train step computes it."""
  keras.config.set_dtype_policy("float64")
  try:
    keras.utils.set_random_seed(seed)
    d = models.Discriminator(32, width=2)
    d(tf.zeros([1, 32, 32, 3], tf.float64))
  finally:
    keras.config.set_dtype_policy("float32")
  penalty = penalties.build_for_config(_config(penalty="niqe", niqe_split=split,
                                              niqe_pooling=pooling))
  from qagan_tf.data import sources
  rng = np.random.default_rng(4)
  real = tf.constant(sources.embedded_images(32, 4, seed=1) / 127.5 - 1.0)
  fake = tf.constant(rng.uniform(-1, 1, (4, 32, 32, 3)))
  e = tf.constant(rng.uniform(size=(4, 1, 1, 1)))
  x_hat = e * fake + (1 - e) * real

  def loss():
    with tf.GradientTape(watch_accessed_variables=False) as inner:
      inner.watch(x_hat)
      d_hat = d(x_hat)
    grad = inner.gradient(d_hat, x_hat)
    d_real, d_fake = d(real), d(fake)
    qa, _ = penalty.fn(penalty_api.PenaltyInputs(real, fake, x_hat, d_real, d_fake, grad))
    return tf.reduce_mean(d_fake - d_real + losses.gradient_penalty(grad)
                          + 1e-5 * tf.square(d_real) + 0.1 * qa)
  return d, loss


@pytest.mark.parametrize("pooling", ["batch", "pooled"])
def test_critic_loss_finite_differences_converge_along_random_weight_directions(pooling):
  d, loss = _float64_critic_loss(pooling=pooling)
  assert d.trainable_variables[0].dtype == "float64" and loss().dtype == tf.float64
  variables = d.trainable_variables
  with tf.GradientTape() as tape:
    value = loss()
  grads = [tf.zeros_like(v) if g is None else g for v, g in zip(variables, tape.gradient(
      value, variables))]
  original = [v.numpy().copy() for v in variables]
  rng = np.random.default_rng(0)
  for _ in range(3):
    direction = [rng.normal(size=v.shape) for v in variables]
    norm = np.sqrt(sum(np.sum(u**2) for u in direction))
    direction = [u / norm for u in direction]
    analytic = sum(float(tf.reduce_sum(g * u)) for g, u in zip(grads, direction))
    errors = []
    # Steps small enough that no ReLU of D switches (D's input gradient jumps where one does).
    for h in (1e-5, 1e-6, 1e-7):
      values = []
      for sign in (1.0, -1.0):
        for v, o, u in zip(variables, original, direction):
          v.assign(o + sign * h * u)
        values.append(float(loss()))
      for v, o in zip(variables, original):
        v.assign(o)
      errors.append(abs((values[0] - values[1]) / (2 * h) - analytic) / abs(analytic))
    assert errors[-1] < 0.05 and min(errors) < 1e-4, errors


def test_the_niqe_penalty_is_smooth_in_ds_gradient_and_the_hard_split_is_not():
  # D's gradient moved along random directions by h times its size: with the soft split the
  # central differences converge to the analytic derivative at second order (h 1e-3, 1e-4,
  # 1e-5 measured 9e-4..1.6e-1, 5e-6..1.3e-3, 5e-8..1.3e-5: random directions are nearly
  # orthogonal to the gradient, so their derivative is small and its relative error large at
  # the first step); MATLAB's hard split jumps whenever a value crosses 0 (the issue measured
  # jumps of 0.02-0.04 every 5e-4 in D's weight space), and its differences do not converge.
  from qagan_tf.data import sources
  keras.utils.set_random_seed(3)
  d = models.Discriminator(32, width=2)
  d.build_for_inference()
  x = tf.constant(sources.embedded_images(32, 4, seed=1) / 127.5 - 1.0, tf.float32)
  with tf.GradientTape() as tape:
    tape.watch(x)
    score = tf.reduce_sum(d(x))
  g0 = tf.cast(tape.gradient(score, x), tf.float64)
  prior = niqe_priors.load_prior("cifar_grad")
  rng = np.random.default_rng(0)
  directions = [tf.constant(rng.normal(size=g0.shape)) for _ in range(4)]
  steps = (1e-3, 1e-4, 1e-5)
  errors = {}
  for split in ("soft", "hard"):
    settings = _resolve(_config(penalty="niqe", niqe_split=split), prior)

    def f(g, settings=settings):
      return tf.reduce_mean(niqe_transform.gradient_distance(g, prior, settings))
    with tf.GradientTape() as tape:
      tape.watch(g0)
      y = f(g0)
    grad = tape.gradient(y, g0)
    errors[split] = np.zeros((len(directions), len(steps)))
    for i, v in enumerate(directions):
      v = v / tf.norm(v) * tf.norm(g0)
      analytic = float(tf.reduce_sum(grad * v))
      for j, h in enumerate(steps):
        fd = (float(f(g0 + h * v)) - float(f(g0 - h * v))) / (2 * h)
        errors[split][i, j] = abs(fd - analytic) / abs(analytic)
  soft = errors["soft"]
  print("FD relative errors (soft split), rows: directions, columns: h =", steps, soft)
  assert np.all(soft[:, -1] < 1e-4), soft
  assert np.all(soft[:, 1:] < soft[:, :-1] / 20), soft  # Second order: ~100x per decade.
  assert errors["hard"][:, 0].max() > 0.5, errors["hard"]


def test_named_and_authors_priors_load_positive_definite():
  for name in niqe_priors.NAMED_PRIORS:
    prior = niqe_priors.load_prior(name).model
    assert prior.mu.shape == (36,) and np.all(np.linalg.eigvalsh(prior.cov) > 0)
  for name in ("model_cifar_grad.mat", "model_STL_grad.mat", "model_face_grad.mat"):
    mat = niqe_priors.load_prior(reference_path("niqe", name)).model
    assert np.all(np.linalg.eigvalsh(mat.cov) > 0)
  np.testing.assert_array_equal(
      niqe_priors.load_prior(reference_path("niqe", "model_cifar_grad.mat")).model.mu,
      niqe_priors.load_prior("cifar_grad").model.mu)
  with pytest.raises(ValueError, match="neither a named prior"):
    niqe_priors.load_prior("/nonexistent/prior.npz")


def test_bad_penalty_settings_are_refused():
  with pytest.raises(ValueError, match="Unknown penalty 'nique'.*ssim, niqe|Unknown penalty"):
    penalties.build("nique")
  with pytest.raises(ValueError, match="niqe_block_size=12"):
    _config(penalty="niqe", niqe_block_size=12, niqe_scales=3)
  with pytest.raises(ValueError, match="niqe_pooling"):
    _config(niqe_pooling="mean")
  with pytest.raises(ValueError, match="niqe_split_temperature > 0"):
    _config(niqe_split_temperature=0.0)
  with pytest.raises(ValueError, match="--niqe_scales=3 .the prior: 2"):
    penalties.build_for_config(_config(penalty="niqe", niqe_scales=3, niqe_block_size=16))
  bad = np.eye(36)
  bad[0, 0] = -1
  with pytest.raises(niqe_model_lib.ModelError, match="positive definite"):
    niqe_model_lib.validate(np.zeros(36), bad, "prior", require_positive_definite=True)
  assert dataclasses.asdict(_config())["penalty"] == "wgan_gp"


@pytest.mark.slow
@pytest.mark.parametrize("pooling,xla", [("batch", "off"), ("pooled", "off"), ("batch", "on"),
                                         ("group", "off"), ("group", "on")])
def test_mirrored_niqe_update_equals_the_single_device_update(pooling, xla):
  """The batch covariance is pooled over all replicas (an all-reduce inside the penalty): two
  replicas with half the batch each and SGD must give the single-device update (a per-replica
  covariance would not: each half has 4x fewer blocks). With --niqe_xla=on the per-replica part
  is compiled and the all-reduce stays outside it. Groups (of 4 here) never span replicas: each
  replica's half of the batch is one group, as on one device."""
  config = _config(penalty="niqe", niqe_pooling=pooling, batch_size=8, niqe_xla=xla,
                   niqe_group_size=4)
  rng = np.random.default_rng(5)
  real = tf.constant(rng.uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32))
  z = tf.constant(rng.normal(size=(8, 8)).astype(np.float32))
  eps = tf.constant(rng.uniform(size=(8,)).astype(np.float32))
  devices = [dev.name for dev in tf.config.list_logical_devices("CPU")][:2]
  assert len(devices) == 2  # tests/conftest.py splits the CPU in two.
  results = []
  for strategy in (tf.distribute.get_strategy(), distribution.mirrored_strategy(devices)):
    with strategy.scope():
      g, d = _tiny()
      opt = keras.optimizers.SGD(0.5)
      opt.build(d.trainable_variables)
    penalty = penalties.build_for_config(config)
    n = strategy.num_replicas_in_sync
    split = lambda t, n=n, strategy=strategy: (
        strategy.experimental_distribute_values_from_function(
            lambda ctx: t[ctx.replica_id_in_sync_group * 8 // n:
                          (ctx.replica_id_in_sync_group + 1) * 8 // n]))

    def make_run(g, d, opt, strategy, penalty):  # (A closure: tf.function traces defaults.)
      @tf.function
      def run(r, zz, ee):
        m = strategy.run(lambda a, b, c: step.discriminator_update(
            g, d, opt, a, b, c, Objective(gp_weight=1.0, drift_weight=1e-3, qa_weight=0.1,
                                          quality_penalty=penalty),
            global_batch_size=8), args=(r, zz, ee))
        return (strategy.reduce("SUM", m.values["d_loss"], axis=None),
                strategy.reduce("SUM", m.values["niqe_penalty"], axis=None))
      return run
    run = make_run(g, d, opt, strategy, penalty)
    loss, qa = run(split(real), split(z), split(eps))
    results.append((float(loss), float(qa), [v.numpy() for v in d.trainable_variables]))
  assert results[0][1] > 0 and results[0][1] == pytest.approx(results[1][1], rel=1e-4)
  assert results[0][0] == pytest.approx(results[1][0], rel=1e-4)
  for a, b in zip(results[0][2], results[1][2]):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)


@pytest.mark.slow
def test_the_xla_compiled_niqe_penalty_is_the_same_function():
  prior = niqe_priors.load_prior("cifar_grad")
  settings = _resolve(_config(penalty="niqe"), prior)
  grads = tf.constant(np.random.default_rng(3).normal(0, 1e-2, (4, 32, 32, 3)), tf.float32)
  values = []
  for compiled in (False, True):
    distance = niqe_transform.GradientDistance(prior, settings, compile_local=compiled)
    with tf.GradientTape() as tape:
      tape.watch(grads)
      value = tf.reduce_sum(distance(grads))
    values.append((value.numpy(), tape.gradient(value, grads).numpy()))
  assert values[0][0] == pytest.approx(values[1][0], rel=1e-5)
  # float32 round-off through the MVG solve, relative to the largest gradient entry.
  scale = np.abs(values[0][1]).max()
  np.testing.assert_allclose(values[1][1] / scale, values[0][1] / scale, atol=1e-3)
  # --niqe_xla: auto compiles on GPUs only, never inside a step --jit_compile already compiles;
  # resolved when a run starts and recorded (config.json), as --jit_compile.
  assert niqe_settings.resolve_xla("auto") == "off"  # No GPU in tests.
  assert niqe_settings.resolve_xla("on") == "on"
  assert niqe_settings.resolve_xla("auto", jit_compile=True) == "off"
  assert _config(penalty="niqe").resolve_auto().niqe.xla == "off"
  assert _config(penalty="niqe", niqe_xla="on").resolve_auto().niqe.xla == "on"
  with pytest.raises(ValueError, match="niqe_xla='always': use one of auto, on, off"):
    _config(penalty="niqe", niqe_xla="always")
