"""What every timing section shares: round-robin timing (`_interleaved_times`), the matmul
peak, a traced function's FLOPs, the speed VARIANTS of a Trainer and their calls, and one D
update alone on fixed inputs."""

import atexit
import json
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf

from qagan_tf.utils import precision

PENALTIES = ("wgan_gp", "ssim", "niqe")


def _interleaved_times(fns, repeats, warmup=2, seed=0):
  """Times each of `fns` (name -> callable) `repeats` times, round-robin, so that a change in this
  shared machine's load hits every contender alike. Each round runs the contenders in a new
  (seeded) random order: in a fixed order the contender after PyTorch's last setting always ran
  right after PyTorch (its OpenMP threads and caches still warm) and measured 4-11% slower than
  the identical step elsewhere in the order, in four of five runs. Returns name -> (median
  seconds, all times)."""
  for fn in fns.values():
    for _ in range(warmup):
      fn()
  rng = np.random.default_rng(seed)
  names = list(fns)
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for index in rng.permutation(len(names)):  # Indices: some names are tuples.
      name = names[index]
      fn = fns[name]
      t0 = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - t0)
  return {name: (float(np.median(t)), t) for name, t in times.items()}


def _matmul_fn(n=None):
  """A float32 matmul (the roofline reference) and its FLOPs: 2048^2 on a CPU, 8192^2 on a GPU
  (a 2048^2 matmul leaves a large GPU mostly idle). It runs under the configured TF32 setting,
  like the D steps it is compared with."""
  if n is None:
    n = 8192 if tf.config.list_logical_devices("GPU") else 2048
  a = tf.random.normal([n, n])
  b = tf.random.normal([n, n])
  fn = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
  return lambda: fn().numpy(), 2.0 * n**3


def _graph_flops(concrete_function):
  """Float operations of a traced function, from the TF profiler (None when unavailable)."""
  try:
    from tensorflow.python.profiler import model_analyzer, option_builder
    opts = option_builder.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    info = model_analyzer.profile(concrete_function.graph, options=opts)
    return int(info.total_float_ops)
  except Exception:  # noqa: BLE001 - the profiler's internals vary between TF versions.
    return None


VARIANTS = {  # name: (config changes, steps per timed call)
    "baseline": ({"jit_compile": False}, 1),  # The plain step.
    "default": ({}, 1),  # bin/train's defaults (--jit_compile=auto resolved for this machine).
    "steps_per_call_10": ({"steps_per_call": 10}, 10),
    "xla": ({"jit_compile": True}, 1),
    "xla_steps_per_call_10": ({"jit_compile": True, "steps_per_call": 10}, 10),
    "bfloat16": ({"mixed_precision": "bfloat16"}, 1),
    "float16": ({"mixed_precision": "float16"}, 1),
    "xla_bfloat16": ({"jit_compile": True, "mixed_precision": "bfloat16"}, 1),
    "tf32": ({"allow_tf32": True}, 1),  # Same as baseline on CPUs.
    "xla_tf32": ({"jit_compile": True, "allow_tf32": True}, 1),
}


def check_variant_names(names):
  """Raises ValueError naming unknown speed variants and the valid ones."""
  unknown = [n for n in names if n not in VARIANTS]
  if unknown:
    raise ValueError(f"unknown --speed_variants {','.join(unknown)}; choose from "
                     f"{','.join(VARIANTS)} (or all).")
  if "baseline" not in names:
    raise ValueError("--speed_variants must include baseline (the speedups are relative to it).")


_SHARED = {}  # run_key(config) -> (Trainer, its iterator): one per distinct run per process.


def run_key(config):
  """What makes two configs one training run: every recorded setting but those that shape
  nothing here (e.g. --qa_weight without a quality penalty)."""
  from qagan_tf import config as config_lib
  from qagan_tf.objectives import objective as objective_lib
  ignored = set(objective_lib.ignored_settings_of(config))
  return json.dumps({k: v for k, v in config_lib.recorded(config).items() if k not in ignored},
                    sort_keys=True, default=str)


def shared_trainer(config, images):
  """(trainer, iterator) of `config`, built and traced once per process: the sections that time
  the same run (the WGAN-GP baseline of the penalties, the speed variants, the lazy and
  regulariser ratios and the peer race) share it instead of each building and tracing its own.
  Its run directory is a temporary one, removed at exit; the timed calls write nothing there."""
  key = run_key(config)
  if key not in _SHARED:
    from qagan_tf.train import distribution
    from qagan_tf.train import trainer as trainer_lib
    model_dir = tempfile.mkdtemp(prefix="qagan_bench_")
    atexit.register(shutil.rmtree, model_dir, ignore_errors=True)
    trainer = trainer_lib.Trainer(config, model_dir, distribution.make_strategy("auto"),
                                  images=images)
    _SHARED[key] = (trainer, iter(trainer.distributed_dataset(0)))
  return _SHARED[key]


def release_shared():
  """Forgets every shared Trainer (their run directories go at exit)."""
  _SHARED.clear()


def _variant_calls(config, images, names):
  """name -> callable running VARIANTS[name]'s steps per call of a Trainer (as `Trainer.train`
  runs it) for the configured penalty (`shared_trainer`s)."""
  calls = {}
  for name in names:
    changes, count = VARIANTS[name]
    if name == "default":  # What bin/train picks for a full-length run on this machine.
      from qagan_tf.update import device
      changes = {"jit_compile": device.jit_compile_rule(
          max(config.max_steps, 100_000), config.lazy)[0]}
    trainer, iterator = shared_trainer(config.replace(eval_every=0, **changes), images)

    def call(trainer=trainer, iterator=iterator, count=count):
      precision.set_tensor_float_32(trainer.config.allow_tf32)  # Process-wide: set per call.
      trainer.train_iterations(iterator, count)
      trainer.step.numpy()  # Wait for the call to finish.
    calls[name] = call
  return calls


def plain_parts(trainer):
  """The trainer's update bundle without XLA and without float16 loss scaling: one update as
  the plain step computes it."""
  import dataclasses
  return dataclasses.replace(trainer.parts, d_gradients=None, g_gradients=None,
                             d_loss_scale=None, g_loss_scale=None)


def _d_step_fn(trainer, c, inputs):
  """One D update on fixed inputs (no input pipeline, no G update), as a tf.function."""
  from qagan_tf.update import critic
  real, z, eps = inputs["real"][0], inputs["z"][0], inputs["eps"][0]
  parts = plain_parts(trainer)

  @tf.function(autograph=False)  # No tensor control flow: AutoGraph would only cost tracing.
  def d_step():
    return critic.discriminator_update(parts, real, z, eps,
                                       global_batch_size=c.batch_size).values["d_loss"]
  return d_step
