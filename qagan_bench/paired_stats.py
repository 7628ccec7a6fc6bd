"""Paired comparisons with 95% t-intervals (DESIGN §10), and the one-commit rule of a study.

A variant and its control are trained from the same seeds; seed s gives both the same initial
weights and data order. The reported quantity is the per-seed difference, variant minus control:
its mean, its sample standard deviation (ddof 1) and the 95% t-interval
mean ± t_{0.975, n-1} * sd / sqrt(n). The verdict is "lower" or "higher" only when the interval
excludes 0. Anyone with NumPy and SciPy can recompute a comparison from the per-run files.
"""

import math

import numpy as np

LOWER, HIGHER, NO_DIFFERENCE = "lower", "higher", "no detectable difference"
TOO_FEW = "too few seeds (n < 2)"


def t_interval(values, confidence=0.95):
  """(mean, sample std (ddof 1), [lo, hi]) of `values`; std and interval are None for n < 2."""
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


def verdict(ci95):
  """"lower" when the interval is below 0, "higher" when above, else no detectable difference."""
  if ci95 is None:
    return TOO_FEW
  lo, hi = ci95
  if hi < 0:
    return LOWER
  if lo > 0:
    return HIGHER
  return NO_DIFFERENCE


def paired_comparison(variant, control, metric, variant_values, control_values):
  """The comparison entry of `variant` against `control` on `metric`.

  Args:
    variant_values, control_values: {seed: value}; only seeds present in both are paired.

  Returns:
    {"variant", "control", "metric", "n", "seeds", "mean_difference", "std", "ci95", "verdict"}.

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
  mean, sd, ci = t_interval(diffs)
  return {"variant": variant, "control": control, "metric": metric, "n": len(seeds),
          "seeds": seeds, "mean_difference": mean, "std": sd, "ci95": ci,
          "verdict": verdict(ci)}


def sentence(entry, digits=1):
  """"lowers / raises / does not detectably change", the signed mean and its interval."""
  words = {LOWER: "lowers", HIGHER: "raises", NO_DIFFERENCE: "does not detectably change",
           TOO_FEW: "cannot be judged (one seed) on"}[entry["verdict"]]
  if entry["ci95"] is None:
    return f"{words} {entry['metric']}: D {entry['mean_difference']:+.{digits}f} (n = 1)"
  lo, hi = entry["ci95"]
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
