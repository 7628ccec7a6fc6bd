"""The architecture registry (`--architecture`) and the model protocol the rest of qagan_tf uses.

The protocol: what the trainer, sampling, checkpoints, the penalties and the benchmark's peer may
call on a model; any architecture that follows it trains with every loss, penalty and strategy.

Generator (a keras.Model):
  - `generator(z, training=...)`: z float (N, z_dim) -> float32 (N, R, R, 3) in [-1, 1];
  - `z_dim`, `resolution` (R) attributes; `build_for_inference()` creates every variable.
Discriminator (a keras.Model):
  - `discriminator(x, training=...)`: float (N, R, R, 3) in [-1, 1] -> float32 scores (N,), no
    batch-dependent layer (the per-example gradient penalties need that);
  - `resolution`, `spectral_norm` (bool) attributes; `build_for_inference()`;
    `update_spectral_norm()` runs one power iteration in every spectrally normalised layer (a
    no-op without them).
Checkpoints hold the models as tf.train.Checkpoint objects: layers must be attributes, not lists.
"""

import dataclasses
from typing import Callable, Optional

from qagan_tf.models import resnet
from qagan_tf.models import sndcgan


@dataclasses.dataclass(frozen=True)
class ArchitectureEntry:
  """generator(resolution, width, z_dim, name) and discriminator(resolution, width,
  spectral_norm, name) build the models; `resolutions` are the sizes it supports.

  settings: optional, the architecture's own settings, a frozen dataclass whose fields are made
  with `utils.fields.setting` (and, optionally, `validate(config)` against the whole run). They
  become the flags --<name>_<field> and config.json keys, are part of what a resumed run must
  keep (a change would build another model), and reach both builders as `settings=`."""
  generator: Callable
  discriminator: Callable
  resolutions: tuple
  description: str
  settings: Optional[type] = None


ARCHITECTURES = {
    "resnet": ArchitectureEntry(
        lambda r, w, z, name: resnet.Generator(r, w, z, name=name),
        lambda r, w, sn, name: resnet.Discriminator(r, w, name=name, spectral_norm=sn),
        resnet.SUPPORTED_RESOLUTIONS,
        "the paper's ResNet (WGAN-GP ResNet; QAGAN supplement Tables 1-2); width = channels of "
        "every block (paper 128)"),
    "sndcgan": ArchitectureEntry(
        lambda r, w, z, name: sndcgan.Generator(r, w, z, name=name),
        lambda r, w, sn, name: sndcgan.Discriminator(r, w, name=name, spectral_norm=sn),
        sndcgan.SUPPORTED_RESOLUTIONS,
        "SNGAN's standard CNN (Miyato et al. 2018, Table 3); width = the first layer's "
        "channels (Miyato 64)"),
}


# The settings groups of the architectures that have settings (config.json keys <name>_<field>).
CONFIG_GROUPS = {name: e.settings for name, e in ARCHITECTURES.items() if e.settings is not None}


def settings_of(config):
  """The settings of a run's architecture (`config.<architecture>`), or None when it has none."""
  if get_architecture(config.architecture).settings is None:
    return None
  return getattr(config, config.architecture)


def get_architecture(name):
  """The `ArchitectureEntry` called `name`.

  Raises:
    ValueError: for an unknown name (listing the valid ones).
  """
  if name not in ARCHITECTURES:
    raise ValueError(f"Unknown architecture {name!r}; valid architectures: "
                     f"{', '.join(ARCHITECTURES)}.")
  return ARCHITECTURES[name]


def check_resolution(name, resolution):
  """Raises ValueError unless architecture `name` supports `resolution` (listing those it does)."""
  entry = get_architecture(name)
  if resolution not in entry.resolutions:
    raise ValueError(f"resolution={resolution!r} is not supported by the {name} architecture; "
                     f"use one of {', '.join(map(str, entry.resolutions))}.")


def _settings_kwargs(name, settings):
  """{"settings": ...} for an architecture with settings (its defaults unless given), {} for
  one without (ValueError if some were given)."""
  entry = get_architecture(name)
  if entry.settings is None:
    if settings is not None:
      raise ValueError(f"the {name} architecture has no settings; got {settings!r}.")
    return {}
  return {"settings": entry.settings() if settings is None else settings}


def build_generator(name, resolution, width, z_dim, model_name="generator", settings=None):
  """A generator of architecture `name` (see the protocol above); `settings`: the
  architecture's settings (`settings_of(config)`; its defaults when None)."""
  check_resolution(name, resolution)
  return get_architecture(name).generator(resolution, width, z_dim, model_name,
                                          **_settings_kwargs(name, settings))


def build_discriminator(name, resolution, width, spectral_norm=False,
                        model_name="discriminator", settings=None):
  """A discriminator of architecture `name` (see the protocol above; `settings` as
  `build_generator`'s)."""
  check_resolution(name, resolution)
  return get_architecture(name).discriminator(resolution, width, spectral_norm, model_name,
                                              **_settings_kwargs(name, settings))
