"""Paired comparisons with t-intervals (DESIGN §10), and the one-commit rule of a study.

A variant and its control are trained from the same seeds; seed s gives both the same initial
weights and data order. The reported quantity is the per-seed difference, variant minus control:
its mean, its sample standard deviation (ddof 1) and the two-sided t-interval at level L
mean ± t_{(1 + L) / 2, n-1} * sd / sqrt(n) (L = 0.95 by default; a pre-registered study with two
primary endpoints uses 0.975, Bonferroni). The verdict is "lower" or "higher" only when the
interval excludes 0. Anyone with NumPy and SciPy can recompute a comparison from the per-run
files.
"""

import math

import numpy as np

LOWER, HIGHER, NO_DIFFERENCE = "lower", "higher", "no detectable difference"
TOO_FEW = "too few seeds (n < 2)"


def t_interval(values, confidence=0.95):
  """(mean, sample std (ddof 1), [lo, hi]) of `values`, the two-sided t-interval at
  `confidence`; std and interval are None for n < 2."""
  from scipy import stats
  x = np.asarray(values, np.float64)
  n = len(x)
  if n == 0:
    raise ValueError("t_interval needs at least one value.")
  mean = float(x.mean())
  if n < 2:
    return mean, None, None
  sd = float(x.std(ddof=1))
  half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1)) * sd / math.sqrt(n)
  return mean, sd, [mean - half, mean + half]


def verdict(ci):
  """"lower" when the interval is below 0, "higher" when above, else no detectable difference."""
  if ci is None:
    return TOO_FEW
  lo, hi = ci
  if hi < 0:
    return LOWER
  if lo > 0:
    return HIGHER
  return NO_DIFFERENCE


def paired_comparison(variant, control, metric, variant_values, control_values, level=0.95):
  """The comparison entry of `variant` against `control` on `metric`.

  Args:
    variant_values, control_values: {seed: value}; only seeds present in both are paired.
    level: the two-sided interval's confidence level (0.975: two endpoints, Bonferroni).

  Returns:
    {"variant", "control", "metric", "n", "seeds", "mean_difference", "std", "ci" (the
    interval at `level`), "level", "verdict"}, and "ci95" (the same interval) when level is 0.95.

  Raises:
    ValueError: when no seed is shared, or a paired value is not finite.
  """
  seeds = sorted(set(variant_values) & set(control_values))
  if not seeds:
    raise ValueError(f"{variant} and {control} share no seed: nothing to pair.")
  diffs = [float(variant_values[s]) - float(control_values[s]) for s in seeds]
  if not all(math.isfinite(d) for d in diffs):
    raise ValueError(f"{variant} - {control} on {metric} is not finite for seed(s) "
                     f"{[s for s, d in zip(seeds, diffs) if not math.isfinite(d)]}.")
  mean, sd, ci = t_interval(diffs, level)
  entry = {"variant": variant, "control": control, "metric": metric, "n": len(seeds),
           "seeds": seeds, "mean_difference": mean, "std": sd, "ci": ci, "level": level,
           "verdict": verdict(ci)}
  if level == 0.95:
    entry["ci95"] = ci  # The key of the studies recorded before levels were named.
  return entry


def interval_of(entry):
  """An entry's interval: "ci" (named level) or, in files recorded before it, "ci95"."""
  return entry.get("ci", entry.get("ci95"))


def sentence(entry, digits=1):
  """"lowers / raises / does not detectably change", the signed mean and its interval."""
  words = {LOWER: "lowers", HIGHER: "raises", NO_DIFFERENCE: "does not detectably change",
           TOO_FEW: "cannot be judged (one seed) on"}[entry["verdict"]]
  if interval_of(entry) is None:
    return f"{words} {entry['metric']}: D {entry['mean_difference']:+.{digits}f} (n = 1)"
  lo, hi = interval_of(entry)
  return (f"{words} {entry['metric']}: D {entry['mean_difference']:+.{digits}f} "
          f"[{lo:+.{digits}f}, {hi:+.{digits}f}] (n = {entry['n']})")


def check_one_commit(runs):
  """Raises ValueError unless every run comes from one training-code commit.

  Args:
    runs: {run name: commit} (e.g. {"niqe-seed0": "0594f7c..."}); None or "" for unknown.

  Returns:
    the commit.
  """
  by_commit = {}
  for name, commit in sorted(runs.items()):
    by_commit.setdefault(commit or "unknown", []).append(name)
  if len(by_commit) > 1:
    groups = "; ".join(f"{commit[:12]}: {', '.join(names)}"
                       for commit, names in sorted(by_commit.items()))
    raise ValueError(
        f"the runs come from {len(by_commit)} training-code commits and cannot be compared "
        f"({groups}). A study runs from one commit: finish it from a worktree of that commit "
        f"(git worktree add /tmp/study COMMIT), or move the other commit's runs out of the "
        f"runs folder.")
  return next(iter(by_commit), None)
