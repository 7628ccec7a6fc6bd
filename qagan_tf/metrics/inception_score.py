"""Inception Score from logits: per split exp(E_x[KL(p(y|x) || p(y))]), mean and std over splits."""

import numpy as np
import scipy.special

from qagan_tf.metrics.fid import StatisticsError


def inception_score(logits, splits=10):
  """IS of (N, C) classifier logits, in float64.

  Args:
    logits: (N, C) logits (the graph's softmax layer: C = 1008).
    splits: the number of equal consecutive splits (10 as in the original IS code; a remainder
      of N mod splits images is dropped).

  Returns:
    (mean, std) over the splits.
  """
  logits = np.asarray(logits, np.float64)
  if logits.ndim != 2:
    raise StatisticsError(f"logits: expected a 2-D (N, C) array, got shape {logits.shape}.")
  if not np.all(np.isfinite(logits)):
    raise StatisticsError("logits: contains NaN or Inf.")
  if splits < 1 or logits.shape[0] < splits:
    raise StatisticsError(f"{logits.shape[0]} samples cannot be cut into {splits} splits.")
  size = logits.shape[0] // splits
  scores = []
  for i in range(splits):
    part = logits[i * size:(i + 1) * size]
    log_p = scipy.special.log_softmax(part, axis=1)
    log_marginal = scipy.special.logsumexp(log_p, axis=0) - np.log(len(part))
    kl = np.sum(np.exp(log_p) * (log_p - log_marginal), axis=1)
    scores.append(np.exp(kl.mean()))
  return float(np.mean(scores)), float(np.std(scores))
