"""Asymmetric generalised Gaussian (AGGD) fitting by moment matching, batched and differentiable.

The shape alpha solves rho(alpha) = R with rho(a) = Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)),
increasing from rho(0.2) ~ 0.0629 to rho(10) ~ 0.7405. Two solvers share everything else:
- "grid": MATLAB's nearest point of 0.2:0.001:10 (NIQE metric mode; no useful gradient);
- "root": TFP's Chandrupatla root finder, with the implicit-function gradient
  d alpha / d R = 1 / rho'(alpha) (differentiating the iterations gives NaN or wrong gradients).
R is clamped into [rho(0.2), rho(10)], so alpha stays in [0.2, 10]; at the clamp d alpha / d R
is 0 (a sample more peaked than alpha = 0.2 or flatter than alpha = 10 gets the end value).
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

ALPHA_MIN, ALPHA_MAX, GRID_STEP = 0.2, 10.0, 0.001


def rho(alpha):
  """Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)) computed through lgamma (float tensor)."""
  lg = tf.math.lgamma
  return tf.exp(2.0 * lg(2.0 / alpha) - lg(1.0 / alpha) - lg(3.0 / alpha))


def rho_derivative(alpha):
  """d rho / d alpha = rho(a) / a^2 * (psi(1/a) + 3 psi(3/a) - 4 psi(2/a))."""
  dg = tf.math.digamma
  inv = 1.0 / alpha
  return rho(alpha) * inv * inv * (dg(inv) + 3.0 * dg(3.0 * inv) - 4.0 * dg(2.0 * inv))


def _grid():
  gam = np.arange(ALPHA_MIN, ALPHA_MAX + GRID_STEP / 2, GRID_STEP)  # 9801 points, as MATLAB.
  from scipy.special import gamma
  return gam, gamma(2.0 / gam) ** 2 / (gamma(1.0 / gam) * gamma(3.0 / gam))


_GAM, _R_GAM = _grid()


def alpha_grid(r):
  """MATLAB's estimate: the grid point minimising (rho(a) - r)^2 (first one on ties)."""
  r_gam = tf.constant(_R_GAM, r.dtype)
  position = tf.argmin(tf.square(r_gam - r[..., None]), axis=-1)
  return tf.gather(tf.constant(_GAM, r.dtype), position)


@tf.custom_gradient
def _alpha_root_clamped(r):
  """alpha with rho(alpha) = r for r inside [rho(0.2), rho(10)], with the implicit gradient."""
  target = tf.stop_gradient(r)
  result = tfp.math.find_root_chandrupatla(
      lambda a: rho(a) - target,
      low=tf.fill(tf.shape(target), tf.constant(ALPHA_MIN, r.dtype)),
      high=tf.fill(tf.shape(target), tf.constant(ALPHA_MAX, r.dtype)),
      position_tolerance=tf.constant(1e-10 if r.dtype == tf.float64 else 1e-6, r.dtype),
      value_tolerance=tf.constant(0.0, r.dtype),
      max_iterations=100)
  alpha = tf.stop_gradient(result.estimated_root)

  def grad(upstream):
    return upstream / rho_derivative(alpha)
  return alpha, grad


def alpha_root(r):
  """Differentiable alpha solving rho(alpha) = clamp(r); see the module docstring."""
  lo = tf.constant(float(_R_GAM[0]), r.dtype)
  hi = tf.constant(float(_R_GAM[-1]), r.dtype)
  # The ends are answered directly: a bracket whose end is itself a root is ambiguous for the
  # solver, and outside the bracket the gradient is 0 by definition.
  inside = tf.clip_by_value(r, lo, hi)
  root = _alpha_root_clamped(inside)
  low_end = tf.fill(tf.shape(r), tf.constant(ALPHA_MIN, r.dtype))
  high_end = tf.fill(tf.shape(r), tf.constant(ALPHA_MAX, r.dtype))
  return tf.where(r <= lo, low_end, tf.where(r >= hi, high_end, root))


def fit_aggd(x, axis=-1, method="root", eps=0.0, mask=None):
  """Fits an AGGD to samples along `axis` by moment matching (NIQE's estimateaggdparam).

  Args:
    x: float tensor of samples.
    axis: the sample axis (reduced).
    method: "grid" (MATLAB) or "root" (differentiable).
    eps: added inside square roots and to denominators. 0 reproduces MATLAB exactly (an empty
      side then gives NaN/Inf as there); > 0 keeps values and gradients finite for constant or
      one-signed samples.
    mask: optional float tensor like x, 1 for samples to use (others ignored).

  Returns:
    (alpha, beta_left, beta_right), each with `axis` removed.
  """
  if method not in ("grid", "root"):
    raise ValueError(f"method={method!r}: use 'grid' or 'root'.")
  dtype = x.dtype
  ones = tf.ones_like(x) if mask is None else tf.cast(mask, dtype)
  neg = tf.cast(x < 0, dtype) * ones
  pos = tf.cast(x > 0, dtype) * ones
  sq = tf.square(x)
  count = tf.reduce_sum(ones, axis)
  left_ms = tf.math.divide(tf.reduce_sum(sq * neg, axis), tf.reduce_sum(neg, axis) + eps)
  right_ms = tf.math.divide(tf.reduce_sum(sq * pos, axis), tf.reduce_sum(pos, axis) + eps)
  left_std = tf.sqrt(left_ms + eps)
  right_std = tf.sqrt(right_ms + eps)
  gamma_hat = left_std / right_std
  mean_abs = tf.reduce_sum(tf.abs(x) * ones, axis) / count
  mean_sq = tf.reduce_sum(sq * ones, axis) / count
  r_hat = tf.square(mean_abs) / (mean_sq + eps)
  r_norm = (r_hat * (gamma_hat**3 + 1.0) * (gamma_hat + 1.0)) / tf.square(gamma_hat**2 + 1.0)
  alpha = alpha_grid(r_norm) if method == "grid" else alpha_root(r_norm)
  lg = tf.math.lgamma
  scale = tf.exp(0.5 * (lg(1.0 / alpha) - lg(3.0 / alpha)))
  return alpha, left_std * scale, right_std * scale


def aggd_mean_param(alpha, beta_left, beta_right):
  """NIQE's 'meanparam' eta = (beta_r - beta_l) * Gamma(2/a) / Gamma(1/a)."""
  lg = tf.math.lgamma
  return (beta_right - beta_left) * tf.exp(lg(2.0 / alpha) - lg(1.0 / alpha))
