"""WGAN-GP's two-sided gradient penalty, the 1-GP (Gulrajani et al. 2017):
(||grad D(x_hat)|| - 1)^2 at the interpolates. Its metrics, the penalty and the gradient's norm,
are also logged beside a gradient penalty that reads the interpolates without a 1-GP."""

import dataclasses

from qagan_tf.objectives import losses
from qagan_tf.objectives import term_api
from qagan_tf.utils import fields
from qagan_tf.utils.fields import setting


@dataclasses.dataclass(frozen=True)
class GradientPenaltySettings(term_api.TermSettings):
  GROUP = "gp"
  weight: float = setting(1.0, "Weight of the 1-GP (QAGAN paper: 1; WGAN-GP baseline: 10; "
                          "SNGAN: 0, none).", rule=fields.NON_NEGATIVE)
  every: int = setting(1, "Lazy regularisation (StyleGAN2): the 1-GP on every k-th D update "
                       "only, its weight multiplied by k (1: every update, the paper).",
                       rule=fields.POSITIVE)


def _fn(inputs, built):
  del built
  gp = losses.gradient_penalty(inputs.grad)
  return gp, {"gp": gp, "grad_norm": losses.safe_norm(inputs.grad, [1, 2, 3])}


TERM = term_api.Term(
    name="gp", settings=GradientPenaltySettings, fn=_fn,
    metric_names=lambda built: ("gp", "grad_norm"),
    points=lambda settings, context: "interpolates", diagnostic=True,
    formula="(||grad D(x_hat)|| - 1)^2", reference="Gulrajani et al. 2017 (WGAN-GP)")
