"""`Objective`: what the critic minimises (an adversarial loss plus the terms of
objectives/regularizers.py with their settings) and the lazy schedule that says which D updates
carry each term. The update code (qagan_tf/update) computes it term by term without naming
any; bin/train's Trainer and Keras' QAGAN build it from keywords."""

import dataclasses
import numbers

import tensorflow as tf

from qagan_tf import augment as augment_lib
from qagan_tf.objectives import losses
from qagan_tf.objectives import penalty_api
from qagan_tf.objectives import regularizers
from qagan_tf.objectives import term_api

# Where the library's defaults differ from bin/train's flags (the settings' own defaults): no
# drift term and no quality weight unless asked for.
LIBRARY_DEFAULTS = {"drift_weight": 0.0, "qa_weight": 0.0}


def flat_names():
  """{flat name: (term, field)} of every term setting: gp_weight -> ("gp", "weight")."""
  return {f"{name}_{f.name}": (name, f.name) for name, term in regularizers.TERMS.items()
          for f in dataclasses.fields(term.settings)}


def settings_from_flat(values, defaults=None):
  """{term: settings} from flat keywords (gp_weight=..., qa_points=...), each term's fields
  defaulting to `defaults` (flat, e.g. LIBRARY_DEFAULTS) and then to its settings' own.

  Raises:
    TypeError: for a name that is no term setting (the valid ones listed).
  """
  names = flat_names()
  unknown = sorted(set(values) - set(names))
  if unknown:
    raise TypeError(f"unknown objective setting(s) {', '.join(unknown)}; valid: "
                    f"{', '.join(names)}.")
  given = {**(defaults or {}), **values}
  out = {}
  for name, term in regularizers.TERMS.items():
    out[name] = term.settings(**{field: _typed(term.settings, field, given[flat])
                                 for flat, (owner, field) in names.items()
                                 if owner == name and flat in given})
  return out


def _typed(settings_cls, field, value):
  """A number as its field's type (1 -> 1.0 for a weight), so that a setting has one spelling
  in config.json, QAGAN's config and its fingerprint; anything else as given (the field's rule
  refuses it)."""
  kind = type(settings_cls.__dataclass_fields__[field].default)
  if kind in (int, float) and isinstance(value, numbers.Real) and not isinstance(value, bool):
    if kind is float or float(value).is_integer():
      return kind(value)
  return value


def flat_values(settings):
  """The inverse of `settings_from_flat`: {gp_weight: ..., ...} of {term: settings}."""
  return {f"{name}_{k}": v for name, s in settings.items()
          for k, v in dataclasses.asdict(s).items()}


def _every(name, settings):
  owner = regularizers.TERMS[name].every_of or name
  return getattr(settings[owner], "every", 1)


def _scheduled(name, settings, context):
  """Whether a term is active and has a lazy interval (the schedule decides its updates)."""
  term = regularizers.TERMS[name]
  lazy_term = term.every_of is not None or "every" in term.settings.__dataclass_fields__
  return lazy_term and term.active(settings[name], context)


def is_lazy(settings, has_penalty):
  """Whether some active term is computed on only some D updates: the one rule, read by
  `Objective.lazy` and by the device rule for XLA (update/device.py) alike. A term at weight 0
  is not active, so its interval makes nothing lazy (--r1_every=16 with --r1_weight=0).

  Args:
    settings: {term: settings}. has_penalty: whether a quality penalty is built.
  """
  context = {"penalty": object() if has_penalty else None}
  return any(_every(name, settings) > 1 for name in regularizers.TERMS
             if _scheduled(name, settings, context))


class Objective:
  """What the critic minimises: an adversarial loss plus weighted terms.

  Keywords only: loss (a `losses.Loss`, which also gives the generator's loss), quality_penalty
  (a built `penalty_api.QualityPenalty`, or None), augment (the DiffAugment policy, a tuple of
  `augment.POLICIES`; () for none), terms ({term: settings}, e.g. a config's groups) and/or
  flat term settings (gp_weight=1.0, r1_weight=..., r1_every=..., qa_points="real"; unset ones
  take `LIBRARY_DEFAULTS`, then each term's defaults). Lazy regularisation (StyleGAN2 §B): a
  term with every = k > 1 is computed on every k-th D update only, by the D-update counter,
  with its weight multiplied by k.
  """

  def __init__(self, *, loss=None, quality_penalty=None, augment=(), terms=None, **settings):
    self.loss = loss or losses.LOSSES["wasserstein"]
    self.quality_penalty = quality_penalty
    self.augment = tuple(augment)
    base = dict(LIBRARY_DEFAULTS)
    if terms is not None:
      base = flat_values(terms)
    self.settings = settings_from_flat(settings, base)
    for name, group in self.settings.items():
      group.check_values()
    self._build()

  @classmethod
  def from_config(cls, config, quality_penalty=None):
    """The objective of a `TrainConfig` (its loss, augmentation and term groups)."""
    return cls(loss=losses.get_loss(config.loss), quality_penalty=quality_penalty,
               augment=augment_lib.parse_policy(config.augment),
               terms={name: getattr(config, name) for name in regularizers.TERMS})

  def replace(self, **changes):
    """A copy with `changes` (loss, quality_penalty, augment, or flat term settings)."""
    values = dict(loss=self.loss, quality_penalty=self.quality_penalty, augment=self.augment,
                  **flat_values(self.settings))
    values.update(changes)
    return Objective(**values)

  def __getattr__(self, name):
    """A term setting by its flat name (objective.gp_weight, objective.r1_every)."""
    settings = self.__dict__.get("settings")
    pair = flat_names().get(name)
    if settings is None or pair is None:
      raise AttributeError(f"Objective has no attribute or term setting {name!r}.")
    return getattr(settings[pair[0]], pair[1])

  def _build(self):
    """The built terms in registry order: the active ones, then a diagnostic term wherever
    its points are differentiated for another; grouped by the points whose input gradient
    they share (`sites`), the others without points (`free_terms`) and the direct ones."""
    context = {"penalty": self.quality_penalty, "augment": self.augment}
    built, wanted_points = {}, set()
    for name, term in regularizers.TERMS.items():
      settings = self.settings[name]
      if term.active(settings, context):
        built[name] = self._built(term, settings, context)
        if built[name].points:
          wanted_points.add(built[name].points)
    for name, term in regularizers.TERMS.items():
      if term.diagnostic and name not in built:
        candidate = self._built(term, self.settings[name], context)
        if candidate.points in wanted_points:
          built[name] = candidate
    self.terms = tuple(built[name] for name in regularizers.TERMS if name in built)
    sites = {}
    for t in self.terms:
      if t.points and not t.term.direct:
        sites.setdefault(t.points, []).append(t)
    self.sites = tuple((points, tuple(ts)) for points, ts in sites.items())
    self.free_terms = tuple(t for t in self.terms if not t.points and not t.term.direct)
    self.direct_terms = tuple(t for t in self.terms if t.term.direct)
    self.scheduled = tuple(t.name for t in self.terms
                           if _scheduled(t.name, self.settings, context))

  def _built(self, term, settings, context):
    return term_api.BuiltTerm(
        term=term, settings=settings, weight=term.weight_scale * settings.weight,
        every=_every(term.name, self.settings), points=term.points(settings, context),
        penalty=context["penalty"])

  def describe_weights(self, prefix=""):
    """The active terms' weights by flag name, largest first ("qa_weight=1e+30, gp_weight=1";
    `prefix` "--" for bin/train's flags): the first suspects of a loss that went non-finite."""
    weights = sorted(((t.settings.weight, f"{prefix}{t.name}_weight") for t in self.terms
                      if t.settings.weight > 0), reverse=True)
    return ", ".join(f"{name}={value:g}" for value, name in weights) or "none above 0"

  def gradient_terms(self):
    """{points: [term name]}: the terms that read D's input gradient at each set of points, in
    the order they are added (the 1-GP first: also where it is only a diagnostic)."""
    return {points: [t.name for t in terms] for points, terms in self.sites}

  @property
  def lazy(self):
    """Whether some term is computed on only some D updates (`is_lazy`)."""
    return is_lazy(self.settings, self.quality_penalty is not None)

  def schedule(self, d_update):
    """{term name: bool scalar}: whether D update number `d_update` (int64, 0-based, over the
    run) carries each scheduled term."""
    d_update = tf.cast(d_update, tf.int64)
    return {t.name: tf.equal(d_update % t.every, 0) for t in self.terms
            if t.name in self.scheduled}

  def augmentation_input(self, states):
    """What the augmentation reads beside its uniforms (`augment.apply`'s p): the state values
    of the active term that feeds it (ADA's p), or None.

    Args:
      states: {term name: its state values} (`update.critic.state_values`).
    """
    for t in self.terms:
      if t.term.augmentation:
        return states[t.name]
    return None

  @property
  def needs_input_gradient(self):
    """Whether some term reads D's input gradient (second-order terms)."""
    return bool(self.sites)

  @property
  def stateful_terms(self):
    """The terms with state (all of them, active or not: bin/train's checkpoint layout does
    not depend on the settings)."""
    return tuple(term for term in regularizers.TERMS.values() if term.make_state)

  def make_states(self, make_variable):
    """{term name: state} of every stateful term, its variables made by `make_variable(name)`
    (under the strategy's scope)."""
    return {term.name: term.make_state(make_variable) for term in self.stateful_terms}

  @property
  def metric_names(self):
    """The names of every metric the D and G updates report (logged as train/NAME)."""
    names = ("d_loss", "g_loss") + self.loss.metric_names
    names += tuple(n for t in self.direct_terms for n in t.metric_names) + ("d_real", "d_fake")
    return names + tuple(n for t in self.terms if not t.term.direct for n in t.metric_names)


def ignored_settings(settings, has_penalty, augment=()):
  """The flat names of the term settings that shape nothing here: every setting of a term that
  is not active (the quality term without a penalty: qa_weight, qa_every, qa_points; ADA's
  without --augment=ada) but its weight (0 is what turns it off), and an interval shared with
  an inactive owner. `augment`: the parsed --augment policy."""
  context = {"penalty": object() if has_penalty else None, "augment": tuple(augment)}
  out = []
  for name, term in regularizers.TERMS.items():
    if term.active(settings[name], context):
      continue
    for f in dataclasses.fields(settings[name]):
      if f.name != "weight" or term.name == "qa":
        out.append(f"{name}_{f.name}")
  return out


def ignored_settings_of(config):
  """`ignored_settings` of a `TrainConfig` (its term groups, penalty and augmentation)."""
  from qagan_tf.objectives import penalties  # The registry of penalties imports this module's.
  return ignored_settings(settings_of(config), has_penalty(penalties.get_entry(config.penalty)),
                          augment_lib.parse_policy(config.augment))


def has_penalty(entry):
  """Whether a penalty registry entry builds a penalty (not a baseline's `no_penalty`)."""
  return entry.build is not penalty_api.no_penalty


def settings_of(config):
  """{term: settings} of a `TrainConfig`."""
  return {name: getattr(config, name) for name in regularizers.TERMS}
