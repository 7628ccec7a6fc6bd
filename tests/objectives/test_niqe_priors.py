"""NIQE priors: metadata of the shipped and the authors' priors, the penalty's transform, the
checks of flags against the prior, fitting, and validity (the penalty's distance is lower on the
inputs a prior describes than on the same inputs distorted)."""

import dataclasses
import io
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import logging
from PIL import Image
from scipy import ndimage

from qagan_tf import config as config_lib
from qagan_tf import models
from qagan_tf.data import sources
from qagan_tf.iqa import model as niqe_model_lib
from qagan_tf.objectives.niqe import fit as niqe_fit
from qagan_tf.objectives.niqe import priors as niqe_priors
from qagan_tf.objectives.niqe import settings as niqe_settings
from qagan_tf.objectives.niqe import transform as niqe_transform
from tests.reference import reference_path


def _config(**kw):
  base = dict(resolution=32, width=4, z_dim=8, batch_size=4, dataset="embedded", penalty="niqe")
  base.update(kw)
  return config_lib.TrainConfig.create(**base).validate()


def _resolve(config, prior):
  """The penalty's settings for a TrainConfig, as bin/train resolves them."""
  return niqe_settings.resolve_settings(config.niqe, prior, config.resolution)


def test_shipped_and_the_authors_priors_record_how_they_were_fitted():
  expected = {"cifar_grad": ("sobel_magnitude", 32, 32), "stl_grad": ("sobel_magnitude", 48, 48),
              "natural_sobel64": ("sobel_magnitude", 64, 64), "natural": ("image", 96, None)}
  assert set(niqe_priors.NAMED_PRIORS) == set(expected)
  for name, (source, block, resolution) in expected.items():
    spec = niqe_priors.load_prior(name).spec
    assert (spec.source, spec.block_size, spec.resolution, spec.scales) == (
        source, block, resolution, 2), name
    assert spec.grayscale and not spec.assumed and spec.scale > 0, name
    assert spec.provenance["fitted_by"], name
  # The authors' .mat files carry no metadata; their content is recognised.
  for mat, source in (("model_cifar_grad.mat", "sobel_magnitude"),
                      ("model_STL_grad.mat", "sobel_magnitude"),
                      ("model_face_grad.mat", "d_gradient"), ("modelparameters.mat", "image")):
    spec = niqe_priors.load_prior(reference_path("niqe", mat)).spec
    assert spec.source == source and not spec.assumed, mat
  assert niqe_priors.load_prior(reference_path("niqe", "model_cifar_grad.mat")).spec == (
      niqe_priors.load_prior("cifar_grad").spec)
  face = niqe_priors.load_prior(reference_path("niqe", "model_face_grad.mat")).spec
  assert (face.block_size, face.resolution, face.normalization) == (64, 64, "none")
  with pytest.raises(ValueError, match="face_grad .* is not shipped.*model_face_grad.mat"):
    niqe_priors.load_prior("face_grad")


def test_priors_without_metadata_load_with_the_documented_assumption(tmp_path):
  rng = np.random.default_rng(0)
  a = rng.normal(size=(36, 36))
  mu, cov = np.abs(rng.normal(size=36)) + 0.5, a @ a.T / 36 + np.eye(36)
  bare = str(tmp_path / "bare.npz")
  np.savez(bare, mu=mu, cov=cov)
  messages = []
  logging.get_absl_logger().addFilter(lambda r: messages.append(r.getMessage()) or True)
  spec = niqe_priors.load_prior(bare).spec
  assert spec.assumed and spec.source == "d_gradient" and spec.block_size == 0
  assert (spec.normalization, spec.scale) == ("max", 255.0)  # Image-scale betas (mu[1] >= 0.05).
  assert any("has no metadata; assuming" in m for m in messages)
  settings = _resolve(_config(niqe_prior=bare), niqe_priors.load_prior(bare))
  assert (settings.transform, settings.block_size, settings.normalization) == (
      "signed", 16, "max")  # What the penalty did before metadata: resolution / 2, peak 255.
  # bin/fit_niqe_prior's files from before the metadata had `settings`.
  old = str(tmp_path / "old.npz")
  np.savez(old, mu=mu, cov=cov, settings=json.dumps(
      {"source": "sobel", "block_size": 16, "scales": 2, "normalization": "max",
       "resolution": 32}))
  spec = niqe_priors.load_prior(old).spec
  assert (spec.source, spec.block_size, spec.normalization, spec.scale, spec.assumed) == (
      "sobel_magnitude", 16, "max", 255.0, False)
  np.savez(tmp_path / "bad.npz", mu=mu, cov=cov, metadata="{not json")
  with pytest.raises(niqe_model_lib.ModelError, match="unreadable metadata"):
    niqe_priors.load_prior(str(tmp_path / "bad.npz"))


def test_penalty_settings_follow_the_prior_and_contradictions_are_refused():
  prior = niqe_priors.load_prior("cifar_grad")
  s = _resolve(_config(), prior)
  assert (s.transform, s.grayscale, s.block_size, s.scales, s.normalization, s.scale) == (
      "magnitude", True, 32, 2, "contrast", 50.0)
  for flag, value in (("niqe_block_size", 16), ("niqe_transform", "signed"),
                      ("niqe_normalization", "max"), ("niqe_grayscale", False)):
    with pytest.raises(ValueError, match=rf"--{flag}=.*the prior: .*bin/fit_niqe_prior.*"
                                         "--niqe_allow_prior_mismatch"):
      _resolve(_config(**{flag: value}), prior)
    forced = _resolve(
        _config(**{flag: value}, niqe_allow_prior_mismatch=True), prior)
    assert getattr(forced, {"niqe_block_size": "block_size", "niqe_transform": "transform",
                            "niqe_normalization": "normalization",
                            "niqe_grayscale": "grayscale"}[flag]) == value
  # A prior of another resolution, and blocks larger than the images.
  with pytest.raises(ValueError, match="--resolution=48 .*fitted at 32 px"):
    _resolve(_config(resolution=48), prior)
  with pytest.raises(ValueError, match="blocks of 96 px do not fit 32 px"):
    _resolve(_config(niqe_allow_prior_mismatch=True),
                                niqe_priors.load_prior("natural"))
  # configs/stl10_96_niqe.cfg's deliberate override.
  s = _resolve(_config(resolution=96, niqe_block_size=96,
                                          niqe_allow_prior_mismatch=True),
                                  niqe_priors.load_prior("stl_grad"))
  assert (s.block_size, s.transform, s.scale) == (96, "magnitude", 45.0)


_LUMA = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])


def test_the_transform_makes_magnitudes_at_the_priors_contrast_and_is_scale_free():
  rng = np.random.default_rng(1)
  grads = tf.constant(rng.normal(size=(3, 32, 32, 3)) * 1e-3)
  s = _resolve(_config(), niqe_priors.load_prior("cifar_grad"))
  assert (s.smoothing, s.pooling, s.group_size) == ("binomial", "group", 16)
  maps = niqe_transform.penalty_inputs(grads, s)
  assert maps.shape == (3, 32, 32) and np.all(maps.numpy() > 0)
  np.testing.assert_allclose(niqe_transform.local_contrast(maps).numpy(), 50.0, rtol=1e-4)
  # Scale-free over float32's whole range (the statistics are taken relative to each map's
  # peak, so no absolute eps breaks it; an absolute 1e-12 gave +14% at an RMS of 1e-6).
  for factor in (1e-30, 1e-7, 37.0, 1e20):
    np.testing.assert_allclose(niqe_transform.penalty_inputs(grads * factor, s).numpy(),
                               maps.numpy(), rtol=1e-4)
    x32 = tf.cast(grads * factor, tf.float32)
    np.testing.assert_allclose(niqe_transform.penalty_inputs(x32, s).numpy(), maps.numpy(),
                               rtol=2e-3)
  # The magnitude of the luma smoothed by [1 2 1] x [1 2 1] / 16 (Sobel's smoothing), itself
  # smoothed at 0 by 3% of the map's RMS.
  luma = np.pad(grads.numpy() @ _LUMA, ((0, 0), (1, 1), (1, 1)), mode="edge")
  k = np.array([1.0, 2.0, 1.0]) / 4
  smooth = sum(k[i] * k[j] * luma[:, i:i + 32, j:j + 32] for i in range(3) for j in range(3))
  expected = np.sqrt(smooth**2 + 0.03**2 * (smooth**2).mean(axis=(1, 2), keepdims=True))
  scale = maps.numpy() / expected
  np.testing.assert_allclose(scale, scale[:, :1, :1] * np.ones_like(scale), rtol=1e-6)
  # Without the smoothing (old runs; --niqe_smoothing=none) it is |luma| up to that smoothing.
  plain = niqe_transform.penalty_inputs(grads, dataclasses.replace(s, smoothing="none")).numpy()
  luma = np.abs(grads.numpy() @ _LUMA)
  scale = plain / np.sqrt(luma**2 + 0.03**2 * (luma**2).mean(axis=(1, 2), keepdims=True))
  np.testing.assert_allclose(scale, scale[:, :1, :1] * np.ones_like(scale), rtol=1e-6)
  # A raw signed-gradient prior (the authors' CelebA file) leaves the luma as it is, up to the
  # peak normalisation, and unsmoothed.
  face = niqe_priors.load_prior(reference_path("niqe", "model_face_grad.mat"))
  s = _resolve(_config(resolution=64), face)
  assert s.smoothing == "none"
  grads = rng.normal(size=(2, 64, 64, 3)) * 1e-3
  peak = np.abs(grads).max(axis=(1, 2, 3), keepdims=True)[..., 0]
  np.testing.assert_allclose(niqe_transform.penalty_inputs(tf.constant(grads), s).numpy(),
                             grads @ _LUMA / peak, rtol=1e-12)


def test_a_dead_gradient_is_a_documented_dead_zone():
  """An all-zero map scores as the fixed noise map that stands in for it, with zero gradient,
  and does not disturb the gradients of the live maps of its group."""
  s = _resolve(_config(), niqe_priors.load_prior("cifar_grad"))
  prior = niqe_priors.load_prior("cifar_grad")
  rng = np.random.default_rng(2)
  live = rng.normal(size=(16, 32, 32, 3))
  for dead in (1, 16):
    g = tf.constant(np.concatenate([np.zeros((dead, 32, 32, 3)), live[dead:]]))
    with tf.GradientTape() as tape:
      tape.watch(g)
      value = tf.reduce_mean(niqe_transform.gradient_distance(g, prior, s))
    grad = tape.gradient(value, g).numpy()
    assert np.isfinite(value.numpy()) and np.all(np.isfinite(grad))
    assert np.all(grad[:dead] == 0.0)
    if dead < 16:
      assert np.abs(grad[dead:]).max() > 0
  noise = np.random.default_rng(niqe_transform.DEAD_MAP_SEED).uniform(-1, 1, (32, 32, 3))
  noise = np.repeat(noise[None], 16, axis=0)  # Every dead map becomes the same one.
  assert float(value) == pytest.approx(float(tf.reduce_mean(niqe_transform.gradient_distance(
      tf.constant(noise), prior, s))), rel=1e-6)


# --- validity -----------------------------------------------------------------------------------

def _native_crops(size, count, seed):
  """Crops of scikit-image's photographs at their own resolution (no resampling)."""
  import skimage.data
  photos = [np.asarray(getattr(skimage.data, n)())[..., :3]
            for n in ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")]
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(count):
    photo = photos[rng.integers(len(photos))]
    top = rng.integers(0, photo.shape[0] - size + 1)
    left = rng.integers(0, photo.shape[1] - size + 1)
    out.append(photo[top:top + size, left:left + size])
  return np.stack(out)


def _distort(maps, kind, rng):
  """The distortions of the validity test, applied to (N, H, W) maps (the prior's inputs)."""
  contrast = niqe_transform.local_contrast(tf.constant(maps)).numpy()[:, None, None]
  if kind.startswith("blur"):
    sigma = float(kind[4:])
    return ndimage.gaussian_filter(maps, (0, sigma, sigma), mode="nearest")
  if kind == "noise":  # White Gaussian noise at half the map's local contrast.
    return maps + rng.normal(size=maps.shape) * 0.5 * contrast
  if kind == "checkerboard":  # A period-2 pattern, as stride-2 transposed convolutions leave.
    h, w = maps.shape[1:]
    pattern = np.where((np.arange(h)[:, None] + np.arange(w)[None]) % 2, 1.0, -1.0)
    return maps + 0.25 * contrast * pattern[None]
  if kind == "jpeg10":
    peak = maps.max(axis=(1, 2), keepdims=True) + 1e-12
    out = []
    for m, p in zip(maps, peak):
      buffer = io.BytesIO()
      Image.fromarray(np.clip(np.round(m / p * 255.0), 0, 255).astype(np.uint8)).save(
          buffer, "JPEG", quality=10)
      out.append(np.asarray(Image.open(buffer), np.float64) / 255.0 * p)
    return np.stack(out)
  raise ValueError(kind)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(niqe_priors.NAMED_PRIORS))
def test_validity_the_penalty_prefers_the_inputs_its_prior_describes(name):
  """With the default settings, the penalty's per-image value on the inputs a prior describes
  (Sobel magnitudes of natural crops at its resolution, or the photographs themselves) is lower
  than on the same inputs blurred, noisy, JPEG-compressed or with a checkerboard, for >= 90% of
  the images. The values come in training-sized batches (16 images), as the penalty sees them."""
  prior = niqe_priors.load_prior(name)
  spec = prior.spec
  if spec.source == "image":
    size, batch, batches = 2 * spec.block_size, 4, 6  # 2 x 2 blocks of 96 px per photograph.
    images = _native_crops(size, batch * batches, seed=7)
  else:
    size, batch, batches = spec.resolution, 16, 6
    images = sources.embedded_images(size, batch * batches, seed=7)  # Not the fitting crops.
  config = _config(resolution=min(size, 96), niqe_prior=name)
  settings = _resolve(config, prior)
  maps = niqe_fit.fit_inputs(images, spec.source).numpy()

  def scores(m):
    x = niqe_transform.normalize(tf.constant(m), settings.normalization, settings.scale)
    return np.concatenate([niqe_transform.distance(x[i:i + batch], prior, settings).numpy()
                           for i in range(0, len(m), batch)])
  clean = scores(maps)
  rng = np.random.default_rng(0)
  for kind in ("blur1", "blur2", "noise", "jpeg10", "checkerboard"):
    worse = np.mean(scores(_distort(maps, kind, rng)) > clean)
    print(f"{name} {kind}: {worse:.0%} of images score worse than clean")
    assert worse >= 0.9, (name, kind, worse)


# --- fitting ------------------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["sobel_magnitude", "d_gradient_magnitude"])
def test_a_fitted_prior_records_its_fit_and_drives_the_penalty(tmp_path, source):
  images = sources.embedded_images(32, 48, seed=0)
  keras.utils.set_random_seed(0)
  d = models.Discriminator(32, width=4)
  d.build_for_inference()
  model, spec, info = niqe_fit.fit_prior(images, source, discriminator=d)
  assert info["blocks_kept"] == 48 and info["images"] == 48  # One block per image.
  assert (spec.source, spec.block_size, spec.resolution, spec.grayscale) == (source, 32, 32, True)
  if source == "sobel_magnitude":
    assert spec.normalization == "none" and spec.scale == pytest.approx(info["median_contrast"])
  else:
    assert (spec.normalization, spec.scale) == ("contrast", niqe_fit.DEFAULT_GRADIENT_CONTRAST)
  path = str(tmp_path / "prior.npz")
  niqe_priors.save_prior(path, model, spec)
  loaded = niqe_priors.load_prior(path)
  assert loaded.spec == spec and np.linalg.eigvalsh(loaded.model.cov).min() > 0
  settings = _resolve(_config(niqe_prior=path), loaded)
  assert (settings.transform, settings.block_size, settings.normalization) == (
      "magnitude", 32, "contrast")
  with pytest.raises(ValueError, match="sharp blocks"):
    niqe_fit.fit_prior(images[:8], source, discriminator=d)
  with pytest.raises(ValueError, match="needs a discriminator"):
    niqe_fit.fit_prior(images, "d_gradient")


def test_a_run_written_before_the_metadata_keeps_its_old_penalty_settings():
  old = {"penalty": "niqe", "resolution": 32, "width": 4, "z_dim": 8, "batch_size": 4,
         "dataset": "embedded", "niqe_prior": "cifar_grad", "niqe_block_size": 0,
         "niqe_scales": 2, "niqe_pooling": "image", "niqe_grayscale": True,
         "niqe_normalization": "auto", "niqe_covariance_regularization": 1e-3}
  config = config_lib.TrainConfig.from_dict(old)
  assert (config.niqe.transform, config.niqe.split, config.niqe.block_size,
          config.niqe.normalization, config.niqe.normalization_scale,
          config.niqe.allow_prior_mismatch) == ("signed", "hard", 16, "max", 255.0, True)
  settings = _resolve(config, niqe_priors.load_prior("cifar_grad"))
  assert (settings.transform, settings.pooling, settings.covariance_regularization) == (
      "signed", "image", 1e-3)
  # Resuming it with today's defaults would change the penalty: refused, naming the old values.
  with pytest.raises(ValueError, match="niqe_split: 'hard' -> 'soft'.*niqe_transform: 'signed' -> 'auto'"):
    config_lib.check_config_change(config, _config(niqe_prior="cifar_grad"))
  same = _config(niqe_prior="cifar_grad", niqe_transform="signed", niqe_split="hard",
                 niqe_block_size=16, niqe_normalization="max", niqe_normalization_scale=255.0,
                 niqe_pooling="image", niqe_scales=2, niqe_covariance_regularization=1e-3,
                 niqe_allow_prior_mismatch=True, niqe_smoothing="none")
  assert not [k for k, _, _ in config_lib.check_config_change(config, same)
              if k.startswith("niqe")]
  # Other penalties' configs are read as they are, and their niqe_* keys may change.
  assert config_lib.TrainConfig.from_dict({"penalty": "ssim"}).niqe.transform == "auto"
  config_lib.check_config_change(config.replace(penalty="ssim"),
                                  config.replace(penalty="ssim", niqe_transform="auto"))
