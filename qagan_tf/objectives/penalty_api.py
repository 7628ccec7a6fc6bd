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


def no_penalty(settings, resolution, *, xla=False):
  """The builder of a baseline without a quality-aware penalty (wgan_gp, none)."""
  del settings, resolution, xla


def _no_strategy_check(config, replicas):
  del config, replicas


@dataclasses.dataclass(frozen=True)
class PenaltyEntry:
  """One `--penalty`: the registry's value (`penalties.PENALTIES`).

  build: (settings, resolution, *, xla) -> `QualityPenalty`, or None for a baseline without one
    (`no_penalty`). settings: an instance of `settings` (None when the entry has none);
    resolution: the images' side in pixels; xla: whether the step that calls the penalty is
    compiled with XLA as a whole (--jit_compile), so that the penalty need not compile itself.
    The one way a penalty is built: bin/train's Trainer and Keras' QAGAN both call it.
  settings: the penalty's settings dataclass (fields with `utils.fields.setting` metadata: they
    become the flags and config.json keys <name>_<field> and its `qa` keywords), or None.
  check_strategy: (config, replicas in sync) -> None, or ValueError naming what the strategy
    cannot run (e.g. an all-reduce inside an XLA-compiled step) and the fix.
  """
  build: Optional[Callable]
  settings: Optional[type] = None
  check_strategy: Callable = _no_strategy_check


def callable_penalty(fn, name="qa_penalty"):
  """A `QualityPenalty` of a user's function fn(input_gradients, real, fake, d_real, d_fake)
  -> float (B,), unweighted and per example (D's input gradients at the interpolates, the real
  and fake images, the critic's scores of both); logged as `name`."""
  def penalty(inputs):
    value = fn(inputs.grad_x_hat, inputs.real, inputs.fake, inputs.d_real, inputs.d_fake)
    return tf.reshape(tf.cast(value, tf.float32), [-1]), {}
  return QualityPenalty(getattr(fn, "__name__", name), name, penalty, needs_input_gradient=True)
