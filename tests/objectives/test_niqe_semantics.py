"""What the NIQE penalty means, measured on natural derivative maps (qagan_bench.natural_maps):
the same at every batch size, float32-safe under a DC offset, clean maps preferred to blurred
ones; and the contract of the public entry point qagan_tf.qa.niqe_penalty."""

import numpy as np
import pytest
import tensorflow as tf

from qagan_tf import config as config_lib
from qagan_tf import qa
from qagan_bench import natural_maps
from qagan_tf.iqa import naturalness
from qagan_tf.train import distribution
from qagan_tf.objectives import penalties, penalty_api


def _batches(maps, batch, seed):
  """The maps in random batches of `batch` (a permutation cut into pieces)."""
  order = np.random.default_rng(seed).permutation(len(maps))
  return [maps[order[i:i + batch]] for i in range(0, len(maps) - batch + 1, batch)]


@pytest.fixture(scope="module")
def derivative_maps():
  return natural_maps.derivative_maps(32, 256, seed=11)


def test_the_default_penalty_and_its_force_are_the_same_at_every_batch_size(derivative_maps):
  def over_batches(batch, **settings):
    values = [natural_maps.value_and_force(b, **settings)
              for b in _batches(derivative_maps, batch, 0)]
    return np.mean([v for v, _ in values]), np.mean([f for _, f in values])

  value16, force16 = over_batches(16)
  value64, force64 = over_batches(64)
  print(f"default: value {value16:.3f} / {value64:.3f}, force {force16:.4g} / {force64:.4g}")
  assert abs(value64 - value16) / value16 < 0.05
  assert abs(force64 - force16) / force16 < 0.10
  # The batch-wide MVG (the authors' code, the old default) falls with the batch size.
  batch16, _ = over_batches(16, pooling="batch")
  batch64, _ = over_batches(64, pooling="batch")
  print(f"batch pooling: value {batch16:.3f} / {batch64:.3f}")
  assert (batch16 - batch64) / batch16 > 0.05


def test_float32_equals_float64_under_a_dc_offset_of_100x_the_structure(derivative_maps):
  maps = derivative_maps[:32]
  offset = maps + 100.0 * maps.std(axis=(1, 2, 3), keepdims=True)
  for m in (maps, offset):
    v32 = qa.niqe_penalty(tf.constant(m, tf.float32)).numpy()
    v64 = qa.niqe_penalty(tf.constant(m, tf.float64)).numpy()
    np.testing.assert_allclose(v32, v64, rtol=1e-2)
  # The offset is not a no-op: it changes what the map is (its magnitude has no zeros).
  assert abs(float(np.mean(v64)) - float(np.mean(qa.niqe_penalty(maps).numpy()))) > 0.1


@pytest.mark.slow
@pytest.mark.parametrize("batch", [16, 32, 64, 128])
def test_validity_clean_derivative_maps_beat_their_blurred_versions(batch):
  """With the default prior (cifar_grad) and settings, the batch's mean penalty is lower for
  natural derivative maps than for the same maps blurred (sigma 1.5), in >= 90% of random
  batches, and in every batch at B >= 64."""
  maps = natural_maps.derivative_maps(32, 512, seed=3)
  blurred = natural_maps.blurred(maps)
  wins = []
  for seed in range(2):
    order = np.random.default_rng([batch, seed]).permutation(len(maps))
    for i in range(0, len(maps), batch):
      take = order[i:i + batch]
      clean = float(tf.reduce_mean(qa.niqe_penalty(maps[take])))
      blur = float(tf.reduce_mean(qa.niqe_penalty(blurred[take])))
      wins.append(clean < blur)
  print(f"B={batch}: clean better in {np.mean(wins):.0%} of {len(wins)} batches")
  assert np.mean(wins) >= (1.0 if batch >= 64 else 0.9)


def test_groups_of_at_least_the_group_size_as_equal_as_possible():
  for count, expected in ((8, [8]), (16, [16]), (40, [20, 20]), (33, [17, 16]),
                          (64, [16, 16, 16, 16]), (47, [24, 23])):
    ids, groups = naturalness.group_assignment(count, 16)
    assert np.bincount(ids.numpy()).tolist() == expected, count
    assert groups == len(expected)
    assert np.all(np.diff(ids.numpy()) >= 0)  # Consecutive images.
    dynamic_ids, dynamic_groups = naturalness.group_assignment(tf.constant(count), 16)
    np.testing.assert_array_equal(dynamic_ids.numpy(), ids.numpy())
    assert int(dynamic_groups) == groups


def test_each_image_gets_its_groups_distance(derivative_maps):
  maps = derivative_maps[:32]
  scores = qa.niqe_penalty(maps).numpy()
  assert np.all(scores[:16] == scores[0]) and np.all(scores[16:] == scores[16])
  # A group's score depends on its own maps only.
  np.testing.assert_allclose(qa.niqe_penalty(maps[16:]).numpy(), scores[16:], rtol=1e-6)
  # A batch smaller than a group is one group: the batch-wide distance.
  np.testing.assert_allclose(qa.niqe_penalty(maps[:8]).numpy(),
                             qa.niqe_penalty(maps[:8], pooling="batch").numpy(), rtol=1e-6)


def test_qa_niqe_penalty_works_eagerly_in_tf_function_in_a_replica_and_under_mixed_precision(
    derivative_maps):
  maps = tf.constant(derivative_maps[:16], tf.float32)
  eager = qa.niqe_penalty(maps)
  assert eager.shape == (16,) and eager.dtype == tf.float32
  np.testing.assert_allclose(tf.function(qa.niqe_penalty)(maps).numpy(), eager.numpy(),
                             rtol=1e-5)
  assert qa.niqe_penalty(tf.cast(maps, tf.float64)).dtype == tf.float64
  # 16-bit inputs are computed in float32.
  half = qa.niqe_penalty(tf.cast(maps, tf.float16))
  assert half.dtype == tf.float32
  np.testing.assert_allclose(half.numpy(), eager.numpy(), rtol=2e-2)
  import keras
  keras.config.set_dtype_policy("mixed_bfloat16")
  try:
    assert qa.niqe_penalty(tf.cast(maps, tf.bfloat16)).dtype == tf.float32
  finally:
    keras.config.set_dtype_policy("float32")
  # In the replica context of a MirroredStrategy (2 logical CPUs): groups stay in a replica.
  devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
  strategy = distribution.mirrored_strategy(devices)
  both = tf.concat([maps, maps[::-1]], axis=0)
  values = strategy.experimental_distribute_values_from_function(
      lambda ctx: both[ctx.replica_id_in_sync_group * 16:(ctx.replica_id_in_sync_group + 1) * 16])
  out = strategy.run(tf.function(qa.niqe_penalty), args=(values,))
  local = strategy.experimental_local_results(out)
  np.testing.assert_allclose(local[0].numpy(), eager.numpy(), rtol=1e-5)
  np.testing.assert_allclose(local[1].numpy(), qa.niqe_penalty(maps[::-1]).numpy(), rtol=1e-5)


def test_qa_niqe_penalty_refuses_bad_input_with_the_argument_and_the_fix(derivative_maps):
  maps = derivative_maps[:4]
  with pytest.raises(ValueError, match=r"input_gradients must be .*\(B, R, R, 3\).*got shape"):
    qa.niqe_penalty(maps[..., 0])
  with pytest.raises(ValueError, match="input_gradients must be a float tensor.*int32"):
    qa.niqe_penalty(tf.zeros((4, 32, 32, 3), tf.int32))
  with pytest.raises(ValueError, match="unknown NIQE penalty setting.*pool; valid: block_size"):
    qa.niqe_penalty(maps, pool="group")
  with pytest.raises(ValueError, match="pooling='mean': use one of group, batch"):
    qa.niqe_penalty(maps, pooling="mean")
  with pytest.raises(ValueError, match="group_size=1 must be an integer >= 2"):
    qa.niqe_penalty(maps, group_size=1)
  with pytest.raises(ValueError, match="side=16 .the prior was fitted at 32 px.*allow_prior"):
    qa.niqe_penalty(maps[:, :16, :16])
  # Unbounded values are D's gradients, not images: no range check.
  assert np.all(np.isfinite(qa.niqe_penalty(maps * 1e6).numpy()))


def test_the_trainers_penalty_is_qa_niqe_penalty(derivative_maps):
  config = config_lib.TrainConfig.create(resolution=32, dataset="embedded",
                                         penalty="niqe").validate()
  penalty = penalties.build_for_config(config)
  grads = tf.constant(derivative_maps[:16], tf.float32)
  zeros = tf.zeros((16, 32, 32, 3))
  value, _ = penalty.fn(penalty_api.PenaltyInputs(real=zeros, fake=zeros, x_hat=zeros,
                                                  d_real=tf.zeros(16), d_fake=tf.zeros(16),
                                                  grad_x_hat=grads))
  np.testing.assert_array_equal(value.numpy(), qa.niqe_penalty(grads).numpy())
