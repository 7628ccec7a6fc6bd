"""What a quality-aware penalty receives (`PenaltyInputs`) and what it is (`QualityPenalty`).

Penalties are UNWEIGHTED and per example; the train step applies each weight exactly once and
averages over the global batch. The registry of names is `train/penalties.py`.
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
