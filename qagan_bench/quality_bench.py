"""Quality benchmark: does a penalty change training, and does it move its own target?

Each variant is trained from the same paired seeds: every variant of seed s starts from the same
weights (initialisation is a function of the seed only) and sees the same data order, so the
iteration-0 figures are shared and per-seed differences come from the objective. At every
scored iteration a run records FID/KID of `num_samples` samples against held-out images, the
mean NIQE of the samples, D's weight variance, and what the penalties penalise, observed on a
fixed probe batch (`MechanismProbe`: never added to a loss). At the end it scores the raw
generator on `final_samples` samples (and the EMA copy on `num_samples`). The study's JSON pairs
every variant with its control (`CONTROLS`) on final FID, final KID and the gradient's NIQE, with
95% t-intervals (`paired_stats`). FID on few samples is biased upwards by about the same amount
at the same sample count: compare variants with each other, not with published FIDs.
"""

import hashlib
import json
import os
import subprocess
import tempfile
import time

import numpy as np
import tensorflow as tf

from qagan_bench import paired_stats
from qagan_tf.metrics import fid as fid_lib
from qagan_tf.metrics import kid as kid_lib
from qagan_tf.utils.progress import format_duration

DIFFAUGMENT = "color,translation,cutout"
# R3GAN's objective (Huang et al. 2024): the relativistic pairing loss with zero-centred R1 and R2
# on every D update, no 1-GP and no drift. gamma 0.05 is our stated choice for this scale (R3GAN
# trains CIFAR-10 with a small gamma; its exact schedule is not reproduced here).
R3_GAMMA = 0.05
R3 = dict(loss="rpgan", penalty="none", gp_weight=0.0, drift_weight=0.0, qa_weight=0.0,
          r1_weight=R3_GAMMA, r2_weight=R3_GAMMA)
# name -> config changes. The 1-GP weight follows the paper: 10 for the WGAN-GP baseline, 1 for
# QAGAN (with the QA penalty at 0.1); wgan_gp_gp1 is the QA runs' control (their 1-GP alone).
VARIANTS = {
    "wgan_gp": dict(penalty="wgan_gp", gp_weight=10.0, qa_weight=0.0),
    "wgan_gp_gp1": dict(penalty="wgan_gp", gp_weight=1.0, qa_weight=0.0),
    "ssim": dict(penalty="ssim", gp_weight=1.0, qa_weight=0.1),
    "niqe": dict(penalty="niqe", gp_weight=1.0, qa_weight=0.1),  # The defaults.
    # Dose points: the penalty at 10x the paper's weight.
    "ssim_w1": dict(penalty="ssim", gp_weight=1.0, qa_weight=1.0),
    "niqe_w1": dict(penalty="niqe", gp_weight=1.0, qa_weight=1.0),
    "niqe_pooled": dict(penalty="niqe", gp_weight=1.0, qa_weight=0.1, niqe_pooling="pooled"),
    # The default before the groups and the gradient smoothing (qagan_tf 0.1, 2026-11-24).
    "niqe_batch": dict(penalty="niqe", gp_weight=1.0, qa_weight=0.1, niqe_pooling="batch",
                       niqe_smoothing="none"),
    "niqe_image": dict(penalty="niqe", gp_weight=1.0, qa_weight=0.1, niqe_pooling="image"),
    # Lazy regularisation (StyleGAN2 §B): the 1-GP and the QA penalty on every 4th D update,
    # weighted by 4.
    "wgan_gp_k4": dict(penalty="wgan_gp", gp_weight=10.0, qa_weight=0.0, gp_every=4),
    "wgan_gp_gp1_k4": dict(penalty="wgan_gp", gp_weight=1.0, qa_weight=0.0, gp_every=4),
    "ssim_k4": dict(penalty="ssim", gp_weight=1.0, qa_weight=0.1, gp_every=4, qa_every=4),
    "niqe_k4": dict(penalty="niqe", gp_weight=1.0, qa_weight=0.1, gp_every=4, qa_every=4),
    # Today's regularisers (docs/training.md "Regularisers"): DiffAugment on the WGAN-GP
    # baseline and on QAGAN-NIQE; R3GAN's objective (RpGAN + R1 + R2, gamma R3_GAMMA) alone, with
    # the NIQE penalty at R1's points (reusing its gradient) and with the SSIM penalty.
    "wgan_gp_da": dict(penalty="wgan_gp", gp_weight=10.0, qa_weight=0.0, augment=DIFFAUGMENT),
    "niqe_da": dict(penalty="niqe", gp_weight=1.0, qa_weight=0.1, augment=DIFFAUGMENT),
    "r3": dict(R3),
    "r3_niqe": dict(R3, penalty="niqe", qa_weight=0.1, qa_points="real"),
    "r3_ssim": dict(R3, penalty="ssim", qa_weight=0.1),
    "wgan_gp_lecam": dict(penalty="wgan_gp", gp_weight=10.0, qa_weight=0.0, lecam_weight=0.1),
    # QAGAN-NIQE with G and D in bfloat16 (Keras' mixed policy; the penalties, their reductions
    # and the weights stay float32): the precision study (benchmarks/precision_cpu.*).
    "niqe_bf16": dict(penalty="niqe", gp_weight=1.0, qa_weight=0.1, mixed_precision="bfloat16"),
    # Beyond the paper (its §5): SNGAN (hinge loss, spectral norm in D, no GP) with and without
    # the QA penalties (configs/cifar10_sngan*.cfg).
    "sngan": dict(loss="hinge", d_norm="spectral", penalty="none", gp_weight=0.0,
                  drift_weight=0.0, qa_weight=0.0),
    "sngan_ssim": dict(loss="hinge", d_norm="spectral", penalty="ssim", gp_weight=0.0,
                       drift_weight=0.0, qa_weight=0.1),
    "sngan_niqe": dict(loss="hinge", d_norm="spectral", penalty="niqe", gp_weight=0.0,
                       drift_weight=0.0, qa_weight=0.1),
}
# The study of the evidence issue: the paper's baseline, the QA runs' control, both penalties
# at the paper's weight and NIQE's dose point.
DEFAULT_VARIANTS = ("wgan_gp", "wgan_gp_gp1", "ssim", "niqe", "niqe_w1")
# Each variant's control: the variant that differs from it in one thing only (DESIGN §10).
CONTROLS = {
    "wgan_gp_gp1": "wgan_gp",  # The 1-GP's weight, 1 against 10.
    "ssim": "wgan_gp_gp1", "niqe": "wgan_gp_gp1", "ssim_w1": "wgan_gp_gp1",
    "niqe_w1": "wgan_gp_gp1", "niqe_pooled": "wgan_gp_gp1", "niqe_batch": "wgan_gp_gp1",
    "niqe_image": "wgan_gp_gp1",
    "wgan_gp_k4": "wgan_gp", "wgan_gp_gp1_k4": "wgan_gp_gp1",
    "ssim_k4": "wgan_gp_gp1_k4", "niqe_k4": "wgan_gp_gp1_k4",
    "sngan_ssim": "sngan", "sngan_niqe": "sngan",
    "wgan_gp_da": "wgan_gp", "niqe_da": "niqe", "wgan_gp_lecam": "wgan_gp",
    "r3_niqe": "r3", "r3_ssim": "r3", "niqe_bf16": "niqe",
}
# The regularisers study (benchmarks/regularisers_cpu.*): DiffAugment against none, and R3GAN's
# objective against the same with the NIQE penalty.
REGULARIZER_VARIANTS = ("wgan_gp", "wgan_gp_da", "r3", "r3_niqe")
# The precision study (benchmarks/precision_cpu.*): QAGAN-NIQE in bfloat16 against float32.
PRECISION_VARIANTS = ("niqe", "niqe_bf16")
# The comparisons' metrics (the `comparisons` list) and the other observed targets (the
# `mechanism_comparisons` list): each is a per-run final value in result[...].
METRICS = ("final_fid", "final_kid", "gradient_niqe")
MECHANISM_METRICS = ("ssim_penalty", "gp")
# Seed of the held-out embedded crops (the training crops use the config's seed).
HELDOUT_SEED = 1_000_003
_SAMPLE_SEED = 20191209
_PROBE_SEED = 20191210


def check_variant_names(names):
  """Raises ValueError naming unknown variants and the valid ones."""
  unknown = [n for n in names if n not in VARIANTS]
  if unknown:
    raise ValueError(f"unknown --quality_variants {','.join(unknown)}; choose from "
                     f"{','.join(VARIANTS)}.")


def code_commit(root=None):
  """The git commit of the code that runs (this checkout of qagan_tf), "<sha>-dirty" when its
  training or study code (qagan_tf/, qagan_bench/, bin/, configs/) has uncommitted changes, or
  "unknown" outside git."""
  root = root or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # Beside bin/.
  try:
    sha = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                         text=True, timeout=30, check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "qagan_tf",
                            "qagan_bench", "bin", "configs"], capture_output=True, text=True,
                           timeout=30, check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return "unknown"
  return sha + ("-dirty" if dirty else "") if sha else "unknown"


def cpu_model():
  """The CPU's model name and its widest vector extensions, from /proc/cpuinfo (recorded in
  every run file: a study's wall times are only comparable on one CPU)."""
  import platform
  try:
    with open("/proc/cpuinfo") as f:
      text = f.read()
  except OSError:
    return platform.processor()
  name = next((line.split(":", 1)[1].strip() for line in text.splitlines()
               if line.startswith("model name")), platform.processor())
  flags_line = next((line for line in text.splitlines() if line.startswith("flags")), "")
  simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags_line]
  return f"{name} ({', '.join(simd) or 'no AVX2'})"


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

  def __call__(self, generator, num_samples=None):
    """Scores of `num_samples` (default: the curves' count) samples of fixed latents.

    The first `self.num_samples` of a larger draw are exactly the curve's samples (the latents
    of batch k come from (seed, k * 256)), so a final score on more samples also gives the
    curve's point: "fid_curve" and "kid_curve", and the samples' NIQE on those alone.
    """
    from qagan_tf import sampling
    from qagan_tf.iqa import niqe_metric
    num = num_samples or self.num_samples
    images = sampling.generate(generator, num, seed=_SAMPLE_SEED)
    pool3 = self.extractor(images)["pool3"]
    out = self._distances(pool3)
    curve = out if num == self.num_samples else self._distances(pool3[:self.num_samples])
    out.update(fid_curve=curve["fid"], kid_curve=curve["kid"], samples=num, niqe=float(
        np.mean(niqe_metric.niqe_of_images(images[:self.num_samples]))))
    return out

  def _distances(self, pool3):
    ref = self.reference
    kid, _ = kid_lib.kernel_inception_distance(
        pool3, ref["activations"], num_subsets=100,
        subset_size=min(1000, len(pool3), len(ref["activations"])))
    # FID through the activations' SVD ("gram"): the study's sets are smaller than 2048, and the
    # exact trace takes milliseconds where TTUR's (2048, 2048) sqrtm takes 9-15 s per score
    # (fid.trace_sqrt_product_of_activations; the two agree to about 1e-4 FID).
    return {"fid": fid_lib.fid_from_activations(pool3, ref["activations"], method="gram"),
            "kid": kid}


def reference_of(extractor, heldout):
  """Inception statistics, activations and mean NIQE of the held-out images."""
  from qagan_tf.iqa import niqe_metric
  pool3 = extractor(heldout)["pool3"]
  mu, sigma = fid_lib.activation_statistics(pool3)
  return {"mu": mu, "sigma": sigma, "activations": pool3,
          "heldout_niqe": float(np.mean(niqe_metric.niqe_of_images(heldout)))}


class MechanismProbe:
  """What each penalty penalises, observed for every variant (its own penalty on or off).

  On a fixed probe (the first `count` training images without flip or noise, fixed latents and
  fixed interpolation weights), in batches of the training batch size: fakes G(z) as a D update
  draws them (batch statistics in G's batch norm), the interpolates, D's input gradient there,
  and
  - gradient_niqe: the NIQE penalty of that gradient with the default settings and `prior`
    (what `--penalty=niqe` penalises);
  - ssim_penalty, ssim_ratio: the SSIM-distance penalty (|D(x) - D(G(z))| / dQ - 1)^2 with the
    default settings, and the ratio (what `--penalty=ssim` penalises);
  - gp, grad_norm: the 1-GP (||g|| - 1)^2 and ||g||.
  Each value is the mean over the probe. Nothing is added to a loss and no state changes: G's
  and D's non-trainable variables (batch-norm moving statistics, spectral-norm vectors) are
  restored after the fakes are drawn, so a run with the probe trains exactly as one without.
  """

  KEYS = ("gradient_niqe", "ssim_penalty", "ssim_ratio", "gp", "grad_norm")

  def __init__(self, images, z_dim, batch_size, prior="cifar_grad", count=256,
               seed=_PROBE_SEED):
    from qagan_tf import sampling
    n = min(count, len(images)) // batch_size * batch_size
    if n < batch_size:
      raise ValueError(f"the mechanism probe needs at least one batch of {batch_size} training "
                       f"images; got {len(images)}.")
    self.batch_size, self.prior = batch_size, prior
    self.real = tf.constant(np.asarray(images[:n], np.float32) / 127.5 - 1.0)
    self.z = sampling.latents(n, z_dim, seed)
    self.eps = tf.random.stateless_uniform([n], [seed, 1])
    self._fn = None

  def settings(self):
    """What the probe computes with (recorded in the study's JSON)."""
    from qagan_tf.objectives import ssim
    import dataclasses
    return {"probe_images": int(self.real.shape[0]), "batch_size": self.batch_size,
            "niqe_prior": self.prior, "niqe_settings": "qa.niqe_penalty's defaults",
            "ssim_settings": dataclasses.asdict(ssim.SsimConfig())}

  def _build(self, discriminator):
    from qagan_tf import qa
    from qagan_tf.objectives import losses
    from qagan_tf.objectives import ssim
    settings = ssim.SsimConfig()

    @tf.function(autograph=False)
    def fn(real, fake, eps):
      scores = losses.critic_scores(discriminator, tf.concat([real, fake], axis=0))
      d_real, d_fake = tf.split(scores, 2)
      grad = losses.input_gradients(discriminator, losses.interpolates(real, fake, eps))
      penalty, _, ratio = ssim.ssim_penalty_terms(real, fake, d_real, d_fake, settings)
      norm = losses.safe_norm(grad, [1, 2, 3])
      values = {"gradient_niqe": qa.niqe_penalty(grad, prior=self.prior),
                "ssim_penalty": penalty, "ssim_ratio": ratio,
                "gp": losses.gradient_penalty(grad), "grad_norm": norm}
      return {k: tf.reduce_sum(tf.cast(v, tf.float64)) for k, v in values.items()}
    return fn

  def __call__(self, generator, discriminator):
    if self._fn is None:
      self._fn = self._build(discriminator)
    state = list(generator.non_trainable_variables) + list(discriminator.non_trainable_variables)
    saved = [v.numpy() for v in state]
    sums = dict.fromkeys(self.KEYS, 0.0)
    try:
      for start in range(0, int(self.real.shape[0]), self.batch_size):
        part = slice(start, start + self.batch_size)
        fake = tf.cast(generator(self.z[part], training=True), tf.float32)
        for k, v in self._fn(self.real[part], fake, self.eps[part]).items():
          sums[k] += float(v)
    finally:
      for v, value in zip(state, saved):
        v.assign(value)
    return {k: v / int(self.real.shape[0]) for k, v in sums.items()}


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


def _worker_run(config, heldout_count, eval_points, log_every, initial, generator, final):
  train, _ = split_images(config, heldout_count)
  lines = []
  result = _train_and_score(config, train, _WORKER["scorer"], eval_points, log_every,
                            initial, lines.append, generator, final)
  return result, lines


def _train_and_score(config, images, scorer, eval_points, log_every, initial, log, generator,
                     final=None, probe=True):
  """One run: scores and probe values at each of `eval_points` (iteration 0's scores are
  `initial` when given), then the final scores (`final`: {"samples", "ema_samples", and
  optionally "full_at": earlier iterations also scored on "samples", as fid_at_<i>/kid_at_<i>}).
  `train_seconds_at` holds the training seconds spent before each scored iteration."""
  from qagan_tf.train import distribution
  from qagan_tf.train import trainer as trainer_lib
  final = final or {}
  with tempfile.TemporaryDirectory() as tmp:
    trainer = trainer_lib.Trainer(config, tmp, distribution.make_strategy("default"),
                                  images=images)
    iterator = iter(trainer.distributed_dataset(0))
    observe = MechanismProbe(images, config.z_dim, config.batch_size,
                             config.niqe.prior) if probe else None
    run = {"iterations": [], "fid": [], "kid": [], "niqe": [], "d_weight_variance": [],
           "loss_iterations": [], "d_loss": [], "g_loss": [], "wasserstein": []}
    full_at = set(final.get("full_at", ()))
    if full_at:
      run["train_seconds_at"] = []
    if observe:
      run["probe"] = {k: [] for k in MechanismProbe.KEYS}
    step, t0, train_s, eval_s = 0, time.time(), 0.0, 0.0
    model = trainer.ema_generator if generator == "ema" else trainer.generator
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
      t = time.time()
      last = target == eval_points[-1]
      if target == 0 and initial:
        scores = initial
      else:
        scores = scorer(model, final.get("samples") if last or target in full_at else None)
      if last and final:
        run.update(final_fid=scores["fid"], final_kid=scores["kid"],
                   final_samples=scores["samples"])
      elif target in full_at:
        run.update({f"fid_at_{target}": scores["fid"], f"kid_at_{target}": scores["kid"]})
      if full_at:
        run["train_seconds_at"].append(train_s)
      run["iterations"].append(target)
      run["fid"].append(scores.get("fid_curve", scores["fid"]))
      run["kid"].append(scores.get("kid_curve", scores["kid"]))
      run["niqe"].append(scores["niqe"])
      run["d_weight_variance"].append(d_weight_variance(trainer.discriminator))
      if observe:
        for k, v in observe(trainer.generator, trainer.discriminator).items():
          run["probe"][k].append(v)
      eval_s += time.time() - t
      log(f"  iteration {target}: FID {run['fid'][-1]:.1f} KID {run['kid'][-1]:.4f} NIQE "
          f"{scores['niqe']:.2f}" + (f" gradient NIQE {run['probe']['gradient_niqe'][-1]:.2f}"
                                     if observe else "")
          + (f"; FID of {scores['samples']} samples {scores['fid']:.1f}"
             if (last and final) or target in full_at else "")
          + f" (elapsed {time.time() - t0:.0f} s)")
    if final.get("ema_samples"):
      t = time.time()
      ema = scorer(trainer.ema_generator, final["ema_samples"])
      run.update(ema_fid=ema["fid"], ema_kid=ema["kid"], ema_samples=ema["samples"])
      eval_s += time.time() - t
    if observe:
      run.update({k: run["probe"][k][-1] for k in MechanismProbe.KEYS})
    run["train_seconds"], run["eval_seconds"] = train_s, eval_s
    run["seconds"] = time.time() - t0
    return run


def _sd(values):
  """Sample standard deviation (ddof 1); None for fewer than 2 values."""
  values = np.asarray(values, np.float64)
  return float(values.std(ddof=1)) if len(values) > 1 else None


def _summarise(runs):
  """Per-iteration means and sample standard deviations (ddof 1) over seeds, and the final
  values' means with 95% t-intervals."""
  out = {"iterations": runs[0]["iterations"], "seeds": len(runs)}
  for key in ("fid", "kid", "niqe", "d_weight_variance"):
    values = np.array([r[key] for r in runs], np.float64)
    out[f"{key}_mean"] = values.mean(axis=0).tolist()
    out[f"{key}_std"] = [_sd(column) for column in values.T]
  out["d_weight_variance"] = out["d_weight_variance_mean"]
  if all("probe" in r for r in runs):
    for key in MechanismProbe.KEYS:
      values = np.array([r["probe"][key] for r in runs], np.float64)
      out[f"{key}_mean"] = values.mean(axis=0).tolist()
  losses = np.array([r["d_loss"] for r in runs], np.float64)
  out["loss_iterations"] = runs[0]["loss_iterations"]
  out["d_loss_mean"] = np.nanmean(losses, axis=0).tolist()
  fid = np.array([r["fid"] for r in runs], np.float64)
  out["final_over_initial_fid"] = float(fid[:, -1].mean() / fid[:, 0].mean())
  finals = {}
  for key in ("final_fid", "final_kid", "ema_fid", "ema_kid") + MechanismProbe.KEYS:
    if all(key in r for r in runs):
      mean, sd, ci = paired_stats.t_interval([r[key] for r in runs])
      finals[key] = {"mean": mean, "std": sd, "ci95": ci}
  out["final"] = finals
  for key in ("final_samples", "ema_samples"):
    if all(key in r for r in runs):
      out[key] = runs[0][key]
  out["minutes_per_run"] = float(np.mean([r["seconds"] for r in runs]) / 60.0)
  out["per_seed"] = runs
  return out


def comparisons(values, controls=None, metrics=METRICS, level=0.95):
  """Paired comparisons of every variant with its control, where both were run.

  Args:
    values: {variant: {seed: per-run result}} (each with the `metrics` keys).
    controls: {variant: control} (default `CONTROLS`).
    level: the intervals' two-sided confidence level.

  Returns:
    a list of `paired_stats.paired_comparison` entries, variant by variant, metric by metric.
  """
  controls = CONTROLS if controls is None else controls
  out = []
  for variant, runs in values.items():
    control = controls.get(variant)
    if control not in values:
      continue
    for metric in metrics:
      mine = {s: r[metric] for s, r in runs.items() if metric in r}
      theirs = {s: r[metric] for s, r in values[control].items() if metric in r}
      if set(mine) & set(theirs):
        out.append(paired_stats.paired_comparison(variant, control, metric, mine, theirs,
                                                  level))
  return out


def exploratory(quality, seeds, controls=None):
  """What a study shows beyond its comparisons, labelled exploratory (no correction for the
  many looks): for every variant with its control in `quality` (a study's "quality" dict, whose
  summaries hold "per_seed", run by run in the order of `seeds`),
  - "by_iteration": the paired FID difference (curve samples) at every scored iteration, with
    its 95% t-interval;
  - "to_threshold": per seed, the first scored iteration at which the run's curve FID is at or
    below the control's median final curve FID (None: never), for both arms;
  - "seconds_per_iteration": per seed, each arm's training seconds per generator iteration, and
    "train_seconds": the training seconds before each scored iteration (when the runs recorded
    them), so that a speed-up can be read net of a penalty's cost per step.
  """
  controls = CONTROLS if controls is None else controls
  out = []
  for variant, q in quality.items():
    control = controls.get(variant)
    if control not in quality or "per_seed" not in q:
      continue
    c = quality[control]
    mine = {s: r for s, r in zip(seeds, q["per_seed"])}
    theirs = {s: r for s, r in zip(seeds, c["per_seed"])}
    iterations = q["iterations"]
    by_iteration = []
    for i, it in enumerate(iterations):
      if it == 0:
        continue  # Both arms start from the same weights: the difference is 0 by design.
      entry = paired_stats.paired_comparison(variant, control, f"fid@{it}",
                                             {s: r["fid"][i] for s, r in mine.items()},
                                             {s: r["fid"][i] for s, r in theirs.items()})
      entry["iteration"] = it
      by_iteration.append(entry)
    threshold = float(np.median([r["fid"][-1] for r in theirs.values()]))

    def first(run):
      return next((it for it, f in zip(iterations, run["fid"]) if f <= threshold), None)
    item = {"variant": variant, "control": control, "seeds": list(seeds),
            "by_iteration": by_iteration, "threshold_fid": threshold,
            "to_threshold": {"variant": [first(r) for r in mine.values()],
                             "control": [first(r) for r in theirs.values()]}}
    item["seconds_per_iteration"] = {
        "variant": [r["train_seconds"] / iterations[-1] for r in mine.values()],
        "control": [r["train_seconds"] / iterations[-1] for r in theirs.values()]}
    if all("train_seconds_at" in r for r in list(mine.values()) + list(theirs.values())):
      item["train_seconds"] = {"variant": [r["train_seconds_at"] for r in mine.values()],
                               "control": [r["train_seconds_at"] for r in theirs.values()]}
    out.append(item)
  return out


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
    extractor: `features.InceptionFeatures`.
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
  known = set(METRICS) | {f"{k}_at_{i}" for k in ("fid", "kid") for i in full_at}
  unknown = [m for m in metrics if m not in known]
  if unknown:
    raise ValueError(f"unknown --quality_metrics {','.join(unknown)}; choose from "
                     f"{','.join(sorted(known))} (fid_at_<i> needs --quality_full_at=<i>).")
  train, heldout = split_images(config, heldout_count)
  log(f"quality: {len(train)} training and {len(heldout)} held-out images; variants "
      f"{', '.join(variants)}; seeds {', '.join(map(str, seeds))}; scores at {eval_points}, "
      f"final FID on {final_samples} samples; {workers} worker(s); code {commit[:12]}")
  scorer = Scorer(extractor, num_samples, heldout=heldout)
  log(f"quality: held-out NIQE {scorer.reference['heldout_niqe']:.2f}")
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
      finished(name, seed, key, _train_and_score(c, train, scorer, eval_points, log_every,
                                                 initial, log, generator, final))
  elif jobs:
    import concurrent.futures
    import multiprocessing
    threads = max(1, (os.cpu_count() or 1) // workers)
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
        initargs=(extractor.info["path"], num_samples, scorer.reference, threads)) as pool:
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
  quality = {name: _summarise([runs[name][seed] for seed in seeds]) for name in variants}
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
          "reference": {"heldout_niqe": scorer.reference["heldout_niqe"]},
          "settings": settings, "measured_commit": measured}


def _initial_scores(config, images, scorer):
  """Scores of the untrained generator of config.seed (what every variant starts from)."""
  from qagan_tf.train import distribution
  from qagan_tf.train import trainer as trainer_lib
  with tempfile.TemporaryDirectory() as tmp:
    trainer = trainer_lib.Trainer(config, tmp, distribution.make_strategy("default"),
                                  images=images)
    return scorer(trainer.generator)


def _mean_sd(mean, sd, digits=1, scale=1.0):
  return f"{scale * mean:.{digits}f}" + ("" if sd is None else f" ± {scale * sd:.{digits}f}")


def _interval(entry, digits=1, scale=1.0):
  if entry["ci95"] is None:
    return f"{scale * entry['mean']:.{digits}f} (n = 1)"
  lo, hi = entry["ci95"]
  return f"{scale * entry['mean']:.{digits}f} [{scale * lo:.{digits}f}, {scale * hi:.{digits}f}]"


def markdown(result):
  """The result as Markdown a reader can paste: the FID curves (mean ± sample std over seeds),
  the final scores and observed targets with 95% t-intervals, and the paired comparisons."""
  q_all, s = result["quality"], result["settings"]
  iterations = next(iter(q_all.values()))["iterations"]
  lines = [
      f"Study of commit {str(result.get('measured_commit'))[:12]}: "
      f"{s['iterations']} generator iterations, seeds {', '.join(map(str, s['seeds']))}.", "",
      f"FID of {s['num_samples']} samples against {s['heldout_count']} held-out images over "
      f"training (mean ± sample std over seeds; {s['generator']} generator):", "",
      "| variant | " + " | ".join(f"it {i}" for i in iterations) + " | final / initial |",
      "|---" * (len(iterations) + 2) + "|"]
  for name, q in q_all.items():
    cells = [_mean_sd(m, d) for m, d in zip(q["fid_mean"], q["fid_std"])]
    lines.append(f"| {name} | " + " | ".join(cells) + f" | {q['final_over_initial_fid']:.2f} |")
  ema = f", the EMA's on {s['ema_samples']}" if s.get("ema_samples") else " (EMA not scored)"
  lines += ["", f"At iteration {iterations[-1]}: mean [95% t-interval] over seeds. Final FID and "
                f"KID of the raw generator on {s.get('final_samples')} samples{ema}; the "
                f"observed targets on the fixed probe (held-out images' NIQE "
                f"{result['reference']['heldout_niqe']:.2f}):", "",
            "| variant | final FID | KID ×1e3 | EMA FID | gradient NIQE | SSIM penalty | 1-GP |",
            "|---|---|---|---|---|---|---|"]
  for name, q in q_all.items():
    f = q.get("final", {})
    cell = lambda key, **kw: _interval(f[key], **kw) if key in f else "—"  # noqa: E731
    lines.append(f"| {name} | {cell('final_fid')} | {cell('final_kid', scale=1e3)} | "
                 f"{cell('ema_fid')} | {cell('gradient_niqe', digits=2)} | "
                 f"{cell('ssim_penalty', digits=2)} | {cell('gp', digits=3)} |")
  primary, mechanism = result.get("comparisons", []), result.get("mechanism_comparisons", [])
  for entries, title in ((primary, "Paired differences, variant − control, over the seeds both "
                          "ran (mean, sample std, two-sided t-interval at the level shown)"),
                         (mechanism, "The penalties' observed targets, paired the same way")):
    if entries:
      lines += ["", f"{title}:", "",
                "| variant | control | metric | n | D | std | interval | level | verdict |",
                "|---|---|---|---|---|---|---|---|---|"]
      lines += [_comparison_row(e) for e in entries]
  explored = result.get("exploratory")
  if explored is None and "per_seed" in next(iter(q_all.values())):
    explored = exploratory(q_all, s["seeds"])
  if explored:
    lines += ["", "Exploratory (not a pre-registered test; many looks, no correction): the paired "
                  f"FID difference at every scored iteration ({s['num_samples']} samples), "
                  "variant − control, 95% t-interval:", "",
              "| variant | control | " + " | ".join(f"it {i}" for i in iterations[1:]) + " |",
              "|---|---|" + "---|" * (len(iterations) - 1)]
    for item in explored:
      cells = [_difference(e) for e in item["by_iteration"]]
      lines.append(f"| {item['variant']} | {item['control']} | " + " | ".join(cells) + " |")
    lines += ["", "Exploratory: the first scored iteration at which a run's FID is at or below "
                  "its control's median final FID (— never), seed by seed, and the training "
                  "seconds per generator iteration, mean over seeds (runs shared the machine, so "
                  "these are rough):", "",
              "| variant | control | threshold FID | variant's iterations | control's iterations "
              "| s/iteration, variant / control |", "|---|---|---|---|---|---|"]
    for item in explored:
      reach = {arm: ", ".join("—" if i is None else str(i) for i in item["to_threshold"][arm])
               for arm in ("variant", "control")}
      per = {arm: np.mean(item["seconds_per_iteration"][arm]) for arm in ("variant", "control")}
      pace = f"{per['variant']:.3f} / {per['control']:.3f}"
      lines.append(f"| {item['variant']} | {item['control']} | {item['threshold_fid']:.1f} | "
                   f"{reach['variant']} | {reach['control']} | {pace} |")
  return "\n".join(lines) + "\n"


def _difference(entry, digits=1):
  ci = paired_stats.interval_of(entry)
  if ci is None:
    return f"{entry['mean_difference']:+.{digits}f} (n = 1)"
  return f"{entry['mean_difference']:+.{digits}f} [{ci[0]:+.{digits}f}, {ci[1]:+.{digits}f}]"


def _comparison_row(e):
  """One Markdown row of a comparison entry (KID ×1e3; two decimals for the penalties)."""
  kid = e["metric"].startswith(("final_kid", "kid_at_"))
  scale, digits = (1e3, 1) if kid else (1.0, 2 if e["metric"] in (
      "gradient_niqe", "ssim_penalty", "gp") else 1)
  name = f"{e['metric']} ×1e3" if kid else e["metric"]
  ci = paired_stats.interval_of(e)
  interval = "—" if ci is None else f"[{scale * ci[0]:+.{digits}f}, {scale * ci[1]:+.{digits}f}]"
  sd = "—" if e["std"] is None else f"{scale * e['std']:.{digits}f}"
  return (f"| {e['variant']} | {e['control']} | {name} | {e['n']} | "
          f"{scale * e['mean_difference']:+.{digits}f} | {sd} | {interval} | "
          f"{e.get('level', 0.95)} | {e['verdict']} |")


def plot(result, path):
  """FID and the gradient's NIQE over iterations (mean and spread over seeds) and d_loss, one
  line per variant."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from qagan_tf.utils import files
  timed = all("train_seconds_at" in r for q in result["quality"].values()
              for r in q.get("per_seed", [{}]))
  fig, axes = plt.subplots(1, 4 if timed else 3, figsize=(20 if timed else 15, 4.2))
  ax_fid, ax_niqe, ax_loss = axes[:3]
  for name, q in result["quality"].items():
    it = np.array(q["iterations"])
    mean = np.array(q["fid_mean"])
    std = np.array([0.0 if v is None else v for v in q["fid_std"]])
    line, = ax_fid.plot(it, mean, marker="o", label=f"{name} (n={q['seeds']})")
    ax_fid.fill_between(it, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    if "gradient_niqe_mean" in q:
      ax_niqe.plot(it, q["gradient_niqe_mean"], marker="o", color=line.get_color(), label=name)
    ax_loss.plot(q["loss_iterations"], q["d_loss_mean"], color=line.get_color(), label=name)
    if timed:  # The same curve against training seconds: a speed-up net of the step's cost.
      seconds = np.mean([r["train_seconds_at"] for r in q["per_seed"]], axis=0)
      axes[3].plot(seconds, mean, marker="o", color=line.get_color(), label=name)
  s = result["settings"]
  ax_fid.set(xlabel="generator iteration", ylabel=f"FID ({s['num_samples']} samples vs "
             f"{s['heldout_count']} held-out)", title="FID (mean ± sample std over seeds)")
  ax_niqe.set(xlabel="generator iteration", ylabel="NIQE penalty of D's input gradient",
              title="the NIQE penalty's target (probe, mean over seeds)")
  ax_loss.set(xlabel="generator iteration", ylabel="d_loss (mean over seeds)",
              title="critic loss", yscale="symlog")
  if timed:
    axes[3].set(xlabel="training seconds (mean over seeds; runs shared the machine)",
                ylabel="FID", title="FID against training time")
  for ax in axes:
    ax.legend(fontsize=8)
  fig.tight_layout()
  files.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
  plt.close(fig)
