"""absl flags of a training configuration, shared by bin/train and bin/benchmark: one flag per
`TrainConfig` setting (the penalty groups' as GROUP_FIELD), named, typed, defaulted, documented
and, for an enum, restricted as the setting's field says (qagan_tf/config.py)."""

from absl import flags, logging

from qagan_tf.utils import cli

cli.import_tensorflow_quietly()  # Before qagan_tf.models imports it, printing CUDA-stub lines.

from qagan_tf import config as config_lib  # noqa: E402
from qagan_tf.utils import fields  # noqa: E402


class _AutoBooleanParser(flags.ArgumentParser):
  """auto, true or false (also 1/0, yes/no); --NAME and --noNAME work as for a boolean flag."""

  def parse(self, argument):
    if isinstance(argument, bool):
      return argument
    text = str(argument).strip().lower()
    if text == "auto":
      return "auto"
    if text in ("true", "t", "1", "yes", "y"):
      return True
    if text in ("false", "f", "0", "no", "n"):
      return False
    raise ValueError(f"{argument!r} is not auto, true or false")

  def flag_type(self):
    return "auto|bool"


# Settings whose bin/train flag defaults to auto (resolved by a rule when a run starts and
# recorded in config.json as true/false, so a resumed run keeps its choice).
AUTO_SETTINGS = ("jit_compile",)
# Every setting whose "auto" is resolved when a run starts and recorded in config.json (the
# penalty groups' by their `resolve_auto`).
RESOLVED_AT_START = AUTO_SETTINGS + ("niqe_xla",)


def _define(name, field):
  help_text, choices, default = fields.help_of(field), fields.choices_of(field), field.default
  if name in AUTO_SETTINGS:
    flags.DEFINE_flag(flags.Flag(_AutoBooleanParser(), flags.ArgumentSerializer(), name, "auto",
                                 help_text + " auto: by device class (docs/performance.md).",
                                 boolean=True))
  elif choices is not None:
    flags.DEFINE_enum(name, default, list(choices), help_text)
  elif isinstance(default, bool):
    flags.DEFINE_bool(name, default, help_text)
  elif isinstance(default, int):
    flags.DEFINE_integer(name, default, help_text)
  elif isinstance(default, float):
    flags.DEFINE_float(name, default, help_text)
  else:
    flags.DEFINE_string(name, default, help_text)


for _name, _field in config_lib.setting_fields().items():
  _define(_name, _field)


def _drop_unused_penalty_settings(values, flag_values, inherited):
  """Settings of a penalty or an architecture the run does not use take their defaults (they
  would shape nothing, and config.json does not record them); one warning per kind names those
  that were given."""
  from qagan_tf import models
  from qagan_tf.objectives import penalties
  defaults = config_lib.flat_defaults()
  for kind, groups in (("penalty", penalties.CONFIG_GROUPS),
                       ("architecture", models.registry.CONFIG_GROUPS)):
    given = []
    for group in groups:
      if group == values.get(kind):
        continue
      for name in [n for n in values if n.startswith(group + "_")]:
        if flag_values[name].present and values[name] != defaults[name]:
          given.append(f"--{name}={values[name]}")
        values[name] = defaults[name]
        inherited.pop(name, None)
    if given:
      logging.warning("%s: setting(s) of a%s %s this run does not use (--%s=%s); ignored and "
                      "not recorded in config.json.", ", ".join(given),
                      "n" if kind[0] == "a" else "", kind, kind, values.get(kind))


def _warn_ignored_term_settings(values, flag_values):
  """One warning naming the given term settings this objective does not use (e.g. --qa_weight
  with --penalty=wgan_gp, --r1_every without --r1_weight): they change nothing."""
  from qagan_tf.objectives import objective as objective_lib
  config = config_lib.TrainConfig.create(**values)
  unused = objective_lib.ignored_settings_of(config)
  defaults = config_lib.flat_defaults()
  given = [f"--{n}={values[n]}" for n in unused if flag_values[n].present
           and values[n] != defaults[n] and not (n.endswith("_weight") and values[n] == 0)]
  if given:
    logging.warning("%s: setting(s) of a term this objective does not use (its weight is 0, "
                    "--penalty=%s has no quality penalty, or --augment=%s is not ada); they "
                    "change nothing.", ", ".join(given), values.get("penalty"),
                    values.get("augment"))


def config_from_flags(flag_values=flags.FLAGS, saved=None):
  """The `TrainConfig` the parsed flags describe (validated).

  Args:
    flag_values: the parsed flags.
    saved: optional `TrainConfig` of the run being resumed (its config.json): every setting
      whose flag was given neither on the command line nor in a --flagfile takes the run's
      value instead of the flag's default (logged when it differs from the default), so that a
      run resumes with its own settings even where a default has changed since it started.
  """
  values = {name: getattr(flag_values, name) for name in config_lib.flat_defaults()}
  inherited = {}
  if saved is not None:
    for name, value in saved.to_dict().items():
      if name in values and not flag_values[name].present and values[name] != value:
        values[name] = inherited[name] = value
  _drop_unused_penalty_settings(values, flag_values, inherited)
  for name in RESOLVED_AT_START:
    if name in inherited:  # Not a changed default: the run's own resolution of auto.
      value = inherited.pop(name)
      logging.info("--%s=auto: the run's recorded choice, %s (config.json).", name,
                   ("on" if value else "off") if isinstance(value, bool) else value)
  if inherited:
    logging.info("Resuming with the run's own values of flags not given (config.json): %s.",
                 ", ".join(f"{k}={v}" for k, v in sorted(inherited.items())))
  _warn_ignored_term_settings(values, flag_values)
  if values.get("jit_compile") == "auto":
    from qagan_tf.update import device
    probe = config_lib.TrainConfig.create(**dict(values, jit_compile=False)).validate()
    values["jit_compile"], reason = device.jit_compile_rule(probe.max_steps, probe.lazy)
    logging.info("--jit_compile=auto: %s (%s).", "on" if values["jit_compile"] else "off",
                 reason)
  return config_lib.TrainConfig.create(**values).validate().resolve_auto()
