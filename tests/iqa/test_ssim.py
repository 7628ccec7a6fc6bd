"""Tests of SSIM components, SSIM and the dQ distance."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp
from scipy import ndimage

from qagan_tf import iqa
from qagan_tf.iqa import similarity as ssim_lib


def _images(seed, shape=(3, 24, 24, 3)):
  return np.random.default_rng(seed).uniform(-1, 1, shape)


def test_tf_image_window_matches_tf_image_ssim():
  rng = np.random.default_rng(0)
  x = rng.uniform(0, 1, (4, 32, 32, 3)).astype(np.float32)
  y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
  ours = iqa.ssim(x, y, window="tf_image", max_val=1.0).numpy()
  theirs = tf.image.ssim(x, y, max_val=1.0).numpy()
  np.testing.assert_allclose(ours, theirs, atol=1e-4)


def _numpy_components(x, y, kernel, c1, c2):
  """Reference: scipy correlation per channel, cropped to 'valid'."""
  s = kernel.shape[0]
  lo = s // 2  # scipy centres a window of size s at s // 2.

  def mean(t):
    out = np.stack([ndimage.correlate(t[..., c], kernel[None], mode="constant")
                    for c in range(t.shape[-1])], -1)
    return out[:, lo:lo + t.shape[1] - s + 1, lo:lo + t.shape[2] - s + 1]
  mx, my = mean(x), mean(y)
  vx, vy, cxy = mean(x * x) - mx**2, mean(y * y) - my**2, mean(x * y) - mx * my
  return (2 * mx * my + c1) / (mx**2 + my**2 + c1), (2 * cxy + c2) / (vx + vy + c2)


@pytest.mark.parametrize("window,size", [("gaussian", 8), ("gaussian", 7), ("uniform", 5)])
def test_components_match_numpy(window, size):
  x, y = _images(1), _images(2)
  kernel = ssim_lib.window_kernel(window, size, 1.5)
  ref_l, ref_cs = _numpy_components(x, y, kernel, (0.01 * 2) ** 2, (0.03 * 2) ** 2)
  lum, cs = iqa.ssim_components(x, y, window=window, size=size)
  np.testing.assert_allclose(lum, ref_l, atol=1e-10)
  np.testing.assert_allclose(cs, ref_cs, atol=1e-10)


def test_authors_cs_offset_option_and_grayscale():
  x, y = _images(3), _images(4)
  _, cs = iqa.ssim_components(x, y)
  _, cs_authors = iqa.ssim_components(x, y, cs_denominator_offset=0.01)
  assert np.all(np.abs(cs_authors) < np.abs(cs))  # A larger denominator shrinks |CS|.
  lum, _ = iqa.ssim_components(x, y, grayscale=True)
  assert lum.shape == (3, 17, 17, 1)


def test_gaussian_window():
  k = ssim_lib.window_kernel("gaussian", 8, 1.5)
  assert k.shape == (8, 8) and k.sum() == pytest.approx(1.0)
  np.testing.assert_allclose(k, k[::-1, ::-1])  # Even size: centred between pixels.
  np.testing.assert_allclose(ssim_lib.window_kernel("uniform", 3), np.full((3, 3), 1 / 9))


def test_ssim_of_identical_images_is_one():
  x = _images(5)
  np.testing.assert_allclose(iqa.ssim(x, x), 1.0, atol=1e-12)


def test_distance_is_zero_with_finite_gradient_on_equal_images():
  x = tf.constant(_images(6))
  with tf.GradientTape() as tape:
    tape.watch(x)
    d = iqa.ssim_distance(x, x)
  grad = tape.gradient(d, x).numpy()
  np.testing.assert_array_equal(d.numpy(), 0.0)
  assert np.all(np.isfinite(grad))


def test_distance_gradient_matches_finite_differences():
  x = tf.constant(_images(7, (1, 10, 10, 1)))
  y = tf.constant(_images(8, (1, 10, 10, 1)))
  theoretical, numerical = tf.test.compute_gradient(
      lambda a: iqa.ssim_distance(a, y, size=5), [x], delta=1e-6)
  np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-6)


def test_distance_reaches_its_upper_bound_of_two_for_images_in_minus_one_one():
  # L -> -1 (opposite means) and CS -> -1 (opposite structure): 2 - L - CS -> 4.
  checker = np.indices((16, 16)).sum(0) % 2
  x = (0.5 + 0.5 * checker)[None, :, :, None]
  d = float(iqa.ssim_distance(x, -x, size=4)[0])
  assert 1.95 < d <= 2.0


_batch = hnp.arrays(np.float64, (2, 9, 9, 1), elements=st.floats(-1, 1))


@settings(max_examples=60, deadline=None)
@given(_batch, _batch, _batch)
def test_distance_is_a_metric(x, y, z):
  dxy = iqa.ssim_distance(x, y, size=3).numpy()
  dyx = iqa.ssim_distance(y, x, size=3).numpy()
  dxz = iqa.ssim_distance(x, z, size=3).numpy()
  dzy = iqa.ssim_distance(z, y, size=3).numpy()
  np.testing.assert_allclose(dxy, dyx, atol=1e-12)
  assert np.all(dxy >= 0) and np.all(dxy <= 2.0 + 1e-12)
  assert np.all(dxy <= dxz + dzy + 1e-9)
  np.testing.assert_array_equal(iqa.ssim_distance(x, x, size=3).numpy(), 0.0)


@pytest.mark.parametrize("x,y,match", [
    (np.zeros((8, 8, 3)), np.zeros((8, 8, 3)), "rank 4"),
    (np.zeros((1, 8, 8, 3)), np.zeros((1, 9, 8, 3)), "same shape"),
    (np.zeros((1, 6, 6, 3)), np.zeros((1, 6, 6, 3)), "smaller than the 8x8 SSIM window"),
])
def test_bad_input(x, y, match):
  with pytest.raises(ValueError, match=match):
    iqa.ssim_distance(x, y)


def test_bad_window():
  with pytest.raises(ValueError, match="gaussian, uniform, tf_image"):
    iqa.ssim(np.zeros((1, 8, 8, 1)), np.zeros((1, 8, 8, 1)), window="box")
