"""Spectral normalisation (Miyato et al. 2018) for D's convolutions and dense layer.

Each layer divides its kernel by sigma, an estimate of the largest singular value of the kernel
reshaped to (fan_in, out): sigma = v W u^T with u the stored left vector and v = u W^T / |u W^T|
(u and v held constant in the gradient, as in the paper). `power_iteration` moves u one step of
the power method; the train step calls it once per D update, in replica context. u is a
non-trainable weight (so it is checkpointed with D and resumes exactly) with
ONLY_FIRST_REPLICA aggregation: every replica computes the same update from the same mirrored
kernel, and the first replica's value is written everywhere.
"""

import keras
import tensorflow as tf

_EPSILON = 1e-12


class _SpectralNorm:
  """Mixin for a Keras layer with a `kernel` whose last axis is its output."""

  def _build_u(self):
    out = self.kernel.shape[-1]
    self.sn_u = self.add_weight(
        name="sn_u", shape=(1, out), trainable=False, autocast=False,
        initializer=keras.initializers.RandomNormal(stddev=1.0),
        aggregation="only_first_replica")

  def _matrix(self, kernel):
    return tf.reshape(kernel, [-1, kernel.shape[-1]])

  def _vectors(self, w):
    u = tf.cast(self.sn_u, w.dtype)
    u = u / (tf.norm(u) + _EPSILON)
    v = tf.matmul(u, w, transpose_b=True)
    return u, v / (tf.norm(v) + _EPSILON)

  def sigma(self, kernel=None):
    """The current spectral-norm estimate of the kernel (differentiable in the kernel)."""
    w = self._matrix(self.kernel if kernel is None else kernel)
    u, v = self._vectors(tf.stop_gradient(w))  # Constants in the gradient (u is not trainable).
    return tf.reduce_sum(tf.matmul(v, w) * u)

  def power_iteration(self):
    """One step of the power method: u <- v W / |v W|."""
    w = tf.stop_gradient(self._matrix(tf.convert_to_tensor(self.kernel)))
    _, v = self._vectors(w)
    u = tf.matmul(v, w)
    self.sn_u.assign(tf.cast(u / (tf.norm(u) + _EPSILON), self.sn_u.dtype))


class SNConv2D(_SpectralNorm, keras.layers.Conv2D):
  """Conv2D with a spectrally normalised kernel."""

  def build(self, input_shape):
    super().build(input_shape)
    self._build_u()

  def convolution_op(self, inputs, kernel):
    return super().convolution_op(inputs, kernel / self.sigma(kernel))


class SNDense(_SpectralNorm, keras.layers.Dense):
  """Dense with a spectrally normalised kernel."""

  def build(self, input_shape):
    super().build(input_shape)
    self._build_u()

  def call(self, inputs, training=None):
    del training
    kernel = self.kernel
    x = tf.matmul(inputs, kernel / self.sigma(kernel))
    if self.bias is not None:
      x = x + self.bias
    return x


def spectral_layers(model):
  """The spectrally normalised layers inside a Keras model."""
  layers = model._flatten_layers(include_self=False)  # pylint: disable=protected-access
  return [layer for layer in layers if isinstance(layer, _SpectralNorm)]
