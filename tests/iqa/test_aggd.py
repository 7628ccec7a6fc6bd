"""Tests of AGGD fitting: the grid and root solvers, the implicit gradient, parameter recovery."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings, strategies as st
from scipy.special import gamma

from qagan_tf.iqa import aggd


def test_rho_matches_scipy_and_spans_the_documented_range():
  a = np.array([0.2, 0.5, 1.0, 2.0, 10.0])
  expected = gamma(2 / a) ** 2 / (gamma(1 / a) * gamma(3 / a))
  np.testing.assert_allclose(aggd.rho(tf.constant(a)).numpy(), expected, rtol=1e-10)
  assert expected[0] == pytest.approx(0.06294, abs=1e-5) and expected[-1] == pytest.approx(
      0.74053, abs=1e-5)


def test_rho_derivative_matches_finite_differences():
  a = tf.constant([0.3, 0.8, 2.0, 6.0], tf.float64)
  h = 1e-6
  fd = (aggd.rho(a + h) - aggd.rho(a - h)) / (2 * h)
  np.testing.assert_allclose(aggd.rho_derivative(a).numpy(), fd.numpy(), rtol=1e-6)


@settings(max_examples=50, deadline=None)
@given(st.floats(0.0630, 0.7405))
def test_root_alpha_agrees_with_grid_alpha_within_the_grid_step(r):
  r = tf.constant([r], tf.float64)
  grid, root = aggd.alpha_grid(r).numpy()[0], aggd.alpha_root(r).numpy()[0]
  assert abs(grid - root) <= aggd.GRID_STEP
  assert float(aggd.rho(tf.constant(root, tf.float64))) == pytest.approx(float(r[0]), abs=1e-9)


def test_implicit_gradient_matches_finite_differences():
  r = tf.constant([0.08, 0.3, 0.6, 0.72], tf.float64)
  theoretical, numerical = tf.test.compute_gradient(aggd.alpha_root, [r], delta=1e-7)
  np.testing.assert_allclose(np.diag(theoretical[0]), np.diag(numerical[0]), rtol=1e-5)


def test_clamped_ends():
  r = tf.constant([0.01, 0.9], tf.float64)
  with tf.GradientTape() as tape:
    tape.watch(r)
    alpha = aggd.alpha_root(r)
  np.testing.assert_allclose(alpha.numpy(), [0.2, 10.0], atol=1e-8)
  np.testing.assert_array_equal(tape.gradient(alpha, r).numpy(), [0.0, 0.0])


def _sample_aggd(alpha, beta_l, beta_r, n, seed=0):
  rng = np.random.default_rng(seed)
  magnitude = rng.gamma(1.0 / alpha, 1.0, n) ** (1.0 / alpha)
  left = rng.uniform(size=n) < beta_l / (beta_l + beta_r)
  return np.where(left, -beta_l * magnitude, beta_r * magnitude)


@pytest.mark.parametrize("method", ["grid", "root"])
@pytest.mark.parametrize("alpha,beta_l,beta_r", [(0.8, 0.5, 1.0), (2.0, 1.0, 1.0),
                                                 (1.3, 2.0, 0.7)])
def test_fit_recovers_parameters(method, alpha, beta_l, beta_r):
  x = tf.constant(_sample_aggd(alpha, beta_l, beta_r, 200_000))
  a, bl, br = aggd.fit_aggd(x, method=method)
  assert float(a) == pytest.approx(alpha, rel=0.04)
  assert float(bl) == pytest.approx(beta_l, rel=0.04)
  assert float(br) == pytest.approx(beta_r, rel=0.04)


def test_one_sided_samples_give_finite_values_and_gradients_with_eps():
  x = tf.constant(np.abs(np.random.default_rng(0).normal(size=(3, 100))) + 0.1)
  with tf.GradientTape() as tape:
    tape.watch(x)
    a, bl, br = aggd.fit_aggd(x, method="root", eps=1e-8)
    total = tf.reduce_sum(a + bl + br + aggd.aggd_mean_param(a, bl, br))
  grad = tape.gradient(total, x).numpy()
  assert np.all(np.isfinite(total.numpy())) and np.all(np.isfinite(grad))


def test_matlab_mode_keeps_nan_for_an_empty_side():
  a, bl, br = aggd.fit_aggd(tf.constant([[1.0, 2.0, 3.0]], tf.float64), method="grid")
  assert np.isnan(bl.numpy()[0]) and np.isfinite(br.numpy()[0]) or np.isnan(a.numpy()[0])


def test_the_soft_split_is_continuous_where_the_hard_split_jumps():
  # 400 samples and one more that crosses 0: the hard split moves it from one side's count to
  # the other's, so the fit jumps; the soft split changes by O(crossing).
  base = _sample_aggd(1.2, 0.8, 1.1, 400, seed=3)
  def fit(last, split):
    x = tf.constant(np.append(base, last)[None])
    return np.concatenate([t.numpy() for t in aggd.fit_aggd(x, method="root", eps=1e-12,
                                                            split=split)])
  for split, continuous in (("hard", False), ("soft", True)):
    jump = np.abs(fit(1e-9, split) - fit(-1e-9, split)).max()
    assert (jump < 1e-6) == continuous, (split, jump)
  # Away from 0 the soft split agrees with the hard one: a second-order bias only.
  x = tf.constant(_sample_aggd(1.3, 2.0, 0.7, 20_000, seed=4))
  hard = np.array([t.numpy() for t in aggd.fit_aggd(x, split="hard")])
  soft = np.array([t.numpy() for t in aggd.fit_aggd(x, split="soft")])
  np.testing.assert_allclose(soft, hard, rtol=0.03)
  with pytest.raises(ValueError, match="split='half'"):
    aggd.fit_aggd(x, split="half")


def test_the_fixed_step_newton_root_matches_the_chandrupatla_reference():
  r = tf.constant(np.linspace(0.0630, 0.7405, 2001), tf.float64)
  newton = aggd.alpha_root(r).numpy()
  reference = aggd.alpha_chandrupatla(r).numpy()
  np.testing.assert_allclose(newton, reference, atol=1e-9)
  # No data-dependent loop: the compiled graph holds no While op, whatever the inputs.
  graph = tf.function(aggd.alpha_root).get_concrete_function(
      tf.TensorSpec([None], tf.float32)).graph
  assert not [op.type for op in graph.get_operations() if op.type in ("While", "StatelessWhile")]
  compiled = tf.function(aggd.alpha_root, jit_compile=True)
  alpha32 = compiled(tf.cast(r, tf.float32))
  # float32 rounds alpha itself where rho is flat (near 10); rho(alpha) is what must match.
  np.testing.assert_allclose(aggd.rho(tf.cast(alpha32, tf.float64)).numpy(), r.numpy(), atol=2e-6)
