"""FusedAdam: Keras' Adam update as TF's one-kernel ResourceApplyAdam, checked against Keras'."""

import keras
import numpy as np
import tensorflow as tf

from qagan_tf.train import distribution
from qagan_tf.train import optimizers
from qagan_tf.train import schedule


def _variables(seed=0):
  rng = np.random.default_rng(seed)
  return [tf.Variable(rng.normal(size=(3, 4)).astype(np.float32)),
          tf.Variable(rng.normal(size=(5,)).astype(np.float32))]


def _gradients(step, seed=1):
  rng = np.random.default_rng(seed + step)
  return [tf.constant(rng.normal(size=(3, 4)).astype(np.float32) * 10.0 ** (step % 3 - 1)),
          tf.constant(rng.normal(size=(5,)).astype(np.float32))]


def _train(optimizer, variables, steps=6):
  optimizer.build(variables)
  apply = tf.function(lambda grads: optimizer.apply_gradients(zip(grads, variables)))
  for step in range(steps):
    apply(_gradients(step))
  return apply


def _kwargs():
  # The trainer's setting: beta_1 = 0 (the paper); a decaying schedule.
  return dict(learning_rate=schedule.LinearDecay(1e-2, 10), beta_1=0.5, beta_2=0.9, epsilon=1e-8)


def test_fused_adam_matches_keras_adam_step_for_step():
  ours_vars, keras_vars = _variables(), _variables()
  ours = optimizers.FusedAdam(**_kwargs())
  theirs = keras.optimizers.Adam(**_kwargs())
  fused = _train(ours, ours_vars)
  plain = _train(theirs, keras_vars)
  for a, b in zip(ours_vars + ours.variables, keras_vars + theirs.variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7, err_msg=a.name)
  assert int(ours.iterations) == 6
  grads = _gradients(0)
  op_types = lambda fn: [op.type for op in  # noqa: E731
                         fn.get_concrete_function(grads).graph.get_operations()]
  assert op_types(fused).count("ResourceApplyAdam") == 2  # One kernel per variable ...
  assert "ResourceApplyAdam" not in op_types(plain)
  assert len(op_types(fused)) < 0.6 * len(op_types(plain))  # ... in far fewer ops.


def _applies_fused_kernel(apply, *args):
  return "ResourceApplyAdam" in [op.type for op in
                                 apply.get_concrete_function(*args).graph.get_operations()]


def test_amsgrad_and_float16_variables_take_keras_path():
  variables = [tf.Variable(tf.ones([3], tf.float16))]
  optimizer = optimizers.FusedAdam(1e-2)
  optimizer.build(variables)
  apply = tf.function(lambda g: optimizer.apply_gradients([(g, variables[0])]))
  grad = tf.ones([3], tf.float16)
  apply(grad)
  np.testing.assert_allclose(variables[0].numpy(), 1.0 - 1e-2, rtol=1e-3)
  assert not _applies_fused_kernel(apply, grad)
  amsgrad_vars, keras_vars = _variables(), _variables()
  amsgrad = _train(optimizers.FusedAdam(amsgrad=True, **_kwargs()), amsgrad_vars, steps=3)
  _train(keras.optimizers.Adam(amsgrad=True, **_kwargs()), keras_vars, steps=3)
  for a, b in zip(amsgrad_vars, keras_vars):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)
  assert not _applies_fused_kernel(amsgrad, _gradients(0))


def test_a_keras_adam_checkpoint_resumes_in_fused_adam():
  """Run directories written with keras.optimizers.Adam resume: same slots, same counter."""
  import tempfile
  keras_vars = _variables()
  theirs = keras.optimizers.Adam(**_kwargs())
  _train(theirs, keras_vars, steps=3)
  with tempfile.TemporaryDirectory() as tmp:
    path = tf.train.Checkpoint(optimizer=theirs, v0=keras_vars[0], v1=keras_vars[1]).save(
        f"{tmp}/ckpt")
    ours_vars = [tf.Variable(tf.zeros_like(v)) for v in keras_vars]
    ours = optimizers.FusedAdam(**_kwargs())
    ours.build(ours_vars)
    tf.train.Checkpoint(optimizer=ours, v0=ours_vars[0], v1=ours_vars[1]).restore(
        path).assert_existing_objects_matched()
  assert int(ours.iterations) == 3
  for a, b in zip(ours.variables, theirs.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  grads = _gradients(7)
  ours.apply_gradients(zip(grads, ours_vars))
  theirs.apply_gradients(zip(grads, keras_vars))
  for a, b in zip(ours_vars, keras_vars):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


def test_fused_adam_under_two_replicas_equals_one_device():
  # Collective keys of its own (a plain MirroredStrategy reuses an earlier one's in-process).
  strategy = distribution.mirrored_strategy(["/cpu:0", "/cpu:1"])
  with strategy.scope():
    mirrored_vars = _variables()
    ours = optimizers.FusedAdam(**_kwargs())
    ours.build(mirrored_vars)
  single_vars = _variables()
  single = optimizers.FusedAdam(**_kwargs())
  single.build(single_vars)
  for step in range(3):
    grads = _gradients(step)
    halves = [g / 2.0 for g in grads]  # Summed over the two replicas: the whole gradient.

    @tf.function
    def replica_step(halves=halves):
      ours.apply_gradients(zip(halves, mirrored_vars))
    strategy.run(replica_step)
    single.apply_gradients(zip(grads, single_vars))
  for a, b in zip(mirrored_vars, single_vars):
    for local in strategy.experimental_local_results(a):
      np.testing.assert_allclose(local.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)
