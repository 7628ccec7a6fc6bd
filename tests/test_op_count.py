"""The executed-op count of the NIQE penalty (qagan_bench/op_count.py): the counter counts
each while-loop iteration, and the penalty's count is small and does not grow with the data."""

import numpy as np
import pytest
import tensorflow as tf

from qagan_bench import op_count

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


@pytest.mark.slow
def test_the_niqe_penalty_runs_few_ops_whatever_the_data():
  counts = {}
  for batch, seed in ((16, 0), (16, 1), (8, 0)):
    counts[batch, seed] = op_count.niqe_penalty_ops(resolution=32, batch_size=batch, seed=seed)
  forward_backward = {key: c["forward_backward"] for key, c in counts.items()}
  assert len(set(forward_backward.values())) == 1, forward_backward  # No data-dependent loop.
  assert counts[16, 0]["forward"] < counts[16, 0]["forward_backward"]
  assert counts[16, 0]["forward_backward"] * 5 <= OPS_BEFORE, counts[16, 0]
  assert not {"While", "Merge", "NextIteration"} & set(counts[16, 0]["top_ops"])


def test_the_profiler_count_sees_every_kernel_of_a_function():
  w = tf.Variable(tf.ones([8, 8]))

  @tf.function
  def f(n):
    x = tf.ones([4, 8])
    for _ in range(n):  # Unrolled: n matmuls and n relus.
      x = tf.nn.relu(tf.matmul(x, w))
    return tf.reduce_sum(x)
  for n in (1, 3):
    f(n)
  counts = {n: op_count.kernel_times(lambda n=n: f(n).numpy())[1] for n in (1, 3)}
  matmuls = {n: sum(v for k, v in c.items() if "MatMul" in k) for n, c in counts.items()}
  assert matmuls == {1: 1, 3: 3}, counts
  assert sum(counts[3].values()) > sum(counts[1].values())


def test_the_gpu_model_parses_hlo_and_sums_its_terms():
  from qagan_bench import gpu_model
  fn = tf.function(lambda x: tf.reduce_sum(tf.exp(x) * 2.0) + tf.reduce_max(tf.matmul(x, x)),
                   jit_compile=True)
  hlo = fn.experimental_get_compiler_ir(tf.ones([16, 16]))(stage="optimized_hlo")
  kinds = gpu_model.hlo_kernels(hlo)
  assert kinds and "parameter" not in kinds and "constant" not in kinds, kinds
  assert sum(kinds.values()) <= hlo.count("\n")
  graph = tf.function(lambda x: tf.matmul(x, x)).get_concrete_function(
      tf.TensorSpec([16, 16], tf.float32)).graph
  assert gpu_model.graph_bytes(graph) == 3 * 16 * 16 * 4  # MatMul: two inputs, one output.
  rates = gpu_model.H100
  assert gpu_model.predict_s(100, 2e12, 1e9, 1e-5) == (
      100 * 1e-5 + 2e12 / rates["tf32_flops_per_s"] + 1e9 / rates["bytes_per_s"])
