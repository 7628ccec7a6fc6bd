"""Discriminator penalties: the 1-GP and a registry of the quality-aware penalties.

Penalties are UNWEIGHTED and per example; the train step applies each weight exactly once and
averages over the global batch.
"""

import dataclasses
from typing import Callable, Optional

import tensorflow as tf

# Inside sqrt so that the norm and its second derivative stay finite when the gradient is 0.
NORM_EPSILON = 1e-12


def safe_norm(x, axis):
  """sqrt(sum(x^2) + eps) over `axis`: finite value and finite first and second derivatives at 0."""
  return tf.sqrt(tf.reduce_sum(tf.square(x), axis=axis) + NORM_EPSILON)


def gradient_penalty(grad_x_hat):
  """WGAN-GP's two-sided 1-GP (||grad D(x_hat)||_2 - 1)^2.

  Args:
    grad_x_hat: float (B, H, W, C), gradient of the critic at the interpolates.

  Returns:
    float (B,).
  """
  return tf.square(safe_norm(grad_x_hat, axis=[1, 2, 3]) - 1.0)


@dataclasses.dataclass(frozen=True)
class PenaltyInputs:
  """What a penalty may use; all tensors are per replica, batch B.

  real, fake, x_hat: float (B, H, W, 3) in [-1, 1]. d_real, d_fake: float (B,) critic scores.
  grad_x_hat: float (B, H, W, 3), gradient of D at x_hat, differentiable w.r.t. D's variables.
  """
  real: tf.Tensor
  fake: tf.Tensor
  x_hat: tf.Tensor
  d_real: tf.Tensor
  d_fake: tf.Tensor
  grad_x_hat: tf.Tensor


@dataclasses.dataclass(frozen=True)
class QualityPenalty:
  """A quality-aware penalty, unweighted: `fn(inputs: PenaltyInputs)` returns float (B,) or
  (float (B,), {name: float (B,)}), the dict holding per-example statistics for TensorBoard."""
  name: str
  summary_tag: str
  fn: Callable[[PenaltyInputs], tf.Tensor]
  extra_tags: tuple = ()  # Names of the per-example statistics fn returns, if any.
  prior: object = None  # NIQE: the `niqe_prior.Prior` and the resolved `NiqeSettings`.
  settings: object = None


# name -> factory(config) -> Optional[QualityPenalty]. "wgan_gp" is the baseline: 1-GP only.
_REGISTRY = {
    "wgan_gp": lambda config: None,
}


def _register_builtin():
  # The QAGAN penalties live in their own module (it imports this one); importing it registers them.
  from qagan_tf.train import quality_penalties  # noqa: F401


def penalty_names():
  """Names accepted by `make_quality_penalty` (and `--penalty`)."""
  _register_builtin()
  return tuple(_REGISTRY)


def register_penalty(name, factory):
  """Adds a penalty factory `factory(config) -> QualityPenalty | None` under `name`."""
  _REGISTRY[name] = factory


def make_quality_penalty(name, config=None) -> Optional[QualityPenalty]:
  """Builds the quality-aware penalty `name` (None for the plain WGAN-GP baseline).

  Raises:
    ValueError: for an unknown name; the message lists the valid ones.
  """
  _register_builtin()
  if name not in _REGISTRY:
    raise ValueError(f"Unknown penalty {name!r}; valid penalties: {', '.join(penalty_names())}.")
  return _REGISTRY[name](config)
