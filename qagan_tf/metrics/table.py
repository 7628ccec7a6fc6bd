"""The one table of evaluation metrics: the evaluation protocol, its JSON and Markdown, the
in-training TensorBoard scalars and bin/report all read `METRICS`.

A metric is one `Metric` entry: its key (in the evaluation JSON), label and scale (tables), its
TensorBoard tag, whether higher is better, and its function of the evaluation's `Inputs`
(generated activations, logits and samples, the reference statistics), which returns its value
or None when the inputs cannot give it (the `unavailable` text then says why). To add a metric:
a pure function in qagan_tf/metrics/, one entry here, its test in tests/metrics/.
"""

import dataclasses
import functools
from typing import Callable, Optional

import numpy as np

from qagan_tf.metrics import density_coverage as dc_lib
from qagan_tf.metrics import fid as fid_lib
from qagan_tf.metrics import inception_score as is_lib
from qagan_tf.metrics import kid as kid_lib
from qagan_tf.metrics import precision_recall as pr_lib

_NEEDS_ACTIVATIONS = ("needs the real images' activations; compute the statistics with "
                      "bin/compute_stats --keep_activations")


class Inputs:
  """What the metrics are computed from, with shared work computed once (`cached`).

  generated: the Inception pass's output for the samples ({"mu", "sigma", "logits",
  "activations"}); reference: the statistics ({"mu", "sigma"[, "activations"]}); samples: the
  first uint8 samples kept for image metrics (or None); seed, splits, softmax_biases,
  is_logits: as `evaluation.evaluate_generator`'s arguments.
  """

  def __init__(self, generated, reference, samples=None, seed=0, splits=10, is_logits="tfgan",
               softmax_biases=None):
    self.generated, self.reference, self.samples = generated, reference, samples
    self.seed, self.splits, self.is_logits = seed, splits, is_logits
    self.softmax_biases = softmax_biases
    self._cache = {}

  def cached(self, key, fn):
    if key not in self._cache:
      self._cache[key] = fn()
    return self._cache[key]

  @property
  def activations(self):
    """(generated, real) activations, or None when either side lacks them."""
    fake, real = self.generated.get("activations"), self.reference.get("activations")
    return None if fake is None or real is None else (fake, real)


def _fid(x):
  g, r = x.generated, x.reference
  kept = g.get("activations")  # All of them (few samples): the exact (N, N) route.
  return fid_lib.frechet_distance(
      g["mu"], g["sigma"], r["mu"], r["sigma"],
      activations1=kept if kept is not None and len(kept) == g.get("count") else None)


def _inception_score(x):
  def compute():
    logits = x.generated.get("logits")
    if logits is None:
      return None
    logits = logits.astype(np.float64)
    if x.is_logits == "openai":
      logits = logits - x.softmax_biases
    return is_lib.inception_score(logits, splits=x.splits)
  return x.cached("is", compute)


def _kid(x):
  def compute():
    pair = x.activations
    return None if pair is None else kid_lib.kernel_inception_distance(
        pair[0], pair[1], num_subsets=100, subset_size=1000, seed=x.seed)
  return x.cached("kid", compute)


def _precision_recall(x):
  return x.cached("pr", lambda: None if x.activations is None else pr_lib.precision_recall(
      x.activations[1], x.activations[0], seed=x.seed))


def _density_coverage(x):
  return x.cached("dc", lambda: None if x.activations is None else dc_lib.density_coverage(
      x.activations[1], x.activations[0], seed=x.seed))


def _niqe(x):
  def compute():
    if x.samples is None or not len(x.samples):
      return None
    from qagan_tf.iqa import niqe_metric
    return niqe_metric.niqe_of_images(x.samples)
  return x.cached("niqe", compute)


def _part(fn, index=None, key=None):
  """The index-th item or the `key` of what `fn` returns (None stays None)."""
  def get(x):
    value = fn(x)
    if value is None:
      return None
    return float(value[index] if key is None else value[key])
  return get


def _stat(fn, reduce):
  def get(x):
    value = fn(x)
    return None if value is None else float(reduce(value))
  return get


@dataclasses.dataclass(frozen=True)
class Metric:
  """One figure of the evaluation.

  key: its name in the evaluation JSON and summaries. label, scale: its table column header and
  the factor its values are shown with. tag: its TensorBoard scalar in in-training evaluation.
  higher_is_better: the direction of better. fn: Inputs -> float, or None when the inputs
  cannot give it. column: shown as a table column (False: in the JSON and TensorBoard only,
  e.g. a spread over splits). unavailable: why it is missing when fn gives None. needs: what
  fn reads beyond the samples' pool_3 statistics, of NEEDS ("logits": Inception's softmax
  layer; "activations": the reference's and the samples' pool_3 rows; "samples": the images
  themselves), so that a caller can keep it, or refuse a metric it cannot give, before it
  generates anything.
  """
  key: str
  label: str
  scale: float
  tag: str
  higher_is_better: bool
  fn: Callable
  column: bool = True
  unavailable: Optional[str] = None
  needs: tuple = ()


NEEDS = ("logits", "activations", "samples")


METRICS = (
    Metric("is_mean", "IS", 1.0, "eval/is", True, _part(_inception_score, 0), needs=("logits",),
           unavailable="IS needs the Inception softmax layer, which these weights lack (pool_3 "
           "only); get the official graph with bin/fetch_inception and pass its .npz with "
           "--inception_weights"),
    Metric("is_std", "IS std over splits", 1.0, "eval/is_std", False,
           _part(_inception_score, 1), column=False, needs=("logits",)),
    Metric("fid", "FID", 1.0, "eval/fid", False, _fid),
    Metric("kid", "KID x 1e3", 1e3, "eval/kid", False, _part(_kid, 0), needs=("activations",),
           unavailable="KID " + _NEEDS_ACTIVATIONS),
    Metric("kid_std", "KID std over subsets", 1.0, "eval/kid_std", False, _part(_kid, 1),
           column=False, needs=("activations",)),
    Metric("precision", "precision", 1.0, "eval/precision", True,
           _part(_precision_recall, key="precision"), needs=("activations",),
           unavailable="precision and recall " + _NEEDS_ACTIVATIONS),
    Metric("recall", "recall", 1.0, "eval/recall", True, _part(_precision_recall, key="recall"),
           needs=("activations",),
           unavailable="precision and recall " + _NEEDS_ACTIVATIONS),
    Metric("density", "density", 1.0, "eval/density", True,
           _part(_density_coverage, key="density"), needs=("activations",),
           unavailable="density and coverage " + _NEEDS_ACTIVATIONS),
    Metric("coverage", "coverage", 1.0, "eval/coverage", True,
           _part(_density_coverage, key="coverage"), needs=("activations",),
           unavailable="density and coverage " + _NEEDS_ACTIVATIONS),
    Metric("niqe", "NIQE", 1.0, "eval/niqe", False, _stat(_niqe, np.mean), needs=("samples",),
           unavailable="NIQE was not asked for (--niqe_samples=0)"),
    Metric("niqe_std", "NIQE std over samples", 1.0, "eval/niqe_std", False,
           _stat(_niqe, np.std), column=False, needs=("samples",)),
)
BY_KEY = {m.key: m for m in METRICS}
COLUMNS = tuple(m for m in METRICS if m.column)


@functools.lru_cache(maxsize=None)
def metric(key):
  """The `Metric` of `key` (KeyError naming the valid keys otherwise)."""
  if key not in BY_KEY:
    raise KeyError(f"unknown metric {key!r}; the table has {', '.join(BY_KEY)}.")
  return BY_KEY[key]


def compute(inputs):
  """{key: value} of every metric the inputs can give, in table order."""
  out = {}
  for m in METRICS:
    value = m.fn(inputs)
    if value is not None:
      out[m.key] = value
  return out


# --- rendering: the one Markdown form of a table of these metrics --------------------------

MISSING = "—"  # The mark of a value a table lacks (evaluation reports and bin/report alike).


def summary_cell(summary, m):
  """A metric's cell from an evaluation summary ({key: {"mean", "std", "values"}}): "mean ±
  std" (the mean alone for one repeat: no "± 0.000"), `MISSING` when it lacks the metric."""
  if not summary or m.key not in summary:
    return MISSING
  s = summary[m.key]
  if len(s.get("values", (0, 0))) < 2:
    return f"{s['mean'] * m.scale:.3f}"
  return f"{s['mean'] * m.scale:.3f} ± {s['std'] * m.scale:.3f}"


def markdown(header, rows):
  """Lines of a Markdown table: `header` (column titles) and `rows` (lists of cells)."""
  return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
          + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def missing_reasons(columns, rows_missing):
  """One line per reason a column's cells are `MISSING` ("—: IS needs ..."), each once.

  rows_missing: metric -> whether some row lacks it."""
  out = []
  for m in columns:
    if m.unavailable and rows_missing(m):
      reason = f"{MISSING}: {m.unavailable[0].upper() + m.unavailable[1:]}."
      if reason not in out:
        out.append(reason)
  return out
