"""The paper's evaluation protocol: the metrics of `metrics.table` (IS, FID, KID,
precision/recall, density/coverage, NIQE) of a generator from N samples, repeated, with mean and
spread, written as JSON and a Markdown table; also the cheaper in-training evaluation."""

import datetime
import json
import os

import numpy as np
import tensorflow as tf
from absl import logging

from qagan_tf import config as config_lib
from qagan_tf import sampling
from qagan_tf.metrics import features
from qagan_tf.metrics import stats_io
from qagan_tf.metrics import table
from qagan_tf.utils import files
from qagan_tf.utils import precision


def evaluate_generator(generator, extractor, reference, num_samples, seed=0, batch_size=250,
                       splits=10, kid_samples=10_000, niqe_samples=1000, progress=False,
                       label="samples", log=None, is_logits="tfgan"):
  """Scores one generator against reference statistics: every metric of `metrics.table` that
  the inputs can give.

  Args:
    generator: a generator of the model protocol (qagan_tf/models/registry.py; outputs in
      [-1, 1]).
    extractor: `features.InceptionFeatures`.
    reference: dict from `stats_io.load_statistics` (mu, sigma; optional `activations` for KID,
      precision/recall, density/coverage).
    num_samples: generated images (paper: 50000).
    seed: latent stream of this repeat.
    splits: IS splits (10).
    kid_samples: generated activations kept for KID, precision/recall and density/coverage
      (all need the reference activations too; the last two subsample both sets to 10K).
    niqe_samples: the first this many samples are scored with NIQE (`niqe_of_images`: the
      classic natural-image model, blocks of half the image side; 0 skips it).
    is_logits: "tfgan": IS of all 1008 logits with the softmax bias, as TF-GAN and the QAGAN
      authors (and so the published tables) computed it; "openai": without the bias, as
      OpenAI's reference code (pool_3 times the softmax weights). See IS_LOGITS.
    log: callable(str) told what runs after the Inception pass (FID's matrix square root and
      KID take a minute or two on 2 CPU cores), or None.

  Returns:
    {key: value} for the metrics of `metrics.table.METRICS` the inputs give, and "count".
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
    with_activations = (reference.get("activations") is not None
                        and out["activations"] is not None)
    exact = out["activations"] is not None and len(out["activations"]) == out["count"] <= 2048
    log(f"{label}: computing FID ("
        + ("exact, from the samples' activations" if exact
           else "2048x2048 matrix square root, float64") + ")"
        + (", IS" if out["logits"] is not None else "")
        + (", KID (100 subsets), precision/recall, density/coverage" if with_activations
           else "") + (f" and NIQE of {min(niqe_samples, num_samples)} samples" if niqe_samples
                       else "") + " ...")
  inputs = table.Inputs(out, reference, np.concatenate(kept) if kept else None, seed=seed,
                        splits=splits, is_logits=is_logits,
                        softmax_biases=extractor.softmax_biases if is_logits == "openai"
                        else None)
  return {"count": out["count"], **table.compute(inputs)}


IS_LOGITS = {
    "tfgan": "all 1008 logits with the softmax bias (TF-GAN, the QAGAN authors' code)",
    "openai": "all 1008 logits without the softmax bias (OpenAI's inception_score.py)"}


def summarize(runs):
  """Mean and standard deviation over repeats of every table column metric in a list of
  result dicts."""
  out = {}
  for m in table.COLUMNS:
    values = [r[m.key] for r in runs if m.key in r]
    if values:
      out[m.key] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                    "values": [float(v) for v in values]}
  return out


def markdown_table(report):
  """The report as a Markdown table (one row per generator, one column per table metric)."""
  columns = table.COLUMNS
  lines = [f"# Evaluation of {report['model_dir']} at step {report['step']}", "",
           f"{report['num_samples']} samples x {report['repeats']} repeats against "
           f"`{report['stats']}` (Inception weights {report['weights_sha256'][:12]}, IS "
           f"{report['splits']} splits of "
           f"{IS_LOGITS[report.get('is_logits', 'tfgan')]}). "
           + ("Mean ± std over repeats." if report["repeats"] > 1 else
              "One repeat: no spread (--repeats=3 or more gives one).")
           + (" KID averages subsets of 1000 samples; with fewer, every subset is the whole set "
              "and KID's std over subsets (kid_std in the JSON) is 0." if
              report["num_samples"] < 1000 else ""), ""]
  summaries = list(report["summary"].values())
  lines += table.markdown(["generator"] + [m.label for m in columns],
                          [[name] + [table.summary_cell(summary, m) for m in columns]
                           for name, summary in report["summary"].items()])
  # One line per reason a column is empty.
  notes = table.missing_reasons(columns, lambda m: summaries and all(m.key not in s
                                                                     for s in summaries))
  about = []
  if any("niqe" in s for s in summaries):
    about.append(NIQE_NOTE.format(count=report.get("niqe_samples", "the first")))
  if any("precision" in s for s in summaries):
    about.append(NEIGHBOUR_NOTE)
  if notes:
    lines += [""] + notes
  if about:
    lines += [""] + about
  return "\n".join(lines) + "\n"


NIQE_NOTE = ("NIQE (lower is more natural): the classic natural-image model on {count} "
             "samples of each repeat, blocks of half the image side; compare only at equal "
             "resolution.")
NEIGHBOUR_NOTE = ("Precision/recall: Kynkäänniemi et al. 2019, k = 3; density/coverage: Naeem "
                  "et al. 2020, k = 5; both on the pool_3 features FID uses (not VGG-16), at "
                  "most 10K points per set.")


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
                 log=print, niqe_samples=1000, is_logits="tfgan", warn=None):
  """The paper's protocol for a run directory: every generator, `repeats` x `num_samples`.

  `warn` (default: `log`) gets one line for each way the reference statistics do not match
  the run (resolution, dataset, Inception weights, too few images).

  Returns:
    the report dict (also see `write_report`).
  """
  warn = warn or log
  reference = stats_io.load_statistics(stats_path, dim=2048)
  report = {"model_dir": files.absolute(model_dir), "stats": files.absolute(stats_path),
            "stats_sha256": stats_io.file_sha256(stats_path),
            "num_samples": num_samples, "repeats": repeats, "splits": splits,
            "niqe_samples": min(niqe_samples, num_samples), "is_logits": is_logits,
            "weights_sha256": extractor.info["sha256"],
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "runs": {}, "summary": {}}
  config = config_lib.load_config(model_dir)
  for warning in stats_io.reference_warnings(
      reference, f"statistics {stats_path}", config.resolution, config.dataset,
      extractor.info["sha256"]):
    warn(warning)
  if num_samples < stats_io.FULL_RANK_COUNT:
    warn(f"{num_samples} samples per repeat, fewer than the {stats_io.FULL_RANK_COUNT} that "
         "FID's covariance needs to be full rank: the FID is biased upwards (the paper's "
         "protocol uses 50000).")
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


TRAINING_EVAL_SEED = 20191209


class TrainingEvaluator:
  """The in-training evaluation of a run's EMA generator (--eval_every): every metric of
  `metrics.table` the weights and statistics give (FID, IS with logits, KID, precision/recall and
  density/coverage with activations, NIQE) on config.eval_num_samples, logged as their tags."""

  def __init__(self, config):
    self.config = config
    self.extractor = self.reference = None

  def prepare(self):
    """Loads the Inception and the reference statistics (fails fast, before any training, when
    either is missing or invalid)."""
    if self.extractor is None:
      self.reference = stats_io.load_statistics(self.config.eval_stats, dim=2048)
      self.extractor = features.InceptionFeatures(
          self.config.inception_weights or None,
          batch_size=features.batch_size_for(self.config.eval_num_samples))

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
    for m in table.METRICS:
      if m.key in result:
        tf.summary.scalar(m.tag, result[m.key], step=step)
    logging.info("step %d | eval on %d EMA samples: %s", step, result["count"], " ".join(
        f"{m.key}={result[m.key]:.4g}" for m in table.METRICS if m.key in result))
    return result
