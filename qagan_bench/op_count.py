"""Executed-op counts of one NIQE penalty evaluation: the launch overhead an accelerator pays.

A GPU pays a fixed cost per kernel launch, so a penalty made of many tiny ops is slow there even
when its arithmetic is cheap; on a CPU the same ops cost little, so the op count shows a change
that CPU timings hide. `executed_ops` runs a function once in a TF1 session with a full trace
and counts the kernels the trace records: control flow is lowered, so a while-loop body counts
once per iteration and an op count that grows with the data shows up as such.

This module imports nothing from qagan_tf at module level, so that it can measure an older
checkout too (`python qagan_bench/op_count.py --checkout=DIR`, used by
`bin/benchmark --op_count_baseline=DIR`).
"""

import argparse
import collections
import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

# Bookkeeping nodes of the executor, not kernels of the function.
_NOT_OPS = ("_SOURCE", "_SINK")


def executed_ops(build, inputs, trace_runs=1):
  """Kernels executed by one run of `build(*tensors)` (graph mode, after Grappler).

  Args:
    build: callable taking tf.Tensors (the inputs, as placeholders) and returning a tensor or a
      list of tensors to compute.
    inputs: list of numpy arrays fed to the placeholders.
    trace_runs: traced runs (the smallest count is returned; runs are deterministic in count).

  Returns:
    (count, Counter of op type -> executions).
  """
  graph = tf.Graph()
  with graph.as_default():
    placeholders = [tf.compat.v1.placeholder(tf.as_dtype(x.dtype), x.shape) for x in inputs]
    outputs = build(*placeholders)
    init = tf.compat.v1.global_variables_initializer()
  feed = dict(zip(placeholders, inputs))
  best = None
  with tf.compat.v1.Session(graph=graph) as sess:
    sess.run(init)
    sess.run(outputs, feed)  # Warm-up: constant folding and kernel caches.
    for _ in range(trace_runs):
      metadata = tf.compat.v1.RunMetadata()
      options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
      sess.run(outputs, feed, options=options, run_metadata=metadata)
      kinds = collections.Counter()
      for device in metadata.step_stats.dev_stats:
        if "stream" in device.device or "memcpy" in device.device:
          continue  # GPU traces repeat each kernel on its stream; count the executor's nodes.
        for node in device.node_stats:
          if node.node_name in _NOT_OPS:
            continue
          kinds[node.timeline_label.split(" = ")[-1].split("(")[0] or node.node_name] += 1
      total = sum(kinds.values())
      if best is None or total < best[0]:
        best = (total, kinds)
  return best


def kernel_times(fn, runs=1):
  """(Counter op type -> kernel picoseconds, Counter op type -> executions) of `runs` calls of
  `fn` (eager calls of a warmed-up tf.function), from the events TF's executor records on its
  compute threads under the TF profiler: the count the GPU cost model uses for every function
  it compares (D steps and penalties alike)."""
  import glob
  import tempfile
  try:
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
  except ImportError:  # Older TF wheels.
    from tsl.profiler.protobuf import xplane_pb2
  times, counts = collections.Counter(), collections.Counter()
  with tempfile.TemporaryDirectory() as logdir:
    tf.profiler.experimental.start(logdir)
    for _ in range(runs):
      fn()
    tf.profiler.experimental.stop()
    for path in glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True):
      space = xplane_pb2.XSpace()
      with open(path, "rb") as f:
        space.ParseFromString(f.read())
      for plane in space.planes:
        for line in plane.lines:
          if not line.name.startswith("tf_Compute"):
            continue
          for event in line.events:
            name = plane.event_metadata[event.metadata_id].name
            if ":" not in name or "::" in name:  # Executor and thread-pool bookkeeping.
              continue
            kind = name.rsplit(":", 1)[1]
            times[kind] += event.duration_ps
            counts[kind] += 1
  return times, counts


def niqe_penalty_ops(resolution=32, batch_size=16, seed=0):
  """Executed ops of the `niqe` penalty (default settings) of the importable qagan_tf:
  {"forward": n, "forward_backward": n, "top_ops": {type: n}} for a batch of D gradients.

  Works with the current package (`penalties.build_for_config`) and with checkouts since the
  penalty registry existed (`penalties.make_quality_penalty`; in qagan_tf.train before the
  objectives package), whose TrainConfig had no `create`.
  """
  from qagan_tf import config as config_lib
  try:
    from qagan_tf.objectives import penalties
  except ImportError:  # Checkouts before the objectives package (2026-12-01).
    from qagan_tf.train import penalties
  api = getattr(penalties, "penalty_api", penalties)  # PenaltyInputs moved in the split.
  make = getattr(config_lib.TrainConfig, "create", config_lib.TrainConfig)
  config = make(dataset="embedded", resolution=resolution, width=32, batch_size=batch_size,
                penalty="niqe", qa_weight=0.1)
  build = getattr(penalties, "build_for_config", None)
  penalty = build(config) if build else penalties.make_quality_penalty("niqe", config)
  grads = np.random.default_rng(seed).normal(
      0.0, 1e-2, (batch_size, resolution, resolution, 3)).astype(np.float32)

  def value(g):
    out = penalty.fn(api.PenaltyInputs(real=None, fake=None, x_hat=None, d_real=None,
                                       d_fake=None, grad_x_hat=g))
    return tf.reduce_mean(out[0] if isinstance(out, tuple) else out)

  def value_and_gradient(g):
    v = value(g)
    return [v, tf.gradients(v, g)[0]]

  forward, _ = executed_ops(value, [grads])
  both, kinds = executed_ops(value_and_gradient, [grads])

  @tf.function
  def eager_value_and_gradient(g):
    with tf.GradientTape() as tape:
      tape.watch(g)
      v = value(g)
    return v, tape.gradient(v, g)
  g = tf.constant(grads)
  eager_value_and_gradient(g)
  profiled = sum(kernel_times(lambda: [t.numpy() for t in eager_value_and_gradient(g)])[1]
                 .values())
  return {"forward": forward, "forward_backward": both,
          "top_ops": dict(kinds.most_common(12)),
          "profiled_forward_backward": int(profiled)}


def measure_checkout(checkout, resolution, batch_size, timeout=900):
  """niqe_penalty_ops of another checkout of this project (a subprocess with its qagan_tf on the
  path), plus that checkout's commit."""
  checkout = os.path.abspath(checkout)
  if not os.path.isdir(os.path.join(checkout, "qagan_tf")):
    raise ValueError(f"--op_count_baseline={checkout} is not a checkout of qagan_tf (no "
                     "qagan_tf/ folder); e.g. git worktree add /tmp/before <commit>.")
  env = dict(os.environ, PYTHONPATH=checkout, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run(
      [sys.executable, os.path.abspath(__file__), f"--checkout={checkout}",
       f"--resolution={resolution}", f"--batch_size={batch_size}"],
      env=env, cwd=checkout, capture_output=True, text=True, timeout=timeout, check=False)
  if proc.returncode:
    raise ValueError(f"counting ops in {checkout} failed:\n{proc.stderr[-2000:]}")
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  try:
    result["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, text=True,
                                      capture_output=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    result["commit"] = None
  return result


def _main():
  parser = argparse.ArgumentParser(description="Executed ops of one NIQE penalty evaluation of "
                                   "the qagan_tf found first on the path (one JSON line).")
  parser.add_argument("--checkout", help="The checkout being measured (put first on the path).")
  parser.add_argument("--resolution", type=int, default=32)
  parser.add_argument("--batch_size", type=int, default=16)
  args = parser.parse_args()
  if args.checkout:
    sys.path.insert(0, os.path.abspath(args.checkout))
  print(json.dumps(niqe_penalty_ops(args.resolution, args.batch_size)))


if __name__ == "__main__":
  _main()
