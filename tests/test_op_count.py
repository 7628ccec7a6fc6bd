"""The executed-op count of the NIQE penalty (qagan_tf/benchmarks/op_count.py): the counter counts
each while-loop iteration, and the penalty's count is small and does not grow with the data."""

import numpy as np
import tensorflow as tf

from qagan_tf.benchmarks import op_count

# The NIQE penalty's value and gradient at bc25ea8 (when the speed issue was filed: a
# Chandrupatla root search in a tf.while_loop per AGGD fit) executed 4,923 ops for a batch of 16
# 32 px gradients (bin/benchmark --op_count_baseline, README "Speed"). The goal is a 5x fall.
OPS_BEFORE = 4923


def test_the_counter_counts_each_while_loop_iteration():
  def loop(x, n):
    return tf.while_loop(lambda i, v: i < n, lambda i, v: (i + 1, tf.sin(v) * 2.0 + 1.0),
                         (tf.constant(0), x))[1]
  x, counts = np.ones(3, np.float32), {}
  for n in (2, 12):
    counts[n], kinds = op_count.executed_ops(loop, [x, np.int32(n)])
    assert kinds["Sin"] == n
  # Each iteration runs the body (Sin, Mul, AddV2, the counter's add) and the loop's bookkeeping.
  per_iteration = (counts[12] - counts[2]) / 10
  assert per_iteration >= 4 and per_iteration == int(per_iteration)


def test_the_niqe_penalty_runs_few_ops_whatever_the_data():
  counts = {}
  for batch, seed in ((16, 0), (16, 1), (8, 0)):
    counts[batch, seed] = op_count.niqe_penalty_ops(resolution=32, batch_size=batch, seed=seed)
  forward_backward = {key: c["forward_backward"] for key, c in counts.items()}
  assert len(set(forward_backward.values())) == 1, forward_backward  # No data-dependent loop.
  assert counts[16, 0]["forward"] < counts[16, 0]["forward_backward"]
  assert counts[16, 0]["forward_backward"] * 5 <= OPS_BEFORE, counts[16, 0]
  assert not {"While", "Merge", "NextIteration"} & set(counts[16, 0]["top_ops"])
