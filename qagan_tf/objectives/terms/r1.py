"""R1 (Mescheder et al. 2018): gamma/2 ||grad_x D(x)||^2 at the real images, zero-centred."""

import dataclasses

from qagan_tf.objectives import losses
from qagan_tf.objectives import term_api
from qagan_tf.utils import fields
from qagan_tf.utils.fields import setting


@dataclasses.dataclass(frozen=True)
class R1Settings(term_api.TermSettings):
  GROUP = "r1"
  weight: float = setting(0.0, "R1 (Mescheder et al. 2018): gamma of gamma/2 E||grad_x D(x)||^2 "
                          "at the real images, zero-centred (R3GAN: with R2 and --loss=rpgan; 0: "
                          "none).", rule=fields.NON_NEGATIVE)
  every: int = setting(1, "Lazy R1 and R2 (StyleGAN2: 16): on every k-th D update only, their "
                       "weight multiplied by k.", rule=fields.POSITIVE)


def squared_gradient_norm(inputs, built):
  """||grad||^2 per example, logged under the term's name (R1 and R2 alike)."""
  norm2 = losses.squared_norm(inputs.grad)
  return norm2, {built.name: norm2}


TERM = term_api.Term(
    name="r1", settings=R1Settings, fn=squared_gradient_norm,
    metric_names=lambda built: (built.name,), points=lambda settings, context: "real",
    weight_scale=0.5, formula="gamma/2 ||grad_x D(x)||^2", reference="Mescheder et al. 2018")
