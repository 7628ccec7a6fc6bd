"""NIQE (Mittal et al. 2013): MSCN statistics, 36 AGGD features per block, MVG distance.

One implementation of the statistics (`mscn`, `niqe_features`) serves two modes:
- metric mode (`niqe_metric.niqe`): float64, reproduces MATLAB `computequality.m`;
- differentiable mode (`niqe_score`, `NiqeScorer`, here): float32/64, root-finder alpha with
  implicit gradient, eps in every sqrt and division, a whitened Cholesky solve, batched over
  images and blocks, pooled per group, batch or image.
"""

import numpy as np
import tensorflow as tf
from absl import logging

from qagan_tf.iqa import aggd, resize
from qagan_tf.iqa.model import NiqeModel, load_model  # noqa: F401  (re-exported)
from qagan_tf.iqa.similarity import RGB_TO_GRAY

FEATURES_PER_SCALE = 18
SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))  # MATLAB circshift offsets of the pairwise products.
POOLINGS = ("group", "batch", "pooled", "image")
# Images per group of pooling="group" (see `NiqeScorer`): measured on natural derivative maps, the
# smallest size at which clean maps beat their blurred versions in every batch (docs/penalties.md).
DEFAULT_GROUP_SIZE = 16
# |MSCN| below this is exact arithmetic's 0 (see `mscn`).
MSCN_ZERO = 1e-10


def _gaussian_window():
  """fspecial('gaussian', 7, 7/6), normalised."""
  c = np.arange(7) - 3.0
  g = np.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / (2.0 * (7.0 / 6.0) ** 2))
  return g / g.sum()


def replicate_pad(x, pad):
  """Edge-replicating padding of the two spatial axes of (N, H, W)."""
  h, w = x.shape[1], x.shape[2]
  rows = np.clip(np.arange(-pad, h + pad), 0, h - 1)
  cols = np.clip(np.arange(-pad, w + pad), 0, w - 1)
  return tf.gather(tf.gather(x, rows, axis=1), cols, axis=2)


def mscn(images, eps=0.0):
  """Mean-subtracted contrast-normalised coefficients (I - mu) / (sigma + 1).

  Where a 7x7 window is flat, the pixel equals its local mean and the coefficient is 0 in exact
  arithmetic; the filter's last-bit rounding would make it +-1e-14, which the AGGD fit's hard
  split then counts as a negative or a positive value (how depends on the order in which the
  filter sums, so MATLAB, SciPy and TF ports disagree by up to 5% on images with flat regions).
  Coefficients with |value| < MSCN_ZERO are therefore set to exactly 0 (their gradient is 0).

  The local moments are taken of the map minus its own mean (exact arithmetic gives the same
  coefficients): E[I^2] - mu^2 of a map with a DC offset d cancels about d^2 / sigma^2 of its
  digits, which in float32 loses the structure of a map whose offset is 100x its contrast.

  Args:
    images: float (N, H, W) grayscale, NIQE's scale [0, 255].
    eps: added under sigma's sqrt (0 for MATLAB; > 0 for finite gradients on flat regions).

  Returns:
    (mscn, sigma): float (N, H, W) each; sigma = sqrt(|E[I^2] - mu^2|), the local sharpness.
  """
  images = images - tf.reduce_mean(images, axis=[1, 2], keepdims=True)
  # E[I] and E[I^2] in one depthwise convolution of the two maps stacked as channels.
  window = _gaussian_window()
  kernel = tf.constant(np.stack([window, window], -1)[..., None], images.dtype)
  padded = replicate_pad(tf.stack([images, images * images], -1), window.shape[0] // 2)
  mu, second = tf.unstack(tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID"), axis=-1)
  sigma = tf.sqrt(tf.abs(second - mu * mu) + eps)
  coeffs = (images - mu) / (sigma + 1.0)
  return tf.where(tf.abs(coeffs) < MSCN_ZERO, tf.zeros_like(coeffs), coeffs), sigma


def _to_blocks(x, bh, bw):
  """(N, H, W) with H, W multiples of the block -> (N, blocks, bh, bw), row-major block order."""
  n, h, w = x.shape[0], x.shape[1], x.shape[2]
  n = -1 if n is None else n
  x = tf.reshape(x, [n, h // bh, bh, w // bw, bw])
  x = tf.transpose(x, [0, 1, 3, 2, 4])
  return tf.reshape(x, [n, (h // bh) * (w // bw), bh, bw])


def _block_samples(blocks):
  """(N, B, bh, bw) MSCN blocks -> (N, B, 5, bh * bw): the coefficients and their products with
  the circularly shifted block (MATLAB circshift) for each of SHIFTS."""
  samples = [blocks] + [blocks * tf.roll(blocks, s, axis=[2, 3]) for s in SHIFTS]
  n_blocks, size = blocks.shape[1], blocks.shape[2] * blocks.shape[3]
  return tf.reshape(tf.stack(samples, axis=2), [-1, n_blocks, 5, size])


# Per scale, the AGGD parameters [alpha, eta, beta_l, beta_r, mean beta] of the 5 samples give
# NIQE's 18 features: [alpha, mean beta] of the coefficients, then [alpha, eta, beta_l, beta_r]
# of each shifted product (indices into the flattened (5 samples, 5 parameters)).
_PARAMETERS = 5
_FEATURE_INDEX = [0, 4] + [sample * _PARAMETERS + p for sample in range(1, 5) for p in range(4)]


def _block_features(samples, method, eps, split="hard", temperature=aggd.DEFAULT_TEMPERATURE):
  """Per-scale samples [(N, B, 5, n_s)] -> (N, B, 18 * scales) features, every scale fitted in
  one batched AGGD fit (the smaller scales' samples zero-padded and masked out)."""
  n_max = max(int(x.shape[-1]) for x in samples)
  mask = None
  if len(samples) > 1:
    mask = np.zeros((len(samples), 1, n_max))
    for s, x in enumerate(samples):
      mask[s, :, :x.shape[-1]] = 1.0
    samples = [tf.pad(x, [[0, 0], [0, 0], [0, 0], [0, n_max - x.shape[-1]]])
               if x.shape[-1] < n_max else x for x in samples]
  x = tf.stack(samples, axis=2)  # (N, B, scales, 5, n_max)
  alpha, beta_l, beta_r = aggd.fit_aggd(
      x, axis=-1, method=method, eps=eps, split=split, temperature=temperature,
      mask=None if mask is None else tf.constant(mask, x.dtype))
  eta = aggd.aggd_mean_param(alpha, beta_l, beta_r)
  params = tf.stack([alpha, eta, beta_l, beta_r, 0.5 * (beta_l + beta_r)], axis=-1)
  scales, n_blocks = len(samples), x.shape[1]
  params = tf.reshape(params, [-1, n_blocks, scales * 5 * _PARAMETERS])
  index = [s * 5 * _PARAMETERS + i for s in range(scales) for i in _FEATURE_INDEX]
  return tf.gather(params, index, axis=-1)


def check_block_size(height, width, block_size, scales):
  """Raises ValueError unless an image of height x width holds at least one block at every scale."""
  bh, bw = (block_size, block_size) if np.isscalar(block_size) else block_size
  if scales < 1:
    raise ValueError(f"scales={scales} must be >= 1.")
  div = 2 ** (scales - 1)
  if bh % div or bw % div or bh < div or bw < div:
    raise ValueError(f"block size {bh}x{bw} must be a positive multiple of {div} for "
                     f"{scales} scales (each scale halves it).")
  if height < bh or width < bw:
    raise ValueError(f"An image of {height}x{width} px is smaller than one {bh}x{bw} NIQE block; "
                     "use a smaller block_size (GAN images: e.g. 32 or 16) or larger images.")
  return bh, bw


def niqe_features(images, block_size=96, scales=2, method="root", eps=0.0,
                  return_sharpness=False, split="hard", temperature=aggd.DEFAULT_TEMPERATURE):
  """The NIQE block features of grayscale images.

  Args:
    images: float (N, H, W) grayscale on NIQE's scale [0, 255] (any scale works for the
      differentiable penalty; the pristine model must match it). Cropped to whole blocks.
    block_size: int or (rows, cols) block size at scale 1; each further scale halves the image
      (MATLAB imresize 0.5) and the block.
    scales: number of scales (MATLAB: 2).
    method: "grid" (MATLAB) or "root" (differentiable) alpha estimation.
    eps: see `aggd.fit_aggd` and `mscn`.
    return_sharpness: also return the mean local sigma of each scale-1 block.
    split, temperature: the AGGD fit's left/right split ("hard": MATLAB; "soft": smooth, for
      penalties that are differentiated); see `aggd.fit_aggd`.

  Returns:
    float (N, blocks, 18 * scales) [, float (N, blocks) sharpness].
  """
  images = tf.convert_to_tensor(images)
  if images.shape.rank != 3:
    raise ValueError(f"niqe_features expects grayscale (N, H, W) images, got shape "
                     f"{images.shape}.")
  h, w = int(images.shape[1]), int(images.shape[2])
  bh, bw = check_block_size(h, w, block_size, scales)
  x = images[:, :h // bh * bh, :w // bw * bw]
  samples, sharpness = [], None
  for s in range(scales):
    coeffs, sigma = mscn(x, eps)
    div = 2**s
    samples.append(_block_samples(_to_blocks(coeffs, bh // div, bw // div)))
    if s == 0 and return_sharpness:
      sharpness = tf.reduce_mean(_to_blocks(sigma, bh, bw), axis=[2, 3])
    if s + 1 < scales:
      x = resize.imresize(x, 0.5)
  feats = _block_features(samples, method, eps, split, temperature)
  return (feats, sharpness) if return_sharpness else feats


class _Whitened:
  """The pristine model in whitened coordinates: u = A (f - mu_P) with A = L^-1, Sigma_P = L L^T.

  The distance sqrt(d^T ((Sigma_P + Sigma_T) / 2)^-1 d) is invariant under this change of
  coordinates, and there (Sigma_P + Sigma_T) / 2 becomes (I + C) / 2 with C = A Sigma_T A^T, whose
  eigenvalues are all >= 1/2: the Cholesky solve is well conditioned in float32 without a
  ridge. (The priors' covariances have eigenvalues down to 1e-5 against a largest of ~5: a
  ridge large enough to stabilise a float32 Cholesky of the raw matrix would decide the score.)
  """

  def __init__(self, model, dtype, covariance_regularization):
    # NumPy here, tensors where used: one scorer may serve several graphs (e.g. an XLA-compiled
    # local part and the pooling outside it).
    cov = np.asarray(model.cov, np.float64)
    inverse_chol = np.linalg.inv(np.linalg.cholesky(0.5 * (cov + cov.T)))
    self.dtype = tf.as_dtype(dtype).as_numpy_dtype
    self.mu = np.asarray(model.mu, self.dtype)
    self.transform = inverse_chol.T.astype(self.dtype)  # Row vectors: u = (f - mu) @ A^T.
    dim = cov.shape[0]
    # (Sigma_P + Sigma_T) / 2 + r I  ->  (I + C) / 2 + r A A^T.
    self.base = (0.5 * np.eye(dim) + covariance_regularization
                 * inverse_chol @ inverse_chol.T).astype(self.dtype)

  def coordinates(self, feats):
    return tf.linalg.matmul(feats - tf.constant(self.mu), tf.constant(self.transform))

  def distance(self, u_mean, u_cov, eps):
    """sqrt(u^T ((I + C) / 2 + ridge)^-1 u + eps) for u (..., D) and C (..., D, D)."""
    chol = tf.linalg.cholesky(tf.constant(self.base) + 0.5 * u_cov)
    sol = tf.linalg.cholesky_solve(chol, u_mean[..., None])
    return tf.sqrt(tf.reduce_sum(u_mean[..., None] * sol, axis=[-2, -1]) + eps)


def _mvg(feats):
  """Mean and (n - 1)-normalised covariance over axis -2 of (..., n, D); covariance 0 if n = 1."""
  n = feats.shape[-2]
  mu = tf.reduce_mean(feats, axis=-2)
  centred = feats - mu[..., None, :]
  if n is not None and n < 2:
    return mu, tf.zeros(tf.concat([tf.shape(mu), tf.shape(mu)[-1:]], 0), feats.dtype)
  cov = tf.linalg.matmul(centred, centred, transpose_a=True) / tf.cast(
      tf.shape(feats)[-2] - 1, feats.dtype)
  return mu, cov


def _all_replicas_sum(values):
  """Sums a list of tensors over the replicas of the current tf.distribute replica context
  (differentiable: the gradient of an all-reduce sum is the all-reduce sum of the gradients);
  the values themselves outside a multi-replica context."""
  ctx = tf.distribute.get_replica_context()
  if ctx is None or ctx.num_replicas_in_sync == 1:
    return values
  return ctx.all_reduce(tf.distribute.ReduceOp.SUM, values)


def _global_mvg(rows):
  """Mean and (n - 1)-covariance of rows (n, D) pooled over all replicas (two passes, so that
  float32 does not lose the covariance to cancellation)."""
  n_local = tf.cast(tf.shape(rows)[0], rows.dtype)
  total, count = _all_replicas_sum([tf.reduce_sum(rows, axis=0), n_local])
  mean = total / count
  centred = rows - mean
  (scatter,) = _all_replicas_sum([tf.linalg.matmul(centred, centred, transpose_a=True)])
  return mean, scatter / tf.maximum(count - 1.0, 1.0)


def group_assignment(count, group_size):
  """Splits `count` images into floor(count / group_size) groups (one when count < group_size),
  as equal as possible: the first count mod groups of them one image larger. Works for a static
  int count (NumPy) and for a scalar int tensor.

  Returns:
    (ids, groups): int32 (count,) group of each image (contiguous, ascending) and the number of
    groups.
  """
  if isinstance(count, (int, np.integer)):
    groups = max(1, count // group_size)
    size, extra = divmod(count, groups)
    ids = np.repeat(np.arange(groups), [size + 1] * extra + [size] * (groups - extra))
    return tf.constant(ids, tf.int32), groups
  count = tf.cast(count, tf.int32)
  groups = tf.maximum(1, count // group_size)
  size = count // groups
  extra = count - groups * size
  i = tf.range(count)
  big = extra * (size + 1)  # Images in the larger groups.
  ids = tf.where(i < big, i // (size + 1), extra + (i - big) // tf.maximum(size, 1))
  return ids, groups


def _group_mvg(u, ids, groups):
  """Mean and (n - 1)-covariance of the blocks of each group: u (N, blocks, D), ids (N,) ->
  (groups, D), (groups, D, D); two passes (no cancellation in float32)."""
  onehot = tf.transpose(tf.one_hot(ids, groups, dtype=u.dtype))  # (groups, N)
  blocks = tf.cast(tf.shape(u)[1], u.dtype)
  count = tf.reduce_sum(onehot, axis=1) * blocks
  mean = tf.einsum("gn,nkd->gd", onehot, u) / count[:, None]
  centred = u - tf.gather(mean, ids)[:, None, :]
  scatter = tf.einsum("gn,nkd,nke->gde", onehot, centred, centred)
  return mean, scatter / tf.maximum(count - 1.0, 1.0)[:, None, None]


def niqe_score(images, model, **kwargs):
  """Differentiable NIQE of a batch (the QAGAN quality-aware penalty's core, paper eqs. 14-15).

  Args:
    images: float (N, H, W, C) or (N, H, W); for C = 3 and grayscale=True converted with MATLAB's
      rgb2gray weights (no rounding); for C > 1 and grayscale=False each channel is a separate
      image. Values on the scale of the pristine model's features.
    model: `NiqeModel` (pristine mean and covariance of 18 * scales features).
    block_size: block size at scale 1.
    scales: number of scales.
    pooling: how the test MVG (mu_T, Sigma_T) is estimated; the distance is
      sqrt((mu_P - mu_T)^T ((Sigma_P + Sigma_T) / 2)^-1 (mu_P - mu_T)) in every case.
      "group" (default): one MVG over all blocks of each group of `group_size` consecutive
        images (see `group_assignment`); each image gets its group's score. A statistic of a
        fixed number of images means the same at every batch size (the MVG of a whole batch
        has a finite-sample bias that falls with the batch), and needs no communication
        between replicas: groups never span replicas.
      "batch": one MVG over all blocks of the batch, over all replicas under tf.distribute (as
        the authors' code); the score is repeated for every image.
      "pooled": mu_T per image (the mean of its blocks' features), Sigma_T the covariance of all
        blocks of the batch (all replicas): a per-image score whose covariance is estimated from
        enough blocks to exist (with one block per image a per-image covariance does not, with 4
        blocks it has rank 3 for 36 features).
      "image": mu_T and Sigma_T per image (paper eq. 15 literally: the expectation of per-image
        NIQE; Sigma_T = 0 for one block per image).
    group_size: images per group for pooling="group"; a batch smaller than it is one group.
    covariance_regularization: ridge added to (Sigma_P + Sigma_T) / 2 (0: none is needed, the
      solve runs in the prior's whitened coordinates; see `_Whitened`).
    eps: keeps sqrt and divisions finite (AGGD fits, MSCN sigma and the final distance).
    dtype: computation dtype (float32 or float64).
    split, temperature: the AGGD fits' left/right split; "soft" (default) keeps the score smooth
      in the images (see `aggd.fit_aggd`), "hard" is MATLAB's.

  Returns:
    float (N,) scores (per channel image when grayscale=False: (N * C,)).
  """
  return NiqeScorer(model, **kwargs)(images)


class NiqeScorer:
  """`niqe_score` in two parts: `local` (per replica, no communication: the features in the
  prior's whitened coordinates, or for pooling="group" and "image" the scores themselves) and
  `pool` (the cross-replica MVG and the distance), so that the local part, nearly all of the
  ops, can be compiled with XLA on its own (a compiled function cannot hold a cross-replica
  all-reduce). Arguments as `niqe_score`."""

  def __init__(self, model, *, block_size=32, scales=2, pooling="group",
               group_size=DEFAULT_GROUP_SIZE, grayscale=True, covariance_regularization=0.0,
               eps=1e-8, dtype=tf.float32, split="soft", temperature=aggd.DEFAULT_TEMPERATURE):
    if pooling not in POOLINGS:
      raise ValueError(f"pooling={pooling!r}: use one of {', '.join(POOLINGS)}.")
    if int(group_size) != group_size or group_size < 2:
      raise ValueError(f"group_size={group_size!r} must be an integer >= 2.")
    self.group_size = int(group_size)
    self.dim = FEATURES_PER_SCALE * scales
    if model.mu.shape != (self.dim,):
      raise ValueError(f"The NIQE model has {model.mu.shape[0]} features; {scales} scale(s) "
                       f"need {self.dim}.")
    self.block_size, self.scales, self.pooling, self.grayscale = (block_size, scales, pooling,
                                                                  grayscale)
    self.eps, self.dtype, self.split, self.temperature = eps, dtype, split, temperature
    self.white = _Whitened(model, dtype, covariance_regularization)

  def _gray(self, images):
    x = tf.cast(tf.convert_to_tensor(images), self.dtype)
    if x.shape.rank == 4:
      if self.grayscale and x.shape[-1] == 3:
        x = tf.reduce_sum(x * tf.constant(RGB_TO_GRAY, self.dtype), axis=-1)
      elif x.shape[-1] == 1:
        x = x[..., 0]
      else:
        x = tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [-1, x.shape[1], x.shape[2]])
    elif x.shape.rank != 3:
      raise ValueError(f"niqe_score expects (N, H, W[, C]) images, got shape {x.shape}.")
    return x

  def local(self, images):
    """Per-replica part: (N, blocks, D) whitened features, or (N,) scores for pooling="group"
    and "image"."""
    feats = niqe_features(self._gray(images), self.block_size, self.scales, method="root",
                          eps=self.eps, split=self.split, temperature=self.temperature)
    u = self.white.coordinates(feats)
    if self.pooling == "image":
      return self.white.distance(*_mvg(u), self.eps)
    if self.pooling == "group":
      count = u.shape[0] if u.shape[0] is not None else tf.shape(u)[0]
      if isinstance(count, int) and count < self.group_size:
        logging.log_first_n(logging.INFO, "NIQE penalty: a batch of %d images (per replica) is "
                            "smaller than a group of %d: it is one group.", 1, count,
                            self.group_size)
      ids, groups = group_assignment(count, self.group_size)
      return tf.gather(self.white.distance(*_group_mvg(u, ids, groups), self.eps), ids)
    return u

  def pool(self, local):
    """The scores from `local`'s output (all-reduces over replicas for batch and pooled)."""
    if self.pooling in ("image", "group"):
      return local
    mean, cov = _global_mvg(tf.reshape(local, [-1, self.dim]))
    if self.pooling == "batch":
      return tf.fill(tf.shape(local)[:1], self.white.distance(mean, cov, self.eps))
    return self.white.distance(tf.reduce_mean(local, axis=1), cov, self.eps)

  def __call__(self, images):
    return self.pool(self.local(images))
