"""Samples are fixed by (seed, batch size), and uint8 samples match the float ones."""

import numpy as np

from qagan_tf.utils import images as images_lib


def test_samples_are_fixed_by_seed_and_batch_size_and_uint8_matches_float():
  import keras
  from qagan_tf import models, sampling
  keras.utils.set_random_seed(0)
  g = models.build_generator("resnet", 32, 4, 8)
  g.build_for_inference()
  a = sampling.generate(g, 7, batch_size=3, seed=5)
  assert a.dtype == np.uint8 and a.shape == (7, 32, 32, 3)
  np.testing.assert_array_equal(a, sampling.generate(g, 7, batch_size=3, seed=5))
  by_hand = [g(sampling.latents(n, 8, 5, start), training=False).numpy()
             for start, n in ((0, 3), (3, 3), (6, 1))]
  np.testing.assert_array_equal(a, images_lib.to_uint8(np.concatenate(by_hand)))
  floats = sampling.generate(g, 7, batch_size=3, seed=5, uint8=False)
  np.testing.assert_array_equal(images_lib.to_uint8(floats), a)
  assert not np.array_equal(sampling.generate(g, 7, seed=6), a)
  assert sampling.generate(g, 0).shape == (0, 32, 32, 3)
