"""Per-op time tables of one D step and one G step: ours (non-XLA, TF's profiler) beside the
PyTorch peer's (torch.profiler), same weights and batch: where each side spends its time."""

import collections
import tempfile

import tensorflow as tf

# Rows kept per table (the rest are summed into "(other)").
TOP = 15


def _table(times_ps, counts, runs, total_ms):
  """{op: {"ms", "count"}} per run, the TOP slowest, plus "(other)" and the total."""
  rows = sorted(times_ps, key=times_ps.get, reverse=True)
  table = {op: {"ms": times_ps[op] / runs / 1e9, "count": counts[op] / runs} for op in rows[:TOP]}
  rest = rows[TOP:]
  if rest:
    table["(other)"] = {"ms": sum(times_ps[op] for op in rest) / runs / 1e9,
                        "count": sum(counts[op] for op in rest) / runs}
  return {"ops": table, "op_ms": sum(times_ps.values()) / runs / 1e9,
          "executed_ops": sum(counts.values()) / runs, "wall_ms": total_ms}


def tf_op_times(fn, runs=3):
  """Per-op-type time of `runs` calls of `fn` (a warmed-up tf.function call), from the events
  TF's executor records on its compute threads (one per executed kernel)."""
  import time
  from qagan_bench import op_count
  t0 = time.perf_counter()
  times, counts = op_count.kernel_times(fn, runs)
  wall = (time.perf_counter() - t0) / runs * 1e3  # Profiling included: an upper bound.
  return _table(times, counts, runs, wall)


def torch_op_times(fn, runs=3):
  """Per-op self CPU time of `runs` calls of `fn`, from torch.profiler (self time: an op's
  children are not counted twice)."""
  import time
  import torch
  with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    t0 = time.perf_counter()
    for _ in range(runs):
      fn()
    wall = (time.perf_counter() - t0) / runs * 1e3
  times, counts = collections.Counter(), collections.Counter()
  for event in prof.key_averages():
    times[event.key] += int(event.self_cpu_time_total * 1e6)  # us -> ps
    counts[event.key] += event.count
  return _table(times, counts, runs, wall)


def run(config, runs=3, log=print, precision="float32"):
  """The tables of our plain (non-XLA) WGAN-GP D step and G step and the PyTorch peer's, from
  the same Keras weights and the same batch size: float32 (ours; PyTorch eager), or bfloat16
  (ours under --mixed_precision=bfloat16; PyTorch's channels-last bf16 autocast, its fastest
  bf16 setting), so that the two sides' gains from bf16 have a measured cause."""
  from qagan_bench import torch_peer as peer_lib
  from qagan_bench import train_bench
  from qagan_tf.train import distribution
  from qagan_tf.train import trainer as trainer_lib
  from qagan_tf.update import critic
  from qagan_tf.update import generator as generator_lib
  config = config.replace(penalty="wgan_gp", eval_every=0, jit_compile=False,
                          mixed_precision="bfloat16" if precision == "bfloat16" else "none")
  setting = "channels_last_bf16_autocast" if precision == "bfloat16" else "eager"
  peer_lib.check_architecture(config)
  g, d = peer_lib.keras_models(config, seed=config.seed)
  with tempfile.TemporaryDirectory() as tmp:
    trainer = trainer_lib.Trainer(config, tmp, distribution.make_strategy("auto"))
    trainer.generator.set_weights(g.get_weights())
    trainer.discriminator.set_weights(d.get_weights())
    inputs = next(iter(trainer.distributed_dataset(0)))
    real, z, eps, z_gen = inputs["real"][0], inputs["z"][0], inputs["eps"][0], inputs["z_gen"]

    parts = train_bench.plain_parts(trainer)

    @tf.function(autograph=False)
    def d_step():
      return critic.discriminator_update(parts, real, z, eps,
                                         global_batch_size=config.batch_size).values["d_loss"]

    @tf.function(autograph=False)
    def g_step():
      return generator_lib.generator_update(parts, z_gen,
                                            global_batch_size=z_gen.shape[0]).values["g_loss"]

    for fn in (d_step, g_step):
      fn().numpy()
      fn().numpy()
    ours = {"d_step": tf_op_times(lambda: d_step().numpy(), runs),
            "g_step": tf_op_times(lambda: g_step().numpy(), runs)}
  peer = peer_lib.Trainer(g, d, config, setting, seed=config.seed)
  for _ in range(2):
    peer.d_step().item()
    peer.g_step().item()
  theirs = {"d_step": torch_op_times(lambda: peer.d_step().item(), runs),
            "g_step": torch_op_times(lambda: peer.g_step().item(), runs)}
  for side, tables in (("ours", ours), (f"torch {setting}", theirs)):
    for step, t in tables.items():
      top = ", ".join(f"{op} {row['ms']:.1f}" for op, row in list(t["ops"].items())[:5])
      log(f"op profile {side} {step}: {t['executed_ops']:.0f} ops, {t['op_ms']:.1f} ms in ops "
          f"of {t['wall_ms']:.1f} ms wall; top (ms): {top}")
  return {"ours": ours, "torch_eager" if setting == "eager" else "torch": theirs,
          "torch_setting": setting, "precision": precision, "runs": runs,
          "note": "ours: TF executor kernel times on the compute threads; torch: self CPU time "
                  "per aten op. Wall ms includes each side's Python and dispatch."}
