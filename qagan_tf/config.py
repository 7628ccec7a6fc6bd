"""The frozen training configuration shared by the library, the scripts and model_dir/config.json."""

import dataclasses
import json
import os

from qagan_tf.data import sources
from qagan_tf.train import losses
from qagan_tf.train import niqe_penalty
from qagan_tf.train import penalties
from qagan_tf.train import ssim_penalty

CONFIG_FILENAME = "config.json"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Every hyperparameter of a run. Defaults follow the paper (QAGAN on CIFAR-10).

  Attributes are documented where `bin/train` defines the matching flags.
  """
  # Data.
  dataset: str = "cifar10"
  data_dir: str = ""
  num_examples: int = 0
  download: bool = True
  resolution: int = 32
  # Networks.
  width: int = 128
  z_dim: int = 128
  # Optimisation.
  batch_size: int = 64
  g_batch_multiplier: int = 2
  max_steps: int = 100_000
  disc_iters: int = 5
  lr: float = 2e-4
  beta1: float = 0.0
  beta2: float = 0.9
  lr_decay: str = "linear"
  # Losses, penalties and D's normalisation.
  loss: str = "wasserstein"
  d_norm: str = "none"
  penalty: str = "wgan_gp"
  gp_weight: float = 1.0
  qa_weight: float = 0.1
  drift_weight: float = 1e-5
  # Lazy regularisation (StyleGAN2 §B): the 1-GP / the QA penalty on every k-th D update only,
  # weighted by k (1: every update, the paper).
  gp_every: int = 1
  qa_every: int = 1
  # Each penalty's settings: a group per penalty (penalties.CONFIG_GROUPS), flags ssim_*, niqe_*.
  ssim: ssim_penalty.SsimConfig = dataclasses.field(default_factory=ssim_penalty.SsimConfig)
  niqe: niqe_penalty.NiqeConfig = dataclasses.field(default_factory=niqe_penalty.NiqeConfig)
  # Generator EMA.
  ema_decay: float = 0.99
  # Bookkeeping.
  seed: int = 0
  deterministic: bool = False
  on_nonfinite: str = "stop"
  # Speed (none of these changes the experiment).
  steps_per_call: int = 1
  jit_compile: bool = False
  mixed_precision: str = "none"
  allow_tf32: bool = False
  save_every: int = 1000
  keep_checkpoints: int = 3
  log_every: int = 100
  sample_every: int = 1000
  histogram_every: int = 1000
  num_sample_images: int = 64
  # In-training evaluation (FID of the EMA generator; 0 = off).
  eval_every: int = 0
  eval_num_samples: int = 5000
  eval_stats: str = ""
  inception_weights: str = ""

  def validate(self):
    """Checks value ranges that the flags cannot express.

    Raises:
      ValueError: naming the offending field and the fix.
    """
    positive = ("width", "z_dim", "batch_size", "g_batch_multiplier", "max_steps",
                "steps_per_call", "disc_iters", "gp_every", "qa_every", "save_every",
                "keep_checkpoints", "log_every",
                "sample_every", "histogram_every", "num_sample_images")
    for name in positive:
      if getattr(self, name) < 1:
        raise ValueError(f"{name}={getattr(self, name)} must be a positive integer.")
    for name in ("gp_weight", "qa_weight", "drift_weight", "lr"):
      if not getattr(self, name) >= 0:
        raise ValueError(f"{name}={getattr(self, name)} must be >= 0.")
    for name in ("beta1", "beta2", "ema_decay"):
      if not 0 <= getattr(self, name) < 1:
        raise ValueError(f"{name}={getattr(self, name)} must be in [0, 1).")
    try:
      sources.check_dataset_name(self.dataset)
    except sources.DataError as e:
      raise ValueError(str(e)) from None
    if self.num_examples < 0:
      raise ValueError(f"num_examples={self.num_examples} must be >= 0 (0: all).")
    losses.get_loss(self.loss)
    if self.d_norm not in D_NORMS:
      raise ValueError(f"Unknown d_norm {self.d_norm!r}; use one of {', '.join(D_NORMS)}.")
    penalties.check_penalty_name(self.penalty)
    for group in penalties.CONFIG_GROUPS:
      getattr(self, group).validate(self)
    if self.eval_every < 0:
      raise ValueError(f"eval_every={self.eval_every} must be >= 0 (0: no in-training FID).")
    if self.eval_every and not self.eval_stats:
      raise ValueError("eval_every > 0 needs eval_stats: reference statistics from "
                       "bin/compute_stats (e.g. --eval_stats=stats/cifar10_train.npz).")
    if self.eval_num_samples < 10:
      raise ValueError(f"eval_num_samples={self.eval_num_samples} must be >= 10 (IS uses 10 "
                       "splits).")
    if self.lr_decay not in ("linear", "constant"):
      raise ValueError(f"lr_decay={self.lr_decay!r}: use 'linear' or 'constant'.")
    if self.mixed_precision not in ("none", "bfloat16", "float16"):
      raise ValueError(f"mixed_precision={self.mixed_precision!r}: use none, bfloat16 or "
                       "float16.")
    if self.on_nonfinite not in ("stop", "skip"):
      raise ValueError(f"on_nonfinite={self.on_nonfinite!r}: use 'stop' or 'skip'.")
    return self

  def replace(self, **changes):
    """A copy with `changes`, given by flag name (e.g. niqe_pooling="image") or as groups."""
    values = self.to_dict()
    for key, value in changes.items():
      if key in penalties.CONFIG_GROUPS:
        values.update(_flatten_group(key, value))
      else:
        values[key] = value
    return TrainConfig.create(**values)

  def to_dict(self):
    """Flat {flag name: value}: what config.json, HParams and the flags hold."""
    values = {}
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if field.name in penalties.CONFIG_GROUPS:
        values.update(_flatten_group(field.name, value))
      else:
        values[field.name] = value
    return values

  @classmethod
  def create(cls, **values):
    """Builds a config from flat flag-named values (ssim_window=..., niqe_prior=...).

    Raises:
      TypeError: for an unknown name.
    """
    unknown = sorted(set(values) - set(flat_defaults()))
    if unknown:
      raise TypeError(f"Unknown TrainConfig settings: {', '.join(unknown)}.")
    return cls._from_flat(values)

  @classmethod
  def _from_flat(cls, values):
    plain = {k: v for k, v in values.items() if k in cls.__dataclass_fields__
             and k not in penalties.CONFIG_GROUPS}
    for group, settings_cls in penalties.CONFIG_GROUPS.items():
      prefix = group + "_"
      plain[group] = settings_cls(**{k[len(prefix):]: v for k, v in values.items()
                                     if k.startswith(prefix)
                                     and k[len(prefix):] in settings_cls.__dataclass_fields__})
    return cls(**plain)

  @classmethod
  def from_dict(cls, values):
    """Builds a config from a flat dict (config.json), ignoring unknown keys (from newer
    versions) and filling defaults.

    A NIQE run written before the penalty followed its prior's metadata (no `niqe_transform`)
    gets the settings it actually trained with (`LEGACY_NIQE`), and one written before the
    gradient smoothing (no `niqe_smoothing`) keeps it off, so that an old run resumes with the
    penalty it trained with.
    """
    values = dict(values)
    if values.get("penalty") == "niqe" and "niqe_smoothing" not in values:
      # Written before the smoothing and the groups: the penalty had neither.
      values["niqe_smoothing"] = "none"
    if values.get("penalty") == "niqe" and "niqe_transform" not in values:
      legacy = dict(LEGACY_NIQE)
      legacy["niqe_normalization"] = ("none" if values.get("niqe_normalization") == "none" or (
          values.get("niqe_normalization", "auto") == "auto"
          and values.get("niqe_prior") == "face_grad") else "max")
      legacy["niqe_normalization_scale"] = 255.0 if legacy["niqe_normalization"] == "max" else 0.0
      legacy["niqe_block_size"] = (values.get("niqe_block_size")
                                   or values.get("resolution", cls.resolution) // 2)
      legacy.setdefault("niqe_prior", "natural")
      values = {**{k: v for k, v in legacy.items() if k not in values or k in _LEGACY_OVERRIDE},
                **{k: v for k, v in values.items() if k not in _LEGACY_OVERRIDE}}
    known = flat_defaults()
    return cls._from_flat({k: v for k, v in values.items() if k in known})


D_NORMS = ("none", "spectral")


def _flatten_group(group, settings):
  return {f"{group}_{k}": v for k, v in dataclasses.asdict(settings).items()}


def flat_defaults():
  """{flag name: default} of every setting (the groups' fields as GROUP_FIELD)."""
  values = {}
  for field in dataclasses.fields(TrainConfig):
    if field.name in penalties.CONFIG_GROUPS:
      values.update(_flatten_group(field.name, penalties.CONFIG_GROUPS[field.name]()))
    else:
      values[field.name] = field.default
  return values


# A resume that changes one of these would load weights into a different model or continue a
# different experiment; bin/train refuses it unless --allow_config_change.
INCOMPATIBLE_KEYS = ("dataset", "resolution", "width", "z_dim", "loss", "d_norm", "penalty",
                     "seed", "g_batch_multiplier", "disc_iters", "batch_size", "gp_every",
                     "qa_every")


def check_config_change(old, new, allow_change=False):
  """Compares a saved run config with the requested one.

  Returns:
    list of (key, old, new) for every differing key (flag names).

  Raises:
    ValueError: naming the differing incompatible keys (those of INCOMPATIBLE_KEYS and the
      fields that define the active penalty, its group's RUN_DEFINING), unless allow_change.
  """
  old_d, new_d = old.to_dict(), new.to_dict()
  changes = [(k, old_d.get(k), new_d[k]) for k in sorted(new_d) if old_d.get(k) != new_d[k]]
  defining = set(INCOMPATIBLE_KEYS)
  if new.penalty in penalties.CONFIG_GROUPS:
    group = penalties.CONFIG_GROUPS[new.penalty]
    defining.update(f"{new.penalty}_{k}" for k in getattr(group, "RUN_DEFINING", ()))
  bad = [c for c in changes if c[0] in defining]
  if bad and not allow_change:
    listed = ", ".join(f"{k}: {o!r} -> {n!r}" for k, o, n in bad)
    raise ValueError(f"The run in this model_dir was started with a different configuration "
                     f"({listed}). Use a new --model_dir, restore the original values, or pass "
                     "--allow_config_change if the change is deliberate.")
  return changes


# What the NIQE penalty did before priors carried metadata (qagan_tf <= 0.1): signed luma
# gradients scaled to a peak of 255 (raw for raw-gradient priors), blocks of resolution / 2, the
# hard AGGD split, a 1e-3 ridge, per-image MVGs, the "natural" prior by default.
LEGACY_NIQE = {"niqe_transform": "signed", "niqe_split": "hard", "niqe_pooling": "image",
               "niqe_scales": 2, "niqe_covariance_regularization": 1e-3,
               "niqe_allow_prior_mismatch": True}
_LEGACY_OVERRIDE = ("niqe_transform", "niqe_split", "niqe_allow_prior_mismatch",
                    "niqe_normalization", "niqe_normalization_scale", "niqe_block_size")


def save_config(config, model_dir):
  """Writes model_dir/config.json atomically (write to a temporary file, then rename)."""
  from qagan_tf.utils import files
  path = os.path.join(model_dir, CONFIG_FILENAME)
  files.atomic_write_text(path, json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")
  return path


def load_config(model_dir):
  """Reads model_dir/config.json.

  Raises:
    FileNotFoundError: with a message that names the directory when it holds no run.
    ValueError: when the file is not valid JSON.
  """
  from qagan_tf.utils import files
  path = os.path.join(model_dir, CONFIG_FILENAME)
  if not files.isfile(path):
    raise FileNotFoundError(f"{path} not found: --model_dir={model_dir} is not a qagan_tf run "
                            "directory (bin/train writes config.json there).")
  try:
    with files.open_file(path) as f:
      values = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path} is not valid JSON ({e}).") from None
  check_config_values(values, path)
  config = TrainConfig.from_dict(values)
  try:
    return config.validate()
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from None


# Keys without which a run's checkpoints cannot be rebuilt: a default would silently build
# another network (and TF would then print a warning per unmatched variable).
REQUIRED_KEYS = ("dataset", "resolution", "width", "z_dim", "penalty")


def check_config_values(values, path):
  """Raises ValueError naming the key when config.json lacks an architecture key or holds a
  value of the wrong type (e.g. "width": "eight")."""
  if not isinstance(values, dict):
    raise ValueError(f"{path}: expected a JSON object of settings, got {type(values).__name__}.")
  missing = [k for k in REQUIRED_KEYS if k not in values]
  if missing:
    raise ValueError(f"{path} has no {', '.join(repr(k) for k in missing)}: this run cannot be "
                     "rebuilt without it; restore the file or add the key with the value the run "
                     "was trained with.")
  for name, default in flat_defaults().items():
    if name not in values:
      continue
    value, kind = values[name], type(default)
    if kind is float:
      ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is int:
      ok = isinstance(value, int) and not isinstance(value, bool)
    else:
      ok = isinstance(value, kind)
    if not ok:
      raise ValueError(f"{path}: key {name!r} is {value!r} ({type(value).__name__}); it "
                       f"must be of type {kind.__name__} (default {default!r}). Fix the file "
                       "or restore it from a backup.")
