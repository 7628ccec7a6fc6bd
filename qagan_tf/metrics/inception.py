"""The 2015-12-05 Inception graph that FID (TTUR, TF-GAN) and the Inception Score run, in Keras.

The network is written out here from the graph's structure (documented, for reference, in
../shared/reference/inception/architecture.json): every conv is conv -> inference batch norm
(beta only, epsilon 1e-3) -> ReLU, folded at load time into one conv with a bias. The official
preprocessing is the model's own input path: pixels in [0, 255] of any size -> TF1 bilinear resize
to 299 x 299 (align_corners=False, half_pixel_centers=False) -> (x - 128) / 128.
"""

import keras
import numpy as np
import tensorflow as tf

INPUT_SIZE = 299
POOL3_DIM = 2048
NUM_LOGITS = 1008
BN_EPSILON = 1e-3


class _ConvBNReLU(keras.layers.Layer):
  """conv (no bias) -> batch norm folded into a bias -> ReLU; weights set by `set_folded`."""

  def __init__(self, scope, filters, kernel, strides=1, padding="SAME", **kwargs):
    super().__init__(name=scope.replace("/", "__"), **kwargs)
    self.scope, self.filters, self.kernel_hw = scope, filters, tuple(kernel)
    self.strides, self.padding = strides, padding

  def build(self, input_shape):
    self.kernel = self.add_weight(shape=self.kernel_hw + (input_shape[-1], self.filters),
                                  initializer="zeros", trainable=False, name="kernel")
    self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", trainable=False,
                                name="bias")

  def call(self, x):
    y = tf.nn.conv2d(x, self.kernel, self.strides, self.padding)
    return tf.nn.relu(tf.nn.bias_add(y, self.bias))


def _conv(layers, scope, filters, kernel, strides=1, padding="SAME"):
  layer = _ConvBNReLU(scope, filters, kernel, strides, padding)
  layers[scope] = layer
  return layer


def _max_pool(x, strides=2, padding="VALID"):
  return tf.nn.max_pool2d(x, 3, strides, padding)


def _avg_pool(x):
  # SAME average pooling divides by the number of valid inputs (count_include_pad=False).
  return tf.nn.avg_pool2d(x, 3, 1, "SAME")


class InceptionV3FID(keras.Model):
  """pool_3 features (and optionally logits) of the 2015-12-05 Inception.

  Call with float32 (N, H, W, 3) pixels in [0, 255] (any H, W; resized to 299 unless already
  299) and get {"pool3": (N, 2048)[, "logits": (N, 1008)]}. Build the weights with
  `qagan_tf.metrics.inception_weights.load_inception`, not by training.
  """

  def __init__(self, with_logits=False, **kwargs):
    super().__init__(**kwargs)
    self.with_logits = with_logits
    self.convs = {}
    c = lambda *a, **k: _conv(self.convs, *a, **k)  # noqa: E731
    self._stem = [c("conv", 32, (3, 3), 2, "VALID"), c("conv_1", 32, (3, 3), 1, "VALID"),
                  c("conv_2", 64, (3, 3)), None, c("conv_3", 80, (1, 1), 1, "VALID"),
                  c("conv_4", 192, (3, 3), 1, "VALID"), None]
    for scope, pool_ch in (("mixed", 32), ("mixed_1", 64), ("mixed_2", 64)):
      c(f"{scope}/conv", 64, (1, 1))
      c(f"{scope}/tower/conv", 48, (1, 1))
      c(f"{scope}/tower/conv_1", 64, (5, 5))
      c(f"{scope}/tower_1/conv", 64, (1, 1))
      c(f"{scope}/tower_1/conv_1", 96, (3, 3))
      c(f"{scope}/tower_1/conv_2", 96, (3, 3))
      c(f"{scope}/tower_2/conv", pool_ch, (1, 1))
    c("mixed_3/conv", 384, (3, 3), 2, "VALID")
    c("mixed_3/tower/conv", 64, (1, 1))
    c("mixed_3/tower/conv_1", 96, (3, 3))
    c("mixed_3/tower/conv_2", 96, (3, 3), 2, "VALID")
    for scope, width in (("mixed_4", 128), ("mixed_5", 160), ("mixed_6", 160), ("mixed_7", 192)):
      c(f"{scope}/conv", 192, (1, 1))
      c(f"{scope}/tower/conv", width, (1, 1))
      c(f"{scope}/tower/conv_1", width, (1, 7))
      c(f"{scope}/tower/conv_2", 192, (7, 1))
      c(f"{scope}/tower_1/conv", width, (1, 1))
      c(f"{scope}/tower_1/conv_1", width, (7, 1))
      c(f"{scope}/tower_1/conv_2", width, (1, 7))
      c(f"{scope}/tower_1/conv_3", width, (7, 1))
      c(f"{scope}/tower_1/conv_4", 192, (1, 7))
      c(f"{scope}/tower_2/conv", 192, (1, 1))
    c("mixed_8/tower/conv", 192, (1, 1))
    c("mixed_8/tower/conv_1", 320, (3, 3), 2, "VALID")
    c("mixed_8/tower_1/conv", 192, (1, 1))
    c("mixed_8/tower_1/conv_1", 192, (1, 7))
    c("mixed_8/tower_1/conv_2", 192, (7, 1))
    c("mixed_8/tower_1/conv_3", 192, (3, 3), 2, "VALID")
    for scope in ("mixed_9", "mixed_10"):
      c(f"{scope}/conv", 320, (1, 1))
      c(f"{scope}/tower/conv", 384, (1, 1))
      c(f"{scope}/tower/mixed/conv", 384, (1, 3))
      c(f"{scope}/tower/mixed/conv_1", 384, (3, 1))
      c(f"{scope}/tower_1/conv", 448, (1, 1))
      c(f"{scope}/tower_1/conv_1", 384, (3, 3))
      c(f"{scope}/tower_1/mixed/conv", 384, (1, 3))
      c(f"{scope}/tower_1/mixed/conv_1", 384, (3, 1))
      c(f"{scope}/tower_2/conv", 192, (1, 1))
    # Keras tracks layers assigned as attributes; a dict of layers is tracked as well.
    self._conv_layers = list(self.convs.values())
    if with_logits:
      self.softmax_weights = self.add_weight(shape=(POOL3_DIM, NUM_LOGITS), initializer="zeros",
                                             trainable=False, name="softmax_weights")
      self.softmax_biases = self.add_weight(shape=(NUM_LOGITS,), initializer="zeros",
                                            trainable=False, name="softmax_biases")

  @staticmethod
  def preprocess(images):
    """float (N, H, W, 3) in [0, 255] -> (N, 299, 299, 3) in [-1, 1), the official way."""
    images = tf.cast(images, tf.float32)
    if images.shape[1] != INPUT_SIZE or images.shape[2] != INPUT_SIZE:
      images = tf.raw_ops.ResizeBilinear(images=images, size=[INPUT_SIZE, INPUT_SIZE],
                                         align_corners=False, half_pixel_centers=False)
    return (images - 128.0) / 128.0

  def call(self, images):
    pool3 = self.call_preprocessed(self.preprocess(images))
    out = {"pool3": pool3}
    if self.with_logits:
      out["logits"] = tf.matmul(pool3, self.softmax_weights) + self.softmax_biases
    return out

  def call_preprocessed(self, x):
    """pool_3 (N, 2048) of already preprocessed (N, 299, 299, 3) input in [-1, 1)."""
    v = self.convs
    for layer in self._stem:
      x = _max_pool(x) if layer is None else layer(x)
    for s in ("mixed", "mixed_1", "mixed_2"):
      x = tf.concat([v[f"{s}/conv"](x),
                     v[f"{s}/tower/conv_1"](v[f"{s}/tower/conv"](x)),
                     v[f"{s}/tower_1/conv_2"](v[f"{s}/tower_1/conv_1"](v[f"{s}/tower_1/conv"](x))),
                     v[f"{s}/tower_2/conv"](_avg_pool(x))], axis=-1)
    s = "mixed_3"
    x = tf.concat([v[f"{s}/conv"](x),
                   v[f"{s}/tower/conv_2"](v[f"{s}/tower/conv_1"](v[f"{s}/tower/conv"](x))),
                   _max_pool(x)], axis=-1)
    for s in ("mixed_4", "mixed_5", "mixed_6", "mixed_7"):
      t = x
      for name in ("conv", "conv_1", "conv_2"):
        t = v[f"{s}/tower/{name}"](t)
      t1 = x
      for name in ("conv", "conv_1", "conv_2", "conv_3", "conv_4"):
        t1 = v[f"{s}/tower_1/{name}"](t1)
      x = tf.concat([v[f"{s}/conv"](x), t, t1, v[f"{s}/tower_2/conv"](_avg_pool(x))], axis=-1)
    s = "mixed_8"
    t = v[f"{s}/tower/conv_1"](v[f"{s}/tower/conv"](x))
    t1 = x
    for name in ("conv", "conv_1", "conv_2", "conv_3"):
      t1 = v[f"{s}/tower_1/{name}"](t1)
    x = tf.concat([t, t1, _max_pool(x)], axis=-1)
    for s in ("mixed_9", "mixed_10"):
      a = v[f"{s}/tower/conv"](x)
      b = v[f"{s}/tower_1/conv_1"](v[f"{s}/tower_1/conv"](x))
      # The graph's quirk: mixed_10's pool tower max-pools, mixed_9's average-pools.
      pooled = _max_pool(x, 1, "SAME") if s == "mixed_10" else _avg_pool(x)
      x = tf.concat([v[f"{s}/conv"](x),
                     v[f"{s}/tower/mixed/conv"](a), v[f"{s}/tower/mixed/conv_1"](a),
                     v[f"{s}/tower_1/mixed/conv"](b), v[f"{s}/tower_1/mixed/conv_1"](b),
                     v[f"{s}/tower_2/conv"](pooled)], axis=-1)
    return tf.reduce_mean(x, axis=[1, 2])  # The 8x8 average pool, flattened.

  def set_weights_from_arrays(self, arrays):
    """Assigns the graph's arrays (scope-named, see inception_weights.POOL3_KEYS), folding BN."""
    if not self.built:
      self(tf.zeros([1, INPUT_SIZE, INPUT_SIZE, 3]))
    for scope, layer in self.convs.items():
      kernel = np.asarray(arrays[f"{scope}/conv2d_params"], np.float64)
      beta = np.asarray(arrays[f"{scope}/batchnorm/beta"], np.float64)
      mean = np.asarray(arrays[f"{scope}/batchnorm/moving_mean"], np.float64)
      var = np.asarray(arrays[f"{scope}/batchnorm/moving_variance"], np.float64)
      scale = 1.0 / np.sqrt(var + BN_EPSILON)
      if kernel.shape != tuple(layer.kernel.shape):
        raise ValueError(f"Inception weights: {scope}/conv2d_params has shape {kernel.shape}, "
                         f"the network needs {tuple(layer.kernel.shape)}.")
      layer.kernel.assign((kernel * scale).astype(np.float32))
      layer.bias.assign((beta - mean * scale).astype(np.float32))
    if self.with_logits:
      self.softmax_weights.assign(np.asarray(arrays["softmax/weights"], np.float32))
      self.softmax_biases.assign(np.asarray(arrays["softmax/biases"], np.float32))
