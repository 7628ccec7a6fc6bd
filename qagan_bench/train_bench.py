"""Training-step figures: wgan_gp vs ssim vs niqe side by side in one process."""

import math
import resource
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


def _variant_calls(config, images, names, tmp):
  """name -> callable running VARIANTS[name]'s steps per call of a Trainer (as `Trainer.train`
  runs it) for the configured penalty."""
  from qagan_tf.train import distribution
  from qagan_tf.train import trainer as trainer_lib
  calls = {}
  for name in names:
    changes, count = VARIANTS[name]
    if name == "default":  # What bin/train picks for a full-length run on this machine.
      from qagan_tf.update import device
      changes = {"jit_compile": device.jit_compile_rule(
          max(config.max_steps, 100_000), config.lazy)[0]}
    c = config.replace(eval_every=0, **changes)
    trainer = trainer_lib.Trainer(c, f"{tmp}/{name}", distribution.make_strategy("auto"),
                                  images=images)
    iterator = iter(trainer.distributed_dataset(0))

    def call(trainer=trainer, iterator=iterator, count=count):
      precision.set_tensor_float_32(trainer.config.allow_tf32)  # Process-wide: set per call.
      trainer.train_iterations(iterator, count)
      trainer.step.numpy()  # Wait for the call to finish.
    calls[name] = call
  return calls


def speed_variants(config, images, repeats=5, log=print, names=None):
  """Seconds per training step (as `Trainer.train` runs it) with XLA, several steps per call,
  mixed precision and TF32 on/off, timed round-robin in one process, for the configured penalty.

  Args:
    names: the VARIANTS to time (default all; must include baseline).
  """
  names = list(VARIANTS) if names is None else list(names)
  check_variant_names(names)
  with tempfile.TemporaryDirectory() as tmp:
    timed = _interleaved_times(_variant_calls(config, images, names, tmp), repeats * 2)
  precision.set_tensor_float_32(config.allow_tf32)
  out = {name: {"step_s": timed[name][0] / VARIANTS[name][1]} for name in names}
  for name, entry in out.items():
    entry["speedup_over_baseline"] = out["baseline"]["step_s"] / entry["step_s"]
    log(f"{config.penalty} {name}: {entry['step_s'] * 1e3:.1f} ms/step "
        f"({entry['speedup_over_baseline']:.2f}x)")
  return out


# bfloat16 races PyTorch's bf16 autocast: on CPUs with native bf16 (AVX512_BF16) both sides run
# their convolutions in it, and PyTorch's is its fastest setting there.
PEER_VARIANTS = ("default", "baseline", "steps_per_call_10", "xla", "xla_steps_per_call_10",
                 "bfloat16", "xla_bfloat16")


def check_peer_names(variants, settings):
  """Raises ValueError naming unknown --peer_variants (ours) or --peer_settings (PyTorch's)."""
  from qagan_bench import torch_peer as peer_lib
  unknown = [s for s in settings if s not in peer_lib.SETTINGS]
  if unknown:
    raise ValueError(f"unknown --peer_settings {','.join(unknown)}; choose from "
                     f"{','.join(peer_lib.SETTINGS)}.")
  unknown = [v for v in variants if v not in VARIANTS]
  if unknown:
    raise ValueError(f"unknown --peer_variants {','.join(unknown)}; choose from "
                     f"{','.join(VARIANTS)}.")


def torch_peer(config, images, repeats=5, log=print, variants=PEER_VARIANTS, settings=None):
  """Our WGAN-GP training iteration against the PyTorch peer's (`torch_peer`), each side at
  each of its settings, all timed round-robin in this process; each side's best setting decides.

  Args:
    variants: our speed VARIANTS to try.
    settings: the peer's `torch_peer.SETTINGS` to try (default all); a setting that fails on
      its first iteration (torch.compile cannot differentiate the 1-GP twice) is recorded with
      its error and not timed.

  Returns:
    {"ours_iteration_s", "torch_iteration_s", "ours_over_torch_speed" (> 1: we are faster),
     "ours_setting", "torch_setting", "ours": {variant: s}, "torch": {setting: s or error}}.
  """
  import os
  import torch
  from qagan_bench import torch_peer as peer_lib
  settings = list(peer_lib.SETTINGS) if settings is None else list(settings)
  check_peer_names(variants, settings)
  config = config.replace(penalty="wgan_gp", eval_every=0)
  peer_lib.check_architecture(config)
  torch.set_num_threads(os.cpu_count())
  g, d = peer_lib.keras_models(config, seed=config.seed)
  torch_calls, failed = {}, {}
  for setting in settings:
    trainer = peer_lib.Trainer(g, d, config, setting, seed=config.seed)
    try:
      trainer.iteration()
    except Exception as e:  # noqa: BLE001 - e.g. torch.compile and double backward.
      failed[setting] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
      log(f"torch {setting}: not timed ({failed[setting]})")
      continue
    torch_calls[f"torch/{setting}"] = trainer.iteration
  if not torch_calls:
    raise ValueError(f"no PyTorch setting ran: {failed}")
  with tempfile.TemporaryDirectory() as tmp:
    ours = _variant_calls(config, images, variants, tmp)
    timed = _interleaved_times({**{f"ours/{k}": v for k, v in ours.items()}, **torch_calls},
                               repeats * 2)
  precision.set_tensor_float_32(config.allow_tf32)
  ours_s = {v: timed[f"ours/{v}"][0] / VARIANTS[v][1] for v in variants}
  torch_s = {s: timed[f"torch/{s}"][0] for s in settings if s not in failed}
  best_ours, best_torch = min(ours_s, key=ours_s.get), min(torch_s, key=torch_s.get)
  result = {"ours_iteration_s": ours_s[best_ours], "torch_iteration_s": torch_s[best_torch],
            "ours_setting": best_ours, "torch_setting": best_torch,
            "ours": ours_s, "torch": {**torch_s, **{s: {"error": e} for s, e in failed.items()}},
            "torch_version": torch.__version__, "torch_threads": torch.get_num_threads()}
  result["ours_over_torch_speed"] = result["torch_iteration_s"] / result["ours_iteration_s"]
  if "default" in ours_s:  # bin/train's defaults against PyTorch's fastest.
    result["default_over_torch_best"] = result["torch_iteration_s"] / ours_s["default"]
    result["default_jit_compile"] = bool(config.jit_compile)
    log(f"ours (default) over torch ({best_torch}): {result['default_over_torch_best']:.2f}x")
    # The default is float32, as is PyTorch without autocast: the same race at equal precision.
    float32 = {s: t for s, t in torch_s.items() if not peer_lib.SETTINGS[s][1]}
    if float32:
      best32 = min(float32, key=float32.get)
      result["torch_float32_setting"] = best32
      result["default_over_torch_float32_best"] = float32[best32] / ours_s["default"]
      log(f"ours (default) over torch's fastest float32 ({best32}): "
          f"{result['default_over_torch_float32_best']:.2f}x")
  # Equal precision, bfloat16: our fastest bfloat16 variant against PyTorch's fastest bf16
  # setting, where the CPU computes bf16 natively (else null, with the reason).
  result["cpu_flags"] = cpu_precision_flags()
  ours16 = {v: t for v, t in ours_s.items() if VARIANTS[v][0].get("mixed_precision")
            == "bfloat16"}
  torch16 = {s: t for s, t in torch_s.items() if peer_lib.SETTINGS[s][1]}
  if not result["cpu_flags"].get("native_bf16"):
    result["bfloat16_over_torch_bfloat16_best"] = None
    result["bfloat16_note"] = ("no native bf16 on this CPU (no avx512_bf16 or amx_bf16): bf16 is "
                               "emulated on both sides and is no precision to race at")
  elif ours16 and torch16:
    best16, best_t16 = min(ours16, key=ours16.get), min(torch16, key=torch16.get)
    result.update(ours_bfloat16_setting=best16, torch_bfloat16_setting=best_t16,
                  bfloat16_over_torch_bfloat16_best=torch16[best_t16] / ours16[best16])
    log(f"ours bfloat16 ({best16}) over torch's fastest bf16 ({best_t16}): "
        f"{result['bfloat16_over_torch_bfloat16_best']:.2f}x")
  else:
    result["bfloat16_over_torch_bfloat16_best"] = None
    result["bfloat16_note"] = "no bfloat16 variant or setting was raced (see --peer_variants)"
  for name, value in [*(("ours " + k, v) for k, v in ours_s.items()),
                      *(("torch " + k, v) for k, v in torch_s.items())]:
    log(f"peer {name}: {value * 1e3:.1f} ms/iteration")
  log(f"ours ({best_ours}) over torch ({best_torch}): {result['ours_over_torch_speed']:.2f}x "
      "(> 1: we are faster)")
  return result


def cpu_precision_flags():
  """The CPU flags that decide bfloat16's worth here (Linux /proc/cpuinfo): avx512f,
  avx512_bf16, amx_bf16, avx2, and native_bf16 (either bf16 instruction set)."""
  from qagan_tf.update import device
  present = device.cpu_flags()  # The one reader of /proc/cpuinfo's flags.
  out = {f: f in present for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")}
  out["native_bf16"] = out["avx512_bf16"] or out["amx_bf16"]
  return out


def lazy_cycle(every, disc_iters):
  """Iterations after which the lazy schedule (every `every`-th D update, `disc_iters` per
  iteration) repeats: every / gcd(every, disc_iters)."""
  return every // math.gcd(every, disc_iters)


def lazy_ratios(config, images, repeats=5, log=print, every=4, penalties=PENALTIES):
  """Iteration time with --gp_every=k --qa_every=k over both at 1, per penalty of `penalties`
  (k = `every`), all their trainers timed round-robin: {"wgan_gp_k4_over_k1": ..., ...}.

  Each timed call runs one whole lazy cycle, `lazy_cycle(k, disc_iters)` iterations (with 5 D
  updates per iteration and k = 4: 4 iterations, 20 D updates, 5 of them regularised), and both
  k are timed over the same number of iterations: a median of single iterations would pick the
  iterations with the fewest regularised updates (one of 4 has two) and flatter k = 4."""
  from qagan_tf.train import distribution
  from qagan_tf.train import trainer as trainer_lib
  iterations = lazy_cycle(every, config.disc_iters)
  calls = {}
  with tempfile.TemporaryDirectory() as tmp:
    for name in penalties:
      for k in (1, every):
        c = config.replace(penalty=name, qa_weight=max(config.qa_weight, 0.1), eval_every=0,
                           gp_every=k, qa_every=k, jit_compile=False)
        trainer = trainer_lib.Trainer(c, f"{tmp}/{name}_{k}", distribution.make_strategy("auto"),
                                      images=images)
        iterator = iter(trainer.distributed_dataset(0))

        def call(t=trainer, it=iterator):
          for _ in range(iterations):
            t.train_step(it)["d_loss"].numpy()
        calls[(name, k)] = call
    # Warm-up covers a whole lazy cycle (every D update of the schedule traced).
    timed = _interleaved_times(calls, repeats * 2, warmup=2)
  out = {"cycle_iterations": iterations}
  for name in penalties:
    k1, lazy = timed[(name, 1)][0] / iterations, timed[(name, every)][0] / iterations
    out[f"{name}_k{every}_over_k1"] = lazy / k1
    out[f"{name}_k1_iteration_s"] = k1
    out[f"{name}_k{every}_iteration_s"] = lazy
    log(f"lazy {name}: k={every} {lazy * 1e3:.1f} ms vs k=1 {k1 * 1e3:.1f} ms per iteration "
        f"(over {iterations}-iteration cycles) "
        f"({out[f'{name}_k{every}_over_k1']:.2f})")
  return out


# Regularisers timed against the WGAN-GP iteration (quality_bench.VARIANTS' changes): the
# whole iteration, since DiffAugment and RpGAN change the G update too.
REGULARIZERS = ("wgan_gp", "r3", "wgan_gp_lecam", "wgan_gp_da", "r3_niqe")


def check_names(names, known, what):
  """Raises ValueError naming the unknown entries of `names` and the known ones."""
  unknown = [n for n in names if n not in known]
  if unknown or not names:
    raise ValueError(f"unknown {what} {','.join(unknown) or '(none given)'}: choose from "
                     f"{','.join(known)}")


def regularizer_ratios(config, images, repeats=5, log=print, names=REGULARIZERS[1:]):
  """Iteration time of each of `names` (of REGULARIZERS) over WGAN-GP's, timed round-robin in one
  process: {"r3_over_wgan_gp": ..., ..., "r3_niqe_over_r3": ... (with both)}."""
  names = ("wgan_gp",) + tuple(n for n in names if n != "wgan_gp")
  from qagan_bench import quality_bench
  from qagan_tf.train import distribution
  from qagan_tf.train import trainer as trainer_lib
  calls = {}
  with tempfile.TemporaryDirectory() as tmp:
    for name in names:
      c = config.replace(eval_every=0, jit_compile=False, **quality_bench.VARIANTS[name])
      trainer = trainer_lib.Trainer(c, f"{tmp}/{name}", distribution.make_strategy("auto"),
                                    images=images)
      iterator = iter(trainer.distributed_dataset(0))
      calls[name] = lambda t=trainer, it=iterator: t.train_step(it)["d_loss"].numpy()
    timed = _interleaved_times(calls, repeats * 2, warmup=2)
  base = timed["wgan_gp"][0]
  out = {f"{name}_iteration_s": timed[name][0] for name in names}
  out.update({f"{name}_over_wgan_gp": timed[name][0] / base for name in names
              if name != "wgan_gp"})
  if "r3" in names and "r3_niqe" in names:
    out["r3_niqe_over_r3"] = timed["r3_niqe"][0] / timed["r3"][0]
  log("regularisers, iteration over WGAN-GP's: " + ", ".join(
      f"{k[:-len('_over_wgan_gp')]} {v:.2f}" for k, v in out.items() if k.endswith("_over_wgan_gp"))
      + (f"; r3_niqe / r3 {out['r3_niqe_over_r3']:.2f}" if "r3_niqe_over_r3" in out else ""))
  return out


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


def niqe_penalty_ops(config, baseline=None, log=print):
  """Executed ops of one NIQE penalty evaluation (value and gradient, see `op_count`) for the
  config's resolution and batch size, and of an older checkout's (`baseline`, a folder) when
  given, with how many times fewer ops run now."""
  from qagan_bench import op_count
  result = {"after": op_count.niqe_penalty_ops(config.resolution, config.batch_size)}
  log(f"NIQE penalty: {result['after']['forward_backward']} executed ops (value and gradient)")
  if baseline:
    result["before"] = op_count.measure_checkout(baseline, config.resolution, config.batch_size)
    result["fall"] = (result["before"]["forward_backward"]
                      / result["after"]["forward_backward"])
    log(f"NIQE penalty at {result['before']['commit']}: "
        f"{result['before']['forward_backward']} ops ({result['fall']:.1f}x as many)")
  return result


def run(config, repeats=5, log=print, variants=None, peer_settings=None,
        peer_variants=PEER_VARIANTS, op_count_baseline=None, lazy_penalties=PENALTIES,
        regularizers=REGULARIZERS[1:]):
  """Per-iteration and per-D-step medians for each penalty, ratios, FLOPs, peak fraction, the
  NIQE penalty's op count and, with peer_settings, the PyTorch peer.

  Args:
    config: the base `TrainConfig` (its penalty is replaced by each of PENALTIES; the 1-GP and
      QA weights stay as configured, the QA weight at least 0.1 so the penalty is computed).
    variants: the speed VARIANTS to time (default all); checked before anything is timed.
    peer_settings: None (no peer) or the `torch_peer.SETTINGS` to try (see `torch_peer`).
    peer_variants: our VARIANTS raced against the peer.
    op_count_baseline: an older checkout whose NIQE penalty's op count is recorded too.
    lazy_penalties: the penalties of `lazy_ratios` (default all).
    regularizers: the REGULARIZERS timed against WGAN-GP (`regularizer_ratios`; default all).
  """
  if variants is not None:
    check_variant_names(variants)
  from qagan_tf.train import distribution
  from qagan_tf.train import trainer as trainer_lib
  result = {"config": {k: getattr(config, k) for k in ("resolution", "width", "batch_size",
                                                       "disc_iters", "allow_tf32")},
            "penalties": {}}
  precision.set_tensor_float_32(config.allow_tf32)
  images = None
  matmul, matmul_flops = _matmul_fn()
  d_steps, iterations, flops = {}, {}, {}
  tmp = tempfile.TemporaryDirectory()
  for name in PENALTIES:
    c = config.replace(penalty=name, qa_weight=max(config.qa_weight, 0.1),
                            eval_every=0)
    trainer = trainer_lib.Trainer(c, f"{tmp.name}/{name}", distribution.make_strategy("auto"),
                                  images=images)
    images = trainer.load_data()
    iterator = iter(trainer.distributed_dataset(0))
    iterations[name] = (lambda t=trainer, it=iterator: t.train_step(it)["d_loss"].numpy())
    # One D update alone on fixed inputs (no input pipeline, no G update).
    inputs = next(iterator)

    d_step = _d_step_fn(trainer, c, inputs)
    d_steps[name] = (lambda f=d_step: f().numpy())
    flops[name] = _graph_flops(d_step.get_concrete_function())
  # Round-robin: the matmul peak, the three D steps, then the three iterations.
  timed = _interleaved_times({"matmul": matmul, **{n: d_steps[n] for n in PENALTIES}},
                             repeats * 4)
  timed_it = _interleaved_times(iterations, repeats)
  tmp.cleanup()
  peak = matmul_flops / timed["matmul"][0] / 1e9
  result["matmul_peak_gflops"] = peak
  log(f"matmul peak: {peak:.1f} GFLOP/s")
  for name in PENALTIES:
    d_time, d_times = timed[name]
    entry = {"iteration_s": timed_it[name][0], "d_step_s": d_time, "d_step_times_s": d_times,
             "d_step_flops": flops[name]}
    if flops[name]:
      entry["d_step_gflops_per_s"] = flops[name] / d_time / 1e9
      entry["fraction_of_matmul_peak"] = entry["d_step_gflops_per_s"] / peak
    result["penalties"][name] = entry
    log(f"{name}: iteration {entry['iteration_s'] * 1e3:.1f} ms, D step {d_time * 1e3:.1f} ms"
        + (f", {flops[name] / 1e9:.3f} GFLOP/D step, "
           f"{entry['fraction_of_matmul_peak']:.1%} of peak" if flops[name] else ""))
  base = result["penalties"]["wgan_gp"]["d_step_s"]
  result["ssim_over_wgan_gp"] = result["penalties"]["ssim"]["d_step_s"] / base
  result["niqe_over_wgan_gp"] = result["penalties"]["niqe"]["d_step_s"] / base
  log(f"D step ratios: ssim/wgan_gp {result['ssim_over_wgan_gp']:.3f}, niqe/wgan_gp "
      f"{result['niqe_over_wgan_gp']:.3f}")
  result["speed_variants"] = speed_variants(config, images, repeats, log, variants)
  # Input pipeline alone.
  with tempfile.TemporaryDirectory() as tmp:
    trainer = trainer_lib.Trainer(config.replace(eval_every=0), tmp, images=images)
    iterator = iter(trainer.distributed_dataset(0))
    next(iterator)
    n = 20
    t0 = time.perf_counter()
    for _ in range(n):
      next(iterator)
    rate = n / (time.perf_counter() - t0)
  result["input_pipeline_iterations_per_s"] = rate
  result["input_pipeline_images_per_s"] = rate * config.batch_size * config.disc_iters
  result["niqe_penalty_ops"] = niqe_penalty_ops(config, op_count_baseline, log)
  result["lazy"] = lazy_ratios(config, images, repeats, log, penalties=lazy_penalties)
  result["regularizers"] = regularizer_ratios(config, images, repeats, log, regularizers)
  if peer_settings is not None:
    result["peer"] = torch_peer(config, images, repeats, log, peer_variants, peer_settings)
  result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
  log(f"input pipeline: {rate:.1f} iterations/s; peak RSS {result['peak_rss_mib']:.0f} MiB")
  return result
