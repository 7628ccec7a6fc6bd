"""LeCam regularisation (Tseng et al., CVPR 2021) as a term: ||D(x) - a_F||^2 + ||D(G(z)) -
a_R||^2 with its anchors as state (objectives/lecam.py: the formula and the anchors)."""

import dataclasses

from qagan_tf.objectives import lecam
from qagan_tf.objectives import term_api
from qagan_tf.utils import fields
from qagan_tf.utils.fields import setting


@dataclasses.dataclass(frozen=True)
class LecamSettings(term_api.TermSettings):
  GROUP = "lecam"
  weight: float = setting(0.0, "LeCam (Tseng et al. 2021): weight of ||D(x) - a_F||^2 + "
                          "||D(G(z)) - a_R||^2, a_R and a_F EMAs of D's mean scores (their "
                          "tables: 0.01-0.3; 0: none).", rule=fields.NON_NEGATIVE)
  decay: float = setting(lecam.DEFAULT_DECAY, "LeCam: decay of the anchors' EMAs.",
                         rule=fields.FRACTION)


def _fn(inputs, built):
  del built
  anchor_real, anchor_fake = inputs.state
  value = lecam.lecam_penalty(inputs.d_real, inputs.d_fake, anchor_real, anchor_fake)
  return value, {"lecam": value}


def _make_state(make_variable):
  return lecam.Anchors(make_variable("lecam_anchor_real"), make_variable("lecam_anchor_fake"))


def _after_update(anchors, built, means):
  anchors.update(means["d_real"], means["d_fake"], built.settings.decay)


TERM = term_api.Term(
    name="lecam", settings=LecamSettings, fn=_fn, metric_names=lambda built: ("lecam",),
    make_state=_make_state, state_values=lambda anchors, built: anchors.values(),
    after_update=_after_update,
    checkpoint=lambda anchors: {"real": anchors.real, "fake": anchors.fake}, state_name="anchors",
    formula="||D(x) - a_F||^2 + ||D(G(z)) - a_R||^2", reference="Tseng et al. 2021")
