"""Tests of the ResNet generator and discriminator against the QAGAN supplement's Tables 1-2."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from qagan_tf import models
from qagan_tf.models import resnet

# resolution -> (G start size, G up-blocks, D downsampling pattern, D final feature-map size)
EXPECTED = {
    32: (4, 3, [True, True, False, False], 8),
    48: (6, 3, [True, True, True, False], 6),
    64: (4, 4, [True, True, True, False, False], 8),
    96: (6, 4, [True, True, True, True, False], 6),
}


@pytest.mark.parametrize("resolution", sorted(EXPECTED))
def test_shapes_and_layout(resolution):
  start, ups, downs, final = EXPECTED[resolution]
  g = models.Generator(resolution, width=8, z_dim=16)
  d = models.Discriminator(resolution, width=8)
  images = g(tf.random.normal([2, 16]), training=True)
  assert images.shape == (2, resolution, resolution, 3)
  assert float(tf.reduce_max(tf.abs(images))) <= 1.0
  assert d(images).shape == (2,)
  assert g.layout.start_size == start and len(g.blocks) == ups
  assert [b.downsample for b in d.blocks] == downs
  assert d.blocks[0].optimized and not any(b.optimized for b in d.blocks[1:])
  h = images
  for block in d.blocks:
    h = block(h)
  assert h.shape == (2, final, final, 8)


def test_unsupported_resolution_lists_valid_ones():
  with pytest.raises(ValueError, match="32, 48, 64, 96"):
    models.Generator(128)


def _count(layer_type, model):
  return sum(isinstance(l, layer_type) for l in model._flatten_layers())


def test_batch_norm_in_generator_only_and_synchronized():
  g = models.Generator(32, width=8, z_dim=4)
  d = models.Discriminator(32, width=8)
  g.build_for_inference()
  d.build_for_inference()
  bns = [l for l in g._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
  assert len(bns) == 2 * 3 + 1
  assert all(bn.synchronized for bn in bns)
  assert _count(keras.layers.BatchNormalization, d) == 0


def _conv_params(k, cin, cout):
  return k * k * cin * cout + cout


def test_parameter_counts_match_the_paper_layout():
  w, z = 16, 32
  g = models.Generator(32, width=w, z_dim=z)
  d = models.Discriminator(32, width=w)
  g.build_for_inference()
  d.build_for_inference()
  g_block = 2 * (2 * w) + 2 * _conv_params(3, w, w) + _conv_params(1, w, w)  # 2 BN (gamma, beta)
  g_expected = (z * 16 * w + 16 * w) + 3 * g_block + 2 * w + _conv_params(3, w, 3)
  d_first = _conv_params(3, 3, w) + _conv_params(3, w, w) + _conv_params(1, 3, w)
  d_down = 2 * _conv_params(3, w, w) + _conv_params(1, w, w)
  d_plain = 2 * _conv_params(3, w, w)
  d_expected = d_first + d_down + 2 * d_plain + (w + 1)
  count = lambda m: sum(int(np.prod(v.shape)) for v in m.trainable_variables)
  assert count(g) == g_expected
  assert count(d) == d_expected


def test_initializers_follow_the_authors():
  tf.random.set_seed(0)
  d = models.Discriminator(32, width=64)
  d.build_for_inference()
  g = models.Generator(32, width=64, z_dim=8)
  g.build_for_inference()
  for block in d.blocks[1:]:
    kernel = block.conv2.kernel.numpy()  # 3x3, fan_in 576: He uniform, limit sqrt(6 / fan_in)
    limit = np.sqrt(6.0 / (9 * 64))
    assert np.abs(kernel).max() <= limit
    assert np.var(kernel) == pytest.approx(limit**2 / 3, rel=0.05)
    if block.shortcut is not None:  # 1x1: Glorot uniform, limit sqrt(6 / (fan_in + fan_out))
      kernel = block.shortcut.kernel.numpy()
      limit = np.sqrt(6.0 / (64 + 64))
      assert np.abs(kernel).max() <= limit
      assert np.var(kernel) == pytest.approx(limit**2 / 3, rel=0.15)
  kernel = g.conv_out.kernel.numpy()  # last conv: Glorot uniform, fans 9*64 and 9*3
  limit = np.sqrt(6.0 / (9 * 64 + 9 * 3))
  assert np.abs(kernel).max() <= limit
  assert np.var(kernel) == pytest.approx(limit**2 / 3, rel=0.15)


def test_optimized_block_has_no_activation_before_first_conv():
  block = resnet.DiscriminatorBlock(4, downsample=True, optimized=True)
  x = -tf.ones([1, 4, 4, 3])  # ReLU(x) would be 0 everywhere.
  block(x)
  for conv in (block.conv1, block.conv2, block.shortcut):
    conv.bias.assign(tf.zeros_like(conv.bias))
  manual = tf.nn.avg_pool2d(block.conv2(tf.nn.relu(block.conv1(x))), 2, 2, "VALID")
  manual += block.shortcut(tf.nn.avg_pool2d(x, 2, 2, "VALID"))
  np.testing.assert_allclose(block(x), manual, atol=1e-6)
  assert float(tf.reduce_max(tf.abs(block.conv1(x)))) > 0


def test_generator_block_upsamples_nearest_neighbour():
  block = resnet.GeneratorBlock(2)
  x = tf.random.normal([1, 3, 3, 2])
  y = block(x, training=False)
  assert y.shape == (1, 6, 6, 2)
  up = resnet._upsample(x).numpy()
  np.testing.assert_array_equal(up, np.repeat(np.repeat(x.numpy(), 2, axis=1), 2, axis=2))


def test_upsampling_gradient_is_the_sum_over_each_block_to_second_order():
  """The custom gradient (4 x average pool) equals tf.repeat's autodiff gradient, and its own
  gradient (a second-order term through G) equals tf.repeat's too."""
  def repeat(t):
    return tf.repeat(tf.repeat(t, 2, axis=1), 2, axis=2)
  rng = np.random.default_rng(5)
  x = tf.constant(rng.normal(size=(2, 3, 4, 5)).astype(np.float32))
  w = tf.constant(rng.normal(size=(2, 6, 8, 5)).astype(np.float32))
  results = []
  for up in (resnet._upsample, repeat):
    with tf.GradientTape() as outer:
      outer.watch(x)
      with tf.GradientTape() as inner:
        inner.watch(x)
        y = tf.reduce_sum(w * up(x) ** 2)
      g = inner.gradient(y, x)
      gg = tf.reduce_sum(g * g)
    results.append((g.numpy(), outer.gradient(gg, x).numpy()))
  np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5, atol=1e-5)


def test_spectral_norm_matches_the_largest_singular_value_and_normalises_each_layer():
  Discriminator = models.Discriminator
  from qagan_tf.models import spectral
  keras.utils.set_random_seed(3)
  d = Discriminator(32, width=8, spectral_norm=True)
  d.build_for_inference()
  layers = spectral.spectral_layers(d)
  assert len(layers) == 11  # 4 blocks x 2 convs, 2 shortcuts, the dense layer.
  for _ in range(200):
    d.update_spectral_norm()
  for layer in layers:
    w = layer.kernel.numpy().reshape(-1, layer.kernel.shape[-1])
    top = np.linalg.svd(w, compute_uv=False)[0]
    assert float(layer.sigma()) == pytest.approx(top, rel=1e-4), layer.path
    # The normalised kernel has spectral norm 1.
    normalised = w / float(layer.sigma())
    assert np.linalg.svd(normalised, compute_uv=False)[0] == pytest.approx(1.0, rel=1e-4)
  # The vectors are D's state: non-trainable, checkpointed with it.
  u = [v.path for v in d.non_trainable_variables]
  assert len(u) == 11 and all(p.endswith("sn_u") for p in u)
  assert not any(v.path.endswith("sn_u") for v in d.trainable_variables)
  plain = Discriminator(32, width=8)
  plain.build_for_inference()
  assert not plain.non_trainable_variables and len(plain.trainable_variables) == len(
      d.trainable_variables)


@pytest.mark.parametrize("architecture,resolution", [
    ("resnet", 32), ("resnet", 48), ("resnet", 64), ("resnet", 96), ("sndcgan", 32),
    ("sndcgan", 48)])
def test_building_from_shapes_makes_the_variables_that_calling_would(architecture, resolution):
  """The models' build() creates their variables from the input shape alone (fast: no trace of
  call); it must make exactly what running call() layer by layer makes: the same variables
  (paths, shapes, dtypes) in the same order with the same initial values (spectral norm's u
  draws its initial value when built, so the order of builds decides it), and a model so built
  then computes what a called one computes."""
  def pair(build):
    keras.utils.set_random_seed(7)
    g = models.build_generator(architecture, resolution, 8, 8)
    d = models.build_discriminator(architecture, resolution, 8, spectral_norm=True)
    z, x = tf.zeros([2, 8]), tf.zeros([2, resolution, resolution, 3])
    if build:
      g.build_for_inference(), d.build_for_inference()
    else:  # Each Keras layer built by its first call, in call's order (Keras' own way).
      for block in getattr(g, "blocks", []) + getattr(d, "blocks", []):
        block.built = True  # Our blocks' build() skipped: their layers build as called.
      g.call(z), d.call(x)
    return g, d

  built, called = pair(True), pair(False)
  z = tf.random.stateless_normal([2, 8], [1, 2])
  for a, b in zip(built, called):
    assert a.built
    # Called outside the model's own scope, b's paths lack its name as their first part.
    assert [(v.path.split("/", 1)[1], v.dtype, tuple(v.shape)) for v in a.variables] == [
        (v.path, v.dtype, tuple(v.shape)) for v in b.variables]
    for va, vb in zip(a.variables, b.variables):
      np.testing.assert_array_equal(va.numpy(), vb.numpy(), err_msg=va.path)
  np.testing.assert_array_equal(built[1](built[0](z)).numpy(), called[1].call(called[0].call(z)))
