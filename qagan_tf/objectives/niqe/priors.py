"""NIQE priors: pristine models (mu_P, Sigma_P) of NIQE block features, and how each was fitted.

A prior is an MVG of the NIQE features of some inputs. The features depend on everything done to
those inputs (their source, signed or magnitude, block size, scales, grayscale, scale), so the
penalty is only meaningful when D's gradients get the same treatment. Each prior therefore
carries a `PriorSpec` (stored as JSON under `metadata` in its .npz); `settings.resolve_settings`
derives the penalty's transform from it.

Sources: "sobel_magnitude" (Sobel gradient magnitudes of real images, as the authors' MATLAB
script for CIFAR-10), "d_gradient" (D's signed input gradients at real images, as the paper's
§3.3), "d_gradient_magnitude" (their per-pixel magnitude), "image" (natural images, the classic
NIQE model).
"""

import dataclasses
import functools
import hashlib
import json
import os

import numpy as np
from absl import logging

from qagan_tf.iqa import model as niqe_model_lib
from qagan_tf.iqa import naturalness

SOURCES = ("sobel_magnitude", "d_gradient", "d_gradient_magnitude", "image")
MAGNITUDE_SOURCES = ("sobel_magnitude", "d_gradient_magnitude")
GRADIENT_SOURCES = ("d_gradient", "d_gradient_magnitude")
NORMALIZATIONS = ("none", "contrast", "max")
# Older names of bin/fit_niqe_prior --source.
SOURCE_ALIASES = {"sobel": "sobel_magnitude", "discriminator": "d_gradient"}
METADATA_KEY = "metadata"
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
  arrays = niqe_model_lib.read_arrays(path)  # Read once: the model and its metadata.
  model = niqe_model_lib.model_from_arrays(arrays, path, require_positive_definite=True)
  features = model.mu.shape[0]
  if not features or features % naturalness.FEATURES_PER_SCALE:
    raise niqe_model_lib.ModelError(
        f"NIQE prior {path}: its mean has {features} features; a NIQE prior has "
        f"{naturalness.FEATURES_PER_SCALE} per scale (36 for the usual 2): fit one with "
        "bin/fit_niqe_prior.")
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
