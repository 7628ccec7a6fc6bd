"""A user's small Keras GAN and images, shared by tests/gan/test_qagan.py and its fit script."""

import keras

from qagan_tf.data import sources

LATENT = 16


def user_models(seed=0, flat_scores=False):
  """A DCGAN written outside the project: Dense/Conv2DTranspose and Conv2D/LeakyReLU."""
  keras.utils.set_random_seed(seed)
  g = keras.Sequential([
      keras.Input((LATENT,)), keras.layers.Dense(4 * 4 * 16), keras.layers.Reshape((4, 4, 16)),
      keras.layers.Conv2DTranspose(16, 4, 2, padding="same", activation="relu"),
      keras.layers.Conv2DTranspose(8, 4, 2, padding="same", activation="relu"),
      keras.layers.Conv2DTranspose(3, 4, 2, padding="same", activation="tanh")])
  d_layers = [keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 4, 2, padding="same"),
              keras.layers.LeakyReLU(0.2), keras.layers.Conv2D(16, 4, 2, padding="same"),
              keras.layers.LeakyReLU(0.2), keras.layers.Flatten(), keras.layers.Dense(1)]
  if flat_scores:
    d_layers.append(keras.layers.Reshape(()))
  return g, keras.Sequential(d_layers)


def _images(count=64):
  return sources.embedded_images(32, count, seed=0).astype("float32") / 127.5 - 1.0
