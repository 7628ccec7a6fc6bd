"""One quality run: train a variant and score it at fixed iterations (`train_and_score`): FID and
KID against held-out images and the samples' NIQE (`Scorer`), D's weight variance, and what
each penalty penalises, observed on a fixed probe (`MechanismProbe`)."""

import tempfile
import time

import numpy as np
import tensorflow as tf

from qagan_bench.quality_study import _PROBE_SEED, _SAMPLE_SEED
from qagan_tf.metrics import fid as fid_lib
from qagan_tf.metrics import kid as kid_lib


def d_weight_variance(discriminator):
  """Variance of all of D's kernel weights together (supplementary §4)."""
  kernels = [v.numpy().ravel() for v in discriminator.trainable_variables if "kernel" in v.path]
  return float(np.var(np.concatenate(kernels)))


class Scorer:
  """FID and KID against held-out real images, and NIQE of the samples (classic model)."""

  def __init__(self, extractor, num_samples, heldout=None, reference=None):
    """Args: heldout: uint8 images to build the reference from, or reference: a dict made by
    `reference_of` (mu, sigma, activations, heldout_niqe), e.g. sent to a worker process.

    The held-out images' Inception features are computed at the first score (`reference`), so
    a rerun whose runs are all finished never passes them through Inception (1024 images: minutes
    on a CPU); their NIQE alone (`heldout_niqe`) is cheap and always reported."""
    if reference is None and heldout is None:
      raise ValueError("Scorer needs the held-out images or their reference.")
    self.extractor, self.num_samples = extractor, num_samples
    self._heldout, self._reference, self._heldout_niqe = heldout, reference, None

  @property
  def reference(self):
    """`reference_of` the held-out images, computed once, when first asked for."""
    if self._reference is None:
      self._reference = reference_of(self.extractor, self._heldout, self.heldout_niqe)
    return self._reference

  @property
  def heldout_niqe(self):
    """The held-out images' mean NIQE (classic model), without Inception."""
    if self._reference is not None:
      return self._reference["heldout_niqe"]
    if self._heldout_niqe is None:
      self._heldout_niqe = _mean_niqe(self._heldout)
    return self._heldout_niqe

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


def reference_of(extractor, heldout, heldout_niqe=None):
  """Inception statistics, activations and mean NIQE of the held-out images (`heldout_niqe`
  when already known)."""
  pool3 = extractor(heldout)["pool3"]
  mu, sigma = fid_lib.activation_statistics(pool3)
  return {"mu": mu, "sigma": sigma, "activations": pool3,
          "heldout_niqe": _mean_niqe(heldout) if heldout_niqe is None else heldout_niqe}


def _mean_niqe(images):
  from qagan_tf.iqa import niqe_metric
  return float(np.mean(niqe_metric.niqe_of_images(images)))


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
  - gp, grad_norm: the 1-GP (||g|| - 1)^2 and ||g||;
  - real_sign: sign(D(x)) of the probe's (clean) training images, ADA's overfitting heuristic
    r_t measured alike for every variant (near 1: D tells the training images apart).
  Each value is the mean over the probe. Nothing is added to a loss and no state changes: G's
  and D's non-trainable variables (batch-norm moving statistics, spectral-norm vectors) are
  restored after the fakes are drawn, so a run with the probe trains exactly as one without.
  """

  KEYS = ("gradient_niqe", "ssim_penalty", "ssim_ratio", "gp", "grad_norm", "real_sign")

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
                "gp": losses.gradient_penalty(grad), "grad_norm": norm,
                "real_sign": tf.sign(d_real)}
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


def train_and_score(config, images, scorer, eval_points, log_every, initial, log, generator,
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
    if config.augment == "ada":  # ADA's p and r_t (its augmented reals), as logged.
      run.update(ada_p=[], ada_rt=[])
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
        for key in ("d_loss", "g_loss", "wasserstein", "ada_p", "ada_rt"):
          if key in run:
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
