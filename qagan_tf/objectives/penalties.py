"""The registry of quality-aware penalties: `--penalty` name -> `penalty_api.PenaltyEntry`.

An entry builds a `penalty_api.QualityPenalty` from its settings (or None for a baseline without
one: WGAN-GP's 1-GP alone, or a plain SNGAN) and names its settings dataclass, whose fields
become the flags, the config.json keys <name>_<field> and the `qa` keywords. To add a penalty:
write its module under objectives/ (settings dataclass, `build_penalty(settings, resolution, *,
xla)`, `ENTRY`) and add one line below (docs/extending.md).
"""

from typing import Optional

from qagan_tf.objectives import penalty_api
from qagan_tf.objectives import ssim
from qagan_tf.objectives.niqe import penalty as niqe

_BASELINE = penalty_api.PenaltyEntry(build=penalty_api.no_penalty)

PENALTIES = {
    "wgan_gp": _BASELINE,  # The paper's baseline: the 1-GP only.
    "none": _BASELINE,  # Same, for losses where "wgan_gp" would mislead (SNGAN).
    "ssim": ssim.ENTRY,
    "niqe": niqe.ENTRY,
}

# Settings groups: TrainConfig.<name> (flags and config.json keys <name>_<field>).
CONFIG_GROUPS = {name: e.settings for name, e in PENALTIES.items() if e.settings is not None}


def get_entry(name):
  """The `PenaltyEntry` called `name`.

  Raises:
    ValueError: for an unknown name (listing the valid ones), or an entry without a builder.
  """
  if name not in PENALTIES:
    raise ValueError(f"Unknown penalty {name!r}; valid penalties: {', '.join(PENALTIES)}.")
  entry = PENALTIES[name]
  if not callable(entry.build):
    raise ValueError(
        f"penalty {name!r} has no builder: its registry entry (objectives/penalties.py) must "
        f"give build=..., a function (settings, resolution, *, xla) -> QualityPenalty "
        f"(penalty_api.no_penalty for a baseline without one; docs/extending.md).")
  return entry


def build(name, settings=None, resolution=None, *, xla=False) -> Optional[
    penalty_api.QualityPenalty]:
  """Builds the quality-aware penalty `name` with `settings` (an instance of its entry's
  settings class; None: its defaults) for images of `resolution` px (None for a baseline).

  Raises:
    ValueError: an unknown name, an entry without a builder, or settings its builder refuses.
  """
  entry = get_entry(name)
  if settings is None and entry.settings is not None:
    settings = entry.settings()
  return entry.build(settings, resolution, xla=xla)


def build_for_config(config):
  """The penalty of a `TrainConfig` (config.penalty with its settings group)."""
  settings = getattr(config, config.penalty) if config.penalty in CONFIG_GROUPS else None
  return build(config.penalty, settings, config.resolution, xla=config.jit_compile)
