"""The NIQE gradient penalty (paper eqs. 14-15): `niqe_gradient_penalty` (qa.niqe_penalty), the
`niqe` registry entry (its TensorBoard diagnostics: `summaries`).

NIQE(T(grad_x_hat D(x_hat)) | mu_P, Sigma_P): the differentiable NIQE of D's input gradient at the
interpolates after the transform T that the prior's inputs had (see `transform` and `priors`); a
second-order term in D's variables, as the 1-GP. Unweighted and per example.
"""

import dataclasses

import tensorflow as tf

from qagan_tf.objectives import penalty_api
from qagan_tf.objectives.niqe import priors
from qagan_tf.objectives.niqe import settings as settings_lib
from qagan_tf.objectives.niqe import summaries
from qagan_tf.objectives.niqe import transform
from qagan_tf.objectives.niqe.settings import NiqeConfig
from qagan_tf.utils import fields

# Settings of `niqe_gradient_penalty` (the NiqeConfig fields a caller may give as keywords).
SETTINGS = tuple(f.name for f in dataclasses.fields(NiqeConfig) if f.name not in ("prior", "xla"))
_DISTANCES = {}


def _keyword(field):
  return "the input_gradients' side" if field == "resolution" else field


def gradient_distance_for(input_shape, prior="cifar_grad", xla=False, **settings):
  """The (cached) `transform.GradientDistance` that scores gradients of `input_shape`
  (B, R, R, C) under `prior` with `settings` (NiqeConfig fields as keywords; bin/train's
  defaults for the others). Raises ValueError naming a bad keyword or value."""
  niqe = fields.from_keywords(
      NiqeConfig, dict(settings, prior=prior if isinstance(prior, str) else "(a Prior)"),
      "NIQE penalty setting(s)", valid=SETTINGS + ("prior",), spell=_keyword)
  if isinstance(prior, str):
    prior = priors.load_prior(prior)
  resolution = int(input_shape[1])
  key = (id(prior), resolution, niqe, bool(xla))
  if key not in _DISTANCES:
    resolved = settings_lib.resolve_settings(niqe, prior, resolution, spell=_keyword)
    _DISTANCES[key] = (prior, transform.GradientDistance(prior, resolved, compile_local=xla))
  return _DISTANCES[key][1]


def niqe_gradient_penalty(input_gradients, prior="cifar_grad", *, xla=False, **settings):
  """The NIQE gradient penalty (paper eqs. 14-15), unweighted and per example.

  NIQE(T(g) | mu_P, Sigma_P) of D's input gradients g after the transform T that the prior's
  inputs had (see `transform`); with the default pooling each example gets the distance of
  its group of `group_size` (16) consecutive examples, the same at every batch size.

  Args:
    input_gradients: float (B, R, R, C) with C = 3 (or 1), D's gradient at the interpolates,
      unbounded (no value-range check), differentiable w.r.t. D's variables. float32 and float64
      are computed as given, float16/bfloat16 in float32.
    prior: a named prior (cifar_grad, stl_grad, natural_sobel64, natural), a .npz/.mat path, or
      a `priors.Prior`.
    xla: compile the per-replica part with XLA.
    **settings: the penalty's settings by NiqeConfig field name (block_size, scales, pooling,
      group_size, grayscale, transform, smoothing, normalization, normalization_scale, split,
      split_temperature, covariance_regularization, allow_prior_mismatch); defaults: bin/train's.

  Returns:
    float (B,) (float32 for 16-bit inputs).

  Raises:
    ValueError: a wrong static rank, a non-square or non-float input, NaN or Inf in an eager
      input, or a setting that is unknown, out of range or contradicts the prior (naming it and
      the fix).
  """
  g = tf.convert_to_tensor(input_gradients)
  if g.shape.rank != 4 or g.shape[-1] not in (1, 3) or g.shape[1] is None or (
      g.shape[1] != g.shape[2]):
    raise ValueError(f"input_gradients must be D's input gradients shaped (B, R, R, 3) (or "
                     f"(B, R, R, 1)) with a static size R; got shape {g.shape}.")
  if not g.dtype.is_floating:
    raise ValueError(f"input_gradients must be a float tensor (D's input gradients); got "
                     f"{g.dtype.name}.")
  if g.dtype in (tf.float16, tf.bfloat16):
    g = tf.cast(g, tf.float32)
  if tf.executing_eagerly() and g.shape.num_elements():
    bad = int(tf.size(g)) - int(tf.reduce_sum(tf.cast(tf.math.is_finite(g), tf.int32)))
    if bad:  # One NaN would make its whole group's distance NaN.
      raise ValueError(f"input_gradients holds {bad} NaN or Inf value(s); the NIQE penalty "
                       "needs finite gradients (a NaN makes every example of its group NaN).")
  return gradient_distance_for(g.shape, prior, xla, **settings)(g)


def build_penalty(niqe, resolution, *, xla=False):
  """The `niqe` QualityPenalty with `NiqeConfig` settings for D gradients of `resolution` px:
  the prior is loaded and the settings resolved against it once, here (errors, e.g. a prior of
  another resolution, are raised here, worded as bin/train's flags).

  xla: the step that calls the penalty is compiled with XLA as a whole (--jit_compile); then the
  penalty is not compiled on its own, whatever niqe.xla says.
  """
  prior = priors.load_prior(niqe.prior)
  resolved = settings_lib.resolve_settings(niqe, prior, resolution)
  distance = transform.GradientDistance(
      prior, resolved, compile_local=settings_lib.resolve_xla(niqe.xla, xla) == "on" and not xla)

  def fn(inputs):
    g = inputs.grad_x_hat
    return distance(tf.cast(g, tf.float32) if g.dtype in (tf.float16, tf.bfloat16) else g), {}

  def write_summaries(discriminator, real, fake, step):
    summaries.write_gradient_summaries(discriminator, real, fake, step, prior, resolved)

  return penalty_api.QualityPenalty("niqe", "niqe_penalty", fn, needs_input_gradient=True,
                                    write_summaries=write_summaries)


def check_strategy(config, replicas):
  """--jit_compile compiles D's whole computation, and a compiled function cannot all-reduce:
  the batch-wide poolings (batch, pooled) pool over replicas; groups and images do not."""
  pooling = config.niqe.pooling
  if config.jit_compile and replicas > 1 and pooling in ("batch", "pooled"):
    raise ValueError(
        f"--jit_compile compiles D's whole loss+gradient computation, and a compiled function "
        f"cannot all-reduce: the NIQE penalty's --niqe_pooling={pooling} pools over the "
        f"{replicas} replicas. Drop --jit_compile (with --niqe_xla=on the penalty's per-replica "
        f"part is still compiled) or use --niqe_pooling=group (the default) or image, which "
        f"pool within a replica.")


ENTRY = penalty_api.PenaltyEntry(build=build_penalty, settings=NiqeConfig,
                                 check_strategy=check_strategy)
