"""The SSIM-distance penalty (paper eqs. 12-13), registered as `ssim`, and its settings.

(|D(x_i) - D(G(z_i))| / dQ(x_i, G(z_i)) - 1)^2, the i-th real paired with the i-th fake, where
dQ is the SSIM-derived distance (iqa.ssim_distance). Unweighted and per example; the train step
adds qa_weight x its batch mean to the critic loss.
"""

import dataclasses

import tensorflow as tf

from qagan_tf.iqa import similarity
from qagan_tf.objectives import penalty_api
from qagan_tf.utils.fields import check_choices, setting

# dQ below this is treated as this (two nearly identical images would make the ratio explode).
DQ_FLOOR = 1e-4


@dataclasses.dataclass(frozen=True)
class SsimConfig:
  """The `ssim` group of TrainConfig (flags and config.json keys ssim_<field>; the keyword
  settings of `qa.ssim_distance_penalty`). Defaults: the authors' 8x8 Gaussian window (sigma
  1.5) on grayscale images in [-1, 1]."""
  window: str = setting("gaussian", "SSIM penalty: local-statistics window (authors: gaussian "
                        "8x8, sigma 1.5; tf_image: tf.image.ssim's 11x11).",
                        choices=similarity.WINDOWS)
  window_size: int = setting(8, "SSIM penalty: window size (uniform: 2K+1).")
  sigma: float = setting(1.5, "SSIM penalty: Gaussian window sigma.")
  max_val: float = setting(2.0, "SSIM penalty: dynamic range L of the images (2 for [-1, 1]).")
  grayscale: bool = setting(True, "SSIM penalty: compare luma (authors) instead of each RGB "
                            "channel.")
  cs_offset: float = setting(0.0, "SSIM penalty: added to CS's denominator (0: the paper; "
                             "0.01: authors' code).")

  def check_values(self, spell=lambda field: f"ssim_{field}"):
    """Raises ValueError for a value no run can use (naming it as `spell` writes it)."""
    check_choices(self, spell)
    if not (self.sigma > 0 and self.max_val > 0 and self.cs_offset >= 0):
      raise ValueError(f"{spell('sigma')} and {spell('max_val')} must be > 0 and "
                       f"{spell('cs_offset')} >= 0.")
    if self.window_size < 1:
      raise ValueError(f"{spell('window_size')}={self.window_size} must be >= 1.")

  def validate(self, config):
    """Raises ValueError naming the flag and the fix (config: the whole TrainConfig)."""
    self.check_values()
    if self.window_size > config.resolution:
      raise ValueError(f"ssim_window_size={self.window_size} must be in [1, resolution="
                       f"{config.resolution}].")


def ssim_penalty_terms(real, fake, d_real, d_fake, settings):
  """(penalty, dQ, ratio), each float (B,): the per-example penalty and what TensorBoard shows.

  real, fake: float (B, H, W, C) in [-1, 1]; d_real, d_fake: float (B,) critic scores.
  """
  dq = similarity.ssim_distance(real, fake, window=settings.window, size=settings.window_size,
                                sigma=settings.sigma, max_val=settings.max_val,
                                grayscale=settings.grayscale,
                                cs_denominator_offset=settings.cs_offset)
  ratio = tf.abs(d_real - d_fake) / tf.maximum(dq, DQ_FLOOR)
  return tf.square(ratio - 1.0), dq, ratio


def build_penalty(settings, resolution=None, *, xla=False):
  """The `ssim` QualityPenalty with `SsimConfig` settings (any resolution the window fits; its
  few ops need no compilation of their own)."""
  del resolution, xla

  def fn(inputs):
    penalty, dq, ratio = ssim_penalty_terms(inputs.real, inputs.fake, inputs.d_real,
                                            inputs.d_fake, settings)
    return penalty, {"ssim_dq": dq, "ssim_ratio": ratio}
  return penalty_api.QualityPenalty("ssim", "ssim_penalty", fn,
                                    extra_tags=("ssim_dq", "ssim_ratio"))


ENTRY = penalty_api.PenaltyEntry(build=build_penalty, settings=SsimConfig)
