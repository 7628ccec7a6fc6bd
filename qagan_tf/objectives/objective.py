"""`Objective`: what the critic minimises (an adversarial loss plus weighted penalties) and the
lazy schedule that says which D updates carry each regulariser. The train step (train/step.py)
computes it; bin/train's Trainer and Keras' QAGAN build it."""

import dataclasses
from typing import Optional

import tensorflow as tf

from qagan_tf import augment as augment_lib
from qagan_tf.objectives import lecam
from qagan_tf.objectives import losses
from qagan_tf.objectives import penalty_api

# Where a gradient penalty reads D's input gradient (--qa_points): the interpolates (WGAN-GP's
# points, the paper's), the real images (R1's), or the fakes (R2's).
QA_POINTS = ("interpolates", "real", "fake")


@dataclasses.dataclass(frozen=True)
class Objective:
  """What the critic minimises: an adversarial loss plus weighted penalties.

  loss: a `losses.Loss` (also gives the generator's loss). gp_weight: the 1-GP's weight (0: no
  1-GP). drift_weight: the drift term's. qa_weight and quality_penalty: the optional
  quality-aware penalty (`penalty_api.QualityPenalty`) and its weight. gp_every, qa_every:
  lazy regularisation (StyleGAN2, Karras et al. 2020, §B): the 1-GP (the QA penalty) is
  computed on every k-th D update only, by the D-update counter, with its weight multiplied by
  k; 1 (the paper) computes it on every update. r1_weight, r2_weight: gamma of the
  zero-centred penalties gamma/2 ||grad_x D(x)||^2 at the real images (R1) and at the fakes
  (R2); r1_every: their lazy interval. lecam_weight, lecam_decay: LeCam's weight and its
  anchors' EMA decay (`lecam`). augment: the DiffAugment policy (a tuple of
  `augment.POLICIES`; () for none) applied to every input of D. qa_points: where a gradient
  penalty reads D's input gradient (QA_POINTS); at the points of R1 or R2 it reuses their
  gradient.
  """
  loss: losses.Loss = losses.LOSSES["wasserstein"]
  gp_weight: float = 1.0
  drift_weight: float = 0.0
  qa_weight: float = 0.0
  quality_penalty: Optional[penalty_api.QualityPenalty] = None
  gp_every: int = 1
  qa_every: int = 1
  r1_weight: float = 0.0
  r2_weight: float = 0.0
  r1_every: int = 1
  lecam_weight: float = 0.0
  lecam_decay: float = lecam.DEFAULT_DECAY
  augment: tuple = ()
  qa_points: str = "interpolates"

  def __post_init__(self):
    if self.qa_points not in QA_POINTS:
      raise ValueError(f"qa_points={self.qa_points!r}: use one of {', '.join(QA_POINTS)}.")

  @classmethod
  def from_config(cls, config, quality_penalty=None):
    return cls(losses.get_loss(config.loss), config.gp_weight, config.drift_weight,
               config.qa_weight, quality_penalty, config.gp_every, config.qa_every,
               config.r1_weight, config.r2_weight, config.r1_every, config.lecam_weight,
               config.lecam_decay, augment_lib.parse_policy(config.augment), config.qa_points)

  def gradient_terms(self):
    """{points: [term]}: the terms that read D's input gradient at each set of points ("gp":
    the 1-GP, or its diagnostics when a gradient penalty reads the interpolates without one;
    "r1", "r2"; "qa": a gradient penalty), in the order they are added."""
    out = {}
    penalty = self.quality_penalty
    qa = penalty is not None and penalty.needs_input_gradient
    if self.gp_weight > 0 or (qa and self.qa_points == "interpolates"):
      out["interpolates"] = ["gp"]
    if self.r1_weight > 0:
      out["real"] = ["r1"]
    if self.r2_weight > 0:
      out["fake"] = ["r2"]
    if qa:
      out.setdefault(self.qa_points, []).append("qa")
    return out

  def term_weight(self, term):
    """The weight of a term in the critic loss (R1 and R2: gamma / 2)."""
    return {"gp": self.gp_weight, "r1": 0.5 * self.r1_weight, "r2": 0.5 * self.r2_weight,
            "qa": self.qa_weight}[term]

  def term_every(self, term):
    """A term's lazy interval (R1 and R2 share r1_every)."""
    return {"gp": self.gp_every, "r1": self.r1_every, "r2": self.r1_every,
            "qa": self.qa_every}[term]

  def _terms(self):
    terms = [t for t, w in (("gp", self.gp_weight), ("r1", self.r1_weight),
                            ("r2", self.r2_weight)) if w > 0]
    return terms + (["qa"] if self.quality_penalty is not None else [])

  @property
  def lazy(self):
    """Whether some regulariser is computed on only some D updates."""
    return any(self.term_every(t) > 1 for t in self._terms())

  def schedule(self, d_update):
    """{term: bool scalar}: whether D update number `d_update` (int64, 0-based, over the run)
    carries each active term ("gp", "r1", "r2", "qa")."""
    d_update = tf.cast(d_update, tf.int64)
    return {t: tf.equal(d_update % self.term_every(t), 0) for t in self._terms()}

  @property
  def needs_input_gradient(self):
    """Whether some term reads D's input gradient (second-order terms)."""
    return bool(self.gradient_terms())

  @property
  def metric_names(self):
    """The names of every metric the D and G updates report (logged as train/NAME)."""
    names = ("d_loss", "g_loss") + self.loss.metric_names + ("drift", "d_real", "d_fake")
    terms = self.gradient_terms()
    if "interpolates" in terms:
      names += ("gp", "grad_norm")
    names += tuple(t for t in ("r1", "r2") if any(t in ts for ts in terms.values()))
    if self.quality_penalty is not None:
      names += self.quality_penalty.metric_names
    if self.lecam_weight > 0:
      names += ("lecam",)
    return names
