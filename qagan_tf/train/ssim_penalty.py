"""The SSIM-distance penalty (paper eqs. 12-13), registered as `ssim`, and its settings.

(|D(x_i) - D(G(z_i))| / dQ(x_i, G(z_i)) - 1)^2, the i-th real paired with the i-th fake, where
dQ is the SSIM-derived distance (iqa.ssim_distance). Unweighted and per example; the train step
adds qa_weight x its batch mean to the critic loss.
"""

import dataclasses

import tensorflow as tf

from qagan_tf import iqa
from qagan_tf.train import penalty_api

# dQ below this is treated as this (two nearly identical images would make the ratio explode).
DQ_FLOOR = 1e-4


@dataclasses.dataclass(frozen=True)
class SsimConfig:
  """The `ssim` group of TrainConfig (flags and config.json keys ssim_<field>). Defaults: the
  authors' 8x8 Gaussian window (sigma 1.5) on grayscale images in [-1, 1]."""
  window: str = "gaussian"
  window_size: int = 8
  sigma: float = 1.5
  max_val: float = 2.0
  grayscale: bool = True
  cs_offset: float = 0.0

  def validate(self, config):
    """Raises ValueError naming the flag and the fix (config: the whole TrainConfig)."""
    if self.window not in ("gaussian", "uniform", "tf_image"):
      raise ValueError(f"ssim_window={self.window!r}: use gaussian, uniform or tf_image.")
    if self.window_size < 1 or self.window_size > config.resolution:
      raise ValueError(f"ssim_window_size={self.window_size} must be in [1, resolution="
                       f"{config.resolution}].")
    if not (self.sigma > 0 and self.max_val > 0 and self.cs_offset >= 0):
      raise ValueError("ssim_sigma and ssim_max_val must be > 0 and ssim_cs_offset >= 0.")


def ssim_distance_penalty(inputs, settings):
  """Paper eq. 12-13 per example; also returns dQ and the ratio for TensorBoard.

  Args:
    inputs: `penalty_api.PenaltyInputs`.
    settings: `SsimConfig`.
  """
  dq = iqa.ssim_distance(inputs.real, inputs.fake, window=settings.window,
                         size=settings.window_size, sigma=settings.sigma,
                         max_val=settings.max_val, grayscale=settings.grayscale,
                         cs_denominator_offset=settings.cs_offset)
  ratio = tf.abs(inputs.d_real - inputs.d_fake) / tf.maximum(dq, DQ_FLOOR)
  return tf.square(ratio - 1.0), {"ssim_dq": dq, "ssim_ratio": ratio}


def make_penalty(config):
  """The `ssim` QualityPenalty for a TrainConfig."""
  settings = config.ssim
  return penalty_api.QualityPenalty(
      "ssim", "ssim_penalty", lambda inputs: ssim_distance_penalty(inputs, settings),
      extra_tags=("ssim_dq", "ssim_ratio"))
