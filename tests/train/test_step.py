"""One-step tests of the discriminator, generator and EMA updates with tiny networks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from qagan_tf import models
from qagan_tf.objectives import losses
from qagan_tf.objectives.objective import Objective
from qagan_tf.train import distribution, step


def _tiny(seed=0, spectral_norm=False):
  keras.utils.set_random_seed(seed)
  g = models.Generator(32, width=4, z_dim=8)
  d = models.Discriminator(32, width=4, spectral_norm=spectral_norm)
  g.build_for_inference()
  d.build_for_inference()
  return g, d


def _optimizer(variables):
  opt = keras.optimizers.Adam(1e-3, beta_1=0.0, beta_2=0.9)
  opt.build(variables)
  return opt


def _inputs(batch=4, seed=1):
  rng = np.random.default_rng(seed)
  real = tf.constant(rng.uniform(-1, 1, (batch, 32, 32, 3)).astype(np.float32))
  z = tf.constant(rng.normal(size=(batch, 8)).astype(np.float32))
  eps = tf.constant(rng.uniform(size=(batch,)).astype(np.float32))
  return real, z, eps


def _values(variables):
  return [v.numpy().copy() for v in variables]


def test_discriminator_update_loss_matches_the_formula_and_updates_only_d():
  g, d = _tiny()
  real, z, eps = _inputs()
  g_before, d_before = _values(g.trainable_variables), _values(d.trainable_variables)
  # Expected loss, computed independently before the update (G in training mode, as in the step).
  fake = g(z, training=True)
  e = eps[:, None, None, None]
  x_hat = e * fake + (1 - e) * real
  with tf.GradientTape() as tape:
    tape.watch(x_hat)
    s = tf.reduce_sum(d(x_hat))
  norms = np.sqrt((tape.gradient(s, x_hat).numpy() ** 2).sum(axis=(1, 2, 3)))
  d_real, d_fake = d(real).numpy(), d(fake).numpy()
  expected = np.mean(d_fake - d_real + 10.0 * (norms - 1) ** 2 + 1e-3 * d_real**2)

  metrics = step.discriminator_update(g, d, _optimizer(d.trainable_variables), real, z, eps,
                                      Objective(gp_weight=10.0, drift_weight=1e-3),
                                      global_batch_size=4).values
  assert float(metrics["d_loss"]) == pytest.approx(expected, rel=1e-4)
  assert float(metrics["wasserstein"]) == pytest.approx(np.mean(d_real - d_fake), rel=1e-4)
  assert float(metrics["gp"]) == pytest.approx(np.mean((norms - 1) ** 2), rel=1e-4)
  for before, v in zip(d_before, d.trainable_variables):
    assert not np.array_equal(before, v.numpy()), v.path
  for before, v in zip(g_before, g.trainable_variables):
    np.testing.assert_array_equal(before, v.numpy())


def test_every_discriminator_kernel_gets_a_finite_nonzero_gradient_through_the_gp():
  g, d = _tiny()
  real, z, eps = _inputs()
  fake = g(z, training=True)
  x_hat = eps[:, None, None, None] * fake + (1 - eps[:, None, None, None]) * real
  with tf.GradientTape() as outer:
    with tf.GradientTape() as inner:
      inner.watch(x_hat)
      s = d(x_hat)
    gp = tf.reduce_mean(losses.gradient_penalty(inner.gradient(s, x_hat)))
  for v, grad in zip(d.trainable_variables, outer.gradient(gp, d.trainable_variables)):
    grad = tf.zeros_like(v) if grad is None else grad  # The output bias is unconnected.
    assert np.all(np.isfinite(grad.numpy())), v.path
    if v.path.endswith("bias"):
      # D is piecewise linear in x: its input gradient is a product of kernels and ReLU masks, so
      # biases only move the masks and the penalty's derivative w.r.t. them is 0 almost surely.
      assert np.abs(grad.numpy()).max() == 0, v.path
    else:
      assert np.abs(grad.numpy()).max() > 0, v.path


def test_global_batch_scaling():
  g, d = _tiny()
  real, z, eps = _inputs()
  opt = _optimizer(d.trainable_variables)
  objective = Objective(gp_weight=1.0, drift_weight=0.0)
  half = step.discriminator_update(g, d, opt, real, z, eps, objective, global_batch_size=8)
  g2, d2 = _tiny()
  full = step.discriminator_update(g2, d2, _optimizer(d2.trainable_variables), real, z, eps,
                                   objective, global_batch_size=4)
  assert float(half.values["d_loss"]) == pytest.approx(float(full.values["d_loss"]) / 2,
                                                       rel=1e-5)


def test_generator_update_changes_only_g():
  g, d = _tiny()
  _, z, _ = _inputs(batch=8)
  d_before, g_before = _values(d.trainable_variables), _values(g.trainable_variables)
  expected = -np.mean(d(g(z, training=True)).numpy())
  metrics = step.generator_update(g, d, _optimizer(g.trainable_variables), z,
                                  losses.LOSSES["wasserstein"], global_batch_size=8)
  assert float(metrics.values["g_loss"]) == pytest.approx(expected, rel=1e-4, abs=1e-6)
  assert float(metrics.skipped) == 0.0 and metrics.computed == {}
  for before, v in zip(d_before, d.trainable_variables):
    np.testing.assert_array_equal(before, v.numpy())
  changed = [not np.array_equal(b, v.numpy()) for b, v in zip(g_before, g.trainable_variables)]
  assert all(changed)


def test_ema_update():
  ema = [tf.Variable([1.0, 2.0]), tf.Variable(4.0)]
  values = [tf.Variable([3.0, 0.0]), tf.Variable(8.0)]
  step.ema_update(ema, values, 0.75)
  np.testing.assert_allclose(ema[0].numpy(), [1.5, 1.5])
  assert float(ema[1].numpy()) == pytest.approx(5.0)


@pytest.mark.slow
@pytest.mark.parametrize("loss,spectral_norm", [("wasserstein", False), ("hinge", True)])
def test_mirrored_update_equals_single_device_update(loss, spectral_norm):
  """Two replicas with half the batch each and SGD (linear in the gradient, unlike Adam): the
  summed per-replica gradients of globally averaged losses must equal the single-device ones.
  With spectral norm, every replica holds the same power-iteration vectors afterwards, equal to
  the single device's."""
  real, z, eps = _inputs(batch=8)
  results = []
  devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
  objective = Objective(loss=losses.get_loss(loss), gp_weight=10.0, drift_weight=0.1)
  for strategy in (tf.distribute.get_strategy(), distribution.mirrored_strategy(devices)):
    with strategy.scope():
      g, d = _tiny(spectral_norm=spectral_norm)
      opt = keras.optimizers.SGD(0.5)
      opt.build(d.trainable_variables)
    n = strategy.num_replicas_in_sync
    split = lambda t: strategy.experimental_distribute_values_from_function(
        lambda ctx: t[ctx.replica_id_in_sync_group * 8 // n:(ctx.replica_id_in_sync_group + 1)
                      * 8 // n])

    @tf.function
    def run(r, zz, ee):
      m = strategy.run(lambda a, b, c: step.discriminator_update(
          g, d, opt, a, b, c, objective, global_batch_size=8), args=(r, zz, ee))
      return strategy.reduce("SUM", m.values["d_loss"], axis=None)
    for _ in range(2):  # Two updates: the second starts from power-iterated vectors.
      value = run(split(real), split(z), split(eps))
    u = [v for v in d.non_trainable_variables if v.path.endswith("sn_u")]
    assert len(u) == (11 if spectral_norm else 0)
    for v in u:  # Identical on every replica.
      local = [x.numpy() for x in strategy.experimental_local_results(v._value)]  # tf.Variable.
      assert len(local) == strategy.num_replicas_in_sync
      for x in local[1:]:
        np.testing.assert_array_equal(x, local[0], err_msg=v.path)
    results.append((float(value), _values(d.trainable_variables), _values(u)))
  assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
  # Two SGD steps at lr 0.5; dividing by sigma amplifies the reductions' float32 round-off.
  tol = 1e-3 if spectral_norm else 1e-4
  for a, b in zip(results[0][1] + results[0][2], results[1][1] + results[1][2]):
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol / 100)


@pytest.mark.parametrize("eager", [True, False])
def test_a_non_finite_update_is_dropped_whole(eager):
  """NaN in the batch: no weight, Adam slot or iteration count moves; a finite batch then
  updates as usual."""
  g, d = _tiny()
  opt = _optimizer(d.trainable_variables)
  real, z, eps = _inputs()
  bad = tf.tensor_scatter_nd_update(real, [[1, 3, 3, 0]], [float("nan")])
  objective = Objective(gp_weight=10.0, drift_weight=1e-3)
  update = lambda r: step.discriminator_update(g, d, opt, r, z, eps, objective,
                                               global_batch_size=4)
  if not eager:
    update = tf.function(update)
  before = _values(d.variables) + _values(opt.variables)
  metrics = update(bad)
  # (Compiled, the fused conv+ReLU may map the NaN to 0 so that the loss stays finite while
  # the kernel's gradient is NaN: checking the gradients as well matters.)
  assert float(metrics.skipped) == 1.0
  for b, v in zip(before, d.variables + opt.variables):
    np.testing.assert_array_equal(b, v.numpy(), err_msg=v.path)
  assert int(opt.iterations.numpy()) == 0
  metrics = update(real)
  assert float(metrics.skipped) == 0.0 and int(opt.iterations.numpy()) == 1
  assert not np.array_equal(before[0], d.variables[0].numpy())


def test_a_non_finite_generator_update_is_dropped():
  g, d = _tiny()
  opt = _optimizer(g.trainable_variables)
  d.trainable_variables[0].assign(tf.fill(d.trainable_variables[0].shape, float("inf")))
  before = _values(g.trainable_variables) + _values(opt.variables)
  metrics = step.generator_update(g, d, opt, _inputs()[1], losses.LOSSES["wasserstein"],
                                  global_batch_size=4)
  assert float(metrics.skipped) == 1.0 and int(opt.iterations.numpy()) == 0
  # (BN's moving statistics follow the forward pass, finite here; they are not the update.)
  for b, v in zip(before, g.trainable_variables + opt.variables):
    np.testing.assert_array_equal(b, v.numpy(), err_msg=v.path)


@pytest.mark.slow
def test_replicas_agree_to_drop_when_only_one_sees_a_non_finite_value():
  real, z, eps = _inputs(batch=8)
  real = tf.tensor_scatter_nd_update(real, [[6, 0, 0, 2]], [float("inf")])  # Replica 2's half.
  devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
  strategy = distribution.mirrored_strategy(devices)
  with strategy.scope():
    g, d = _tiny()
    opt = _optimizer(d.trainable_variables)
  split = lambda t: strategy.experimental_distribute_values_from_function(
      lambda ctx: t[ctx.replica_id_in_sync_group * 4:(ctx.replica_id_in_sync_group + 1) * 4])
  before = _values(d.variables)

  @tf.function
  def run(r, zz, ee):
    m = strategy.run(lambda a, b, c: step.discriminator_update(
        g, d, opt, a, b, c, Objective(gp_weight=10.0, drift_weight=0.0),
        global_batch_size=8),
                     args=(r, zz, ee))
    return strategy.reduce("SUM", m.skipped, axis=None)
  assert float(run(split(real), split(z), split(eps))) == 1.0
  for b, v in zip(before, d.variables):
    for local in strategy.experimental_local_results(v):
      np.testing.assert_array_equal(b, local.numpy(), err_msg=v.path)
  assert int(opt.iterations.numpy()) == 0


def _mixed_copy(g, d, policy):
  """G and D computing under a Keras mixed policy, with the weights of g and d."""
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy(policy)
  try:
    g16, d16 = models.Generator(32, width=4, z_dim=8), models.Discriminator(32, width=4)
  finally:
    keras.config.set_dtype_policy(previous)
  g16.build_for_inference()
  d16.build_for_inference()
  for src, dst in ((g, g16), (d, d16)):
    for a, b in zip(src.variables, dst.variables):
      assert b.dtype == "float32", b.path  # Mixed policies keep float32 weights.
      b.assign(a)
  return g16, d16


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_gradients_match_float32(policy):
  """16-bit activations, float32 weights, losses and penalties: the critic's loss, 1-GP and
  gradients (unscaled from float16's loss scale) agree with float32 to 16-bit round-off."""
  g, d = _tiny()
  g16, d16 = _mixed_copy(g, d, policy)
  assert d16.layers[0].compute_dtype == policy.split("_")[1]
  real, z, eps = _inputs()
  kwargs = dict(global_batch_size=4, objective=Objective(gp_weight=10.0, drift_weight=1e-3))
  loss, grads, metrics, _ = step.discriminator_gradients(g, d, real, z, eps, **kwargs)
  scale = 2.0**12 if policy == "mixed_float16" else None
  loss16, grads16, metrics16, _ = step.discriminator_gradients(g16, d16, real, z, eps,
                                                               loss_scale=scale, **kwargs)
  assert loss16.dtype == tf.float32 and metrics16["gp"].dtype == tf.float32
  np.testing.assert_allclose(loss16.numpy(), loss.numpy(), rtol=2e-2)
  np.testing.assert_allclose(metrics16["gp"].numpy(), metrics["gp"].numpy(), rtol=2e-2)
  flat = np.concatenate([x.numpy().ravel() for x in grads])
  flat16 = np.concatenate([x.numpy().ravel() for x in grads16]) / (scale or 1.0)
  cosine = flat @ flat16 / np.linalg.norm(flat) / np.linalg.norm(flat16)
  assert cosine > 0.99, cosine
  np.testing.assert_allclose(np.linalg.norm(flat16), np.linalg.norm(flat), rtol=5e-2)
  wasserstein = losses.LOSSES["wasserstein"]
  g_loss, g_grads = step.generator_gradients(g, d, z, wasserstein, global_batch_size=4)
  g_loss16, g_grads16 = step.generator_gradients(g16, d16, z, wasserstein, global_batch_size=4,
                                                 loss_scale=scale)
  np.testing.assert_allclose(g_loss16.numpy(), g_loss.numpy(), rtol=5e-2, atol=1e-3)
  flat = np.concatenate([x.numpy().ravel() for x in g_grads])
  flat16 = np.concatenate([x.numpy().ravel() for x in g_grads16]) / (scale or 1.0)
  assert flat @ flat16 / np.linalg.norm(flat) / np.linalg.norm(flat16) > 0.98


@pytest.mark.slow
def test_a_float16_overflow_halves_the_loss_scale_and_is_not_a_skipped_step(monkeypatch):
  g, d = _tiny()
  g, d = _mixed_copy(g, d, "mixed_float16")
  opt = _optimizer(d.trainable_variables)
  scale = step.LossScale(initial=2.0**40)  # 2^40 does not fit in float16: an overflow.
  real, z, eps = _inputs()
  update = tf.function(lambda r: step.discriminator_update(
      g, d, opt, r, z, eps, global_batch_size=4,
      loss_scale=scale, objective=Objective(gp_weight=10.0, drift_weight=1e-3)))
  before = _values(d.variables)
  metrics = update(real)
  assert float(metrics.skipped) == 0.0  # Routine: not counted as a non-finite step.
  assert float(scale.scale.numpy()) == 2.0**39 and int(opt.iterations.numpy()) == 0
  for b, v in zip(before, d.variables):
    np.testing.assert_array_equal(b, v.numpy(), err_msg=v.path)
  # Finite updates grow it again: after GROWTH_STEPS of them it doubles.
  monkeypatch.setattr(step.LossScale, "GROWTH_STEPS", 2)
  scale.scale.assign(2.0**10)
  update = tf.function(update.python_function)  # Retrace with the patched constant.
  for expected in (2.0**10, 2.0**11):
    assert float(update(real).skipped) == 0.0
    assert float(scale.scale.numpy()) == expected
  assert int(opt.iterations.numpy()) == 2
  # NaN in the batch at scale 1: non-finite whatever the scale, so it counts.
  scale.scale.assign(1.0)
  bad = tf.tensor_scatter_nd_update(real, [[0, 1, 1, 1]], [float("nan")])
  assert float(update(bad).skipped) == 1.0
  assert float(scale.scale.numpy()) == 1.0 and int(opt.iterations.numpy()) == 2


@pytest.mark.slow
@pytest.mark.parametrize("penalty_name", ["niqe", "ssim"])
def test_lazy_schedule_puts_each_penalty_on_exactly_its_d_updates_weighted_by_k(penalty_name):
  """gp_every=2, qa_every=3: D update n carries the 1-GP iff n % 2 == 0 and the QA penalty iff
  n % 3 == 0, each then weighted by its interval; the loss and gradients equal those of an
  objective that applies exactly those weights, and nothing else is computed."""
  from qagan_tf import config as config_lib
  from qagan_tf.objectives import penalties
  config = config_lib.TrainConfig.create(resolution=32, dataset="embedded", batch_size=4,
                                         penalty=penalty_name).validate()
  penalty = penalties.build_for_config(config)
  g, d = _tiny()
  real, z, eps = _inputs()
  fake = tf.cast(g(z, training=True), tf.float32)
  lazy = Objective(gp_weight=10.0, drift_weight=1e-3, qa_weight=0.1,
                        quality_penalty=penalty, gp_every=2, qa_every=3)
  assert lazy.lazy
  compiled = tf.function(step.critic_gradients)  # One trace for every d_update.
  for n in range(12):
    loss, grads, metrics, computed = compiled(d, real, fake, eps, lazy, global_batch_size=4,
                                              d_update=tf.constant(n, tf.int64))
    gp_due, qa_due = n % 2 == 0, n % 3 == 0
    assert float(computed["gp"]) == float(gp_due), n
    assert float(computed[penalty.summary_tag]) == float(qa_due), n
    if not gp_due:
      assert float(metrics["gp"]) == 0.0
    if not qa_due:
      assert float(metrics[penalty.summary_tag]) == 0.0
    reference = Objective(gp_weight=20.0 if gp_due else 0.0, drift_weight=1e-3,
                               qa_weight=0.3 if qa_due else 0.0,
                               quality_penalty=penalty if qa_due else None)
    ref_loss, ref_grads, ref_metrics, ref_computed = step.critic_gradients(
        d, real, fake, eps, reference, global_batch_size=4)
    assert ref_computed == {}  # Not lazy: every metric on every update.
    assert float(loss) == pytest.approx(float(ref_loss), rel=1e-5), n
    scale = max(np.abs(b.numpy()).max() for b in ref_grads)
    for a, b in zip(grads, ref_grads):  # float32 round-off, relative to the gradients' size.
      np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-5 * scale)
    if qa_due:
      assert float(metrics[penalty.summary_tag]) == pytest.approx(
          float(ref_metrics[penalty.summary_tag]), rel=1e-5)
  with pytest.raises(ValueError, match="needs d_update"):
    step.critic_gradients(d, real, fake, eps, lazy, global_batch_size=4)
