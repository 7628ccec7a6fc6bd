"""The registry of quality-aware penalties: `--penalty` name -> `penalty_api.PenaltyEntry`.

An entry builds a `penalty_api.QualityPenalty` from a config (or None for a baseline without
one: WGAN-GP's 1-GP alone, or a plain SNGAN) and names its settings dataclass, whose fields
become the flags, the config.json keys <name>_<field> and the `qa` keywords. To add a penalty:
write its module under objectives/ (settings dataclass, `make_penalty(config)`, `ENTRY`) and add
one line below.
"""

from typing import Optional

from qagan_tf.objectives import penalty_api
from qagan_tf.objectives import ssim
from qagan_tf.objectives.niqe import penalty as niqe

_BASELINE = penalty_api.PenaltyEntry(make=lambda config: None)

PENALTIES = {
    "wgan_gp": _BASELINE,  # The paper's baseline: the 1-GP only.
    "none": _BASELINE,  # Same, for losses where "wgan_gp" would mislead (SNGAN).
    "ssim": ssim.ENTRY,
    "niqe": niqe.ENTRY,
}

# Settings groups: TrainConfig.<name> (flags and config.json keys <name>_<field>).
CONFIG_GROUPS = {name: e.settings for name, e in PENALTIES.items() if e.settings is not None}


def penalty_names():
  """Names accepted by `make_quality_penalty` (and `--penalty`)."""
  return tuple(PENALTIES)


def get_entry(name):
  """The `PenaltyEntry` called `name`.

  Raises:
    ValueError: for an unknown name; the message lists the valid ones.
  """
  if name not in PENALTIES:
    raise ValueError(f"Unknown penalty {name!r}; valid penalties: {', '.join(PENALTIES)}.")
  return PENALTIES[name]


def check_penalty_name(name):
  """Raises ValueError for an unknown name; the message lists the valid ones."""
  get_entry(name)


def make_quality_penalty(name, config=None) -> Optional[penalty_api.QualityPenalty]:
  """Builds the quality-aware penalty `name` (None for a baseline without one).

  Raises:
    ValueError: for an unknown name; the message lists the valid ones.
  """
  return get_entry(name).make(config)
