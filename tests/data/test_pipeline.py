"""Tests of the stateless input pipeline: order, augmentation, resume and replica slicing."""

import numpy as np
import pytest
import tensorflow as tf

from qagan_tf import data

N = 40


def _index_images(n=N, size=4):
  """Image i is constant with value i in every pixel, except pixel (0, 0) which is 255."""
  images = np.repeat(np.arange(n, dtype=np.uint8), size * size * 3).reshape(n, size, size, 3)
  images[:, 0, 0, :] = 255
  return images


def _take(ds, count):
  it = iter(ds)
  return [{k: v.numpy() for k, v in next(it).items()} for _ in range(count)]


def _pixel_values(real):
  """float in [-1, 1) -> the uint8 value it was made from (undoes noise: floor((x + 1) * 128))."""
  return np.floor((real + 1.0) * 128.0).astype(np.int64)


def test_shapes_ranges_and_dequantisation():
  spec = data.InputSpec(batch_size=8, disc_iters=3, z_dim=5, g_batch_multiplier=2, seed=1)
  (el,) = _take(data.make_dataset(_index_images(), spec), 1)
  assert el["real"].shape == (3, 8, 4, 4, 3)
  assert el["z"].shape == (3, 8, 5) and el["eps"].shape == (3, 8)
  assert el["z_gen"].shape == (16, 5)
  assert el["real"].min() >= -1.0 and el["real"].max() < 1.0
  assert 0.0 <= el["eps"].min() and el["eps"].max() < 1.0
  noise = (el["real"] + 1.0) * 128.0 - _pixel_values(el["real"])
  assert 0.0 <= noise.min() and noise.max() < 1.0 and noise.std() > 0.2  # U[0, 1) in pixel units


def test_each_epoch_is_a_permutation_and_epochs_differ():
  spec = data.InputSpec(batch_size=8, disc_iters=1, z_dim=2, seed=3)
  elements = _take(data.make_dataset(_index_images(), spec), 2 * N // 8)
  # The pixel away from the marker corner carries the image index whichever way it is flipped.
  ids = np.concatenate([_pixel_values(e["real"][0, :, 1, 1, 0]) for e in elements])
  first, second = ids[:N], ids[N:]
  assert sorted(first) == list(range(N)) and sorted(second) == list(range(N))
  assert not np.array_equal(first, second)
  assert not np.array_equal(first, np.arange(N))


def test_horizontal_flips_about_half():
  spec = data.InputSpec(batch_size=64, disc_iters=4, z_dim=2, seed=0)
  (el,) = _take(data.make_dataset(_index_images(), spec), 1)
  marker_left = _pixel_values(el["real"][..., 0, 0, 0]) == 255
  marker_right = _pixel_values(el["real"][..., 0, -1, 0]) == 255
  assert np.all(marker_left ^ marker_right)
  assert 0.35 < marker_right.mean() < 0.65


def test_start_iteration_resumes_the_same_stream():
  spec = data.InputSpec(batch_size=4, disc_iters=2, z_dim=3, seed=7)
  images = _index_images()
  straight = _take(data.make_dataset(images, spec), 5)
  resumed = _take(data.make_dataset(images, spec, start_iteration=3), 2)
  for a, b in zip(straight[3:], resumed):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def test_seed_changes_everything():
  images = _index_images()
  a = _take(data.make_dataset(images, data.InputSpec(4, 1, 3, seed=0)), 1)[0]
  b = _take(data.make_dataset(images, data.InputSpec(4, 1, 3, seed=1)), 1)[0]
  for key in a:
    assert not np.array_equal(a[key], b[key]), key


def test_replica_slices_concatenate_to_the_global_batch():
  spec = data.InputSpec(batch_size=8, disc_iters=2, z_dim=3, seed=5)
  images = _index_images()
  whole = {k: v.numpy() for k, v in data.iteration_inputs(images, spec, 4, 0, 1).items()}
  parts = [{k: v.numpy() for k, v in data.iteration_inputs(images, spec, 4, r, 2).items()}
           for r in range(2)]
  for key, axis in (("real", 1), ("z", 1), ("eps", 1), ("z_gen", 0)):
    np.testing.assert_array_equal(whole[key], np.concatenate([p[key] for p in parts], axis))


def test_batch_not_divisible_by_replicas_is_an_error():
  class Context:
    num_replicas_in_sync, num_input_pipelines, input_pipeline_id = 3, 1, 0
  with pytest.raises(ValueError, match="divisible"):
    data.make_dataset(_index_images(), data.InputSpec(8, 1, 2), input_context=Context())


def test_distributed_dataset_over_two_replicas_matches_single_device():
  devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
  strategy = tf.distribute.MirroredStrategy(devices)
  spec = data.InputSpec(batch_size=8, disc_iters=1, z_dim=3, seed=2)
  images = _index_images()
  dist = strategy.distribute_datasets_from_function(
      lambda ctx: data.make_dataset(images, spec, 1, ctx))
  element = next(iter(dist))
  local = strategy.experimental_local_results(element["z"])
  expected = data.iteration_inputs(images, spec, 1, 0, 1)["z"].numpy()
  np.testing.assert_array_equal(np.concatenate([t.numpy() for t in local], axis=1), expected)
