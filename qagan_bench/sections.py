"""bin/benchmark's sections as one registry: `SECTIONS = {name: Section(check, run)}`, run in this
order. A new section is one entry here (and its flags in bin/benchmark_flags.py, if it has any).

Each section gets the benchmark's options (`opts`: bin/benchmark's flag values, read as
attributes) and a `Context` (the log, the training config of the flags, the output path):

- `check(opts)` raises ValueError naming a bad option and the fix, before anything is timed
  (every asked section is checked first, so a typo never costs a finished section);
- `run(opts, ctx)` returns {key: value}, merged into the JSON, which is saved after every
  section (a later section's failure never loses an earlier one).
"""

import dataclasses
import importlib.util
import os
from typing import Callable

DEFAULT_SECTIONS = ("train", "inception")


@dataclasses.dataclass(frozen=True)
class Section:
  """check(opts) -> None or ValueError; run(opts, ctx) -> {key: value}; help: one line."""
  check: Callable
  run: Callable
  help: str


@dataclasses.dataclass
class Context:
  """log(str); config() -> the flags' `TrainConfig`; output: the JSON's path; sections: the
  sections asked for (some change what another measures)."""
  log: Callable
  config: Callable
  output: str
  sections: tuple


def have_torch():
  return importlib.util.find_spec("torch") is not None


def _nothing(opts):
  del opts


def _all_or(values):
  return None if list(values) == ["all"] else list(values)


# --- peer: the race against the PyTorch peer -----------------------------------------------

def _check_peer(opts):
  if not have_torch():
    raise ValueError("--sections=peer needs PyTorch: pip install -e '.[test]' (torch==2.13.0, "
                     "CPU).")
  from qagan_bench import train_bench
  train_bench.check_peer_names(opts.peer_variants, _all_or(opts.peer_settings) or [])


def _run_peer(opts, ctx):
  """The race with its op profiles and the load averages around it. It runs before every other
  section, so that its start load is the machine's own and not the trail of earlier sections
  (the 1-minute average decays for minutes)."""
  from qagan_bench import op_profile
  from qagan_bench import torch_peer
  from qagan_bench import train_bench
  load_start = os.getloadavg()
  ctx.log(f"load average at the start: {load_start[0]:.2f} (1 min) on {os.cpu_count()} CPUs"
          + ("; the machine is busy, and a loaded figure does not count" if
             load_start[0] > 0.5 else ""))
  peer = train_bench.torch_peer(ctx.config(), None, opts.repeats, ctx.log, opts.peer_variants,
                                _all_or(opts.peer_settings) or list(torch_peer.SETTINGS))
  peer["op_profile"] = op_profile.run(ctx.config(), log=ctx.log)
  if "bfloat16" in opts.peer_variants:  # Where each side's bf16 time goes.
    peer["op_profile_bfloat16"] = op_profile.run(ctx.config(), log=ctx.log,
                                                 precision="bfloat16")
  load_end = os.getloadavg()
  peer["load_average"] = {"start": list(load_start), "end": list(load_end),
                          "cpus": os.cpu_count()}
  ctx.log(f"load average at the end: {load_end[0]:.2f} (1 min)")
  return {"peer": peer}


# --- train: the training step's figures -----------------------------------------------------

def _check_regularizer_names(opts):
  from qagan_bench import train_bench
  train_bench.check_names(opts.lazy_penalties, train_bench.PENALTIES, "--lazy_penalties")
  train_bench.check_names(opts.regularizer_variants, train_bench.REGULARIZERS[1:],
                          "--regularizer_variants")


def _check_train(opts):
  from qagan_bench import train_bench
  _check_regularizer_names(opts)
  if opts.speed_variants != ["all"]:
    train_bench.check_variant_names(opts.speed_variants)
  if opts.with_torch and have_torch():
    train_bench.check_peer_names(opts.peer_variants, _all_or(opts.peer_settings) or [])


def _run_train(opts, ctx):
  from qagan_bench import torch_peer
  from qagan_bench import train_bench
  peer_settings = None
  if "peer" in ctx.sections:
    pass  # The peer section races the peer, with its load averages and op profiles.
  elif opts.with_torch and have_torch():
    peer_settings = _all_or(opts.peer_settings) or list(torch_peer.SETTINGS)
  elif opts.with_torch:
    ctx.log("torch is not installed: no PyTorch peer (pip install torch).")
  train = train_bench.run(ctx.config(), repeats=opts.repeats, log=ctx.log,
                          variants=_all_or(opts.speed_variants), peer_settings=peer_settings,
                          peer_variants=opts.peer_variants,
                          op_count_baseline=opts.op_count_baseline,
                          lazy_penalties=opts.lazy_penalties,
                          regularizers=opts.regularizer_variants)
  out = {"train": train}
  out.update({k: train[k] for k in ("ssim_over_wgan_gp", "niqe_over_wgan_gp", "lazy",
                                    "regularizers") if k in train})
  if "peer" in train:
    out["peer"] = train.pop("peer")
  return out


# --- commits, regularizers, gpu_model, memory, niqe ----------------------------------------

def _check_commits(opts):
  if not (opts.compare_checkout and os.path.isdir(os.path.join(opts.compare_checkout,
                                                               "qagan_tf"))):
    raise ValueError(f"--sections=commits needs --compare_checkout=DIR, a checkout of qagan_tf "
                     f"(e.g. git worktree add /tmp/before <commit>); got "
                     f"{opts.compare_checkout!r}.")


def _run_commits(opts, ctx):
  from qagan_bench import commit_race
  return {"commits": commit_race.run(ctx.config(), opts.compare_checkout,
                                     rounds=opts.commit_rounds,
                                     iterations=opts.commit_iterations, log=ctx.log)}


def _run_regularizers(opts, ctx):
  if "train" in ctx.sections:
    return {}  # The train section timed them already.
  from qagan_bench import train_bench
  from qagan_tf import data as data_lib
  config = ctx.config()
  images = data_lib.load_images(config.dataset, config.resolution, config.data_dir or None,
                                config.num_examples, config.seed, config.download)
  return {"regularizers": train_bench.regularizer_ratios(config, images, opts.repeats, ctx.log,
                                                         opts.regularizer_variants)}


def _run_gpu_model(opts, ctx):
  from qagan_bench import gpu_model
  return {"gpu_model": gpu_model.run(ctx.config(), opts.op_count_baseline, log=ctx.log)}


def _check_memory(opts):
  from qagan_bench import memory_bench
  memory_bench.check_penalty_names(opts.memory_penalties)


def _run_memory(opts, ctx):
  from qagan_bench import memory_bench
  return {"memory": memory_bench.run(opts.memory_penalties, log=ctx.log)}


def _run_niqe(opts, ctx):
  del opts
  from qagan_bench import niqe_bench
  return {"niqe": niqe_bench.run(log=ctx.log)}


# --- quality: the learning-curve studies ----------------------------------------------------

def _check_quality(opts):
  from qagan_bench import quality_study
  quality_study.check_variant_names(opts.quality_variants or [])
  for value in list(opts.quality_seeds) + list(opts.quality_full_at):
    int(value)  # A ValueError names a seed or an iteration that is not a number.
  if not 0.5 <= opts.quality_level < 1:
    raise ValueError(f"--quality_level={opts.quality_level}: give a confidence level in "
                     "[0.5, 1), e.g. 0.95 or 0.975.")
  if opts.quality_inception_batch < 1:
    raise ValueError(f"--quality_inception_batch={opts.quality_inception_batch} must be at least "
                     "1 (images per Inception call; 64 by default).")
  if opts.quality_final_samples < opts.quality_samples:
    raise ValueError(f"--quality_final_samples={opts.quality_final_samples} must be at least "
                     f"--quality_samples={opts.quality_samples} (the curve's last point is its "
                     "subset).")


def quality_paths(output):
  """The table and plot written beside a quality section's JSON."""
  return output[:-len(".json")] + ".md", output[:-len(".json")] + ".png"


def _run_quality(opts, ctx):
  from qagan_bench import paired_stats
  from qagan_bench import quality_report
  from qagan_bench import quality_runner
  from qagan_bench import quality_study
  from qagan_tf.metrics import features
  from qagan_tf.utils import files
  from qagan_tf.utils import precision
  precision.set_tensor_float_32(False)
  extractor = features.InceptionFeatures(opts.bench_inception_weights or opts.inception_weights
                                         or None, batch_size=opts.quality_inception_batch)
  quality = quality_runner.run(
      ctx.config(), extractor,
      tuple(opts.quality_variants or quality_study.DEFAULT_VARIANTS),
      [int(s) for s in opts.quality_seeds], opts.quality_iterations, opts.quality_eval_every,
      opts.quality_samples, opts.quality_heldout, opts.quality_generator, opts.quality_workers,
      log=ctx.log, runs_dir=ctx.output[:-len(".json")] + ".runs",
      final_samples=opts.quality_final_samples, ema_samples=opts.quality_ema_samples,
      full_at=[int(i) for i in opts.quality_full_at], metrics=tuple(opts.quality_metrics),
      level=opts.quality_level)
  table_path, plot_path = quality_paths(ctx.output)
  quality_report.plot(quality, plot_path)
  ctx.log(f"Wrote {plot_path}")
  files.atomic_write_text(table_path, quality_report.markdown(quality))
  ctx.log(f"Wrote {table_path}")
  for entry in quality["comparisons"]:
    ctx.log(f"{entry['variant']} against {entry['control']}: "
            f"{paired_stats.sentence(entry, 4 if entry['metric'] == 'final_kid' else 2)}")
  return quality


# --- inception: the feature extractor's throughput ----------------------------------------

def _check_inception(opts):
  from qagan_tf.metrics import inception_weights
  try:
    inception_weights.resolve_path(opts.bench_inception_weights or opts.inception_weights)
  except inception_weights.WeightsError as e:
    raise ValueError(f"{e} (or leave the inception section out: --sections=train)") from None


def _run_inception(opts, ctx):
  from qagan_bench import inception_bench
  return {"inception": inception_bench.run(
      opts.bench_inception_weights or opts.inception_weights or None, opts.inception_batch,
      opts.repeats, with_torch=opts.with_torch, log=ctx.log)}


SECTIONS = {
    "peer": Section(_check_peer, _run_peer,
                    "only the race against the PyTorch peer, about 10 minutes; run it on a "
                    "quiet machine (it runs first)"),
    "train": Section(_check_train, _run_train,
                     "per-iteration and per-D-step time of wgan_gp, ssim and niqe, ratios, "
                     "FLOPs, the matmul peak's fraction, speed variants, lazy and regulariser "
                     "ratios, peak memory, input pipeline, the NIQE penalty's op count, and the "
                     "PyTorch peer when torch is installed"),
    "commits": Section(_check_commits, _run_commits,
                       "this checkout's default step against --compare_checkout's, "
                       "interleaved"),
    "regularizers": Section(_check_regularizer_names, _run_regularizers,
                            "only the train section's iteration time of R1/R2, LeCam and "
                            "DiffAugment over WGAN-GP's"),
    "gpu_model": Section(_nothing, _run_gpu_model,
                         "a GPU cost model computed here at the H100 run's config, checked "
                         "against benchmarks/gpu_h100_cifar10.json"),
    "memory": Section(_check_memory, _run_memory,
                      "peak memory of one iteration per penalty, resolution and precision, "
                      "each cell in its own process"),
    "niqe": Section(_nothing, _run_niqe,
                    "the NIQE penalty's meaning: batch sizes, validity, float32, splits"),
    "quality": Section(_check_quality, _run_quality,
                       "learning curves of --quality_variants from paired seeds, with paired "
                       "intervals, a table and a plot beside the JSON (hours; not a default)"),
    "inception": Section(_check_inception, _run_inception,
                         "Inception feature throughput (beside PyTorch running the same "
                         "weights when installed)"),
}


def check_names(names):
  """Raises ValueError naming unknown sections and listing `SECTIONS`."""
  bad = [s for s in names if s not in SECTIONS]
  if bad or not names:
    raise ValueError(f"unknown --sections {','.join(bad) or '(none given)'}; use "
                     f"{', '.join(SECTIONS)}.")


def help_text():
  """The --sections help: every section with its line."""
  return ("What to measure (run in this order): " + "; ".join(
      f"{name}: {s.help}" for name, s in SECTIONS.items()) + ".")


def release():
  """Drops the Trainers the timing sections shared (`step_timing.shared_trainer`): a process
  that runs the benchmark again (a test) builds its own."""
  import sys
  timing = sys.modules.get("qagan_bench.step_timing")
  if timing is not None:
    timing.release_shared()
