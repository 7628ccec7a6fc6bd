"""The public functional API qagan_tf.qa: each function against an independent definition, and its
contract (shapes, dtypes, errors that name the argument)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from qagan_tf import qa
from qagan_tf.data import sources
from qagan_tf.iqa import niqe_metric


def _critic(seed=0, flat=True):
  """A small user critic: Conv2D/LeakyReLU/Dense, scores (B,) or (B, 1)."""
  keras.utils.set_random_seed(seed)
  layers = [keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 4, 2, padding="same"),
            keras.layers.LeakyReLU(0.2), keras.layers.Flatten(), keras.layers.Dense(1)]
  if flat:
    layers.append(keras.layers.Reshape(()))
  return keras.Sequential(layers)


def _images(count, seed):
  return tf.constant(sources.embedded_images(32, count, seed=seed) / 127.5 - 1.0, tf.float32)


def test_gradient_penalty_equals_a_hand_written_tape():
  d = _critic()
  real, fake = _images(6, 0), _images(6, 1)
  eps = tf.constant(np.random.default_rng(0).uniform(size=6), tf.float32)
  gp, grads = qa.gradient_penalty(d, real, fake, eps)
  x_hat = eps[:, None, None, None] * fake + (1.0 - eps[:, None, None, None]) * real
  with tf.GradientTape() as tape:
    tape.watch(x_hat)
    scores = tf.reduce_sum(d(x_hat))
  by_hand = tape.gradient(scores, x_hat)
  norms = np.sqrt((by_hand.numpy() ** 2).sum(axis=(1, 2, 3)))
  np.testing.assert_allclose(grads.numpy(), by_hand.numpy(), rtol=1e-5, atol=1e-8)
  np.testing.assert_allclose(gp.numpy(), (norms - 1.0) ** 2, rtol=1e-5)
  gp2, _ = qa.gradient_penalty(d, real, fake, eps, target=0.5)
  np.testing.assert_allclose(gp2.numpy(), (norms - 0.5) ** 2, rtol=1e-5)
  # Differentiable w.r.t. D's weights (a second-order term), and eps drawn when not given.
  with tf.GradientTape() as tape:
    value = tf.reduce_mean(qa.gradient_penalty(d, real, fake, eps)[0])
  assert all(g is not None for g in tape.gradient(value, d.trainable_variables[:2]))
  assert qa.gradient_penalty(d, real, fake)[0].shape == (6,)


def _numpy_ssim_distance(x, y, size=8, sigma=1.5, max_val=2.0):
  """dQ of paper eqs. 10-11 with the authors' settings (luma, 8x8 Gaussian, valid windows)."""
  luma = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])
  x, y = x @ luma, y @ luma
  c = np.arange(size) - (size - 1) / 2.0
  g = np.exp(-c**2 / (2 * sigma**2))
  w = np.outer(g, g) / np.outer(g, g).sum()
  c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
  out = []
  for a, b in zip(x, y):
    n = a.shape[0] - size + 1
    vals = []
    for i in range(n):
      for j in range(n):
        pa, pb = a[i:i + size, j:j + size], b[i:i + size, j:j + size]
        ma, mb = (w * pa).sum(), (w * pb).sum()
        va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
        cov = (w * (pa - ma) * (pb - mb)).sum()
        lum = (2 * ma * mb + c1) / (ma**2 + mb**2 + c1)
        cs = (2 * cov + c2) / (va + vb + c2)
        vals.append(np.sqrt(max(2.0 - lum - cs, 0.0)))
    out.append(np.mean(vals))
  return np.array(out)


def test_ssim_distance_penalty_equals_numpy_eqs_12_13():
  real, fake = _images(3, 2).numpy().astype(np.float64), _images(3, 3).numpy().astype(np.float64)
  d_real, d_fake = np.array([0.7, -1.2, 0.1]), np.array([0.2, 0.4, 0.1])
  dq = _numpy_ssim_distance(real, fake)
  expected = (np.abs(d_real - d_fake) / dq - 1.0) ** 2
  got = qa.ssim_distance_penalty(tf.constant(real, tf.float32), tf.constant(fake, tf.float32),
                                 tf.constant(d_real, tf.float32), tf.constant(d_fake, tf.float32))
  np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4)
  # (B, 1) scores are flattened: never a (B, B) broadcast.
  column = qa.ssim_distance_penalty(real.astype(np.float32), fake.astype(np.float32),
                                    d_real[:, None].astype(np.float32),
                                    d_fake[:, None].astype(np.float32))
  assert column.shape == (3,)
  np.testing.assert_allclose(column.numpy(), got.numpy(), rtol=1e-6)


def test_niqe_metric_equals_bin_niqe_per_image():
  images = sources.embedded_images(96, 3, seed=4)
  scores = qa.niqe(images)
  assert scores.shape == (3,)
  for image, score in zip(images, scores):
    assert score == pytest.approx(niqe_metric.niqe(image), abs=1e-6)
  assert qa.niqe(images[0])[0] == pytest.approx(scores[0], abs=1e-12)


def test_priors_load_and_fit():
  prior = qa.load_prior("cifar_grad")
  assert prior.spec.source == "sobel_magnitude" and prior.spec.resolution == 32
  fitted = qa.fit_prior(sources.embedded_images(32, 48, seed=5))
  assert fitted.spec.source == "sobel_magnitude" and fitted.model.mu.shape == (36,)
  grads = tf.random.stateless_normal([16, 32, 32, 3], [1, 2])
  assert np.all(np.isfinite(qa.niqe_penalty(grads, prior=fitted).numpy()))
  with pytest.raises(ValueError, match="images must be uint8"):
    qa.fit_prior(np.zeros((4, 32, 32, 3), np.float32))


def test_bad_arguments_name_themselves_and_the_fix():
  d = _critic()
  real = _images(2, 0)
  with pytest.raises(ValueError, match=r"real must be images shaped \(B, H, W, C\)"):
    qa.gradient_penalty(d, real[0], real)
  with pytest.raises(ValueError, match="fake must be a float tensor; got uint8"):
    qa.gradient_penalty(d, real, tf.zeros((2, 32, 32, 3), tf.uint8))
  with pytest.raises(ValueError, match=r"real has values in \[0, 255\]; .*x / 127.5 - 1"):
    qa.gradient_penalty(d, real * 0 + 255.0 * tf.cast(tf.range(2)[:, None, None, None] > 0,
                                                      tf.float32), real)
  with pytest.raises(ValueError, match=r"eps must be \(B,\)"):
    qa.gradient_penalty(d, real, real, eps=tf.zeros((2, 1)))
  with pytest.raises(ValueError, match=r"d_real must be critic scores shaped \(B,\) or \(B, 1\)"):
    qa.ssim_distance_penalty(real, real, tf.zeros((2, 3)), tf.zeros(2))
  with pytest.raises(ValueError, match="d_fake has 3 scores for a batch of 2 images"):
    qa.ssim_distance_penalty(real, real, tf.zeros(2), tf.zeros(3))
  with pytest.raises(ValueError, match="unknown SSIM penalty setting.*windw; valid: window"):
    qa.ssim_distance_penalty(real, real, tf.zeros(2), tf.zeros(2), windw="uniform")
  with pytest.raises(ValueError, match="window='box': use one of gaussian, uniform, tf_image"):
    qa.ssim_distance_penalty(real, real, tf.zeros(2), tf.zeros(2), window="box")
  # Inside tf.function the static checks still hold; value ranges are checked eagerly only.
  with pytest.raises(ValueError, match="real must be images shaped"):
    tf.function(lambda x: qa.gradient_penalty(d, x, x))(real[0])
  assert tf.function(lambda x: qa.gradient_penalty(d, x, x)[0])(real * 300.0).shape == (2,)


def test_the_functions_work_under_mixed_precision_and_in_a_replica():
  real, fake = _images(4, 6), _images(4, 7)
  keras.config.set_dtype_policy("mixed_bfloat16")
  try:
    d = _critic(flat=False)
    gp, grads = qa.gradient_penalty(d, tf.cast(real, tf.bfloat16), tf.cast(fake, tf.bfloat16))
  finally:
    keras.config.set_dtype_policy("float32")
  assert gp.dtype == tf.float32 and grads.dtype == tf.float32
  value = qa.ssim_distance_penalty(tf.cast(real, tf.float16), fake, tf.zeros(4, tf.float16),
                                   tf.ones(4))
  assert value.dtype == tf.float32
  from qagan_tf.train import distribution
  devices = [dev.name for dev in tf.config.list_logical_devices("CPU")][:2]
  strategy = distribution.mirrored_strategy(devices)
  with strategy.scope():
    d = _critic()
  both = tf.concat([real, fake], 0)
  split = strategy.experimental_distribute_values_from_function(
      lambda ctx: both[ctx.replica_id_in_sync_group * 4:(ctx.replica_id_in_sync_group + 1) * 4])
  out = strategy.run(tf.function(lambda x: qa.gradient_penalty(d, x, x[::-1],
                                                               tf.fill([4], 0.5))[0]),
                     args=(split,))
  local = strategy.experimental_local_results(out)
  np.testing.assert_allclose(local[0].numpy(), qa.gradient_penalty(
      d, real, real[::-1], tf.fill([4], 0.5))[0].numpy(), rtol=1e-5)
  assert qa.__all__ == ["gradient_penalty", "r1_penalty", "r2_penalty", "lecam_penalty",
                        "ssim_distance_penalty", "niqe_penalty", "penalty", "load_prior",
                        "fit_prior", "niqe"]


def test_every_qa_function_names_a_bad_argument_before_tf_does():
  """Round 3's cases: mismatched batches, a critic that ignores its input or gives several
  scores, wrong channels, and NIQE of a flat image or of [-1, 1] floats: one ValueError naming
  the argument, eagerly and (shapes) inside tf.function too."""
  import keras
  real, fake4 = tf.zeros([8, 32, 32, 3]), tf.zeros([4, 32, 32, 3])
  critic = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                             keras.layers.Dense(1)])
  ten = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                          keras.layers.Dense(10)])
  blind = lambda x: tf.zeros([tf.shape(x)[0]]) + tf.reduce_mean(tf.ones([3]))  # noqa: E731
  cases = [
      (lambda: qa.gradient_penalty(critic, real, fake4), "same shape .*\\(8, 32, 32, 3\\) and "
       "\\(4, 32, 32, 3\\)"),
      (lambda: qa.gradient_penalty(blind, real, real), "do not depend on its input"),
      (lambda: qa.gradient_penalty(ten, real, real), "one score per image.*\\(8, 10\\)"),
      (lambda: qa.gradient_penalty(critic, real, real, eps=tf.zeros([4])), "one per image of "
       "the batch of 8"),
      (lambda: qa.r1_penalty(blind, real), "do not depend on its input"),
      (lambda: qa.ssim_distance_penalty(real, fake4, tf.zeros([8]), tf.zeros([4])),
       "same shape"),
      (lambda: qa.ssim_distance_penalty(tf.zeros([2, 32, 32, 2]), tf.zeros([2, 32, 32, 2]),
                                        tf.zeros([2]), tf.zeros([2])), "C = 3 or 1"),
      (lambda: qa.niqe(np.full((96, 96, 3), 128, np.uint8)), "image 0: the image is flat"),
      (lambda: qa.niqe(np.zeros((96, 96, 3), np.float32) - 0.5), "uint8 .or floats in "
       "\\[0, 255\\]"),
  ]
  for fn, match in cases:
    with pytest.raises(ValueError, match=match):
      fn()
  traced = tf.function(lambda r, f: qa.gradient_penalty(critic, r, f))
  with pytest.raises(ValueError, match="same shape"):
    traced(real, fake4)


def test_float_images_of_niqe_need_their_range_and_every_input_must_be_finite():
  """Newcomer round 4 (issue 45): floats in [0, 1] are refused by qa.niqe with the fix (they
  were scored as dark [0, 255] images: 21.9-28.0 against 6.4-11.8 as uint8) and score as the
  uint8 images with data_range=1.0; a NaN in images, scores or D's gradients is named instead of
  coming out as a NaN penalty (for a whole NIQE group); float64 images with float32 scores are
  one SSIM penalty."""
  crops = sources.embedded_images(96, 3, seed=2)
  floats = crops.astype(np.float32) / 255.0
  with pytest.raises(ValueError, match=r"floats in \[0, 1\].*data_range=1.0"):
    qa.niqe(floats)
  np.testing.assert_allclose(qa.niqe(floats, data_range=1.0), qa.niqe(crops), rtol=0.05)
  # (Float input is not rounded to MATLAB's uint8 grayscale: the same image scores about the
  # same, not the same bits; a float image in [0, 255] with data_range=255 is unchanged.)
  np.testing.assert_array_equal(qa.niqe(crops.astype(np.float64), data_range=255.0),
                                qa.niqe(crops.astype(np.float64)))
  with pytest.raises(ValueError, match="data_range applies to float images"):
    qa.niqe(crops, data_range=255)
  nan_image = crops.astype(np.float32)
  nan_image[0, 5, 5, 1] = np.nan
  with pytest.raises(ValueError, match="1 NaN or Inf"):
    qa.niqe(nan_image)
  real = np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
  fake = np.random.default_rng(1).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
  scores = np.linspace(-1, 1, 4).astype(np.float32)
  for name, args in (("real", (np.where(real > 0.9, np.nan, real), fake, scores, scores)),
                     ("d_fake", (real, fake, scores, np.full(4, np.inf, np.float32)))):
    with pytest.raises(ValueError, match=f"{name} holds .* NaN or Inf"):
      qa.ssim_distance_penalty(*args)
  mixed = qa.ssim_distance_penalty(real.astype(np.float64), fake, scores, scores[::-1])
  same = qa.ssim_distance_penalty(real.astype(np.float64), fake.astype(np.float64),
                                  scores.astype(np.float64), scores[::-1].astype(np.float64))
  np.testing.assert_array_equal(mixed.numpy(), same.numpy())
  grads = np.random.default_rng(2).normal(size=(16, 32, 32, 3)).astype(np.float32)
  grads[3, 1, 1, 1] = np.nan
  with pytest.raises(ValueError, match="input_gradients holds 1 NaN.*every example of its group"):
    qa.niqe_penalty(grads)


def test_penalty_builds_any_registered_penalty_as_the_named_functions_compute_it(monkeypatch):
  """qa.penalty(name, **settings) is the registry's penalty as a function of tensors: the same
  numbers as qa.ssim_distance_penalty and qa.niqe_penalty with the same settings, and a penalty
  added to the registry (as docs/extending.md's recipe adds one) with no edit of qa."""
  from qagan_tf.objectives import penalties
  from qagan_tf.objectives import penalty_api
  d = _critic()
  real, fake = _images(4, 4), _images(4, 5)
  d_real, d_fake = d(real), d(fake)
  _, grads = qa.gradient_penalty(d, real, fake)
  np.testing.assert_array_equal(
      qa.penalty("ssim", window_size=4)(real, fake, d_real, d_fake).numpy(),
      qa.ssim_distance_penalty(real, fake, d_real, d_fake, window_size=4).numpy())
  np.testing.assert_array_equal(
      qa.penalty("niqe", pooling="batch")(real, fake, d_real, d_fake, grad_x_hat=grads).numpy(),
      qa.niqe_penalty(grads, pooling="batch").numpy())
  with pytest.raises(ValueError, match="reads D's input gradients: pass grad_x_hat="):
    qa.penalty("niqe")(real, fake, d_real, d_fake)
  with pytest.raises(ValueError, match="unknown ssim penalty setting.*windowsize.*window_size"):
    qa.penalty("ssim", windowsize=4)
  with pytest.raises(ValueError, match="'wgan_gp' has no quality-aware term.*ssim, niqe"):
    qa.penalty("wgan_gp")
  with pytest.raises(ValueError, match="Unknown penalty 'nique'"):
    qa.penalty("nique")
  # A registered newcomer: the mean absolute score gap, with a setting of its own.
  import dataclasses

  @dataclasses.dataclass(frozen=True)
  class GapSettings:
    scale: float = 1.0

    def check_values(self, spell):
      if self.scale < 0:
        raise ValueError(f"{spell('scale')}={self.scale} must be >= 0.")

  def build(settings, resolution, *, xla=False):
    del resolution, xla
    return penalty_api.QualityPenalty("gap", "gap_penalty", lambda x: (
        settings.scale * tf.abs(x.d_real - x.d_fake), {}))
  monkeypatch.setitem(penalties.PENALTIES, "gap",
                      penalty_api.PenaltyEntry(build=build, settings=GapSettings))
  np.testing.assert_allclose(qa.penalty("gap", scale=2.0)(real, fake, d_real, d_fake).numpy(),
                             2.0 * np.abs(d_real.numpy() - d_fake.numpy()).ravel(), rtol=1e-6)
  with pytest.raises(ValueError, match="scale=-1.0 must be >= 0"):
    qa.penalty("gap", scale=-1.0)
