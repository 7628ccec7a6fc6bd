"""Iteration-time ratios timed round-robin in one process: lazy regularisation against every
update (`lazy_ratios`), and each regulariser against WGAN-GP (`regularizer_ratios`)."""

import math

from qagan_bench.step_timing import PENALTIES, _interleaved_times, shared_trainer


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
  iterations = lazy_cycle(every, config.disc_iters)
  calls = {}
  for name in penalties:
    for k in (1, every):
      trainer, iterator = shared_trainer(config.replace(
          penalty=name, qa_weight=max(config.qa_weight, 0.1), eval_every=0, gp_every=k,
          qa_every=k, jit_compile=False), images)

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
REGULARIZERS = ("wgan_gp", "r3", "wgan_gp_lecam", "wgan_gp_da", "wgan_gp_ada", "r3_niqe")


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
  calls = {}
  for name in names:
    trainer, iterator = shared_trainer(config.replace(
        eval_every=0, jit_compile=False, **quality_bench.VARIANTS[name]), images)
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
