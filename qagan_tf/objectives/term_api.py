"""What a regulariser of the critic is (`Term`), what it receives (`TermInputs`) and what its
settings look like (`TermSettings`). The registry of terms is `objectives/regularizers.py`;
`objective.Objective` builds the active ones, and the update code (qagan_tf/update) runs them
without knowing any by name.

A term is UNWEIGHTED and per example: it returns its values (B,) and its metrics; the update
applies its weight once (times its lazy interval on the D updates that carry it).
"""

import dataclasses
from typing import Any, Callable, Optional

import tensorflow as tf

from qagan_tf.utils import fields

# Where a term reads D's input gradient: the interpolates (WGAN-GP's points, the paper's), the
# real images (R1's), or the fakes (R2's).
POINTS = ("interpolates", "real", "fake")


class TermSettings:
  """Base of a term's settings dataclass: `weight` (and, for a lazy term, `every`) plus its own
  fields, each made with `fields.setting(..., rule=...)`. The fields become the flags and
  config.json keys <term>_<field> and `QAGAN`'s keywords of the same names."""

  def check_values(self, spell=None):
    fields.check_rules(self, spell or (lambda field: f"{self.GROUP}_{field}"))
    fields.check_choices(self, spell or (lambda field: f"{self.GROUP}_{field}"))

  def validate(self, config):
    del config
    self.check_values()


@dataclasses.dataclass(frozen=True)
class TermInputs:
  """What a term may use; every tensor is per replica, batch B.

  real, fake, x_hat: float32 (B, H, W, C) in [-1, 1] (what D sees: augmented when the objective
  augments). d_real, d_fake: float32 (B,) critic scores. grad: D's input gradient at the term's
  points, differentiable w.r.t. D's variables (None for a term without points). state: the
  term's state values (`Term.state_values`), or None.
  """
  real: tf.Tensor
  fake: tf.Tensor
  x_hat: tf.Tensor
  d_real: tf.Tensor
  d_fake: tf.Tensor
  grad: Optional[tf.Tensor] = None
  state: Any = None


@dataclasses.dataclass(frozen=True)
class Term:
  """One regulariser of the critic: one module and one registry line.

  name: the registry's key and the settings' prefix (flags <name>_<field>).
  settings: its `TermSettings` dataclass.
  fn: (inputs: TermInputs, built: BuiltTerm) -> (values (B,), {metric: (B,)}): the unweighted
    per-example values and the per-example values of its metrics (logged as train/<metric>,
    averaged over the global batch).
  metric_names: (built) -> its metrics' names, in `fn`'s order.
  points: (settings, context) -> one of POINTS, or None for a term without D's input gradient.
  active: (settings, context) -> whether it is part of the objective (context: {"penalty":
    the quality penalty or None}).
  weight_scale: the factor from the setting `weight` to the loss weight (R1/R2: gamma / 2).
  every_of: the term whose `every` it shares (R2 follows R1's interval), or None.
  diagnostic: computed (at weight 0) wherever its points are differentiated for another term,
    for its metrics (the 1-GP's norm diagnostics beside a gradient penalty without a 1-GP).
  own_schedule: on a lazy objective, skipped on its own on the updates that do not carry it,
    even where its points are differentiated for another term (an expensive term).
  direct: added to the adversarial loss before the other terms' sum (the drift term: its place
    in the sum is fixed, so that a refactor keeps the same bits).
  make_state: optional (make_variable) -> state, make_variable(name) -> a float32 scalar
    variable (a tf.Variable for bin/train, a Keras weight for QAGAN); state_values(state, built)
    -> the values `fn` reads; after_update(state, built, means) -> None, with means the D
    update's global means of "d_real", "d_fake" and the term's own metrics, and "images" (the
    global batch); checkpoint(state) -> {name: variable} for bin/train; state_name: what the
    state is called in the error of an update made without it.
  augmentation: its state values are what the objective's augmentation reads (ADA's p,
    `Objective.augmentation_input`).
  flag, formula, reference: for the docs (docs/training.md "Regularisers" lists each).
  build: optional (built) -> built, e.g. binding the quality penalty.
  """
  name: str
  settings: type
  fn: Callable
  metric_names: Callable
  points: Callable = lambda settings, context: None
  active: Callable = lambda settings, context: settings.weight > 0
  weight_scale: float = 1.0
  every_of: Optional[str] = None
  diagnostic: bool = False
  own_schedule: bool = False
  direct: bool = False
  make_state: Optional[Callable] = None
  state_values: Optional[Callable] = None
  after_update: Optional[Callable] = None
  checkpoint: Optional[Callable] = None
  state_name: str = "state"
  augmentation: bool = False
  formula: Optional[str] = None
  reference: Optional[str] = None

  @property
  def flag(self):
    return f"--{self.name}_weight"


@dataclasses.dataclass(frozen=True)
class BuiltTerm:
  """A term of one objective: its settings resolved for the update code.

  weight: the loss weight (the setting's weight times `weight_scale`); every: its lazy interval
  (1: every D update); points: where it reads D's input gradient (None: nowhere); penalty: the
  quality penalty it runs (the quality term only).
  """
  term: Term
  settings: Any
  weight: float
  every: int
  points: Optional[str]
  penalty: Any = None

  @property
  def name(self):
    return self.term.name

  @property
  def metric_names(self):
    return tuple(self.term.metric_names(self))

  def __call__(self, inputs):
    return self.term.fn(inputs, self)
