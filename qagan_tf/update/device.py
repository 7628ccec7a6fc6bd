"""What --jit_compile=auto means on this device: XLA for the D and G loss+gradient computations,
by device class (no timed probe, so the choice does not depend on the machine's load). Whether
the objective is lazy comes from `objective.is_lazy`, the one rule for it."""

import os

import tensorflow as tf

SHORT_RUN_STEPS = 1000
# What auto decides for this device class, where one's own timing says otherwise: "on" or
# "off" (the lazy and short-run rules still apply). The test suite sets it to off
# (tests/conftest.py), so that every machine runs the same graphs; the XLA tests compile
# explicitly.
AUTO_ENV = "QAGAN_JIT_COMPILE_AUTO"


def jit_compile_rule(max_steps, lazy):
  """(on, reason) for a run of `max_steps` generator iterations whose objective is `lazy`:

  - a GPU: on. benchmarks/gpu_h100_cifar10.json (one H100): 78.7 ms against 121.2 ms per
    training step, 1.54x.
  - a CPU without AVX-512 (AVX2): on. benchmarks/smoke_cpu_avx2_2026-11-24.json (AMD EPYC,
    AVX2): 465 ms against 635 ms per WGAN-GP step, 1.36x (525 against 734 in the PyTorch race).
  - a CPU with AVX-512: off. benchmarks/smoke_cpu_epyc_2026-12-01.json (AMD EPYC with AVX-512):
    225 ms against 216 ms, 0.96x; the earlier AVX-512 CPU measured 0.99x.
  - lazy regularisation (an active term computed on every k-th D update only): off. Its tf.cond
    around the terms ran slower compiled than plain on CPU (docs/performance.md).
  - a short run (max_steps below SHORT_RUN_STEPS, e.g. configs/smoke.cfg and tests): off; the
    first call's compile (tens of seconds) outweighs the 0.17 s per step it saves on AVX2.
  - unknown CPU features: off.
  - the environment variable QAGAN_JIT_COMPILE_AUTO=on or off, where set: that, instead of the
    device class.
  """
  if max_steps < SHORT_RUN_STEPS:
    return False, (f"a short run (--max_steps < {SHORT_RUN_STEPS}): compiling would cost more "
                   "than it saves")
  return device_jit_rule(lazy)


def device_jit_rule(lazy=False):
  """(on, reason): `jit_compile_rule` for a run of unknown length (Keras' QAGAN.compile's
  jit_compile="auto"): lazy regularisation, then the device class."""
  if lazy:
    return False, ("lazy regularisation (an active term on every k-th D update only) ran "
                   "slower compiled")
  chosen = os.environ.get(AUTO_ENV, "").strip().lower()
  if chosen:
    if chosen not in ("on", "off"):
      raise ValueError(f"{AUTO_ENV}={os.environ[AUTO_ENV]!r}: use on or off (or unset it for the "
                       "device's rule).")
    return chosen == "on", f"{AUTO_ENV}={chosen}"
  if tf.config.list_physical_devices("GPU"):
    return True, "a GPU, where XLA measured 1.54x faster (one H100)"
  cpu = cpu_flags()
  if not cpu:
    return False, "CPU features unknown"
  if any(f.startswith("avx512") for f in cpu):
    return False, "a CPU with AVX-512, where XLA measured slower"
  if "avx2" in cpu:
    return True, "a CPU with AVX2 and no AVX-512, where XLA measured 1.36x faster"
  return False, "a CPU without AVX2"


def cpu_flags():
  """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("flags"):
          return set(line.split(":", 1)[1].split())
  except OSError:
    pass
  return set()
