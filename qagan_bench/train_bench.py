"""Training-step figures: wgan_gp vs ssim vs niqe side by side in one process (`run`), with the
speed variants, the NIQE penalty's op count, and the parts timed in their own modules (the peer
race: `peer_race`; lazy and regulariser ratios: `ratio_bench`; shared timing: `step_timing`),
whose names this module also gives."""

import resource
import time

from qagan_bench.peer_race import (  # noqa: F401
    PEER_VARIANTS, check_peer_names, cpu_precision_flags, torch_peer)
from qagan_bench.ratio_bench import (  # noqa: F401
    REGULARIZERS, check_names, lazy_cycle, lazy_ratios, regularizer_ratios)
from qagan_bench.step_timing import (  # noqa: F401
    PENALTIES, VARIANTS, _d_step_fn, _graph_flops, _interleaved_times, _matmul_fn,
    _variant_calls, check_variant_names, plain_parts, shared_trainer)
from qagan_tf.utils import precision


def speed_variants(config, images, repeats=5, log=print, names=None):
  """Seconds per training step (as `Trainer.train` runs it) with XLA, several steps per call,
  mixed precision and TF32 on/off, timed round-robin in one process, for the configured penalty.

  Args:
    names: the VARIANTS to time (default all; must include baseline).
  """
  names = list(VARIANTS) if names is None else list(names)
  check_variant_names(names)
  timed = _interleaved_times(_variant_calls(config, images, names), repeats * 2)
  precision.set_tensor_float_32(config.allow_tf32)
  out = {name: {"step_s": timed[name][0] / VARIANTS[name][1]} for name in names}
  for name, entry in out.items():
    entry["speedup_over_baseline"] = out["baseline"]["step_s"] / entry["step_s"]
    log(f"{config.penalty} {name}: {entry['step_s'] * 1e3:.1f} ms/step "
        f"({entry['speedup_over_baseline']:.2f}x)")
  return out


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
  result = {"config": {k: getattr(config, k) for k in ("resolution", "width", "batch_size",
                                                       "disc_iters", "allow_tf32")},
            "penalties": {}}
  precision.set_tensor_float_32(config.allow_tf32)
  images = None
  matmul, matmul_flops = _matmul_fn()
  d_steps, iterations, flops = {}, {}, {}
  for name in PENALTIES:
    c = config.replace(penalty=name, qa_weight=max(config.qa_weight, 0.1),
                            eval_every=0)
    trainer, iterator = shared_trainer(c, images)
    images = trainer.load_data()
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
  # Input pipeline alone (a fresh iterator of the run's data).
  trainer, _ = shared_trainer(config.replace(eval_every=0), images)
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
