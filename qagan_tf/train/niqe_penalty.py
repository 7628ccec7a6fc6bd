"""The NIQE gradient penalty (paper eqs. 14-15), registered as `niqe`, its settings and its
TensorBoard diagnostics.

NIQE(T(grad_x_hat D(x_hat)) | mu_P, Sigma_P): the differentiable NIQE of D's input gradient at the
interpolates after the transform T that the prior's inputs had (magnitude or signed, luma, scale;
see `niqe_prior`, which holds the priors and how they were fitted); a second-order term in D's
variables, as the 1-GP. Unweighted and per example.
"""

import dataclasses

import tensorflow as tf

from qagan_tf import iqa
from qagan_tf.iqa.similarity import rgb_to_gray
from qagan_tf.train import niqe_prior
from qagan_tf.train import penalty_api


@dataclasses.dataclass(frozen=True)
class NiqeConfig:
  """The `niqe` group of TrainConfig (flags and config.json keys niqe_<field>). 0 / "auto": as
  the prior was fitted (its metadata); see bin/train_flags.py for each flag's meaning."""
  prior: str = "cifar_grad"
  block_size: int = 0
  scales: int = 0
  pooling: str = "batch"
  grayscale: bool = True
  transform: str = "auto"
  normalization: str = "auto"
  normalization_scale: float = 0.0
  split: str = "soft"
  split_temperature: float = 0.03
  covariance_regularization: float = 0.0
  allow_prior_mismatch: bool = False
  xla: str = "auto"

  # The fields that define a NIQE run's penalty: changing one on resume is refused.
  RUN_DEFINING = ("prior", "block_size", "scales", "pooling", "grayscale", "transform",
                  "normalization", "normalization_scale", "split", "split_temperature",
                  "covariance_regularization")

  def validate(self, config):
    """Raises ValueError naming the flag and the fix (config: the whole TrainConfig)."""
    choices = {"pooling": ("pooled", "image", "batch"),
               "transform": ("auto", "magnitude", "signed"),
               "normalization": ("auto", "none", "contrast", "max"),
               "split": ("soft", "hard"),
               "xla": ("auto", "on", "off")}
    for name, valid in choices.items():
      if getattr(self, name) not in valid:
        raise ValueError(f"niqe_{name}={getattr(self, name)!r}: use one of {', '.join(valid)}.")
    if self.scales < 0 or self.block_size < 0:
      raise ValueError("niqe_scales and niqe_block_size must be >= 0 (0: the prior's).")
    if config.penalty == "niqe" and self.block_size:
      div = 2 ** (max(self.scales, 2) - 1)
      if self.block_size > config.resolution or self.block_size % div or (
          self.block_size // div < 4):
        raise ValueError(f"niqe_block_size={self.block_size} does not fit "
                         f"{config.resolution} px images with {max(self.scales, 2)} scales: it "
                         f"must be <= {config.resolution}, a multiple of {div} and at least "
                         f"{4 * div} (0: the prior's).")
    for name in ("covariance_regularization", "normalization_scale", "split_temperature"):
      if not getattr(self, name) >= 0:
        raise ValueError(f"niqe_{name}={getattr(self, name)} must be >= 0.")
    if self.split == "soft" and not self.split_temperature > 0:
      raise ValueError("niqe_split=soft needs niqe_split_temperature > 0 (default 0.03).")


def make_penalty(config):
  """The `niqe` QualityPenalty for a TrainConfig, with the settings its prior implies (see
  `niqe_prior.resolve_settings`)."""
  prior = niqe_prior.load_prior(config.niqe.prior)
  settings = niqe_prior.resolve_settings(config, prior)

  distance = niqe_prior.GradientDistance(prior, settings, compile_local=compile_alone(config))

  def fn(inputs):
    return distance(inputs.grad_x_hat), {}

  def write_summaries(discriminator, real, fake, step):
    write_gradient_summaries(discriminator, real, fake, step, prior, settings)

  return penalty_api.QualityPenalty("niqe", "niqe_penalty", fn, needs_input_gradient=True,
                                    write_summaries=write_summaries)


def compile_alone(config):
  """Whether the penalty is compiled with XLA on its own (--niqe_xla): never when the whole D
  computation already is (--jit_compile); auto: on GPUs, where XLA fuses the penalty's many
  small ops into few kernels, and not on CPUs, where it measured no faster (README, Speed)."""
  if config.jit_compile or config.niqe.xla == "off":
    return False
  return config.niqe.xla == "on" or bool(tf.config.list_logical_devices("GPU"))


def write_gradient_summaries(discriminator, real, fake, step, prior, settings):
  """NIQE (under the penalty's prior and transform) of D's input gradients at real and
  interpolated images, and MSCN histograms of the images and of those transformed gradients,
  real vs generated (the paper's supplementary Figs. 1 and 4)."""
  x_hat = 0.5 * real + 0.5 * fake
  grads = {}
  for name, x in (("real", real), ("fake", fake), ("interpolated", x_hat)):
    with tf.GradientTape() as tape:
      tape.watch(x)
      score = tf.reduce_sum(tf.cast(discriminator(x), tf.float32))
    grads[name] = tape.gradient(score, x)
  for name in ("real", "interpolated"):
    tf.summary.scalar(f"quality/niqe_grad_{name}", tf.reduce_mean(
        niqe_prior.gradient_distance(grads[name], prior, settings)), step=step)
  for name, images in (("real", real), ("fake", fake)):
    tf.summary.histogram(f"quality/mscn_spatial_{name}", mscn_sample((images + 1.0) * 127.5),
                         step=step)
    maps = niqe_prior.penalty_inputs(grads[name], settings)
    tf.summary.histogram(f"quality/mscn_grad_{name}", mscn_sample(maps[..., None]), step=step)


def mscn_sample(images, max_values=4096):
  """Flattened MSCN coefficients of (B, H, W, 1|3) inputs (luma), at most max_values of them."""
  gray = images[..., 0] if images.shape[-1] == 1 else rgb_to_gray(images)[..., 0]
  coeffs, _ = iqa.mscn(tf.cast(gray, tf.float32), eps=1e-8)
  flat = tf.reshape(coeffs, [-1])
  return flat[:max_values]
