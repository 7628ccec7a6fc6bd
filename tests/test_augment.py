"""DiffAugment (qagan_tf.augment): shapes and dtypes, what each policy does to values, the
gradient reaching G through it, statelessness, and the identity when off."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from qagan_tf import augment, models


def _images(n=6, size=16, seed=0):
  return tf.constant(np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)), tf.float32)


def _uniforms(n, **columns):
  u = np.full((n, augment.UNIFORMS), 0.5, np.float32)
  for column, value in columns.items():
    u[:, int(column[1:])] = value
  return tf.constant(u)


def test_shapes_and_dtypes_are_kept_and_off_is_the_identity():
  x = _images()
  for policy in ("color", "translation", "cutout", "color,translation,cutout"):
    for dtype in (tf.float32, tf.float16):
      out = augment.diff_augment(tf.cast(x, dtype), policy, seed=(1, 2))
      assert out.shape == x.shape and out.dtype == dtype, (policy, dtype)
      assert np.all(np.isfinite(out.numpy().astype(np.float32)))
  for off in ("", "none"):
    assert augment.diff_augment(x, off, seed=(1, 2)) is x
  with pytest.raises(ValueError, match="use none, ada, or a comma-separated list of color, "
                                       "translation, cutout.*got colour"):
    augment.diff_augment(x, "colour")
  with pytest.raises(ValueError, match="float .B, H, W, C."):
    augment.diff_augment(tf.zeros([4, 16, 16], tf.float32))


def test_neutral_choices_change_nothing_and_each_choice_does_what_it_says():
  x = _images()
  neutral = _uniforms(6)  # 0.5: no brightness shift, x1 saturation and contrast, no shift.
  np.testing.assert_allclose(augment.apply(x, neutral, ("color",)), x, atol=1e-6)
  np.testing.assert_array_equal(augment.apply(x, neutral, ("translation",)), x)
  # Brightness: + (u - 0.5) everywhere.
  bright = augment.apply(x, _uniforms(6, u0=0.9), ("color",))
  np.testing.assert_allclose(bright - x, np.full(x.shape, 0.4), atol=1e-6)
  # Saturation 0: every pixel grey (its channels equal); contrast 0.5: half the image's spread.
  grey = augment.apply(x, _uniforms(6, u1=0.0), ("color",)).numpy()
  np.testing.assert_allclose(grey.std(axis=3), 0.0, atol=1e-6)
  flat = augment.apply(x, _uniforms(6, u2=0.0), ("color",)).numpy()
  np.testing.assert_allclose(flat.std(axis=(1, 2, 3)), 0.5 * x.numpy().std(axis=(1, 2, 3)),
                             rtol=1e-5)
  # Translation by the most (1/8 of 16 = 2 px) down and right, zero-padded.
  moved = augment.apply(x, _uniforms(6, u3=0.0, u4=0.0), ("translation",)).numpy()
  expected = np.zeros_like(x.numpy())
  expected[:, 2:, 2:] = x.numpy()[:, :-2, :-2]
  np.testing.assert_array_equal(moved, expected)
  # Translation and cutout never make a value that was not there, besides 0.
  both = augment.diff_augment(x, "translation,cutout", seed=(3, 4)).numpy()
  assert np.isin(both, np.append(x.numpy().ravel(), 0.0)).all()
  # Cutout: a square of half the side, set to 0 in every channel; centred, it lies inside.
  cut = augment.apply(x, _uniforms(6, u5=0.5, u6=0.5), ("cutout",)).numpy()
  zero = np.all(cut == 0, axis=3)
  assert np.all(zero.sum(axis=(1, 2)) == 8 * 8)
  np.testing.assert_array_equal(cut[~zero], x.numpy()[~zero])


def test_the_same_seed_gives_the_same_augmentation():
  x = _images()
  a = augment.diff_augment(x, seed=(7, 11))
  np.testing.assert_array_equal(a, augment.diff_augment(x, seed=(7, 11)))
  assert not np.array_equal(a, augment.diff_augment(x, seed=(7, 12)))


def test_a_gradient_reaches_the_generators_weights_through_the_augmentation():
  keras.utils.set_random_seed(0)
  g = models.Generator(32, width=4, z_dim=8)
  g.build_for_inference()
  d = models.Discriminator(32, width=4)
  d.build_for_inference()
  z = tf.random.stateless_normal([4, 8], [0, 1])
  with tf.GradientTape() as tape:
    fake = augment.diff_augment(g(z, training=True), "color,translation,cutout", seed=(0, 3))
    loss = -tf.reduce_mean(d(fake))
  grads = tape.gradient(loss, g.trainable_variables)
  kernels = [gr for v, gr in zip(g.trainable_variables, grads) if "kernel" in v.path]
  assert kernels and all(gr is not None and np.all(np.isfinite(gr.numpy())) for gr in kernels)
  assert all(np.abs(gr.numpy()).max() > 0 for gr in kernels)
