"""Inception feature-extraction throughput (images/s), optionally side by side with PyTorch."""

import os
import time

import numpy as np
import tensorflow as tf


def _median_rate(fn, batch, batch_size, repeats, warmup=1):
  for _ in range(warmup):
    fn(batch)
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn(batch)
    times.append(time.perf_counter() - t0)
  return batch_size / float(np.median(times)), times


def run(weights=None, batch_size=32, repeats=3, input_size=32, with_torch=True, log=print):
  """Measures TF eager-graph, TF XLA and (if installed) PyTorch on the same weights and CPU.

  Returns:
    a dict of figures for the benchmark file.
  """
  from qagan_tf.metrics import inception_weights
  from qagan_tf.utils import precision
  precision.set_tensor_float_32(False)  # As bin/fid computes features.
  model, info = inception_weights.load_inception(weights, with_logits=False)
  rng = np.random.default_rng(0)
  raw = rng.integers(0, 256, (batch_size, input_size, input_size, 3)).astype(np.float32)
  pre = model.preprocess(tf.constant(raw))  # (B, 299, 299, 3) in [-1, 1).
  result = {"batch_size": batch_size, "input_size": input_size, "repeats": repeats,
            "cpu_threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
                            "os_cpu_count": os.cpu_count()},
            "weights_sha256": info["sha256"]}
  graph = tf.function(model)
  rate, _ = _median_rate(lambda b: graph(b)["pool3"].numpy(), tf.constant(raw), batch_size,
                         repeats)
  result["tf_images_per_sec"] = rate
  log(f"inception TF (tf.function, {input_size} px input incl. resize): {rate:.2f} img/s")
  xla = tf.function(model, jit_compile=True)
  try:
    rate, _ = _median_rate(lambda b: xla(b)["pool3"].numpy(), tf.constant(raw), batch_size,
                           repeats)
    result["tf_xla_images_per_sec"] = rate
    log(f"inception TF XLA: {rate:.2f} img/s")
  except tf.errors.OpError as e:  # Reported, not fatal: XLA support varies by build.
    result["tf_xla_error"] = str(e).splitlines()[0]
  # The network alone on preprocessed 299 px input, for the side-by-side with PyTorch.
  net_only = tf.function(lambda x: model.call_preprocessed(x))
  rate, _ = _median_rate(lambda b: net_only(b).numpy(), pre, batch_size, repeats)
  result["tf_network_only_images_per_sec"] = rate
  log(f"inception TF network only (299 px): {rate:.2f} img/s")
  if with_torch:
    try:
      import torch
    except ImportError:
      result["torch"] = "not installed"
      return result
    from qagan_bench import torch_inception
    forward, module = torch_inception.build(model)
    x = torch.from_numpy(pre.numpy().transpose(0, 3, 1, 2).copy())
    rates = {}
    with torch.inference_mode():
      diff = float(np.abs(forward(x).numpy() - net_only(pre).numpy()).max())
      rates["nchw"], _ = _median_rate(forward, x, batch_size, repeats)
      # PyTorch's fastest CPU layout for convolutions (oneDNN), so the comparison is fair.
      module.to(memory_format=torch.channels_last)
      x = x.contiguous(memory_format=torch.channels_last)
      rates["channels_last"], _ = _median_rate(forward, x, batch_size, repeats)
    rate = max(rates.values())
    result.update({"torch_version": torch.__version__, "torch_threads": torch.get_num_threads(),
                   "torch_images_per_sec": rate, "torch_images_per_sec_by_layout": rates,
                   "torch_max_abs_diff_pool3": diff,
                   "tf_over_torch": result["tf_network_only_images_per_sec"] / rate})
    log(f"inception PyTorch {torch.__version__} ({torch.get_num_threads()} threads, 299 px): "
        f"NCHW {rates['nchw']:.2f}, channels_last {rates['channels_last']:.2f} img/s; "
        f"max |pool3 diff| {diff:.1e}")
  return result
