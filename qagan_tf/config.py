"""The frozen training configuration shared by the library, the scripts and model_dir/config.json."""

import dataclasses
import json
import os

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
  # Losses and penalties.
  penalty: str = "wgan_gp"
  gp_weight: float = 1.0
  qa_weight: float = 0.1
  drift_weight: float = 1e-5
  # SSIM-distance penalty (penalty="ssim"); defaults: the authors' window on grayscale [-1, 1].
  ssim_window: str = "gaussian"
  ssim_window_size: int = 8
  ssim_sigma: float = 1.5
  ssim_max_val: float = 2.0
  ssim_grayscale: bool = True
  ssim_cs_offset: float = 0.0
  # NIQE gradient penalty (penalty="niqe"). 0 / "auto": as the prior was fitted (its metadata).
  niqe_prior: str = "cifar_grad"
  niqe_block_size: int = 0
  niqe_scales: int = 0
  niqe_pooling: str = "batch"
  niqe_grayscale: bool = True
  niqe_transform: str = "auto"
  niqe_normalization: str = "auto"
  niqe_normalization_scale: float = 0.0
  niqe_split: str = "soft"
  niqe_split_temperature: float = 0.03
  niqe_covariance_regularization: float = 0.0
  niqe_allow_prior_mismatch: bool = False
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
                "steps_per_call", "disc_iters", "save_every", "keep_checkpoints", "log_every",
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
    from qagan_tf.data import sources  # Local: keep config importable without TF.
    try:
      sources.check_dataset_name(self.dataset)
    except sources.DataError as e:
      raise ValueError(str(e)) from None
    if self.num_examples < 0:
      raise ValueError(f"num_examples={self.num_examples} must be >= 0 (0: all).")
    if self.ssim_window not in ("gaussian", "uniform", "tf_image"):
      raise ValueError(f"ssim_window={self.ssim_window!r}: use gaussian, uniform or tf_image.")
    if self.ssim_window_size < 1 or self.ssim_window_size > self.resolution:
      raise ValueError(f"ssim_window_size={self.ssim_window_size} must be in [1, resolution="
                       f"{self.resolution}].")
    if not (self.ssim_sigma > 0 and self.ssim_max_val > 0 and self.ssim_cs_offset >= 0):
      raise ValueError("ssim_sigma and ssim_max_val must be > 0 and ssim_cs_offset >= 0.")
    choices = {"niqe_pooling": ("pooled", "image", "batch"),
               "niqe_transform": ("auto", "magnitude", "signed"),
               "niqe_normalization": ("auto", "none", "contrast", "max"),
               "niqe_split": ("soft", "hard")}
    for name, valid in choices.items():
      if getattr(self, name) not in valid:
        raise ValueError(f"{name}={getattr(self, name)!r}: use one of {', '.join(valid)}.")
    if self.niqe_scales < 0 or self.niqe_block_size < 0:
      raise ValueError("niqe_scales and niqe_block_size must be >= 0 (0: the prior's).")
    if self.penalty == "niqe" and self.niqe_block_size:
      div = 2 ** (max(self.niqe_scales, 2) - 1)
      if self.niqe_block_size > self.resolution or self.niqe_block_size % div or (
          self.niqe_block_size // div < 4):
        raise ValueError(f"niqe_block_size={self.niqe_block_size} does not fit "
                         f"{self.resolution} px images with {max(self.niqe_scales, 2)} scales: it "
                         f"must be <= {self.resolution}, a multiple of {div} and at least "
                         f"{4 * div} (0: the prior's).")
    for name in ("niqe_covariance_regularization", "niqe_normalization_scale",
                 "niqe_split_temperature"):
      if not getattr(self, name) >= 0:
        raise ValueError(f"{name}={getattr(self, name)} must be >= 0.")
    if self.niqe_split == "soft" and not self.niqe_split_temperature > 0:
      raise ValueError("niqe_split=soft needs niqe_split_temperature > 0 (default 0.03).")
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
    return dataclasses.replace(self, **changes)

  def to_dict(self):
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values):
    """Builds a config from a dict, ignoring unknown keys (from newer versions) and filling defaults.

    A NIQE run written before the penalty followed its prior's metadata (no `niqe_transform`)
    gets the settings it actually trained with (`LEGACY_NIQE`), so that resuming it with the
    new defaults is refused as a configuration change instead of silently changing the penalty.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    values = dict(values)
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
    return cls(**{k: v for k, v in values.items() if k in names})


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
  for field in dataclasses.fields(TrainConfig):
    if field.name not in values:
      continue
    value, kind = values[field.name], type(field.default)
    if kind is float:
      ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is int:
      ok = isinstance(value, int) and not isinstance(value, bool)
    else:
      ok = isinstance(value, kind)
    if not ok:
      raise ValueError(f"{path}: key {field.name!r} is {value!r} ({type(value).__name__}); it "
                       f"must be of type {kind.__name__} (default {field.default!r}). Fix the file "
                       "or restore it from a backup.")
