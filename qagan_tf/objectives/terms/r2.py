"""R2: gamma/2 ||grad D(G(z))||^2 at the generated images (R3GAN pairs it with R1); its lazy
interval is R1's (--r1_every)."""

import dataclasses

from qagan_tf.objectives import term_api
from qagan_tf.objectives.terms import r1
from qagan_tf.utils import fields
from qagan_tf.utils.fields import setting


@dataclasses.dataclass(frozen=True)
class R2Settings(term_api.TermSettings):
  GROUP = "r2"
  weight: float = setting(0.0, "R2: gamma of gamma/2 E||grad D(G(z))||^2 at the fakes (0: "
                          "none).", rule=fields.NON_NEGATIVE)


TERM = term_api.Term(
    name="r2", settings=R2Settings, fn=r1.squared_gradient_norm,
    metric_names=lambda built: (built.name,), points=lambda settings, context: "fake",
    weight_scale=0.5, every_of="r1", formula="gamma/2 ||grad D(G(z))||^2",
    reference="Mescheder et al. 2018; R3GAN (Huang et al. 2024)")
