"""Pristine NIQE models for the NIQE gradient penalty: how each was fitted, and one transform
that turns D's input gradients into what the prior describes (paper §3.3).

A prior is an MVG (mu_P, Sigma_P) of NIQE block features of some inputs. The features depend on
everything done to those inputs (their source, signed or magnitude, block size, scales,
grayscale, scale), so the penalty is only meaningful when D's gradients get the same treatment.
Each prior therefore carries a `PriorSpec` (stored as JSON under `metadata` in its .npz), and
`resolve_settings` derives the penalty's transform from it; flags that contradict the prior are
refused unless `niqe_allow_prior_mismatch` is set.

Sources: "sobel_magnitude" (Sobel gradient magnitudes of real images, as the authors' MATLAB
script for CIFAR-10), "d_gradient" (D's signed input gradients at real images, as the paper's
§3.3), "d_gradient_magnitude" (their per-pixel magnitude), "image" (natural images, the classic
NIQE model). The penalty always sees D's gradients: for the two magnitude sources it takes their
per-pixel magnitude, for the two others the signed values.
"""

import dataclasses
import datetime
import functools
import hashlib
import json
import os

import numpy as np
import tensorflow as tf
from absl import logging

from qagan_tf.iqa import model as niqe_model_lib
from qagan_tf.iqa import naturalness
from qagan_tf.iqa.similarity import RGB_TO_GRAY, rgb_to_gray
from qagan_tf.utils.progress import Progress

SOURCES = ("sobel_magnitude", "d_gradient", "d_gradient_magnitude", "image")
MAGNITUDE_SOURCES = ("sobel_magnitude", "d_gradient_magnitude")
GRADIENT_SOURCES = ("d_gradient", "d_gradient_magnitude")
NORMALIZATIONS = ("none", "contrast", "max")
# Smoothing of D's gradient map before the magnitude (see `penalty_inputs`): "binomial" is the
# [1 2 1] x [1 2 1] / 16 smoothing that the Sobel operator applies to an image's derivative.
SMOOTHINGS = ("none", "binomial")
# Older names of bin/fit_niqe_prior --source.
SOURCE_ALIASES = {"sobel": "sobel_magnitude", "discriminator": "d_gradient"}
# Contrast that `bin/fit_niqe_prior` gives D's gradients by default: the median mean local
# sigma of Sobel magnitudes of natural 32 px crops (measured on the embedded crops), so that a
# fitted gradient prior works in the same MSCN regime as the authors' Sobel priors.
DEFAULT_GRADIENT_CONTRAST = 50.0
METADATA_KEY = "metadata"
# The magnitude transform is smoothed at 0 over this fraction of the map's RMS (see
# `penalty_inputs`); it raises values near 0 by at most that, far below the maps' contrast.
MAGNITUDE_SMOOTHING = 0.03
_DATA_DIR = os.path.dirname(niqe_model_lib.NATURAL_MODEL_PATH)
NAMED_PRIORS = {"natural": "niqe_natural.npz", "cifar_grad": "niqe_cifar_grad.npz",
                "stl_grad": "niqe_stl_grad.npz", "natural_sobel64": "niqe_natural_sobel64.npz"}
# The authors' CelebA prior (model_face_grad.mat), recognised by content but not shipped: its
# features are those of raw D gradients of their briefly trained critic, and the gradients of
# ours lie at NIQE distance 40-90 from it at every stage measured (0-100 iterations, width 32
# and 128; inputs with the statistics a prior describes lie at 2-6), so no transform makes the
# penalty measure what it describes. configs/celeba64_niqe.cfg uses natural_sobel64.
_FACE_GRAD_SHA256 = "f7c2485350fa45233d8f061e61052b62534f20ef8825d4a2368292033d521088"
_FACE_GRAD_SPEC = dict(
    source="d_gradient", grayscale=True, block_size=64, scales=2, normalization="none",
    resolution=64, provenance={
        "fitted_by": "the QAGAN authors", "dataset": "CelebA aligned, centre crop 108, 64 px "
        "(inferred)", "recipe": "inferred: raw signed D gradients at real images of a briefly "
        "trained D (their Parameter_estimation.py: ~10 iterations, rgb_to_grayscale, "
        "niqe(., 64)), features by their MATLAB script on saved gradient maps (MSCN betas ~3e-4: "
        "raw gradients, not normalised)", "split": "hard (MATLAB)"})
_NOT_SHIPPED = {"face_grad": (
    "face_grad (the QAGAN authors' CelebA prior) is not shipped: it describes raw gradients of "
    "their briefly trained critic, and the gradients of qagan_tf's critics lie at NIQE distance "
    "40-90 from it at every stage measured, so the penalty cannot measure what it describes. "
    "configs/celeba64_niqe.cfg uses natural_sobel64; to use the authors' prior anyway, download "
    "QAGAN-NIQE/reference_parameter_model/model_face_grad.mat from "
    "https://github.com/lfovia/QAGANS and pass --niqe_prior=PATH.")}
# A prior file with neither metadata nor recognisable content: assume what the penalty did with
# every prior before priors carried metadata (signed gradients, luma, peak |g| scaled to 255 for
# priors of image-scale features, raw for priors of raw gradients, block = resolution / 2).
_RAW_SCALE_BETA = 0.05


@dataclasses.dataclass(frozen=True)
class PriorSpec:
  """How a prior's features were computed.

  Attributes:
    source: one of SOURCES.
    grayscale: inputs converted to luma (MATLAB rgb2gray weights) first.
    block_size: block size at scale 1 (0: resolution / 2, only in assumed specs).
    scales: number of scales (features = 18 x scales).
    normalization: what was done to the inputs' scale before the features: "none", "contrast"
      (scaled so that their mean local standard deviation, NIQE's sigma, is `scale`) or "max"
      (scaled so that their peak |value| is `scale`).
    scale: the normalisation's target; for normalization "none" on image-scale inputs (Sobel
      magnitudes, images) the typical mean local sigma of the inputs, which the penalty gives D's
      gradients (their own scale is arbitrary). None for raw gradients.
    resolution: image size the prior was fitted at (None: unknown or any).
    sharpness_threshold: blocks kept when sharper than this x the image's sharpest.
    provenance: free-form facts (dataset, images, who fitted it, notes).
    assumed: True when the file carried no metadata and this spec is an assumption.
  """
  source: str
  grayscale: bool = True
  block_size: int = 0
  scales: int = 2
  normalization: str = "none"
  scale: float = None
  resolution: int = None
  sharpness_threshold: float = 0.75
  provenance: dict = dataclasses.field(default_factory=dict, compare=False, hash=False)
  assumed: bool = False

  def __post_init__(self):
    if self.source not in SOURCES:
      raise ValueError(f"prior source {self.source!r}: use one of {', '.join(SOURCES)}.")
    if self.normalization not in NORMALIZATIONS:
      raise ValueError(f"prior normalization {self.normalization!r}: use one of "
                       f"{', '.join(NORMALIZATIONS)}.")
    if self.normalization != "none" and not (self.scale and self.scale > 0):
      raise ValueError(f"prior normalization {self.normalization!r} needs a positive scale.")

  def to_json(self):
    values = dataclasses.asdict(self)
    values.pop("assumed")
    return json.dumps({"format": 1, **values}, sort_keys=True)

  @classmethod
  def from_json(cls, text, where):
    try:
      values = json.loads(text)
      values.pop("format", None)
      names = {f.name for f in dataclasses.fields(cls)} - {"assumed"}
      return cls(**{k: v for k, v in values.items() if k in names})
    except (ValueError, TypeError) as e:
      raise niqe_model_lib.ModelError(f"NIQE prior {where}: unreadable metadata ({e}).") from None

  def describe(self):
    block = f"{self.block_size} px blocks" if self.block_size else "blocks of resolution / 2"
    scale = f" to {self.scale:g}" if self.normalization != "none" else ""
    at = f" at {self.resolution} px" if self.resolution else ""
    return (f"{self.source.replace('_', ' ')}{at}, {'luma' if self.grayscale else 'RGB'}, "
            f"{block}, {self.scales} scales, normalization {self.normalization}{scale}")


@dataclasses.dataclass(frozen=True)
class Prior:
  """A pristine model with its spec; `name` is what the user gave (a name or a path)."""
  name: str
  model: niqe_model_lib.NiqeModel
  spec: PriorSpec


def _read(path):
  if path.lower().endswith(".mat"):
    import scipy.io
    try:
      arrays = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    except (OSError, ValueError) as e:
      raise niqe_model_lib.ModelError(f"NIQE prior {path}: cannot be read ({e}).") from None
    return arrays
  from qagan_tf.utils import npz
  return npz.read_arrays(path, niqe_model_lib.ModelError, "NIQE prior ")


def _spec_from_old_settings(settings, where):
  """The spec of a prior written by bin/fit_niqe_prior before priors carried metadata."""
  try:
    values = json.loads(str(settings))
    source = SOURCE_ALIASES.get(values["source"], values["source"])
    normalization = values.get("normalization", "max")
    return PriorSpec(source=source, grayscale=True, block_size=int(values["block_size"]),
                     scales=int(values.get("scales", 2)), normalization=normalization,
                     scale=255.0 if normalization == "max" else None,
                     resolution=values.get("resolution"),
                     sharpness_threshold=float(values.get("sharpness_threshold", 0.75)),
                     provenance={"fitted_by": "bin/fit_niqe_prior (before metadata)",
                                 **{k: values[k] for k in ("dataset", "images") if k in values}})
  except (ValueError, KeyError, TypeError) as e:
    raise niqe_model_lib.ModelError(f"NIQE prior {where}: unreadable settings ({e}).") from None


def assumed_spec(model):
  """What a prior without metadata is taken to be (the penalty's behaviour before metadata)."""
  raw = float(model.mu[1]) < _RAW_SCALE_BETA
  return PriorSpec(source="d_gradient", grayscale=True, block_size=0,
                   scales=model.mu.shape[0] // naturalness.FEATURES_PER_SCALE,
                   normalization="none" if raw else "max", scale=None if raw else 255.0,
                   provenance={"note": "no metadata; assumed"}, assumed=True)


def _content_key(model):
  return hashlib.sha256(model.mu.tobytes() + model.cov.tobytes()).hexdigest()


@functools.lru_cache(maxsize=1)
def _known_specs():
  """Specs of known priors keyed by the SHA-256 of their (mu, cov): recognises the authors'
  .mat files (cifar_grad, stl_grad, face_grad) and bare copies of the shipped priors."""
  out = {_FACE_GRAD_SHA256: PriorSpec(**_FACE_GRAD_SPEC)}
  for name in NAMED_PRIORS:
    prior = load_prior(name)
    out[_content_key(prior.model)] = prior.spec
  return out


@functools.lru_cache(maxsize=16)
def load_prior(name_or_path):
  """A prior by name (natural, cifar_grad, stl_grad, natural_sobel64) or .npz/.mat path.

  The spec comes from the file's `metadata`, else from an older bin/fit_niqe_prior's `settings`,
  else (a .mat or a bare .npz whose mean and covariance equal a shipped prior's) from that
  prior, else it is assumed (`assumed_spec`, logged as a warning).

  Raises:
    niqe_model_lib.ModelError (a ValueError): unknown name, unreadable file, bad metadata, or a
      covariance that is not symmetric positive definite.
  """
  if name_or_path in _NOT_SHIPPED:
    raise niqe_model_lib.ModelError(_NOT_SHIPPED[name_or_path])
  named = name_or_path in NAMED_PRIORS
  path = os.path.join(_DATA_DIR, NAMED_PRIORS[name_or_path]) if named else name_or_path
  if not named and not os.path.exists(path):
    raise niqe_model_lib.ModelError(
        f"--niqe_prior={name_or_path}: neither a named prior ({', '.join(NAMED_PRIORS)}) nor an "
        "existing .npz/.mat file.")
  model = niqe_model_lib.load_model(path, require_positive_definite=True)
  arrays = _read(path)
  if METADATA_KEY in arrays:
    spec = PriorSpec.from_json(str(arrays[METADATA_KEY]), path)
  elif "settings" in arrays:
    spec = _spec_from_old_settings(arrays["settings"], path)
  elif named:
    raise niqe_model_lib.ModelError(f"shipped prior {path} lacks its metadata; reinstall.")
  else:
    spec = _known_specs().get(_content_key(model))
    if spec is None:
      spec = assumed_spec(model)
      logging.warning("NIQE prior %s has no metadata; assuming %s. Fit priors with "
                      "bin/fit_niqe_prior, which records how they were fitted.", path,
                      spec.describe())
  if spec.scales * naturalness.FEATURES_PER_SCALE != model.mu.shape[0]:
    raise niqe_model_lib.ModelError(
        f"NIQE prior {path}: {model.mu.shape[0]} features, but its metadata says "
        f"{spec.scales} scales ({spec.scales * naturalness.FEATURES_PER_SCALE} features).")
  return Prior(name_or_path, model, spec)


def save_prior(path, model, spec, write=None):
  """Writes mu, cov and the spec as `metadata` to an .npz (atomically)."""
  from qagan_tf.utils import files
  files.atomic_write(path, write or (lambda tmp: np.savez(
      tmp, mu=model.mu, cov=model.cov, **{METADATA_KEY: spec.to_json()})))


# --- the penalty's settings -------------------------------------------------------------------

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


# --- the transform ----------------------------------------------------------------------------

def _peak(x, axis):
  """max |x| over `axis` (keepdims), with 1 where the map is all zero (so x / peak stays 0)."""
  peak = tf.reduce_max(tf.abs(x), axis=axis, keepdims=True)
  return tf.where(peak > 0, peak, tf.ones_like(peak))


def local_contrast(x):
  """Mean local standard deviation (NIQE's 7x7 Gaussian sigma) of (N, H, W) -> (N,).

  Scale-equivariant down to the dtype's smallest numbers: the statistics are taken of each map
  divided by its peak |value|, so the eps under sigma's sqrt is relative to the map's scale.
  """
  peak = _peak(x, [1, 2])
  _, sigma = naturalness.mscn(x / peak, eps=1e-12)
  return tf.reduce_mean(sigma, axis=[1, 2]) * peak[:, 0, 0]


def normalize(x, normalization, scale):
  """Scales each (H, W) map of x (N, H, W) as the prior's inputs were scaled."""
  if normalization == "none":
    return x
  tiny = tf.constant(np.finfo(x.dtype.as_numpy_dtype).tiny, x.dtype)
  if normalization == "max":
    size = tf.reduce_max(tf.abs(x), axis=[1, 2])
  else:
    size = local_contrast(x)
  return x * (scale / (size + tiny))[:, None, None]


# The fixed map that stands in for an all-zero gradient (see `penalty_inputs`).
DEAD_MAP_SEED = 20191208
_BINOMIAL = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]) / 16.0


def binomial_smooth(x):
  """[1 2 1] x [1 2 1] / 16 smoothing of each channel of x (N, H, W, C), replicated borders."""
  kernel = tf.constant(np.tile(_BINOMIAL[:, :, None, None], (1, 1, x.shape[-1], 1)), x.dtype)
  padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")  # = replicate for 1.
  return tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")


def penalty_inputs(grads, settings):
  """D's input gradients -> the maps whose NIQE the penalty takes.

  Each gradient is first divided by its peak |value| (the penalty is scale-invariant, and this
  keeps every later statistic in float32's comfortable range, whatever D's scale), then turned
  into luma, smoothed (settings.smoothing), made a magnitude or kept signed, and scaled as the
  prior's inputs were. An all-zero gradient (a dead critic) is a deliberate dead zone: it is
  replaced by a fixed white-noise map (`DEAD_MAP_SEED`), so it scores what noise scores, with
  zero gradient (a scale-invariant penalty has no direction to push at 0; the 1-GP, or the
  adversarial loss, restores the gradient's norm there).

  Args:
    grads: float (B, H, W, 3) (or (B, H, W, 1)), D's gradient at the interpolates; H, W and
      the channels static.
    settings: `NiqeSettings`.

  Returns:
    float (B, H, W) (luma) or (B * 3, H, W) (each colour channel a map when not grayscale; the
    magnitude transform then combines the channels into one map per image, (B, H, W)).
  """
  peak = tf.reduce_max(tf.abs(grads), axis=[1, 2, 3], keepdims=True)
  dead = peak <= 0
  noise = np.random.default_rng(DEAD_MAP_SEED).uniform(-1.0, 1.0, grads.shape[1:])
  x = tf.where(dead, tf.constant(noise, grads.dtype)[None],
               grads / tf.where(dead, tf.ones_like(peak), peak))
  x = rgb_to_gray(x) if settings.grayscale and x.shape[-1] == 3 else x
  if settings.smoothing == "binomial":
    x = binomial_smooth(x)
  if settings.transform == "magnitude":
    # sqrt(sum x^2 + (delta rms)^2): the magnitude, made smooth where it is 0 (|g| has a kink
    # there) on a scale relative to the map's RMS, so that the transform is scale-equivariant.
    rms2 = tf.reduce_mean(tf.square(x), axis=[1, 2, 3], keepdims=True)
    x = tf.sqrt(tf.reduce_sum(tf.square(x), axis=-1, keepdims=True)
                + MAGNITUDE_SMOOTHING**2 * rms2 + 1e-30)
  x = tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [-1, x.shape[1], x.shape[2]])
  return normalize(x, settings.normalization, settings.scale)


def _scorer(prior, settings, dtype, images_per_score=1):
  return naturalness.NiqeScorer(
      prior.model, block_size=settings.block_size, scales=settings.scales,
      pooling=settings.pooling, group_size=settings.group_size * images_per_score,
      grayscale=False,
      covariance_regularization=settings.covariance_regularization, dtype=dtype,
      split=settings.split, temperature=settings.temperature)


def _mean_per_image(scores, images_per_score):
  if images_per_score > 1:
    scores = tf.reduce_mean(tf.reshape(scores, [-1, images_per_score]), axis=1)
  return scores


def distance(maps, prior, settings, images_per_score=1):
  """Per-image differentiable NIQE distance of prepared maps (see `penalty_inputs`).

  Returns:
    float (B,) where B = len(maps) / images_per_score (channel maps of one image averaged).
  """
  return _mean_per_image(_scorer(prior, settings, maps.dtype, images_per_score)(maps),
                         images_per_score)


class GradientDistance:
  """NIQE distance of D's input gradients (B, H, W, 3) under the prior: float (B,).

  compile_local: compile the per-replica part (the transform, the MSCN maps, the batched AGGD
  fits, the whitening: nearly all ops) with XLA on its own; the cross-replica pooling and the
  final solve stay outside, so it works under every tf.distribute strategy.
  """

  def __init__(self, prior, settings, compile_local=False):
    self.prior, self.settings = prior, settings
    self.images_per_score = 1 if settings.grayscale or settings.transform == "magnitude" else 3
    self._scorers = {}
    self._local = (tf.function(self._local_part, jit_compile=True) if compile_local
                   else self._local_part)

  def _scorer(self, dtype):
    if dtype not in self._scorers:
      self._scorers[dtype] = _scorer(self.prior, self.settings, dtype, self.images_per_score)
    return self._scorers[dtype]

  def _local_part(self, grads):
    return self._scorer(grads.dtype).local(penalty_inputs(grads, self.settings))

  def __call__(self, grads):
    scores = self._scorer(grads.dtype).pool(self._local(grads))
    return _mean_per_image(scores, self.images_per_score)


def gradient_distance(grads, prior, settings):
  """NIQE distance of D's input gradients (B, H, W, 3) under the prior: float (B,)."""
  return GradientDistance(prior, settings)(grads)


# --- fitting ----------------------------------------------------------------------------------

def matlab_gray(images):
  """uint8 (N, H, W, 3) -> float64 (N, H, W) MATLAB rgb2gray (rounded to uint8 values)."""
  gray = np.asarray(images, np.float64) @ np.asarray(RGB_TO_GRAY)
  return np.clip(np.floor(gray + 0.5), 0, 255)


def sobel_magnitude(gray):
  """MATLAB imgradient(I, 'sobel') magnitude of float (N, H, W) (replicate borders), a tensor."""
  x = tf.convert_to_tensor(gray)
  kx = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
  kernel = tf.constant(np.stack([kx, kx.T], axis=-1)[:, :, None, :], x.dtype)
  padded = naturalness._replicate_pad(x, 1)[..., None]  # pylint: disable=protected-access
  g = tf.nn.conv2d(padded, kernel, 1, "VALID")
  return tf.sqrt(tf.reduce_sum(tf.square(g), axis=-1))


def discriminator_gradients(discriminator, images):
  """float (B, H, W, 3) in [-1, 1] -> grad_x D(x), same shape."""
  with tf.GradientTape() as tape:
    tape.watch(images)
    score = tf.reduce_sum(discriminator(images))
  return tape.gradient(score, images)


def fit_inputs(images, source, discriminator=None, normalization="none", scale=None,
               grayscale=True):
  """The maps a prior of `source` is fitted on, from uint8 (B, R, R, 3) images: float64 (M, R, R).

  "sobel_magnitude" and "image" use MATLAB's uint8-rounded luma; the D-gradient sources run
  `discriminator` on the images in [-1, 1] and transform its gradients as the penalty does.
  """
  if source in ("sobel_magnitude", "image"):
    gray = tf.constant(matlab_gray(images))
    x = sobel_magnitude(gray) if source == "sobel_magnitude" else gray
  else:
    grads = discriminator_gradients(discriminator, tf.constant(images, tf.float32) / 127.5 - 1.0)
    settings = NiqeSettings(transform="magnitude" if source in MAGNITUDE_SOURCES else "signed",
                            grayscale=grayscale, normalization="none", scale=0.0, block_size=0,
                            scales=0, pooling="pooled", split="soft", temperature=0.0,
                            covariance_regularization=0.0)
    x = tf.cast(penalty_inputs(tf.cast(grads, tf.float64), settings), tf.float64)
  return normalize(x, normalization, scale)


def fit_prior(images, source, *, discriminator=None, block_size=0, scales=2, normalization=None,
              scale=None, grayscale=True, sharpness_threshold=0.75, batch_size=64,
              temperature=None, progress=False, provenance=None):
  """Fits mu_P and Sigma_P on `images` and records how.

  Args:
    images: uint8 (N, R, R, 3) real images.
    source: one of SOURCES (or an alias: sobel, discriminator); the D-gradient sources need
      `discriminator`.
    block_size: block size at scale 1 (0: R, one block per image, as the authors).
    scales: number of scales.
    normalization, scale: the inputs' scaling (default: "none" for Sobel magnitudes and images,
      recording their median local contrast as the scale; "contrast" to
      DEFAULT_GRADIENT_CONTRAST for D's gradients).
    grayscale: D-gradient sources only: luma first (Sobel and image sources are always luma).
    sharpness_threshold: keep blocks with sharpness > threshold x the image's maximum.
    temperature: the AGGD split's temperature (default: the penalty's soft split).
    provenance: facts to record (dataset, ...).

  Returns:
    (NiqeModel, PriorSpec, info dict with counts).

  Raises:
    ValueError: unknown source, missing discriminator, too few blocks, or a covariance that is
      not positive definite.
  """
  from qagan_tf.iqa import aggd
  source = SOURCE_ALIASES.get(source, source)
  if source not in SOURCES:
    raise ValueError(f"source={source!r}: use one of {', '.join(SOURCES)}.")
  if source in GRADIENT_SOURCES and discriminator is None:
    raise ValueError(f"source={source} needs a discriminator (--model_dir of a run).")
  grayscale = grayscale or source not in GRADIENT_SOURCES
  resolution = int(images.shape[1])
  block_size = block_size or resolution
  if normalization is None:
    normalization = "contrast" if source in GRADIENT_SOURCES else "none"
  if normalization == "contrast" and scale is None:
    scale = DEFAULT_GRADIENT_CONTRAST
  if normalization == "max" and scale is None:
    scale = 255.0
  temperature = aggd.DEFAULT_TEMPERATURE if temperature is None else temperature
  feats, contrasts, total_blocks = [], [], 0
  with Progress(len(images), "NIQE prior", enabled=progress) as bar:
    for start in range(0, len(images), batch_size):
      batch = images[start:start + batch_size]
      x = fit_inputs(batch, source, discriminator, normalization, scale, grayscale)
      contrasts.append(local_contrast(x).numpy())
      f, sharp = naturalness.niqe_features(x, block_size, scales, method="root", eps=1e-8,
                                           return_sharpness=True, split="soft",
                                           temperature=temperature)
      f, sharp = f.numpy(), sharp.numpy()
      keep = sharp > sharpness_threshold * sharp.max(axis=1, keepdims=True)
      feats.append(f[keep])
      total_blocks += keep.size
      bar.update(len(batch))
  feats = np.concatenate(feats).astype(np.float64)
  feats = feats[np.all(np.isfinite(feats), axis=1)]
  dim = feats.shape[1]
  if len(feats) <= dim:
    raise ValueError(f"Only {len(feats)} sharp blocks for {dim} features; use more images "
                     "(--num_images) or a smaller --sharpness_threshold.")
  mu, cov = feats.mean(axis=0), np.cov(feats, rowvar=False)
  cov = 0.5 * (cov + cov.T)
  niqe_model_lib.validate(mu, cov, "fitted prior", require_positive_definite=True)
  model = niqe_model_lib.NiqeModel(mu, cov, source=f"fitted ({source})")
  info = {"blocks_kept": int(len(feats)), "blocks_total": int(total_blocks),
          "images": int(len(images)), "features": int(dim),
          "median_contrast": float(np.median(np.concatenate(contrasts)))}
  if normalization == "none" and source not in GRADIENT_SOURCES:
    scale = info["median_contrast"]
  spec = PriorSpec(source=source, grayscale=grayscale, block_size=block_size, scales=scales,
                   normalization=normalization, scale=scale, resolution=resolution,
                   sharpness_threshold=sharpness_threshold,
                   provenance={"fitted_by": "bin/fit_niqe_prior", "split": "soft",
                               "temperature": temperature,
                               "date": datetime.date.today().isoformat(),
                               **{k: info[k] for k in ("images", "blocks_kept")},
                               **(provenance or {})})
  return model, spec, info
