"""The quality-aware penalty (`--penalty`: SSIM, NIQE, or a function of your own) as a term: it
runs the built `penalty_api.QualityPenalty` at its points (D's input gradient at --qa_points for a
gradient penalty such as NIQE; none for SSIM, which reads the images and scores)."""

import dataclasses

import tensorflow as tf

from qagan_tf.objectives import penalty_api
from qagan_tf.objectives import term_api
from qagan_tf.utils import fields
from qagan_tf.utils.fields import setting


@dataclasses.dataclass(frozen=True)
class QualitySettings(term_api.TermSettings):
  GROUP = "qa"
  weight: float = setting(0.1, "Weight of the quality-aware penalty (paper: 0.1).",
                          rule=fields.NON_NEGATIVE)
  every: int = setting(1, "Lazy regularisation: the quality-aware penalty on every k-th D "
                       "update only, its weight multiplied by k (1: every update, the paper).",
                       rule=fields.POSITIVE)
  points: str = setting("interpolates", "Where a gradient penalty (niqe) reads D's input "
                        "gradient: interpolates (the paper's, the 1-GP's points), real (R1's "
                        "points: with --r1_weight it reuses R1's gradient) or fake (R2's).",
                        choices=term_api.POINTS)


def _fn(inputs, built):
  penalty = built.penalty
  value, extras = penalty.fn(penalty_api.PenaltyInputs(
      real=inputs.real, fake=inputs.fake, x_hat=inputs.x_hat, d_real=inputs.d_real,
      d_fake=inputs.d_fake, grad_x_hat=inputs.grad))
  metrics = {penalty.summary_tag: value}
  metrics.update({k: tf.stop_gradient(v) for k, v in extras.items()})
  return value, metrics


TERM = term_api.Term(
    name="qa", settings=QualitySettings, fn=_fn,
    metric_names=lambda built: built.penalty.metric_names,
    points=lambda settings, context: (settings.points if context["penalty"].needs_input_gradient
                                      else None),
    active=lambda settings, context: context.get("penalty") is not None, own_schedule=True)
