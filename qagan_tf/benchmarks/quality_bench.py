"""Quality benchmark: does each penalty train? FID, KID and NIQE of samples over iterations,
several seeds per variant, on a held-out split; D's weight variance and the d_loss curve.

Every variant of a seed starts from the same weights (initialisation is a function of the seed
only) and sees the same data order, so the iteration-0 figures are shared and differences come
from the penalties. FID here uses few samples (biased upwards, by the same amount for every
variant at the same sample count): compare variants with each other, not with published FIDs.
"""

import hashlib
import json
import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from qagan_tf.metrics import fid as fid_lib
from qagan_tf.metrics import kid as kid_lib
from qagan_tf.utils.progress import format_duration

# name -> config changes. The 1-GP weight follows the paper: 10 for the WGAN-GP baseline, 1 for
# QAGAN (with the QA penalty at 0.1); wgan_gp_gp1 is the QA runs' control (their 1-GP alone).
VARIANTS = {
    "wgan_gp": dict(penalty="wgan_gp", gp_weight=10.0, qa_weight=0.0),
    "wgan_gp_gp1": dict(penalty="wgan_gp", gp_weight=1.0, qa_weight=0.0),
    "ssim": dict(penalty="ssim", gp_weight=1.0, qa_weight=0.1),
    "niqe": dict(penalty="niqe", gp_weight=1.0, qa_weight=0.1),  # The defaults.
    "niqe_pooled": dict(penalty="niqe", gp_weight=1.0, qa_weight=0.1, niqe_pooling="pooled"),
    # The default before the groups and the gradient smoothing (qagan_tf 0.1, 2026-11-24).
    "niqe_batch": dict(penalty="niqe", gp_weight=1.0, qa_weight=0.1, niqe_pooling="batch",
                       niqe_smoothing="none"),
    "niqe_image": dict(penalty="niqe", gp_weight=1.0, qa_weight=0.1, niqe_pooling="image"),
    # Lazy regularisation (StyleGAN2 §B): the 1-GP and the QA penalty on every 4th D update,
    # weighted by 4.
    "wgan_gp_k4": dict(penalty="wgan_gp", gp_weight=10.0, qa_weight=0.0, gp_every=4),
    "ssim_k4": dict(penalty="ssim", gp_weight=1.0, qa_weight=0.1, gp_every=4, qa_every=4),
    "niqe_k4": dict(penalty="niqe", gp_weight=1.0, qa_weight=0.1, gp_every=4, qa_every=4),
    # Beyond the paper (its §5): SNGAN (hinge loss, spectral norm in D, no GP) with and without
    # the QA penalties (configs/cifar10_sngan*.cfg).
    "sngan": dict(loss="hinge", d_norm="spectral", penalty="none", gp_weight=0.0,
                  drift_weight=0.0, qa_weight=0.0),
    "sngan_ssim": dict(loss="hinge", d_norm="spectral", penalty="ssim", gp_weight=0.0,
                       drift_weight=0.0, qa_weight=0.1),
    "sngan_niqe": dict(loss="hinge", d_norm="spectral", penalty="niqe", gp_weight=0.0,
                       drift_weight=0.0, qa_weight=0.1),
}
DEFAULT_VARIANTS = ("wgan_gp", "ssim", "niqe", "niqe_batch")
# Seed of the held-out embedded crops (the training crops use the config's seed).
HELDOUT_SEED = 1_000_003
_SAMPLE_SEED = 20191209


def check_variant_names(names):
  """Raises ValueError naming unknown variants and the valid ones."""
  unknown = [n for n in names if n not in VARIANTS]
  if unknown:
    raise ValueError(f"unknown --quality_variants {','.join(unknown)}; choose from "
                     f"{','.join(VARIANTS)}.")


def split_images(config, heldout_count):
  """(training images, held-out images), both uint8 NHWC.

  embedded: the training crops as training uses them, and `heldout_count` crops drawn with
  another seed (other positions and sizes in the same photographs; none is a training crop).
  Other datasets: the last `heldout_count` images are held out and not trained on.
  """
  from qagan_tf import data as data_lib
  from qagan_tf.data import sources
  c = config
  if c.dataset == "embedded":
    train = data_lib.load_images(c.dataset, c.resolution, None, c.num_examples, c.seed)
    heldout = sources.embedded_images(c.resolution, heldout_count, HELDOUT_SEED)
    return train, heldout
  images = data_lib.load_images(c.dataset, c.resolution, c.data_dir or None, 0, c.seed,
                                c.download)
  if len(images) < 2 * heldout_count:
    raise ValueError(f"{c.dataset} has {len(images)} images; the quality benchmark holds out "
                     f"{heldout_count} (--quality_heldout) and needs at least as many to train.")
  train = images[:-heldout_count]
  return (train[:c.num_examples] if c.num_examples else train), images[-heldout_count:]


def d_weight_variance(discriminator):
  """Variance of all of D's kernel weights together (supplementary §4)."""
  kernels = [v.numpy().ravel() for v in discriminator.trainable_variables if "kernel" in v.path]
  return float(np.var(np.concatenate(kernels)))


class Scorer:
  """FID and KID against held-out real images, and NIQE of the samples (classic model)."""

  def __init__(self, extractor, num_samples, heldout=None, reference=None):
    """Args: heldout: uint8 images to build the reference from, or reference: a dict made by
    `reference_of` (mu, sigma, activations, heldout_niqe), e.g. sent to a worker process."""
    self.extractor, self.num_samples = extractor, num_samples
    self.reference = reference if reference is not None else reference_of(extractor, heldout)

  def __call__(self, generator):
    from qagan_tf import sampling
    from qagan_tf.iqa import niqe_metric
    ref = self.reference
    images = sampling.generate(generator, self.num_samples, seed=_SAMPLE_SEED)
    pool3 = self.extractor(images)["pool3"]
    mu, sigma = fid_lib.activation_statistics(pool3)
    kid, _ = kid_lib.kernel_inception_distance(
        pool3, ref["activations"], num_subsets=100,
        subset_size=min(1000, len(pool3), len(ref["activations"])))
    return {"fid": max(fid_lib.frechet_distance(mu, sigma, ref["mu"], ref["sigma"]), 0.0),
            "kid": kid, "niqe": float(np.mean(niqe_metric.niqe_of_images(images)))}


def reference_of(extractor, heldout):
  """Inception statistics, activations and mean NIQE of the held-out images."""
  from qagan_tf.iqa import niqe_metric
  pool3 = extractor(heldout)["pool3"]
  mu, sigma = fid_lib.activation_statistics(pool3)
  return {"mu": mu, "sigma": sigma, "activations": pool3,
          "heldout_niqe": float(np.mean(niqe_metric.niqe_of_images(heldout)))}


_WORKER = {}


def _init_worker(weights, num_samples, reference, threads):
  """Runs once in each worker process: TF threads, the Inception and the scorer."""
  tf.config.threading.set_intra_op_parallelism_threads(threads)
  tf.config.threading.set_inter_op_parallelism_threads(threads)
  from qagan_tf.metrics import features
  from qagan_tf.utils import precision
  precision.set_tensor_float_32(False)
  _WORKER["scorer"] = Scorer(features.InceptionFeatures(weights), num_samples,
                             reference=reference)


def _worker_run(config, heldout_count, eval_points, log_every, initial, generator):
  train, _ = split_images(config, heldout_count)
  lines = []
  result, _ = _train_and_score(config, train, _WORKER["scorer"], eval_points, log_every,
                               initial, lines.append, generator)
  return result, lines


def _train_and_score(config, images, scorer, eval_points, log_every, initial, log, generator):
  """One run: scores at each of `eval_points` (iteration 0 is `initial` when given)."""
  from qagan_tf.train import distribution
  from qagan_tf.train import trainer as trainer_lib
  with tempfile.TemporaryDirectory() as tmp:
    trainer = trainer_lib.Trainer(config, tmp, distribution.make_strategy("default"),
                                  images=images)
    iterator = iter(trainer.distributed_dataset(0))
    run = {"iterations": [], "fid": [], "kid": [], "niqe": [], "d_weight_variance": [],
           "loss_iterations": [], "d_loss": [], "g_loss": [], "wasserstein": []}
    step, t0, train_s = 0, time.time(), 0.0
    for target in eval_points:
      while step < target:
        count = min(log_every - step % log_every, target - step)
        t = time.time()
        trainer.train_iterations(iterator, count)
        step += count
        means = trainer.pop_metric_means()
        train_s += time.time() - t
        run["loss_iterations"].append(step)
        for key in ("d_loss", "g_loss", "wasserstein"):
          run[key].append(means.get(key, float("nan")))
      model = trainer.ema_generator if generator == "ema" else trainer.generator
      scores = initial if (target == 0 and initial) else scorer(model)
      run["iterations"].append(target)
      for key in ("fid", "kid", "niqe"):
        run[key].append(scores[key])
      run["d_weight_variance"].append(d_weight_variance(trainer.discriminator))
      log(f"  iteration {target}: FID {scores['fid']:.1f} KID {scores['kid']:.4f} NIQE "
          f"{scores['niqe']:.2f} (elapsed {time.time() - t0:.0f} s)")
    run["train_seconds"] = train_s
    run["seconds"] = time.time() - t0
    return run, None


def _summarise(runs, spread_key="fid"):
  """Per-iteration mean and standard deviation over seeds of a list of runs."""
  out = {"iterations": runs[0]["iterations"], "seeds": len(runs)}
  for key in ("fid", "kid", "niqe", "d_weight_variance"):
    values = np.array([r[key] for r in runs], np.float64)
    out[f"{key}_mean"] = values.mean(axis=0).tolist()
    out[f"{key}_std"] = values.std(axis=0).tolist()
  # The schema names the mean of D's weight variance plainly.
  out["d_weight_variance"] = out["d_weight_variance_mean"]
  losses = np.array([r["d_loss"] for r in runs], np.float64)
  out["loss_iterations"] = runs[0]["loss_iterations"]
  out["d_loss_mean"] = np.nanmean(losses, axis=0).tolist()
  out["d_loss_std"] = np.nanstd(losses, axis=0).tolist()
  fid = np.array([r[spread_key] for r in runs], np.float64)
  out["final_over_initial_fid"] = float(fid[:, -1].mean() / fid[:, 0].mean())
  out["minutes_per_run"] = float(np.mean([r["seconds"] for r in runs]) / 60.0)
  out["per_seed"] = runs
  return out


class RunStore:
  """Finished runs on disk, one JSON file each, written the moment a run finishes, so that a
  killed benchmark keeps them and a rerun skips them. A file is reused only when its key (every
  setting that shapes the run and its scores) matches."""

  def __init__(self, directory, log=print):
    self.directory, self.log = directory, log
    if directory:
      os.makedirs(directory, exist_ok=True)

  @staticmethod
  def key(**settings):
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()

  def _path(self, name):
    return os.path.join(self.directory, f"{name}.json")

  def get(self, name, key):
    if not self.directory or not os.path.exists(self._path(name)):
      return None
    with open(self._path(name)) as f:
      stored = json.load(f)
    if stored.get("key") != key:
      self.log(f"quality: {self._path(name)} is of other settings; run again.")
      return None
    return stored["result"]

  def put(self, name, key, result):
    if self.directory:
      from qagan_tf.utils import files
      files.atomic_write_text(self._path(name), json.dumps({"key": key, "result": result}) + "\n")


def run(config, extractor, variants=DEFAULT_VARIANTS, seeds=(0, 1, 2), iterations=300,
        eval_every=100, num_samples=256, heldout_count=1024, generator="raw", workers=1,
        log=print, runs_dir=None):
  """Trains every variant from every seed and scores it at fixed iterations.

  Args:
    config: the base `TrainConfig` (e.g. configs/quality_cpu.cfg); each variant changes its
      penalty and weights, each seed its `seed` (initialisation, data order, noise).
    extractor: `features.InceptionFeatures`.
    variants: names from VARIANTS.
    seeds: training seeds.
    iterations: generator iterations per run.
    eval_every: iterations between scores (plus iteration 0).
    num_samples: generated images per score.
    heldout_count: held-out real images (FID/KID reference).
    generator: "raw" (the generator being trained) or "ema" (its EMA copy; with the default decay
      0.99 it lags about 100 iterations, a third of a short run).
    workers: runs trained at once, each in its own process with 1 TF thread per core it gets
      (on 2 cores, 2 single-threaded processes train 1.4x faster in total than one process
      with 2 threads: these networks are too small to keep 2 threads busy).
    runs_dir: optional directory (see `RunStore`): every finished run is written there at once,
      and runs already there with the same settings are not trained again.

  Returns:
    {"quality": {variant: summary}, "reference": {...}, "settings": {...}, "verdicts": {...}}.
  """
  check_variant_names(variants)
  store = RunStore(runs_dir, log)
  eval_points = sorted(set([0] + list(range(eval_every, iterations, eval_every))
                           + [iterations]))
  train, heldout = split_images(config, heldout_count)
  log(f"quality: {len(train)} training and {len(heldout)} held-out images; variants "
      f"{', '.join(variants)}; seeds {', '.join(map(str, seeds))}; scores at {eval_points}; "
      f"{workers} worker(s)")
  scorer = Scorer(extractor, num_samples, heldout=heldout)
  log(f"quality: held-out NIQE {scorer.reference['heldout_niqe']:.2f}")
  log_every = max(1, min(eval_every, 20))
  shared = dict(eval_points=eval_points, num_samples=num_samples, heldout=heldout_count,
                generator=generator, weights=extractor.info.get("sha256", extractor.info["path"]))
  jobs, runs = [], {name: {} for name in variants}
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
      store.put(f"initial-seed{seed}", initial_key, initial)
    log(f"quality: seed {seed}, iteration 0: FID {initial['fid']:.1f}")
    for name in variants:
      c = config.replace(seed=seed, max_steps=iterations, eval_every=0,
                         steps_per_call=1, **VARIANTS[name]).validate()
      key = store.key(kind="run", config=c.to_dict(), **shared)
      done = store.get(f"{name}-seed{seed}", key)
      if done is not None:
        runs[name][seed] = done
      else:
        jobs.append((name, seed, c, initial, key))
  if len(jobs) < len(variants) * len(seeds):
    log(f"quality: {len(variants) * len(seeds) - len(jobs)} finished run(s) reused from "
        f"{runs_dir}; {len(jobs)} to train")
  t0 = time.time()
  if workers <= 1:
    for name, seed, c, initial, key in jobs:
      log(f"quality: {name}, seed {seed}")
      result, _ = _train_and_score(c, train, scorer, eval_points, log_every, initial, log,
                                   generator)
      store.put(f"{name}-seed{seed}", key, result)
      runs[name][seed] = result
  elif jobs:
    import concurrent.futures
    import multiprocessing
    threads = max(1, (os.cpu_count() or 1) // workers)
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
        initargs=(extractor.info["path"], num_samples, scorer.reference, threads)) as pool:
      futures = {pool.submit(_worker_run, c, heldout_count, eval_points, log_every, initial,
                             generator): (name, seed, key)
                 for name, seed, c, initial, key in jobs}
      times = []
      for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
        name, seed, key = futures[future]
        result, lines = future.result()
        store.put(f"{name}-seed{seed}", key, result)
        runs[name][seed] = result
        times.append(result["seconds"])
        # `workers` runs train at once: the runs left take their mean time per run, divided
        # among the workers (elapsed / done would count the runs still in flight as not begun).
        eta = np.mean(times) * (len(jobs) - done) / min(workers, len(jobs))
        log(f"quality: {name}, seed {seed} done ({done}/{len(jobs)}; ETA "
            f"{format_duration(eta)}): " + "; ".join(
                line.strip() for line in lines[-1:]))
  quality = {name: _summarise([runs[name][seed] for seed in seeds]) for name in variants}
  settings = {"iterations": iterations, "eval_points": eval_points, "num_samples": num_samples,
              "generator": generator, "workers": workers, "minutes": (time.time() - t0) / 60,
              "heldout_count": len(heldout), "training_images": len(train), "seeds": list(seeds),
              "variants": {n: VARIANTS[n] for n in variants},
              "config": {k: config.to_dict()[k] for k in (
                  "dataset", "resolution", "width", "batch_size", "disc_iters", "lr",
                  "lr_decay", "beta1", "beta2", "ema_decay", "niqe_prior", "niqe_pooling",
                  "jit_compile")}}
  return {"quality": quality, "reference": {"heldout_niqe": scorer.reference["heldout_niqe"]},
          "settings": settings, "verdicts": verdicts(quality)}


def _initial_scores(config, images, scorer):
  """Scores of the untrained generator of config.seed (what every variant starts from)."""
  from qagan_tf.train import distribution
  from qagan_tf.train import trainer as trainer_lib
  with tempfile.TemporaryDirectory() as tmp:
    trainer = trainer_lib.Trainer(config, tmp, distribution.make_strategy("default"),
                                  images=images)
    return scorer(trainer.generator)


def verdicts(quality, baseline="wgan_gp"):
  """The issue's acceptance figures: learning (final FID <= 60% of iteration 0's) for every
  variant, and each QA variant's final FID against the baseline's (within twice the larger
  seed spread)."""
  out = {}
  base = quality.get(baseline)
  for name, q in quality.items():
    entry = {"final_over_initial_fid": q["final_over_initial_fid"],
             "learns": q["final_over_initial_fid"] <= 0.6}
    if base is not None and name != baseline:
      spread = max(q["fid_std"][-1], base["fid_std"][-1])
      entry["final_fid_minus_baseline"] = q["fid_mean"][-1] - base["fid_mean"][-1]
      entry["twice_spread"] = 2.0 * spread
      entry["no_worse_than_baseline"] = entry["final_fid_minus_baseline"] <= 2.0 * spread
    out[name] = entry
  return out


def markdown(result):
  """The result as Markdown a reader can paste: FID (mean ± std over seeds) at every scored
  iteration, then final KID, NIQE, D's weight variance, time per run and the verdicts."""
  q_all, s = result["quality"], result["settings"]
  iterations = next(iter(q_all.values()))["iterations"]
  lines = [
      f"FID of {s['num_samples']} samples against {s['heldout_count']} held-out images "
      f"(mean ± std over seeds {', '.join(map(str, s['seeds']))}; {s['generator']} generator):",
      "",
      "| variant | " + " | ".join(f"it {i}" for i in iterations) + " | final / initial |",
      "|---" * (len(iterations) + 2) + "|"]
  for name, q in q_all.items():
    cells = [f"{m:.1f} ± {d:.1f}" for m, d in zip(q["fid_mean"], q["fid_std"])]
    lines.append(f"| {name} | " + " | ".join(cells) + f" | {q['final_over_initial_fid']:.2f} |")
  lines += ["", f"At iteration {iterations[-1]} (held-out images' NIQE "
                f"{result['reference']['heldout_niqe']:.2f}):", "",
            "| variant | KID ×1e3 | NIQE | D weight variance | minutes / run | learns "
            "(final/initial FID ≤ 0.6) | final FID − wgan_gp (2 × spread) |",
            "|---|---|---|---|---|---|---|"]
  for name, q in q_all.items():
    v = result["verdicts"][name]
    versus = (f"{v['final_fid_minus_baseline']:+.1f} ({v['twice_spread']:.1f}): "
              f"{'no worse' if v['no_worse_than_baseline'] else 'worse'}"
              if "twice_spread" in v else "(baseline)")
    lines.append(
        f"| {name} | {1e3 * q['kid_mean'][-1]:.1f} ± {1e3 * q['kid_std'][-1]:.1f} | "
        f"{q['niqe_mean'][-1]:.2f} ± {q['niqe_std'][-1]:.2f} | "
        f"{q['d_weight_variance_mean'][-1]:.2e} | {q['minutes_per_run']:.1f} | "
        f"{'yes' if v['learns'] else 'no'} | {versus} |")
  return "\n".join(lines) + "\n"


def plot(result, path):
  """FID over iterations (mean and spread over seeds) and d_loss curves, one line per variant."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from qagan_tf.utils import files
  fig, (ax_fid, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2))
  for name, q in result["quality"].items():
    it = np.array(q["iterations"])
    mean, std = np.array(q["fid_mean"]), np.array(q["fid_std"])
    line, = ax_fid.plot(it, mean, marker="o", label=f"{name} (n={q['seeds']})")
    ax_fid.fill_between(it, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    ax_loss.plot(q["loss_iterations"], q["d_loss_mean"], color=line.get_color(), label=name)
  s = result["settings"]
  ax_fid.set(xlabel="generator iteration", ylabel=f"FID ({s['num_samples']} samples vs "
             f"{s['heldout_count']} held-out)", title="FID (mean ± std over seeds)")
  ax_loss.set(xlabel="generator iteration", ylabel="d_loss (mean over seeds)",
              title="critic loss", yscale="symlog")
  ax_fid.legend(fontsize=8)
  ax_loss.legend(fontsize=8)
  fig.tight_layout()
  files.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
  plt.close(fig)
