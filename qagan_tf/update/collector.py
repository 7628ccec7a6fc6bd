"""The one place where training metrics are counted.

Every update reports its values to a `Collector`, with, for a value computed on some D updates
only (lazy regularisation), a flag saying whether this update computed it. The collector keeps,
per metric, the sum over the updates that computed it and their number, as this replica's shares
(summed over replicas, the global sum and count). Its result, {name: (sum, count)}, is what
bin/train's running means (`MetricSums`), its TensorBoard scalars and QAGAN's Keras trackers
read: a mean is always sum / count, over the updates that computed the value.
"""

from typing import NamedTuple

import tensorflow as tf

SKIPPED = "skipped_updates"  # Updates dropped for a non-finite loss or gradient, per iteration.


class UpdateReport(NamedTuple):
  """What one update reports to the collector: `values` ({name: this replica's share of the
  global mean}), `computed` (the lazy metrics' flags, see `critic.critic_gradients`) and
  `skipped` (this replica's share of 1 when the update was dropped for a NaN/Inf, see
  `numerics.apply_if_finite`)."""
  values: dict
  computed: dict
  skipped: tf.Tensor


class Collector:
  """The metrics of one training iteration on one replica (replica context)."""

  def __init__(self):
    ctx = tf.distribute.get_replica_context()
    self._replicas = ctx.num_replicas_in_sync if ctx is not None else 1
    self._sums, self._counts, self._skipped = {}, {}, []

  def report(self, values, computed=None, skipped=None):
    """Adds one update's metrics.

    Args:
      values: {name: float32 scalar}, this replica's share of the update's global mean (0 where
        the update did not compute it).
      computed: {name: 1.0 or 0.0 float32 scalar} for the values computed on some updates only;
        the others count as computed.
      skipped: this replica's share of the update's skip flag (`numerics.apply_if_finite`).
    """
    computed = computed or {}
    for name, value in values.items():
      count = computed.get(name, 1.0) / self._replicas
      self._sums[name] = self._sums.get(name, 0.0) + value
      self._counts[name] = self._counts.get(name, 0.0) + count
    if skipped is not None:
      self._skipped.append(skipped)

  def result(self):
    """{name: (sum, count)} of float32 scalars, this replica's shares; `SKIPPED` holds the number
    of dropped updates with a count of one iteration."""
    out = {name: (tf.convert_to_tensor(self._sums[name], tf.float32),
                  tf.convert_to_tensor(self._counts[name], tf.float32)) for name in self._sums}
    if self._skipped:
      out[SKIPPED] = (tf.add_n(self._skipped), tf.constant(1.0 / self._replicas))
    return out


def means(result):
  """{name: sum / count} of a (cross-replica reduced) result; 0 where no update computed it."""
  return {name: tf.math.divide_no_nan(total, count) for name, (total, count) in result.items()}


def counts(result):
  """{name: number of updates that computed it} of a (cross-replica reduced) result."""
  return {name: count for name, (_, count) in result.items()}
