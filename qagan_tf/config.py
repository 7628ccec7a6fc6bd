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
  # NIQE gradient penalty (penalty="niqe").
  niqe_prior: str = "natural"
  niqe_block_size: int = 0
  niqe_scales: int = 2
  niqe_pooling: str = "image"
  niqe_grayscale: bool = True
  niqe_normalization: str = "auto"
  niqe_covariance_regularization: float = 1e-3
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
    if self.niqe_pooling not in ("image", "batch"):
      raise ValueError(f"niqe_pooling={self.niqe_pooling!r}: use image or batch.")
    if self.niqe_normalization not in ("auto", "max", "none"):
      raise ValueError(f"niqe_normalization={self.niqe_normalization!r}: use auto, max or none.")
    if self.niqe_scales < 1 or self.niqe_block_size < 0:
      raise ValueError("niqe_scales must be >= 1 and niqe_block_size >= 0 (0: auto).")
    if self.penalty == "niqe":
      block = self.niqe_block_size or self.resolution // 2
      div = 2 ** (self.niqe_scales - 1)
      if block > self.resolution or block % div or block // div < 4:
        raise ValueError(f"niqe_block_size={block} does not fit {self.resolution} px images "
                         f"with {self.niqe_scales} scales: it must be <= {self.resolution}, a "
                         f"multiple of {div} and at least {4 * div} (0 picks resolution / 2).")
    if not self.niqe_covariance_regularization >= 0:
      raise ValueError("niqe_covariance_regularization must be >= 0.")
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
    """Builds a config from a dict, ignoring unknown keys (from newer versions) and filling defaults."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


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
  path = os.path.join(model_dir, CONFIG_FILENAME)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} not found: --model_dir={model_dir} is not a qagan_tf run "
                            "directory (bin/train writes config.json there).")
  try:
    with open(path) as f:
      return TrainConfig.from_dict(json.load(f))
  except json.JSONDecodeError as e:
    raise ValueError(f"{path} is not valid JSON ({e}).") from None
