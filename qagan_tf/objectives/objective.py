"""`Objective`: what the critic minimises (an adversarial loss plus weighted penalties) and the
lazy schedule that says which D updates carry each regulariser. The train step (train/step.py)
computes it; bin/train's Trainer and Keras' QAGAN build it."""

import dataclasses
from typing import Optional

import tensorflow as tf

from qagan_tf.objectives import losses
from qagan_tf.objectives import penalty_api


@dataclasses.dataclass(frozen=True)
class Objective:
  """What the critic minimises: an adversarial loss plus weighted penalties.

  loss: a `losses.Loss` (also gives the generator's loss). gp_weight: the 1-GP's weight (0: no
  1-GP). drift_weight: the drift term's. qa_weight and quality_penalty: the optional
  quality-aware penalty (`penalty_api.QualityPenalty`) and its weight. gp_every, qa_every:
  lazy regularisation (StyleGAN2, Karras et al. 2020, §B): the 1-GP (the QA penalty) is
  computed on every k-th D update only, by the D-update counter, with its weight multiplied by
  k; 1 (the paper) computes it on every update.
  """
  loss: losses.Loss = losses.LOSSES["wasserstein"]
  gp_weight: float = 1.0
  drift_weight: float = 0.0
  qa_weight: float = 0.0
  quality_penalty: Optional[penalty_api.QualityPenalty] = None
  gp_every: int = 1
  qa_every: int = 1

  @classmethod
  def from_config(cls, config, quality_penalty=None):
    return cls(losses.get_loss(config.loss), config.gp_weight, config.drift_weight,
               config.qa_weight, quality_penalty, config.gp_every, config.qa_every)

  @property
  def lazy(self):
    """Whether some regulariser is computed on only some D updates."""
    return ((self.gp_every > 1 and self.gp_weight > 0)
            or (self.qa_every > 1 and self.quality_penalty is not None))

  def schedule(self, d_update):
    """(gp_on, qa_on): bool scalars, whether D update number `d_update` (int64, 0-based, over
    the run) carries the 1-GP / the QA penalty."""
    d_update = tf.cast(d_update, tf.int64)
    gp_on = tf.equal(d_update % self.gp_every, 0)
    qa_on = tf.equal(d_update % self.qa_every, 0)
    return gp_on, qa_on

  @property
  def needs_input_gradient(self):
    """Whether D's gradient at the interpolates is needed (second-order terms)."""
    return self.gp_weight > 0 or bool(
        self.quality_penalty and self.quality_penalty.needs_input_gradient)

  @property
  def metric_names(self):
    """The names of every metric the D and G updates report (logged as train/NAME)."""
    names = ("d_loss", "g_loss") + self.loss.metric_names + ("drift", "d_real", "d_fake")
    if self.needs_input_gradient:
      names += ("gp", "grad_norm")
    if self.quality_penalty is not None:
      names += self.quality_penalty.metric_names
    return names
