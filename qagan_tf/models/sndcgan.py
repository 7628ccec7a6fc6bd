"""SNGAN's "standard CNN" generator and discriminator (Miyato et al. 2018, Table 3: SNDCGAN) for
32 and 48 px.

G: z -> dense to (s0, s0, 8w) -> BN, ReLU -> three 4x4 stride-2 transposed convolutions to 4w,
2w, w (each BN, ReLU) -> 3x3 convolution to 3 -> tanh; s0 = 4 for 32 px, 6 for 48 px.
D: 3x3 conv w, 4x4 stride-2 w, 3x3 2w, 4x4 stride-2 2w, 3x3 4w, 4x4 stride-2 4w, 3x3 8w (each
followed by LeakyReLU 0.1) -> dense 1 on the flattened (s0, s0, 8w) map. Miyato's w is 64 (G
512-64, D 64-512); --width (or --g_width / --d_width) sets it. With spectral_norm every layer of
D is spectrally normalised (SNGAN); without, it is the plain DCGAN-style critic.
"""

import keras
import tensorflow as tf

from qagan_tf.models import normalization
from qagan_tf.models import spectral

_START = {32: 4, 48: 6}
SUPPORTED_RESOLUTIONS = tuple(sorted(_START))
_LEAK = 0.1


def _start_size(resolution):
  if resolution not in _START:
    raise ValueError(f"resolution={resolution!r} is not supported by the sndcgan architecture; "
                     f"use one of {', '.join(map(str, SUPPORTED_RESOLUTIONS))}.")
  return _START[resolution]


def _float32(x):
  return tf.cast(x, tf.float32) if x.dtype in (tf.float16, tf.bfloat16) else x


class Generator(keras.Model):
  """z (N, z_dim) float -> images (N, R, R, 3) float32 in [-1, 1] (tanh)."""

  def __init__(self, resolution=32, width=64, z_dim=128, name="generator"):
    super().__init__(name=name)
    self.resolution, self.width, self.z_dim = resolution, width, z_dim
    self.start = _start_size(resolution)
    self.dense = keras.layers.Dense(self.start * self.start * 8 * width, name="dense")
    self.bn0 = normalization.BatchNormalization(name="bn0")
    self.up1 = keras.layers.Conv2DTranspose(4 * width, 4, 2, padding="same", name="up1")
    self.bn1 = normalization.BatchNormalization(name="bn1")
    self.up2 = keras.layers.Conv2DTranspose(2 * width, 4, 2, padding="same", name="up2")
    self.bn2 = normalization.BatchNormalization(name="bn2")
    self.up3 = keras.layers.Conv2DTranspose(width, 4, 2, padding="same", name="up3")
    self.bn3 = normalization.BatchNormalization(name="bn3")
    self.conv_out = keras.layers.Conv2D(3, 3, padding="same", name="conv_out")

  def call(self, z, training=False):
    h = tf.reshape(self.dense(z), [-1, self.start, self.start, 8 * self.width])
    h = tf.nn.relu(self.bn0(h, training=training))
    for up, bn in ((self.up1, self.bn1), (self.up2, self.bn2), (self.up3, self.bn3)):
      h = tf.nn.relu(bn(up(h), training=training))
    return _float32(tf.tanh(self.conv_out(h)))

  def build(self, input_shape):
    """Creates every variable from the shapes alone, in the order `call` would (Keras' default
    traces `call` on symbolic inputs instead, several times as long)."""
    n = input_shape[0]
    self.dense.build(input_shape)
    shape = (n, self.start, self.start, 8 * self.width)
    self.bn0.build(shape)
    for up, bn in ((self.up1, self.bn1), (self.up2, self.bn2), (self.up3, self.bn3)):
      up.build(shape)
      shape = (n, 2 * shape[1], 2 * shape[2], up.filters)
      bn.build(shape)
    self.conv_out.build(shape)

  def build_for_inference(self):
    """Creates all variables by one call on a dummy batch."""
    self(tf.zeros([1, self.z_dim]), training=False)


class Discriminator(keras.Model):
  """Images (N, R, R, 3) float in [-1, 1] -> critic scores (N,) float32."""

  def __init__(self, resolution=32, width=64, name="discriminator", spectral_norm=False):
    super().__init__(name=name)
    self.resolution, self.width, self.spectral_norm = resolution, width, spectral_norm
    _start_size(resolution)
    conv = spectral.SNConv2D if spectral_norm else keras.layers.Conv2D
    dense = spectral.SNDense if spectral_norm else keras.layers.Dense
    specs = ((3, 1, 1), (4, 2, 1), (3, 1, 2), (4, 2, 2), (3, 1, 4), (4, 2, 4), (3, 1, 8))
    self.num_convs = len(specs)
    for i, (kernel, stride, mult) in enumerate(specs):
      setattr(self, f"conv{i}", conv(mult * width, kernel, stride, padding="same",
                                     name=f"conv{i}"))
    self.dense = dense(1, name="dense")

  def update_spectral_norm(self):
    """One power iteration in every spectrally normalised layer (no-op without them)."""
    for layer in spectral.spectral_layers(self):
      layer.power_iteration()

  def call(self, x, training=False):
    del training
    h = x
    for i in range(self.num_convs):
      h = tf.nn.leaky_relu(getattr(self, f"conv{i}")(h), _LEAK)
    h = tf.reshape(h, [-1, h.shape[1] * h.shape[2] * h.shape[3]])
    return _float32(tf.squeeze(self.dense(h), axis=-1))

  def build(self, input_shape):
    """Creates every variable from the shapes alone, in the order `call` would (see
    `Generator.build`): "same" padding, so a stride-s conv divides the size by s."""
    n, height, width, _ = input_shape
    shape = tuple(input_shape)
    for i in range(self.num_convs):
      conv = getattr(self, f"conv{i}")
      conv.build(shape)
      stride = conv.strides[0]
      height, width = -(-height // stride), -(-width // stride)
      shape = (n, height, width, conv.filters)
    self.dense.build((n, height * width * shape[3]))

  def build_for_inference(self):
    """Creates all variables by one call on a dummy batch."""
    r = self.resolution
    self(tf.zeros([1, r, r, 3]))
