"""The paper's ResNet generator and discriminator (WGAN-GP ResNet, QAGAN supplementary Tables 1-2)."""

import dataclasses

import keras
import tensorflow as tf

from qagan_tf.models import normalization
from qagan_tf.models import spectral

# resolution -> (generator start size s0, generator up-blocks, discriminator down-blocks,
# discriminator plain blocks), from the QAGAN supplement's Tables 1-2: CIFAR-10's D is down,
# down, plain, plain; STL-10 48's down x3, plain; CelebA 64 and STL-10 96 add one down block.
_LAYOUTS = {
    32: (4, 3, 2, 2),
    48: (6, 3, 3, 1),
    64: (4, 4, 3, 2),
    96: (6, 4, 4, 1),
}
SUPPORTED_RESOLUTIONS = tuple(sorted(_LAYOUTS))


@dataclasses.dataclass(frozen=True)
class ResnetLayout:
  """Block layout of the generator and discriminator for one resolution."""
  resolution: int
  start_size: int
  up_blocks: int
  down_blocks: int
  plain_blocks: int


def layout_for_resolution(resolution):
  """Returns the `ResnetLayout` for an image size.

  Args:
    resolution: image height = width in pixels; one of 32, 48, 64, 96.

  Raises:
    ValueError: for any other resolution (the message lists the supported ones).
  """
  if resolution not in _LAYOUTS:
    raise ValueError(
        f"resolution={resolution!r} is not supported; use one of "
        f"{', '.join(map(str, SUPPORTED_RESOLUTIONS))}.")
  return ResnetLayout(resolution, *_LAYOUTS[resolution])


def _conv(filters, kernel_size, initializer, name, spectral_norm=False):
  layer = spectral.SNConv2D if spectral_norm else keras.layers.Conv2D
  return layer(filters, kernel_size, padding="same", kernel_initializer=initializer, name=name)


def _mean_pool(x):
  return tf.nn.avg_pool2d(x, 2, 2, "VALID")


def _set_blocks(model, blocks):
  """Stores blocks as attributes block0, block1, ...

  Keras 3 tracks list attributes for `model.variables` but tf.train.Checkpoint does not see
  inside them, so blocks held in a list would silently be missing from checkpoints.
  """
  for i, block in enumerate(blocks):
    setattr(model, f"block{i}", block)
  model.num_blocks = len(blocks)


def _get_blocks(model):
  return [getattr(model, f"block{i}") for i in range(model.num_blocks)]


@tf.custom_gradient
def _upsample(x):
  """2x nearest-neighbour upsampling (each pixel to a 2x2 block) as one broadcast and a reshape,
  where tf.repeat along two axes takes about 12 kernels. Its gradient, the sum over each 2x2
  block, is 4 x a 2x2 average pool (one pooling kernel; the scaling by 1/4 and 4 is exact in
  binary floating point): TF's gradient of the broadcast, a sum over two strided axes of a 6-D
  tensor, took 1.4 ms per call in the 32-px G step on a CPU. Differentiable again (avg_pool's
  own gradient), deterministic on GPUs (unlike ResizeNearestNeighborGrad)."""
  _, height, width, channels = x.shape
  batch = tf.shape(x)[0]
  blocks = tf.broadcast_to(x[:, :, None, :, None, :], [batch, height, 2, width, 2, channels])

  def grad(upstream):
    return 4.0 * tf.nn.avg_pool2d(upstream, 2, 2, "VALID")
  return tf.reshape(blocks, [batch, 2 * height, 2 * width, channels]), grad


class GeneratorBlock(keras.layers.Layer):
  """Pre-activation residual up-block: BN, ReLU, 2x nearest up, conv3x3, BN, ReLU, conv3x3."""

  def __init__(self, filters, name=None):
    super().__init__(name=name)
    self.bn1 = normalization.BatchNormalization(name="bn1")
    self.conv1 = _conv(filters, 3, "he_uniform", "conv1")
    self.bn2 = normalization.BatchNormalization(name="bn2")
    self.conv2 = _conv(filters, 3, "he_uniform", "conv2")
    self.shortcut = _conv(filters, 1, "glorot_uniform", "shortcut")

  def build(self, input_shape):
    """Builds the layers in the order `call` first calls them (the order decides the random
    draws of initialisers made at build time, e.g. spectral norm's u)."""
    n, height, width, channels = input_shape
    up = (n, 2 * height, 2 * width, channels)
    out = up[:3] + (self.conv1.filters,)
    self.bn1.build(input_shape)
    self.conv1.build(up)
    self.bn2.build(out)
    self.conv2.build(out)
    self.shortcut.build(up)

  def call(self, x, training=False):
    h = tf.nn.relu(self.bn1(x, training=training))
    h = self.conv1(_upsample(h))
    h = tf.nn.relu(self.bn2(h, training=training))
    h = self.conv2(h)
    return self.shortcut(_upsample(x)) + h


class DiscriminatorBlock(keras.layers.Layer):
  """Residual block without normalisation; optionally the 'optimized' first block or 2x down.

  `optimized=True` (first block): conv3x3, ReLU, conv3x3, mean pool; shortcut mean pool then
  conv1x1. Otherwise: ReLU, conv3x3, ReLU, conv3x3 [, mean pool]; shortcut conv1x1 then mean pool
  when downsampling, identity otherwise.
  """

  def __init__(self, filters, downsample, optimized=False, name=None, spectral_norm=False):
    super().__init__(name=name)
    self.downsample = downsample
    self.optimized = optimized
    self.conv1 = _conv(filters, 3, "he_uniform", "conv1", spectral_norm)
    self.conv2 = _conv(filters, 3, "he_uniform", "conv2", spectral_norm)
    self.shortcut = (_conv(filters, 1, "glorot_uniform", "shortcut", spectral_norm)
                     if downsample or optimized else None)

  def build(self, input_shape):
    """Builds the layers in the order `call` first calls them (see `GeneratorBlock.build`)."""
    self.conv1.build(input_shape)
    self.conv2.build(tuple(input_shape[:3]) + (self.conv1.filters,))
    if self.shortcut is not None:
      self.shortcut.build(input_shape)  # Pooling first (optimized) keeps the channels.

  def output_shape_for(self, input_shape):
    """The block's output shape for an input of `input_shape` (batch, height, width, channels)."""
    n, height, width, _ = input_shape
    if self.downsample:
      height, width = height // 2, width // 2
    return (n, height, width, self.conv2.filters)

  def call(self, x):
    h = x if self.optimized else tf.nn.relu(x)
    h = self.conv2(tf.nn.relu(self.conv1(h)))
    if self.downsample:
      h = _mean_pool(h)
    if self.optimized:
      skip = self.shortcut(_mean_pool(x))
    elif self.downsample:
      skip = _mean_pool(self.shortcut(x))
    else:
      skip = x
    return skip + h


def _at_least_float32(x):
  """16-bit outputs (mixed precision) back to float32; float32 and float64 unchanged."""
  return tf.cast(x, tf.float32) if x.dtype in (tf.float16, tf.bfloat16) else x


class Generator(keras.Model):
  """z (N, z_dim) float -> images (N, R, R, 3) float32 (float64 under a float64 policy) in
  [-1, 1] (tanh)."""

  def __init__(self, resolution=32, width=128, z_dim=128, name="generator"):
    super().__init__(name=name)
    self.layout = layout_for_resolution(resolution)
    self.resolution, self.width, self.z_dim = resolution, width, z_dim
    s0 = self.layout.start_size
    self.dense = keras.layers.Dense(s0 * s0 * width, kernel_initializer="glorot_uniform",
                                    name="dense")
    _set_blocks(self, [GeneratorBlock(width, name=f"block{i}")
                       for i in range(self.layout.up_blocks)])
    self.bn_out = normalization.BatchNormalization(name="bn_out")
    self.conv_out = _conv(3, 3, "glorot_uniform", "conv_out")

  def call(self, z, training=False):
    s0 = self.layout.start_size
    h = tf.reshape(self.dense(z), [-1, s0, s0, self.width])
    for block in self.blocks:
      h = block(h, training=training)
    h = tf.nn.relu(self.bn_out(h, training=training))
    return _at_least_float32(tf.tanh(self.conv_out(h)))

  def build(self, input_shape):
    """Creates every variable from the shapes alone, in the order `call` would (Keras' default
    traces `call` on symbolic inputs instead: about 5x as long for a width-8 generator)."""
    self.dense.build(input_shape)
    s0 = self.layout.start_size
    shape = (input_shape[0], s0, s0, self.width)
    for block in self.blocks:
      block.build(shape)
      shape = (shape[0], 2 * shape[1], 2 * shape[2], self.width)
    self.bn_out.build(shape)
    self.conv_out.build(shape)

  @property
  def blocks(self):
    return _get_blocks(self)

  def build_for_inference(self):
    """Creates all variables by one call on a dummy batch."""
    self(tf.zeros([1, self.z_dim]), training=False)


class Discriminator(keras.Model):
  """Images (N, R, R, 3) float in [-1, 1] -> critic scores (N,) float32 (float64 under a float64
  policy). No normalisation, or spectral normalisation of every layer (spectral_norm=True;
  `update_spectral_norm` runs one power iteration)."""

  def __init__(self, resolution=32, width=128, name="discriminator", spectral_norm=False):
    super().__init__(name=name)
    self.layout = layout_for_resolution(resolution)
    self.resolution, self.width = resolution, width
    self.spectral_norm = spectral_norm
    arch = self.layout
    sn = dict(spectral_norm=spectral_norm)
    blocks = [DiscriminatorBlock(width, downsample=True, optimized=True, name="block0", **sn)]
    for _ in range(arch.down_blocks - 1):
      blocks.append(DiscriminatorBlock(width, downsample=True, name=f"block{len(blocks)}", **sn))
    for _ in range(arch.plain_blocks):
      blocks.append(DiscriminatorBlock(width, downsample=False, name=f"block{len(blocks)}",
                                       **sn))
    _set_blocks(self, blocks)
    dense = spectral.SNDense if spectral_norm else keras.layers.Dense
    self.dense = dense(1, kernel_initializer="glorot_uniform", name="dense")

  def update_spectral_norm(self):
    """One power iteration in every spectrally normalised layer (no-op without them)."""
    for layer in spectral.spectral_layers(self):
      layer.power_iteration()

  def call(self, x, training=False):
    del training  # No layer behaves differently in training.
    h = x
    for block in self.blocks:
      h = block(h)
    h = tf.reduce_mean(tf.nn.relu(h), axis=[1, 2])
    return _at_least_float32(tf.squeeze(self.dense(h), axis=-1))

  def build(self, input_shape):
    """Creates every variable from the shapes alone, in the order `call` would (see
    `Generator.build`)."""
    shape = tuple(input_shape)
    for block in self.blocks:
      block.build(shape)
      shape = block.output_shape_for(shape)
    self.dense.build((shape[0], shape[3]))

  @property
  def blocks(self):
    return _get_blocks(self)

  def build_for_inference(self):
    """Creates all variables by one call on a dummy batch."""
    r = self.resolution
    self(tf.zeros([1, r, r, 3]))
