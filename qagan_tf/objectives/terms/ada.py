"""ADA's adaptive augmentation probability p (Karras et al., NeurIPS 2020) as term state: active
with --augment=ada, it adds nothing to the critic's loss; it logs p and the overfitting
heuristic r_t = E[sign(D(x))] (train/ada_p, train/ada_rt), and after every D update it moves p:
every `interval` D updates, by

  sign(r_t - target) x (images seen in those updates) / (kimg x 1000),

r_t the mean of sign(D(x)) over those updates' global batches (D's scores of the augmented reals
it trained on), p kept in [0, 1]. With kimg = 0, p stays at --ada_p. The augmentation itself is
qagan_tf/ada.py; the update code applies it with this term's p (`Term.augmentation`).

p is state: bin/train checkpoints it and QAGAN saves it with its weights, so a run resumes
exactly. It is held as the shift from --ada_p (all state starts at 0).
"""

import dataclasses

import tensorflow as tf

from qagan_tf.objectives import term_api
from qagan_tf.utils import fields
from qagan_tf.utils.fields import setting

# The paper's speed, 500 kimg for p to cross [0, 1], is 31,250 D updates at batch 16: a CPU run
# of a few thousand iterations would barely move p. At 20 kimg, p crosses [0, 1] in 1,250 D
# updates at batch 16 (250 iterations of 5), 312 at batch 64.
DEFAULT_KIMG = 20.0


@dataclasses.dataclass(frozen=True)
class AdaSettings(term_api.TermSettings):
  GROUP = "ada"
  target: float = setting(0.6, "ADA (--augment=ada): the target of r_t = E[sign(D(x))], the "
                          "overfitting heuristic (the paper's 0.6).", rule=fields.FRACTION)
  interval: int = setting(4, "ADA: p moves every this many D updates (the paper's 4).",
                          rule=fields.POSITIVE)
  kimg: float = setting(DEFAULT_KIMG, "ADA: thousands of images for p to cross [0, 1] (the "
                        "paper's 500 is for GPU runs; 20 reacts within a few hundred CPU "
                        "iterations); 0: p stays at --ada_p.", rule=fields.NON_NEGATIVE)
  p: float = setting(0.0, "ADA: the augmentation probability at the start (with --ada_kimg=0, "
                     "throughout; the paper: leaks above about 0.8).", rule=fields.FRACTION)

  weight = 0.0  # Not a field: the term adds nothing to the loss.


class Control:
  """p's state as three float32 scalar variables made by name: p's shift from --ada_p, and the
  sum of the global mean signs and the number of D updates since p last moved."""

  def __init__(self, make_variable):
    self.shift = make_variable("ada_p_shift")
    self.signs = make_variable("ada_signs")
    self.updates = make_variable("ada_updates")

  def p(self, settings):
    """p as a float32 tensor."""
    return tf.clip_by_value(settings.p + tf.convert_to_tensor(self.shift, tf.float32), 0.0, 1.0)

  def update(self, settings, mean_sign, images):
    """One D update's global mean of sign(D(x)) and its global batch; a non-finite mean (an
    update dropped for a NaN) leaves the state as it was."""
    finite = tf.math.is_finite(mean_sign)
    signs = tf.convert_to_tensor(self.signs, tf.float32) + tf.where(finite, mean_sign, 0.0)
    updates = tf.convert_to_tensor(self.updates, tf.float32) + tf.where(finite, 1.0, 0.0)
    due = finite & (updates >= settings.interval)
    shift = tf.convert_to_tensor(self.shift, tf.float32)
    if settings.kimg > 0:
      step = (tf.sign(signs / tf.maximum(updates, 1.0) - settings.target) * images * updates
              / (settings.kimg * 1000.0))
      moved = tf.clip_by_value(settings.p + shift + step, 0.0, 1.0) - settings.p
      shift = tf.where(due, moved, shift)
    self.shift.assign(shift)
    self.signs.assign(tf.where(due, 0.0, signs))
    self.updates.assign(tf.where(due, 0.0, updates))


def _fn(inputs, built):
  p = inputs.state
  return tf.zeros_like(inputs.d_real), {"ada_p": tf.fill(tf.shape(inputs.d_real), p),
                                        "ada_rt": tf.sign(inputs.d_real)}


def _after_update(control, built, means):
  control.update(built.settings, means["ada_rt"], means["images"])


TERM = term_api.Term(
    name="ada", settings=AdaSettings, fn=_fn, metric_names=lambda built: ("ada_p", "ada_rt"),
    active=lambda settings, context: tuple(context.get("augment", ())) == ("ada",),
    make_state=Control, state_values=lambda control, built: control.p(built.settings),
    after_update=_after_update,
    checkpoint=lambda control: {"p_shift": control.shift, "signs": control.signs,
                                "updates": control.updates},
    state_name="adaptive p", augmentation=True)
