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
  instance". Moving the base on for each new strategy gives it keys no earlier one used, and
  moving it on again after gives a plain `tf.distribute.MirroredStrategy` made later in the
  process (a user's, or the Keras example's) keys that this one does not use.
  """
  tf.distribute.MirroredStrategy._collective_key_base += _COLLECTIVE_KEY_STRIDE  # pylint: disable=protected-access
  strategy = tf.distribute.MirroredStrategy(devices)
  tf.distribute.MirroredStrategy._collective_key_base += _COLLECTIVE_KEY_STRIDE  # pylint: disable=protected-access
  return strategy


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
