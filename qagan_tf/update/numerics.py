"""The numerics guard of every update: float16's dynamic loss scaling (`LossScale`) and an
optimizer step that is dropped whole when a loss or gradient is NaN/Inf on any replica
(`apply_if_finite`). Replica-context functions."""

import tensorflow as tf


class LossScale:
  """Dynamic loss scaling for float16 (as Keras' LossScaleOptimizer): gradients are computed of
  loss * scale and divided by it; an overflow halves the scale and drops that update, 2000
  finite updates in a row double it. Create under the strategy's scope.

  scale, good_steps: optional variables to keep the state in (e.g. Keras weights, which Keras'
  own saving covers): float32 and int64 scalars; by default tf.Variables (bin/train's
  checkpoint holds them).
  """

  GROWTH_STEPS = 2000

  def __init__(self, initial=2.0**15, name="loss_scale", scale=None, good_steps=None):
    self.scale = scale if scale is not None else tf.Variable(
        initial, dtype=tf.float32, trainable=False, name=name)
    self.good_steps = good_steps if good_steps is not None else tf.Variable(
        0, dtype=tf.int64, trainable=False, name=name + "_good_steps")

  def value(self):
    """The current scale as a float32 tensor."""
    return tf.convert_to_tensor(self.scale, tf.float32)

  def grow(self):
    grown = self.good_steps + 1 >= self.GROWTH_STEPS
    self.scale.assign(tf.where(grown, self.scale * 2.0, self.scale))
    self.good_steps.assign(tf.where(grown, tf.constant(0, tf.int64), self.good_steps + 1))

  def shrink(self):
    self.scale.assign(tf.maximum(self.scale * 0.5, 1.0))
    self.good_steps.assign(0)


def apply_if_finite(optimizer, grads, variables, loss, loss_scale=None):
  """Applies `grads` unless the loss or any gradient is NaN/Inf on any replica.

  A dropped update leaves the variables, the optimizer's slots and its iteration count exactly
  as they were (a zero gradient would not: Adam's momentum would still move the weights).
  Every replica sees the same all-reduced decision, so they never diverge.

  Args:
    optimizer: Keras optimizer built on `variables`.
    grads: gradients, one per variable (this replica's share).
    variables: the variables to update.
    loss: this replica's loss (any shape), unscaled.
    loss_scale: optional `LossScale`; then `grads` are of loss * scale: they are divided by it,
      and non-finite gradients with a finite loss are an overflow: the scale halves, the update
      is dropped, and it counts as skipped only once the scale is down to 1.

  Returns:
    float32 scalar: this replica's share of the skip flag (summed over replicas: 1.0 when the
    update was dropped for a non-finite value, else 0.0).
  """
  ctx = tf.distribute.get_replica_context()
  if loss_scale is not None:
    grads = [None if g is None else g / loss_scale.value() for g in grads]

  def finite_here(tensors):
    return tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(t)) for t in tensors]))
  here = tf.stack([finite_here([loss]), finite_here([g for g in grads if g is not None])])
  # One all-reduce for both flags: how many replicas saw a non-finite loss / gradient.
  bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(here, tf.float32))
  loss_ok, grads_ok = tf.equal(bad[0], 0.0), tf.equal(bad[1], 0.0)

  def cross_replica(strategy, grads, loss_ok, grads_ok):
    # Keras' optimizer update may call merge_call, which a cond in replica context does not
    # allow; the cond therefore runs here, in cross-replica context (as Keras' LossScaleOptimizer
    # does). The flags are the same on every replica: take the first.
    loss_ok = strategy.experimental_local_results(loss_ok)[0]
    ok = tf.logical_and(loss_ok, strategy.experimental_local_results(grads_ok)[0])

    def update():
      strategy.extended.call_for_each_replica(
          lambda g: optimizer.apply_gradients(zip(g, variables)), args=(grads,))
      if loss_scale is not None:
        loss_scale.grow()
      return tf.constant(True)

    def drop():
      if loss_scale is not None:
        loss_scale.shrink()
      return tf.constant(False)

    return tf.cond(ok, update, drop)

  scale_before = None if loss_scale is None else tf.identity(loss_scale.value())
  ctx.merge_call(cross_replica, args=(list(grads), loss_ok, grads_ok))
  dropped = tf.logical_not(tf.logical_and(loss_ok, grads_ok))
  if loss_scale is not None:  # An overflow is routine while the scale is above 1.
    overflow = tf.logical_and(loss_ok, tf.logical_not(grads_ok))
    dropped = tf.logical_and(dropped, tf.logical_not(
        tf.logical_and(overflow, scale_before > 1.0)))
  return tf.cast(dropped, tf.float32) / ctx.num_replicas_in_sync
