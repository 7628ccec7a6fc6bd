"""The generators' batch norm: TF's fused kernel on one replica, Keras' synchronised layer
elsewhere; both give the same outputs, gradients and moving statistics."""

import keras
import numpy as np
import tensorflow as tf

from qagan_tf.models import normalization
from qagan_tf.train import distribution


def _pair(channels=5, seed=0):
  """(ours, Keras' synchronised BN) built with the same non-trivial weights and statistics."""
  rng = np.random.default_rng(seed)
  ours = normalization.BatchNormalization(momentum=0.9)
  theirs = keras.layers.BatchNormalization(synchronized=True, momentum=0.9)
  for layer in (ours, theirs):
    layer.build((None, 6, 6, channels))
  weights = [rng.uniform(0.5, 2.0, channels), rng.normal(size=channels),
             rng.normal(size=channels), rng.uniform(0.5, 2.0, channels)]
  for layer in (ours, theirs):
    layer.set_weights([w.astype(np.float32) for w in weights])
  return ours, theirs


def _step(layer, x, upstream):
  """(outputs, d/dx, d/dgamma, d/dbeta) of sum(upstream * BN(x)) in training mode, traced."""
  @tf.function
  def run():
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = layer(x, training=True)
      loss = tf.reduce_sum(upstream * y)
    return [y] + tape.gradient(loss, [x, layer.gamma, layer.beta])
  return run, [t.numpy() for t in run()]


def _op_types(tf_function):
  return {op.type for op in tf_function.get_concrete_function().graph.get_operations()}


def test_fused_training_step_matches_keras_synchronised_batch_norm():
  rng = np.random.default_rng(1)
  # A DC offset of 3 and scale 2: the fused two-pass variance and Keras' E[x^2] - E[x]^2 agree.
  x = tf.constant(3.0 + 2.0 * rng.normal(size=(8, 6, 6, 5)).astype(np.float32))
  upstream = tf.constant(rng.normal(size=(8, 6, 6, 5)).astype(np.float32))
  ours, theirs = _pair()
  fused, got = _step(ours, x, upstream)
  plain, expected = _step(theirs, x, upstream)
  assert "FusedBatchNormV3" in _op_types(fused)  # The fast path really ran ...
  assert "FusedBatchNormV3" not in _op_types(plain)  # ... and Keras' did not.
  for name, a, b in zip(("outputs", "d/dx", "d/dgamma", "d/dbeta"), got, expected):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5, err_msg=name)
  # The moving statistics moved, alike (the biased variance, as Keras averages it).
  for a, b in ((ours.moving_mean, theirs.moving_mean),
               (ours.moving_variance, theirs.moving_variance)):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5)
  batch_variance = x.numpy().var(axis=(0, 1, 2))
  initial = np.random.default_rng(0)  # _pair's draws: gamma, beta, mean, variance.
  initial.uniform(0.5, 2.0, 5), initial.normal(size=5), initial.normal(size=5)
  moving_variance0 = initial.uniform(0.5, 2.0, 5).astype(np.float32)
  # One training call: one moving-average update with momentum 0.9.
  expected_variance = moving_variance0 * 0.9 + batch_variance * 0.1
  np.testing.assert_allclose(ours.moving_variance.numpy(), expected_variance, rtol=1e-5)


def test_inference_uses_the_moving_statistics_as_keras_does():
  x = tf.random.normal([4, 6, 6, 5], seed=2)
  ours, theirs = _pair()
  np.testing.assert_allclose(ours(x, training=False), theirs(x, training=False), rtol=1e-6,
                             atol=1e-6)


def test_two_replicas_synchronise_their_statistics_over_the_global_batch():
  """Under MirroredStrategy each replica normalises with the global batch's statistics (Keras'
  all-reduce path): each half's outputs equal one device's outputs on the whole batch."""
  rng = np.random.default_rng(3)
  x = rng.normal(size=(8, 6, 6, 5)).astype(np.float32) * 2.0 + 1.0
  ours, _ = _pair()
  whole = ours(tf.constant(x), training=True).numpy()  # Fused (one replica).
  # Collective keys of its own (a plain MirroredStrategy reuses an earlier one's in-process).
  strategy = distribution.mirrored_strategy(["/cpu:0", "/cpu:1"])
  with strategy.scope():
    mirrored, _ = _pair()
  halves = strategy.experimental_distribute_values_from_function(
      lambda ctx: tf.constant(x[4 * ctx.replica_id_in_sync_group:][:4]))
  out = strategy.run(tf.function(lambda h: mirrored(h, training=True)), args=(halves,))
  got = np.concatenate([t.numpy() for t in strategy.experimental_local_results(out)])
  np.testing.assert_allclose(got, whole, rtol=2e-5, atol=2e-5)


def test_mixed_precision_normalises_in_float32_as_keras_does():
  """Under a mixed bfloat16 policy both layers normalise in float32 and return bfloat16: the
  fused path gives Keras' outputs and moving statistics."""
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy("mixed_bfloat16")
  try:
    ours, theirs = _pair()
  finally:
    keras.config.set_dtype_policy(previous)
  x = tf.cast(3.0 + 2.0 * tf.random.normal([4, 6, 6, 5], seed=4), tf.bfloat16)
  fused = tf.function(lambda: ours(x, training=True))
  plain = tf.function(lambda: theirs(x, training=True))
  got, expected = fused(), plain()
  assert got.dtype == expected.dtype == tf.bfloat16
  assert "FusedBatchNormV3" in _op_types(fused)
  # Equal up to the final rounding to bfloat16 (8 bits of mantissa: 1 part in 256).
  np.testing.assert_allclose(tf.cast(got, tf.float32), tf.cast(expected, tf.float32),
                             rtol=1e-2, atol=1e-2)
  for a, b in ((ours.moving_mean, theirs.moving_mean),
               (ours.moving_variance, theirs.moving_variance)):
    assert a.dtype == "float32"
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5)


def test_mixed_precision_feeds_the_kernel_bfloat16_and_its_gradients_match_keras():
  """The fused kernel takes the bfloat16 activation itself (no cast to float32 and back around
  it, which cost the bf16 generator step a tenth of its time) and gives Keras' float32-path
  gradients to the input, gamma and beta, up to bfloat16 rounding."""
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy("mixed_bfloat16")
  try:
    ours, theirs = _pair(seed=2)
  finally:
    keras.config.set_dtype_policy(previous)
  x = tf.cast(1.0 - 3.0 * tf.random.normal([4, 6, 6, 5], seed=7), tf.bfloat16)
  upstream = tf.cast(tf.random.normal([4, 6, 6, 5], seed=8), tf.bfloat16)
  run, got = _step(ours, x, upstream)
  _, expected = _step(theirs, x, upstream)
  kernels = [op for op in run.get_concrete_function().graph.get_operations()
             if op.type == "FusedBatchNormV3"]
  assert len(kernels) == 1 and kernels[0].get_attr("T") == tf.bfloat16
  assert got[1].dtype == np.dtype(tf.bfloat16.as_numpy_dtype)  # d/dx in the input's dtype.
  for name, a, b in zip(("y", "dx", "dgamma", "dbeta"), got, expected):
    np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32),
                               rtol=2e-2, atol=2e-2, err_msg=name)
