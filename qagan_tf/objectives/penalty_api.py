"""What a quality-aware penalty receives (`PenaltyInputs`), what it is (`QualityPenalty`) and how
the registry holds it (`PenaltyEntry`).

Penalties are UNWEIGHTED and per example; the train step applies each weight exactly once and
averages over the global batch. The registry of names is `objectives/penalties.py`.
"""

import dataclasses
from typing import Callable, Optional

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class PenaltyInputs:
  """What a penalty may use; all tensors are per replica, batch B.

  real, fake, x_hat: float (B, H, W, 3) in [-1, 1]. d_real, d_fake: float (B,) critic scores.
  grad_x_hat: float (B, H, W, 3), gradient of D at x_hat, differentiable w.r.t. D's variables
  (None when neither the 1-GP nor the penalty needs it).
  """
  real: tf.Tensor
  fake: tf.Tensor
  x_hat: tf.Tensor
  d_real: tf.Tensor
  d_fake: tf.Tensor
  grad_x_hat: Optional[tf.Tensor]


@dataclasses.dataclass(frozen=True)
class QualityPenalty:
  """A quality-aware penalty.

  fn(inputs: PenaltyInputs) -> (float (B,), {name: float (B,)}): the unweighted per-example
  penalty and per-example statistics for TensorBoard (train/NAME), whose names are extra_tags.
  needs_input_gradient: fn reads inputs.grad_x_hat.
  write_summaries: optional hook (discriminator, real, fake, step) -> None, called by the
  trainer's histogram summaries with up to 16 real and generated images in [-1, 1]: what the
  penalty wants to show in TensorBoard beyond its per-step value.
  """
  name: str
  summary_tag: str
  fn: Callable[[PenaltyInputs], tuple]
  extra_tags: tuple = ()
  needs_input_gradient: bool = False
  write_summaries: Optional[Callable] = None

  @property
  def metric_names(self):
    return (self.summary_tag,) + tuple(self.extra_tags)


def _no_migration(values):
  return values


def _no_strategy_check(config, replicas):
  del config, replicas


@dataclasses.dataclass(frozen=True)
class PenaltyEntry:
  """One `--penalty`: the registry's value (`penalties.PENALTIES`).

  make: config -> `QualityPenalty`, or None for a baseline without one.
  build: (settings, resolution) -> `QualityPenalty` from a settings instance alone (what
    `qagan_tf.gan.QAGAN` uses for a user's models); None for a baseline.
  settings: the penalty's settings dataclass (fields with `utils.fields.setting` metadata: they
    become the flags and config.json keys <name>_<field> and its `qa` keywords), or None.
  migrate: flat config.json values of a run of this penalty written by an older version -> the
    values it trained with (so that it resumes with its own penalty).
  check_strategy: (config, replicas in sync) -> None, or ValueError naming what the strategy
    cannot run (e.g. an all-reduce inside an XLA-compiled step) and the fix.
  """
  make: Callable
  settings: Optional[type] = None
  build: Optional[Callable] = None
  migrate: Callable = _no_migration
  check_strategy: Callable = _no_strategy_check
