"""The drift term of Progressive GAN (Karras et al. 2018), mean(D(x)^2): keeps the critic's
scores near 0. Always computed and logged; added to the adversarial loss itself."""

import dataclasses

from qagan_tf.objectives import losses
from qagan_tf.objectives import term_api
from qagan_tf.utils import fields
from qagan_tf.utils.fields import setting


@dataclasses.dataclass(frozen=True)
class DriftSettings(term_api.TermSettings):
  GROUP = "drift"
  weight: float = setting(1e-5, "Weight of the drift term mean(D(x)^2) (authors: 1e-5; 0 "
                          "disables).", rule=fields.NON_NEGATIVE)


def _fn(inputs, built):
  del built
  drift = losses.drift_penalty(inputs.d_real)
  return drift, {"drift": drift}


TERM = term_api.Term(
    name="drift", settings=DriftSettings, fn=_fn, metric_names=lambda built: ("drift",),
    active=lambda settings, context: True, direct=True, formula="D(x)^2",
    reference="Karras et al. 2018 (Progressive GAN)")
