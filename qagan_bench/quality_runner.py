"""The quality benchmark's runner (`run`): every variant from every seed, in worker processes,
each finished run written at once to its run store (`RunStore`) and reused by a rerun."""

import hashlib
import json
import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from qagan_bench import paired_stats
from qagan_bench.quality_report import comparisons, exploratory, summarise
from qagan_bench.quality_scoring import MechanismProbe, Scorer, train_and_score
from qagan_bench.quality_study import (CONTROLS, DEFAULT_VARIANTS, MECHANISM_METRICS, METRICS,
                                       OVERFIT_METRICS, VARIANTS, check_variant_names,
                                       code_commit, cpu_model, split_images)
from qagan_tf.utils.progress import format_duration


_WORKER = {}


def _init_worker(weights, batch_size, num_samples, reference, threads):
  """Runs once in each worker process: TF threads, the Inception and the scorer."""
  tf.config.threading.set_intra_op_parallelism_threads(threads)
  tf.config.threading.set_inter_op_parallelism_threads(threads)
  from qagan_tf.metrics import features
  from qagan_tf.utils import precision
  precision.set_tensor_float_32(False)
  _WORKER["scorer"] = Scorer(features.InceptionFeatures(weights, batch_size=batch_size),
                             num_samples, reference=reference)


def _worker_run(config, heldout_count, eval_points, log_every, initial, generator, final):
  train, _ = split_images(config, heldout_count)
  lines = []
  result = train_and_score(config, train, _WORKER["scorer"], eval_points, log_every,
                            initial, lines.append, generator, final)
  return result, lines


class RunStore:
  """Finished runs on disk, one JSON file each, written the moment a run finishes, so that a
  killed benchmark keeps them and a rerun skips them. A file is reused only when its key (every
  setting that shapes the run and its scores) matches. A run file holds its variant, seed and
  the training code's commit beside its result."""

  def __init__(self, directory, log=print):
    self.directory, self.log = directory, log
    if directory:
      os.makedirs(directory, exist_ok=True)

  @staticmethod
  def key(**settings):
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()

  def _path(self, name):
    return os.path.join(self.directory, f"{name}.json")

  def get(self, name, key, with_commit=False):
    if not self.directory or not os.path.exists(self._path(name)):
      return None
    with open(self._path(name)) as f:
      stored = json.load(f)
    if stored.get("key") != key:
      self.log(f"quality: {self._path(name)} is of other settings; run again.")
      return None
    return (stored["result"], stored.get("commit")) if with_commit else stored["result"]

  def put(self, name, key, result, **fields):
    if self.directory:
      from qagan_tf.utils import files
      files.atomic_write_text(self._path(name), json.dumps(
          dict(fields, key=key, result=result)) + "\n")


def run(config, extractor, variants=DEFAULT_VARIANTS, seeds=(0, 1, 2, 3, 4), iterations=800,
        eval_every=200, num_samples=256, heldout_count=1024, generator="raw", workers=1,
        log=print, runs_dir=None, final_samples=1024, ema_samples=256, commit=None,
        full_at=(), metrics=METRICS, level=0.95):
  """Trains every variant from every seed and scores it at fixed iterations.

  Args:
    config: the base `TrainConfig` (e.g. configs/quality_cpu.cfg); each variant changes its
      penalty and weights, each seed its `seed` (initialisation, data order, noise).
    extractor: `features.InceptionFeatures` (workers load theirs with its batch size).
    variants: names from VARIANTS.
    seeds: training seeds.
    iterations: generator iterations per run.
    eval_every: iterations between scores (plus iteration 0).
    num_samples: generated images per score of the curves.
    heldout_count: held-out real images (FID/KID reference).
    generator: "raw" (the generator being trained) or "ema" (its EMA copy; with the default decay
      0.99 it lags about 100 iterations) for the curves; the final score is always the raw one's.
    workers: runs trained at once, each in its own process with 1 TF thread per core it gets
      (on 2 cores, 2 single-threaded processes train 1.4x faster in total than one process
      with 2 threads: these networks are too small to keep 2 threads busy).
    runs_dir: optional directory (see `RunStore`): every finished run is written there at once,
      and runs already there with the same settings are not trained again.
    final_samples: raw-generator samples of the final FID and KID (the comparisons' figures).
    ema_samples: samples of the EMA generator's final FID and KID (0: not scored).
    commit: the training code's commit recorded with each new run (default: `code_commit()`).
    full_at: scored iterations before the last that are also scored on `final_samples` (each
      run's fid_at_<i> and kid_at_<i>: a pre-registered early endpoint).
    metrics: the per-run values the `comparisons` pair (final_fid, final_kid, gradient_niqe,
      fid_at_<i>, kid_at_<i>).
    level: the comparisons' two-sided confidence level (0.975 for two primary endpoints).

  Returns:
    {"quality": {variant: summary}, "comparisons": [...], "mechanism_comparisons": [...],
     "exploratory": [...], "reference": {...}, "settings": {...}, "measured_commit": commit}.

  Raises:
    ValueError: unknown variants, or runs from different commits (`paired_stats`).
  """
  check_variant_names(variants)
  if final_samples < num_samples:
    raise ValueError(f"--quality_final_samples={final_samples} must be at least "
                     f"--quality_samples={num_samples} (the curve's last point is its subset).")
  commit = commit or code_commit()
  store = RunStore(runs_dir, log)
  eval_points = sorted(set([0] + list(range(eval_every, iterations, eval_every))
                           + [iterations]))
  full_at = sorted(set(full_at))
  stray = [i for i in full_at if i not in eval_points[1:-1]]
  if stray:
    raise ValueError(f"--quality_full_at={','.join(map(str, stray))}: not a scored iteration "
                     f"before the last; choose from {','.join(map(str, eval_points[1:-1]))}.")
  known = (set(METRICS) | set(OVERFIT_METRICS)
           | {f"{k}_at_{i}" for k in ("fid", "kid") for i in full_at})
  unknown = [m for m in metrics if m not in known]
  if unknown:
    raise ValueError(f"unknown --quality_metrics {','.join(unknown)}; choose from "
                     f"{','.join(sorted(known))} (fid_at_<i> needs --quality_full_at=<i>).")
  train, heldout = split_images(config, heldout_count)
  log(f"quality: {len(train)} training and {len(heldout)} held-out images; variants "
      f"{', '.join(variants)}; seeds {', '.join(map(str, seeds))}; scores at {eval_points}, "
      f"final FID on {final_samples} samples; {workers} worker(s); code {commit[:12]}")
  scorer = Scorer(extractor, num_samples, heldout=heldout)
  log(f"quality: held-out NIQE {scorer.heldout_niqe:.2f}")
  log_every = max(1, min(eval_every, 20))
  final = {"samples": final_samples, "ema_samples": ema_samples}
  if full_at:  # (Absent otherwise: the runs of earlier studies keep their keys.)
    final["full_at"] = full_at
  cpu = cpu_model()
  shared = dict(eval_points=eval_points, num_samples=num_samples, heldout=heldout_count,
                generator=generator, weights=extractor.info.get("sha256", extractor.info["path"]))
  jobs, runs, commits = [], {name: {} for name in variants}, {}
  for seed in seeds:
    # Iteration 0 is the same for every variant of a seed (same initial weights).
    first = config.replace(seed=seed, **VARIANTS[variants[0]]).validate()
    initial_key = store.key(kind="initial", config={
        k: v for k, v in first.to_dict().items() if k in ("dataset", "num_examples",
                                                           "resolution", "width", "z_dim",
                                                           "seed")}, **shared)
    initial = store.get(f"initial-seed{seed}", initial_key)
    if initial is None:
      initial = _initial_scores(first, train, scorer)
      store.put(f"initial-seed{seed}", initial_key, initial, seed=seed, commit=commit)
    log(f"quality: seed {seed}, iteration 0: FID {initial['fid']:.1f}")
    for name in variants:
      c = config.replace(seed=seed, max_steps=iterations, eval_every=0,
                         steps_per_call=1, **VARIANTS[name]).validate()
      key = store.key(kind="run", config=c.to_dict(), probe=True, **final, **shared)
      done = store.get(f"{name}-seed{seed}", key, with_commit=True)
      if done is not None:
        runs[name][seed], commits[f"{name}-seed{seed}"] = done
      else:
        jobs.append((name, seed, c, initial, key))
  if len(jobs) < len(variants) * len(seeds):
    log(f"quality: {len(variants) * len(seeds) - len(jobs)} finished run(s) reused from "
        f"{runs_dir}; {len(jobs)} to train")
  if commits:  # Refuse before hours of training that could never be compared.
    paired_stats.check_one_commit(dict(commits, **{f"{n}-seed{s}": commit
                                                   for n, s, *_ in jobs}))

  def finished(name, seed, key, result):
    store.put(f"{name}-seed{seed}", key, result, variant=name, seed=seed, commit=commit,
              cpu=cpu)
    runs[name][seed], commits[f"{name}-seed{seed}"] = result, commit

  t0 = time.time()
  if workers <= 1:
    for done, (name, seed, c, initial, key) in enumerate(jobs, 1):
      log(f"quality: {name}, seed {seed} ({done}/{len(jobs)})")
      finished(name, seed, key, train_and_score(c, train, scorer, eval_points, log_every,
                                                 initial, log, generator, final))
  elif jobs:
    import concurrent.futures
    import multiprocessing
    threads = max(1, (os.cpu_count() or 1) // workers)
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
        initargs=(extractor.info["path"], extractor.batch_size, num_samples, scorer.reference,
                  threads)) as pool:
      futures = {pool.submit(_worker_run, c, heldout_count, eval_points, log_every, initial,
                             generator, final): (name, seed, key)
                 for name, seed, c, initial, key in jobs}
      times = []
      for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
        name, seed, key = futures[future]
        result, lines = future.result()
        finished(name, seed, key, result)
        times.append(result["seconds"])
        # `workers` runs train at once: the runs left take their mean time per run, divided
        # among the workers (elapsed / done would count the runs still in flight as not begun).
        eta = np.mean(times) * (len(jobs) - done) / min(workers, len(jobs))
        log(f"quality: {name}, seed {seed} done ({done}/{len(jobs)}; ETA "
            f"{format_duration(eta)}): " + "; ".join(
                line.strip() for line in lines[-1:]))
  measured = paired_stats.check_one_commit(commits)
  quality = {name: summarise([runs[name][seed] for seed in seeds]) for name in variants}
  probe = MechanismProbe(train, config.z_dim, config.batch_size, config.niqe.prior)
  settings = {"iterations": iterations, "eval_points": eval_points, "num_samples": num_samples,
              "full_at": full_at, "metrics": list(metrics), "level": level,
              "final_samples": final_samples, "ema_samples": ema_samples,
              "generator": generator, "workers": workers, "minutes": (time.time() - t0) / 60,
              "heldout_count": len(heldout), "training_images": len(train), "seeds": list(seeds),
              "variants": {n: VARIANTS[n] for n in variants},
              "controls": {n: CONTROLS[n] for n in variants if CONTROLS.get(n) in variants},
              "probe": probe.settings(),
              "config": {k: config.to_dict()[k] for k in (
                  "dataset", "resolution", "width", "batch_size", "disc_iters", "lr",
                  "lr_decay", "beta1", "beta2", "ema_decay", "niqe_prior", "niqe_pooling",
                  "jit_compile")}}
  return {"quality": quality, "comparisons": comparisons(runs, metrics=metrics, level=level),
          "mechanism_comparisons": comparisons(runs, metrics=MECHANISM_METRICS),
          "exploratory": exploratory(quality, seeds),
          "reference": {"heldout_niqe": scorer.heldout_niqe},
          "settings": settings, "measured_commit": measured}


def _initial_scores(config, images, scorer):
  """Scores of the untrained generator of config.seed (what every variant starts from)."""
  from qagan_tf.train import distribution
  from qagan_tf.train import trainer as trainer_lib
  with tempfile.TemporaryDirectory() as tmp:
    trainer = trainer_lib.Trainer(config, tmp, distribution.make_strategy("default"),
                                  images=images)
    return scorer(trainer.generator)
