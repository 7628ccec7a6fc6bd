"""The registry of quality-aware penalties: `--penalty` name -> factory(config).

A factory returns a `penalty_api.QualityPenalty`, or None for no quality-aware penalty (the
baselines: WGAN-GP's 1-GP alone, or a plain SNGAN). Each penalty's settings are a config group
(`CONFIG_GROUPS`: TrainConfig field -> settings class), validated beside the penalty. To add a
penalty: write its module (settings class, `make_penalty(config)`) and add one entry to each
dict below.
"""

from typing import Optional

from qagan_tf.train import niqe_penalty
from qagan_tf.train import penalty_api
from qagan_tf.train import ssim_penalty

PENALTIES = {
    "wgan_gp": lambda config: None,  # The paper's baseline: the 1-GP only.
    "none": lambda config: None,  # Same, for losses where "wgan_gp" would mislead (SNGAN).
    "ssim": ssim_penalty.make_penalty,
    "niqe": niqe_penalty.make_penalty,
}

CONFIG_GROUPS = {
    "ssim": ssim_penalty.SsimConfig,
    "niqe": niqe_penalty.NiqeConfig,
}


def penalty_names():
  """Names accepted by `make_quality_penalty` (and `--penalty`)."""
  return tuple(PENALTIES)


def check_penalty_name(name):
  """Raises ValueError for an unknown name; the message lists the valid ones."""
  if name not in PENALTIES:
    raise ValueError(f"Unknown penalty {name!r}; valid penalties: {', '.join(PENALTIES)}.")


def make_quality_penalty(name, config=None) -> Optional[penalty_api.QualityPenalty]:
  """Builds the quality-aware penalty `name` (None for a baseline without one).

  Raises:
    ValueError: for an unknown name; the message lists the valid ones.
  """
  check_penalty_name(name)
  return PENALTIES[name](config)
