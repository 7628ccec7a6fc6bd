"""Settings dataclasses whose fields carry their own help text, choices and value rule (field
metadata): the flags, the config.json keys and the validation of a setting all read that one
source, for bin/train and Keras' QAGAN alike."""

import dataclasses
import numbers

# Value rules of numeric settings: (test, what the message says the value must be).
POSITIVE = (lambda v: v >= 1, "a positive integer")
COUNT = (lambda v: v >= 0, ">= 0 (0: the default)")
NON_NEGATIVE = (lambda v: v >= 0, ">= 0")
FRACTION = (lambda v: 0 <= v < 1, "in [0, 1)")


def setting(default, help, choices=None, default_factory=None, rule=None):  # noqa: A002
  """A dataclass field with its help text and, for an enum, its valid values.

  Args:
    default: the default value.
    help: one or two sentences for --help (paper values in parentheses).
    choices: the valid values (one source per enum: pass the library's own tuple), or a
      function that returns them (a live registry, read at each check).
    default_factory: instead of `default`, for mutable or composite defaults.
    rule: for a number, its value rule (`POSITIVE`, `COUNT`, `NON_NEGATIVE`, `FRACTION`), which
      `check_rules` applies wherever the setting is given.
  """
  if choices is not None and not callable(choices):
    choices = tuple(choices)
  metadata = {"help": help, "choices": choices, "rule": rule}
  if default_factory is not None:
    return dataclasses.field(default_factory=default_factory, metadata=metadata)
  return dataclasses.field(default=default, metadata=metadata)


def help_of(field):
  return field.metadata.get("help", "")


def rule_of(field):
  """The field's value rule (test, what the value must be), or None."""
  return field.metadata.get("rule")


def check_rule(name, value, rule):
  """Raises ValueError when `value` breaks `rule` ("gp_weight=-1.0 must be >= 0."; `name` as
  the caller spells it); NaN breaks every rule, and a bool or text where a number belongs is
  refused too."""
  test, must = rule
  number = isinstance(value, numbers.Real) and not isinstance(value, bool)
  if not (number and test(value)):
    raise ValueError(f"{name}={value!r} must be {must}." if not number else
                     f"{name}={value} must be {must}.")


def check_rules(settings, spell=lambda name: name):
  """`check_rule` for every field of the dataclass instance `settings` that has a rule."""
  for field in dataclasses.fields(settings):
    rule = rule_of(field)
    if rule is not None:
      check_rule(spell(field.name), getattr(settings, field.name), rule)


def choices_of(field):
  """The field's valid values (None: any)."""
  choices = field.metadata.get("choices")
  return tuple(choices()) if callable(choices) else choices


def check_choices(settings, spell=lambda name: name):
  """Raises ValueError for a field whose value is not among its choices (the message names the
  field as `spell` writes it and lists the valid values)."""
  for field in dataclasses.fields(settings):
    choices = choices_of(field)
    value = getattr(settings, field.name)
    if choices is not None and value not in choices:
      raise ValueError(f"{spell(field.name)}={value!r}: use one of "
                       f"{', '.join(map(str, choices))}.")


def from_keywords(settings_cls, given, what, valid=None, spell=lambda name: name, where=""):
  """`settings_cls(**given)`, checked: an unknown keyword is a ValueError that names it and lists
  the valid ones ("unknown {what} {keys}{where}; valid: ..."), a bad value one that names it
  as `spell` writes it (the class's `check_values`).

  valid: the accepted names (default: every field of `settings_cls`)."""
  valid = [f.name for f in dataclasses.fields(settings_cls)] if valid is None else list(valid)
  unknown = sorted(set(given) - set(valid))
  if unknown:
    raise ValueError(f"unknown {what} {', '.join(unknown)}{where}; valid: {', '.join(valid)}.")
  settings = settings_cls(**given)
  settings.check_values(spell=spell)
  return settings
