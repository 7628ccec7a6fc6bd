"""The NIQE penalty's settings: the `niqe` config group (flags --niqe_*), what its values resolve
to against a prior (`resolve_settings`), and how runs written by older versions are read."""

import dataclasses

import numpy as np
from absl import logging

from qagan_tf.iqa import aggd
from qagan_tf.iqa import model as niqe_model_lib
from qagan_tf.iqa import naturalness
from qagan_tf.objectives.niqe.priors import GRADIENT_SOURCES, MAGNITUDE_SOURCES, NORMALIZATIONS
from qagan_tf.utils.fields import check_choices, setting

TRANSFORMS = ("magnitude", "signed")
# Smoothing of D's gradient map before the magnitude (see `transform.penalty_inputs`):
# "binomial" is the [1 2 1] x [1 2 1] / 16 smoothing that the Sobel operator applies.
SMOOTHINGS = ("none", "binomial")
XLA_MODES = ("auto", "on", "off")


@dataclasses.dataclass(frozen=True)
class NiqeConfig:
  """The `niqe` group of TrainConfig: flags and config.json keys niqe_<field>, and the keyword
  settings of `qa.niqe_penalty`. 0 / "auto": as the prior was fitted (its metadata)."""
  prior: str = setting(
      "cifar_grad", "NIQE penalty: pristine model: cifar_grad, stl_grad (the authors' "
      "Sobel-magnitude priors for CIFAR-10 32 px and STL-10 48 px), natural_sobel64 (ours, "
      "64 px), natural (classic NIQE, 96 px blocks of photographs), or a .npz/.mat path "
      "(bin/fit_niqe_prior). The prior records how it was fitted; the penalty transforms D's "
      "gradients the same way (the settings below default to the prior's values).")
  block_size: int = setting(0, "NIQE penalty: block size at scale 1 (0: the prior's).")
  scales: int = setting(0, "NIQE penalty: number of scales (0: the prior's).")
  pooling: str = setting(
      "group", "NIQE penalty: the test MVG. group (default): one MVG over the blocks of each "
      "group of --niqe_group_size images of a replica's batch, each image scored with its "
      "group's distance (the same at every batch size; no all-reduce); batch: one MVG over all "
      "blocks of the global batch (the authors' code; it falls with the batch size); pooled: "
      "per-image mean with the global batch's covariance; image: mean and covariance per image "
      "(paper eq. 15 literally).", choices=naturalness.POOLINGS)
  group_size: int = setting(
      naturalness.DEFAULT_GROUP_SIZE, "NIQE penalty: images per group of --niqe_pooling=group. "
      "A replica batch smaller than it is one group; otherwise groups of at least this many, "
      "as equal as possible.")
  grayscale: bool = setting(
      True, "NIQE penalty: gradients to luma first (as every shipped prior's inputs).")
  transform: str = setting(
      "auto", "NIQE penalty: per-pixel magnitude of D's gradient (priors of Sobel or gradient "
      "magnitudes) or its signed values (auto: the prior's).", choices=("auto",) + TRANSFORMS)
  smoothing: str = setting(
      "auto", "NIQE penalty: smoothing of D's gradient before its magnitude. binomial: the "
      "[1 2 1] x [1 2 1] / 16 smoothing of the Sobel operator, so that a gradient shaped like "
      "an image's derivative is scored like that image's Sobel magnitude; auto: binomial for "
      "Sobel-magnitude priors, else none.", choices=("auto",) + SMOOTHINGS)
  normalization: str = setting(
      "auto", "NIQE penalty: scaling of D's gradient before NIQE: contrast (mean local "
      "standard deviation -> --niqe_normalization_scale), max (peak |g| -> scale), none (raw); "
      "auto: what brings it to the prior's inputs' scale.", choices=("auto",) + NORMALIZATIONS)
  normalization_scale: float = setting(
      0.0, "NIQE penalty: target of --niqe_normalization (0: the prior's).")
  split: str = setting(
      "soft", "NIQE penalty: AGGD left/right split. soft: smooth in D's weights; hard: "
      "MATLAB's counts (the penalty jumps when a value crosses 0).", choices=aggd.SPLITS)
  split_temperature: float = setting(
      aggd.DEFAULT_TEMPERATURE,
      "NIQE penalty: width of the soft split's ramp, relative to the values' RMS.")
  covariance_regularization: float = setting(
      0.0, "NIQE penalty: ridge added to (Sigma_P + Sigma_T) / 2 (0: none needed; the solve is "
      "whitened by the prior).")
  allow_prior_mismatch: bool = setting(
      False, "NIQE penalty: use --niqe_* values that contradict how the prior was fitted "
      "(logged), instead of refusing them.")
  xla: str = setting(
      "auto", "NIQE penalty: compile its per-replica part with XLA on its own when "
      "--jit_compile is off (the same function within float32 round-off, fewer kernels). "
      "auto: on GPUs, off on CPUs (no faster there).", choices=XLA_MODES)

  # The fields that define a NIQE run's penalty: changing one on resume is refused.
  RUN_DEFINING = ("prior", "block_size", "scales", "pooling", "group_size", "grayscale",
                  "transform", "smoothing", "normalization", "normalization_scale", "split",
                  "split_temperature", "covariance_regularization")

  def check_values(self, spell=lambda field: f"niqe_{field}"):
    """Raises ValueError for a choice or range that no run can use (naming the setting as
    `spell` writes it, and the fix)."""
    check_choices(self, spell)
    if not isinstance(self.group_size, (int, np.integer)) or self.group_size < 2:
      raise ValueError(f"{spell('group_size')}={self.group_size!r} must be an integer >= 2 "
                       "(images per group of pooling group; default 16).")
    if self.scales < 0 or self.block_size < 0:
      raise ValueError(f"{spell('scales')} and {spell('block_size')} must be >= 0 (0: the "
                       "prior's).")
    for name in ("covariance_regularization", "normalization_scale", "split_temperature"):
      if not getattr(self, name) >= 0:
        raise ValueError(f"{spell(name)}={getattr(self, name)} must be >= 0.")
    if self.split == "soft" and not self.split_temperature > 0:
      raise ValueError(f"{spell('split')}=soft needs {spell('split_temperature')} > 0 "
                       "(default 0.03).")

  def resolve_auto(self, config):
    """These settings with --niqe_xla=auto resolved for `config`'s run (`resolve_xla`); the
    choice is logged, and recorded in config.json like --jit_compile's."""
    if self.xla != "auto":
      return self
    chosen, reason = resolve_xla(self.xla, config.jit_compile, with_reason=True)
    if config.penalty == "niqe":
      logging.info("--niqe_xla=auto: %s (%s).", chosen, reason)
    return dataclasses.replace(self, xla=chosen)

  def validate(self, config):
    """Raises ValueError naming the flag and the fix (config: the whole TrainConfig)."""
    self.check_values()
    if config.penalty == "niqe" and self.block_size:
      div = 2 ** (max(self.scales, 2) - 1)
      if self.block_size > config.resolution or self.block_size % div or (
          self.block_size // div < 4):
        raise ValueError(f"niqe_block_size={self.block_size} does not fit "
                         f"{config.resolution} px images with {max(self.scales, 2)} scales: it "
                         f"must be <= {config.resolution}, a multiple of {div} and at least "
                         f"{4 * div} (0: the prior's).")


def resolve_xla(mode, jit_compile=False, with_reason=False):
  """What --niqe_xla=`mode` means for a run: "on" (the penalty's per-replica part compiled with
  XLA on its own) or "off". auto: off when the whole D computation is compiled (--jit_compile),
  else on for GPUs, where XLA fuses the penalty's many small ops into few kernels, and off for
  CPUs, where it measured no faster (docs/performance.md)."""
  if mode != "auto":
    chosen, reason = mode, "as given"
  elif jit_compile:
    chosen, reason = "off", "--jit_compile compiles the whole D computation"
  else:
    import tensorflow as tf
    gpu = bool(tf.config.list_physical_devices("GPU"))  # Not logical: keeps TF uninitialised.
    chosen, reason = ("on", "a GPU") if gpu else ("off", "no GPU: not faster on CPUs")
  return (chosen, reason) if with_reason else chosen


@dataclasses.dataclass(frozen=True)
class NiqeSettings:
  """Everything the NIQE penalty does with D's gradients, resolved from a prior and a config."""
  transform: str
  grayscale: bool
  normalization: str
  scale: float
  block_size: int
  scales: int
  pooling: str
  split: str
  temperature: float
  covariance_regularization: float
  smoothing: str = "none"
  group_size: int = naturalness.DEFAULT_GROUP_SIZE


def penalty_normalization(spec):
  """(normalization, scale) that brings D's gradients to the prior's inputs' scale.

  Priors of D's gradients: what their fit did (raw gradients stay raw). Priors of image-scale
  inputs fitted without normalisation (Sobel magnitudes, images): D's gradients have no natural
  scale, so they get the inputs' typical local contrast (`PriorSpec.scale`).
  """
  if spec.normalization != "none" or spec.source in GRADIENT_SOURCES:
    return spec.normalization, spec.scale
  if not spec.scale:
    raise niqe_model_lib.ModelError(
        f"the prior's metadata gives no scale for its {spec.source} inputs; re-fit it with "
        "bin/fit_niqe_prior, which records it.")
  return "contrast", spec.scale


def default_smoothing(spec, transform):
  """What --niqe_smoothing=auto means: "binomial" when a Sobel-magnitude prior meets the
  magnitude transform, else "none".

  A Sobel magnitude is the magnitude of an image's derivative smoothed by [1 2 1] x [1 2 1]
  (across and, through the central difference, along it); D's input gradient, when it looks
  like an image's derivative, looks like a raw forward difference. Smoothing it the same way
  makes a natural derivative map score like a natural Sobel map under the authors' priors
  (cifar_grad: 3.0 against 2.9; unsmoothed 6.5, about what white noise scores) and ranks clean
  maps above blurred ones (docs/penalties.md has the figures).
  """
  return "binomial" if (spec.source == "sobel_magnitude" and transform == "magnitude") else "none"


def flag_name(field):
  """How bin/train spells a NIQE setting in its messages: --niqe_FIELD (resolution as is)."""
  return "--resolution" if field == "resolution" else f"--niqe_{field}"


def resolve_settings(niqe, prior, resolution, spell=flag_name):
  """The penalty's settings: the prior's unless `niqe` overrides them.

  Args:
    niqe: the penalty's settings group (`NiqeConfig`; 0 / "auto" mean "the prior's").
    prior: a `Prior`.
    resolution: the side of the images (and of D's gradients) in pixels.
    spell: field name -> how the caller's user writes it in messages (flags or keywords).

  Raises:
    ValueError: a setting that contradicts the prior (naming both and the fixes), unless
      niqe.allow_prior_mismatch, in which case it is logged and used.
  """
  spec = prior.spec
  normalization, scale = penalty_normalization(spec)
  prior_values = {
      "block_size": spec.block_size or resolution // 2,
      "scales": spec.scales,
      "transform": "magnitude" if spec.source in MAGNITUDE_SOURCES else "signed",
      "grayscale": spec.grayscale,
      "normalization": normalization,
      "normalization_scale": scale or 0.0,
  }
  unset = {"block_size": 0, "scales": 0, "transform": "auto", "normalization": "auto",
           "normalization_scale": 0.0}
  chosen, conflicts = {}, []
  for key, value in prior_values.items():
    given = getattr(niqe, key)
    if key in unset and given == unset[key]:
      chosen[key] = value
    else:
      chosen[key] = given
      if given != value:
        conflicts.append(f"{spell(key)}={given} (the prior: {value})")
  if spec.resolution and spec.resolution != resolution:
    conflicts.append(f"{spell('resolution')}={resolution} (the prior was fitted at "
                     f"{spec.resolution} px)")
  too_big = chosen["block_size"] > resolution
  if too_big:
    conflicts.append(f"blocks of {chosen['block_size']} px do not fit {resolution} px images")
  if conflicts:
    message = (f"{spell('prior')}={prior.name} was fitted on {spec.describe()}; "
               f"{'; '.join(conflicts)}.")
    if not niqe.allow_prior_mismatch or too_big:
      fits = f" with a {spell('block_size')} that fits" if too_big else ""
      raise ValueError(
          f"{message} The penalty would not measure what the prior describes: drop those "
          f"settings, fit a prior for them (bin/fit_niqe_prior --resolution={resolution} ...), "
          f"or pass {spell('allow_prior_mismatch')} to use them anyway{fits}.")
    logging.warning("%s Used as given (%s).", message, spell("allow_prior_mismatch"))
  if chosen["normalization"] != "none" and not chosen["normalization_scale"] > 0:
    raise ValueError(f"{spell('normalization')}={chosen['normalization']} needs "
                     f"{spell('normalization_scale')} > 0.")
  smoothing = niqe.smoothing
  if smoothing == "auto":
    smoothing = default_smoothing(spec, chosen["transform"])
  return NiqeSettings(
      transform=chosen["transform"], grayscale=chosen["grayscale"],
      normalization=chosen["normalization"], scale=float(chosen["normalization_scale"]),
      block_size=chosen["block_size"], scales=chosen["scales"], pooling=niqe.pooling,
      split=niqe.split, temperature=niqe.split_temperature,
      covariance_regularization=niqe.covariance_regularization, smoothing=smoothing,
      group_size=niqe.group_size)
