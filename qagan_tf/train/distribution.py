"""tf.distribute strategies and worker roles for training."""

import json
import os

import tensorflow as tf


def _tf_config_workers():
  """Number of workers (chief included) in $TF_CONFIG's cluster; 0 without TF_CONFIG."""
  text = os.environ.get("TF_CONFIG", "")
  if not text:
    return 0
  try:
    cluster = json.loads(text).get("cluster", {})
  except (ValueError, AttributeError):
    raise ValueError(f"TF_CONFIG is not valid JSON: {text[:200]!r}") from None
  return sum(len(cluster.get(k, [])) for k in ("chief", "worker"))


_COLLECTIVE_KEY_STRIDE = 10_000


def mirrored_strategy(devices=None):
  """A MirroredStrategy over `devices` (default: all GPUs, or the CPU) with its own collective keys.

  Every MirroredStrategy numbers its collective groups from the same class-wide base, and the
  process-wide collective executor remembers each (group, instance) key with the shapes it first
  saw. A second MirroredStrategy in one process (a benchmark training several variants, tests)
  would reuse those keys for different tensors and abort with "Shape mismatch in the collective
  instance". Moving the base on for each new strategy gives it keys no earlier one used.
  """
  tf.distribute.MirroredStrategy._collective_key_base += _COLLECTIVE_KEY_STRIDE  # pylint: disable=protected-access
  return tf.distribute.MirroredStrategy(devices)


def make_strategy(name="auto"):
  """Returns a tf.distribute strategy. Create it before any other TF work in the process.

  Args:
    name: "auto" (MultiWorkerMirroredStrategy when $TF_CONFIG lists several workers, else
      MirroredStrategy over all GPUs when there are several, else the default strategy),
      "default", "mirrored" (all local GPUs, or the CPU) or "multi_worker" (from $TF_CONFIG).

  Raises:
    ValueError: for an unknown name or an unusable TF_CONFIG.
  """
  if name == "auto":
    if _tf_config_workers() > 1:
      name = "multi_worker"
    else:
      gpus = tf.config.list_logical_devices("GPU")
      return mirrored_strategy() if len(gpus) > 1 else tf.distribute.get_strategy()
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    return mirrored_strategy()
  if name == "multi_worker":
    if not _tf_config_workers():
      raise ValueError("--strategy=multi_worker needs TF_CONFIG with the cluster and this "
                       "worker's task (see docs/distribution.md).")
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise ValueError(f"Unknown strategy {name!r}; use auto, default, mirrored or multi_worker.")


def worker_role(strategy):
  """(is_chief, task_id) of this process: the chief writes checkpoints, logs and samples."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True, 0
  task_type, task_id = resolver.task_type, resolver.task_id or 0
  cluster = resolver.cluster_spec().as_dict()
  is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0
                                      and "chief" not in cluster)
  return is_chief, task_id


def _cpu_flags():
  """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("flags"):
          return set(line.split(":", 1)[1].split())
  except OSError:
    pass
  return set()


SHORT_RUN_STEPS = 1000


def jit_compile_rule(config):
  """(on, reason): what --jit_compile=auto means for this machine and config, by device class
  (no timed probe, so the choice does not depend on the machine's load):

  - a GPU: on. benchmarks/gpu_h100_cifar10.json (one H100): 78.7 ms against 121.2 ms per
    training step, 1.54x.
  - a CPU without AVX-512 (AVX2): on. benchmarks/smoke_cpu_avx2_2026-11-24.json (AMD EPYC,
    AVX2): 465 ms against 635 ms per WGAN-GP step, 1.36x (525 against 734 in the PyTorch race).
  - a CPU with AVX-512: off. benchmarks/smoke_cpu_epyc_2026-12-01.json (AMD EPYC with AVX-512):
    225 ms against 216 ms, 0.96x; the earlier AVX-512 CPU measured 0.99x.
  - lazy regularisation (--gp_every/--qa_every > 1): off. Its tf.cond around the penalties ran
    slower compiled than plain on CPU (docs/performance.md).
  - a short run (--max_steps below SHORT_RUN_STEPS, e.g. configs/smoke.cfg and tests): off; the
    first call's compile (tens of seconds) outweighs the 0.17 s per step it saves on AVX2.
  - unknown CPU features: off.
  """
  if config.max_steps < SHORT_RUN_STEPS:
    return False, (f"a short run (--max_steps < {SHORT_RUN_STEPS}): compiling would cost more "
                   "than it saves")
  return device_jit_rule(lazy=config.gp_every > 1 or config.qa_every > 1 or config.r1_every > 1)


def device_jit_rule(lazy=False):
  """(on, reason): `jit_compile_rule` for a run of unknown length (Keras' QAGAN.compile's
  jit_compile="auto"): lazy regularisation, then the device class."""
  if lazy:
    return False, "lazy regularisation (--gp_every/--qa_every/--r1_every > 1) ran slower compiled"
  if tf.config.list_physical_devices("GPU"):
    return True, "a GPU, where XLA measured 1.54x faster (one H100)"
  cpu = _cpu_flags()
  if not cpu:
    return False, "CPU features unknown"
  if any(f.startswith("avx512") for f in cpu):
    return False, "a CPU with AVX-512, where XLA measured slower"
  if "avx2" in cpu:
    return True, "a CPU with AVX2 and no AVX-512, where XLA measured 1.36x faster"
  return False, "a CPU without AVX2"
