"""The paper's evaluation protocol: IS/FID/KID, precision/recall and NIQE of a generator from N
samples, repeated, with mean and spread, written as JSON and a Markdown table; also the cheaper
in-training FID."""

import datetime
import json
import os

import numpy as np
import tensorflow as tf
from absl import logging

from qagan_tf import sampling
from qagan_tf.metrics import features
from qagan_tf.metrics import fid as fid_lib
from qagan_tf.metrics import inception_score as is_lib
from qagan_tf.metrics import kid as kid_lib
from qagan_tf.metrics import precision_recall as pr_lib
from qagan_tf.metrics import stats_io
from qagan_tf.utils import files
from qagan_tf.utils import precision


def evaluate_generator(generator, extractor, reference, num_samples, seed=0, batch_size=250,
                       splits=10, kid_samples=10_000, niqe_samples=1000, progress=False,
                       label="samples", log=None, is_logits="tfgan"):
  """Scores one generator against reference statistics.

  Args:
    generator: a `models.Generator` (outputs in [-1, 1]).
    extractor: `features.InceptionFeatures`.
    reference: dict from `stats_io.load_statistics` (mu, sigma; optional `activations` for KID).
    num_samples: generated images (paper: 50000).
    seed: latent stream of this repeat.
    splits: IS splits (10).
    kid_samples: generated activations kept for KID and precision/recall (both need the
      reference activations too; precision/recall subsample both sets to 10K).
    niqe_samples: the first this many samples are scored with NIQE (`niqe_of_images`: the
      classic natural-image model, blocks of half the image side; 0 skips it).
    is_logits: "tfgan": IS of all 1008 logits with the softmax bias, as TF-GAN and the QAGAN
      authors (and so the published tables) computed it; "openai": without the bias, as
      OpenAI's reference code (pool_3 times the softmax weights). See IS_LOGITS.
    log: callable(str) told what runs after the Inception pass (FID's matrix square root and
      KID take a minute or two on 2 CPU cores), or None.

  Returns:
    {"fid", "is_mean", "is_std" (when the weights have logits), "kid", "kid_std", "precision",
     "recall" (when the reference has activations), "niqe", "niqe_std" (niqe_samples > 0),
     "count"}.
  """
  if is_logits not in IS_LOGITS:
    raise ValueError(f"is_logits={is_logits!r}: use one of {', '.join(IS_LOGITS)}.")
  kept = []  # The first niqe_samples images, for NIQE.

  def batches():
    for start, batch in zip(range(0, num_samples, batch_size),
                            sampling.generate_batches(generator, num_samples, batch_size, seed)):
      if start < niqe_samples:
        kept.append(batch[:niqe_samples - start])
      yield batch

  out = extractor.statistics(batches(),
                             total=num_samples, progress=progress, keep_logits=True,
                             keep_activations=kid_samples, label=label)
  if log:
    log(f"{label}: computing FID (2048x2048 matrix square root, float64)"
        + (", IS" if out["logits"] is not None else "")
        + (", KID (100 subsets), precision/recall" if reference.get("activations") is not None
           and out["activations"] is not None else "")
        + (f" and NIQE of {niqe_samples} samples" if niqe_samples else "") + " ...")
  result = {"count": out["count"], "fid": fid_lib.frechet_distance(
      out["mu"], out["sigma"], reference["mu"], reference["sigma"])}
  if out["logits"] is not None:
    logits = out["logits"].astype(np.float64)
    if is_logits == "openai":
      logits = logits - extractor.softmax_biases
    result["is_mean"], result["is_std"] = is_lib.inception_score(logits, splits=splits)
  if reference.get("activations") is not None and out["activations"] is not None:
    result["kid"], result["kid_std"] = kid_lib.kernel_inception_distance(
        out["activations"], reference["activations"], num_subsets=100, subset_size=1000,
        seed=seed)
    result.update({k: v for k, v in pr_lib.precision_recall(
        reference["activations"], out["activations"], seed=seed).items()
                   if k in ("precision", "recall")})
  if kept:
    from qagan_tf.iqa import naturalness
    scores = naturalness.niqe_of_images(np.concatenate(kept))
    result["niqe"], result["niqe_std"] = float(np.mean(scores)), float(np.std(scores))
  return result


IS_LOGITS = {
    "tfgan": "all 1008 logits with the softmax bias (TF-GAN, the QAGAN authors' code)",
    "openai": "all 1008 logits without the softmax bias (OpenAI's inception_score.py)"}


def summarize(runs):
  """Mean and standard deviation over repeats of every metric in a list of result dicts."""
  out = {}
  for key in ("fid", "is_mean", "kid", "precision", "recall", "niqe"):
    values = [r[key] for r in runs if key in r]
    if values:
      out[key] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                  "values": [float(v) for v in values]}
  return out


def markdown_table(report):
  """The report as a Markdown table (one row per generator)."""
  lines = [f"# Evaluation of {report['model_dir']} at step {report['step']}", "",
           f"{report['num_samples']} samples x {report['repeats']} repeats against "
           f"`{report['stats']}` (Inception weights {report['weights_sha256'][:12]}, IS "
           f"{report['splits']} splits of "
           f"{IS_LOGITS[report.get('is_logits', 'tfgan')]}). Mean ± std over repeats.", "",
           "| generator | FID | IS | KID x 1e3 | precision | recall | NIQE |",
           "|---|---|---|---|---|---|---|"]

  def cell(summary, key, scale=1.0):
    if key not in summary:
      return "n/a"
    return f"{summary[key]['mean'] * scale:.3f} ± {summary[key]['std'] * scale:.3f}"

  for name, summary in report["summary"].items():
    lines.append(f"| {name} | {cell(summary, 'fid')} | {cell(summary, 'is_mean')} | "
                 f"{cell(summary, 'kid', 1e3)} | {cell(summary, 'precision')} | "
                 f"{cell(summary, 'recall')} | {cell(summary, 'niqe')} |")
  summaries = list(report["summary"].values())
  notes = []
  if summaries and all("is_mean" not in s for s in summaries):
    notes.append(IS_UNAVAILABLE)
  if summaries and all("kid" not in s for s in summaries):
    notes.append(KID_UNAVAILABLE)
  about = []
  if any("niqe" in s for s in summaries):
    about.append(NIQE_NOTE.format(count=report.get("niqe_samples", "the first")))
  if any("precision" in s for s in summaries):
    about.append(PRECISION_RECALL_NOTE)
  if notes:
    lines += [""] + [f"n/a: {n}" for n in notes]
  if about:
    lines += [""] + about
  return "\n".join(lines) + "\n"


IS_UNAVAILABLE = ("IS needs the Inception softmax layer, which these weights lack (pool_3 only); "
                  "get the official graph with bin/fetch_inception and pass its .npz with "
                  "--inception_weights.")
KID_UNAVAILABLE = ("KID, precision and recall need the real images' activations; compute the "
                   "statistics with bin/compute_stats --keep_activations.")
NIQE_NOTE = ("NIQE (lower is more natural): the classic natural-image model on {count} "
             "samples of each repeat, blocks of half the image side; compare only at equal "
             "resolution.")
PRECISION_RECALL_NOTE = ("Precision/recall: Kynkäänniemi et al. 2019, k = 3, on the pool_3 "
                         "features FID uses (not VGG-16), at most 10K points per set.")


def write_report(report, directory, overwrite=False):
  """Writes eval_step_<N>.json and .md in `directory` (atomically); returns both paths.

  An existing report of the same step is kept: the new one gets the suffix _2, _3, ...
  (overwrite=True replaces it)."""
  base = os.path.join(directory, f"eval_step_{report['step']:07d}")
  if not overwrite:
    stem, n = base, 1
    while files.exists(base + ".json") or files.exists(base + ".md"):
      n += 1
      base = f"{stem}_{n}"
  files.atomic_write_text(base + ".json", json.dumps(report, indent=2) + "\n")
  files.atomic_write_text(base + ".md", markdown_table(report))
  return base + ".json", base + ".md"


def run_protocol(model_dir, stats_path, extractor, num_samples=50_000, repeats=5, splits=10,
                 generators=("raw", "ema"), batch_size=250, checkpoint=None, progress=True,
                 log=print, niqe_samples=1000, is_logits="tfgan"):
  """The paper's protocol for a run directory: every generator, `repeats` x `num_samples`.

  Returns:
    the report dict (also see `write_report`).
  """
  reference = stats_io.load_statistics(stats_path, dim=2048)
  report = {"model_dir": files.absolute(model_dir), "stats": files.absolute(stats_path),
            "num_samples": num_samples, "repeats": repeats, "splits": splits,
            "niqe_samples": min(niqe_samples, num_samples), "is_logits": is_logits,
            "weights_sha256": extractor.info["sha256"],
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "runs": {}, "summary": {}}
  if reference.get("weights_sha256") not in (None, "", extractor.info["sha256"]):
    log(f"Warning: {stats_path} was computed with other Inception weights "
        f"({reference['weights_sha256'][:12]}); FIDs are not comparable.")
  for name in generators:
    generator, step = sampling.load_generator(model_dir, ema=(name == "ema"),
                                              checkpoint=checkpoint)
    report["step"] = step
    runs = []
    for r in range(repeats):
      result = evaluate_generator(generator, extractor, reference, num_samples, seed=r,
                                  batch_size=batch_size, splits=splits,
                                  niqe_samples=niqe_samples, is_logits=is_logits,
                                  progress=progress,
                                  log=log if progress else None,
                                  label=f"{name} repeat {r + 1}/{repeats}")
      log(f"{name} repeat {r + 1}/{repeats}: " + " ".join(
          f"{k}={v:.4f}" for k, v in result.items() if k != "count"))
      runs.append(result)
    report["runs"][name] = runs
    report["summary"][name] = summarize(runs)
  return report


# In-training evaluation: result key -> TensorBoard tag.
EVAL_SUMMARIES = (("fid", "eval/fid"), ("is_mean", "eval/is"), ("is_std", "eval/is_std"),
                  ("kid", "eval/kid"), ("precision", "eval/precision"),
                  ("recall", "eval/recall"), ("niqe", "eval/niqe"))
TRAINING_EVAL_SEED = 20191209


class TrainingEvaluator:
  """The in-training evaluation of a run's EMA generator (--eval_every): FID (IS when the weights
  have logits; KID and precision/recall when the statistics keep activations) and NIQE on
  config.eval_num_samples, logged as eval/*."""

  def __init__(self, config):
    self.config = config
    self.extractor = self.reference = None

  def prepare(self):
    """Loads the Inception and the reference statistics (fails fast, before any training, when
    either is missing or invalid)."""
    if self.extractor is None:
      self.reference = stats_io.load_statistics(self.config.eval_stats, dim=2048)
      self.extractor = features.InceptionFeatures(self.config.inception_weights or None)

  def __call__(self, generator, step):
    n = self.config.eval_num_samples
    logging.info("step %d | evaluating %d EMA samples with the Inception network ...", step, n)
    with precision.tensor_float_32(False):  # Comparable with bin/evaluate under --allow_tf32.
      result = evaluate_generator(
          generator, self.extractor, self.reference, n, seed=TRAINING_EVAL_SEED,
          batch_size=min(250, n),
          kid_samples=n if self.reference.get("activations") is not None else 0,
          niqe_samples=min(n, 500), progress=True, label=f"step {step} eval",
          log=lambda m: logging.info("%s", m))
    for key, name in EVAL_SUMMARIES:
      if key in result:
        tf.summary.scalar(name, result[key], step=step)
    logging.info("step %d | eval on %d EMA samples: %s", step, result["count"], " ".join(
        f"{k}={result[k]:.4g}" for k, _ in EVAL_SUMMARIES if k in result))
    return result
