"""Differentiable augmentation (DiffAugment, Zhao et al. NeurIPS 2020): the same random,
differentiable transform T on every input of the critic, real and fake, in the critic's and the
generator's updates, so that G is never trained to produce augmented images.

Policies (comma-separated, applied in this order):
- color: brightness + U(-0.5, 0.5); saturation x U(0, 2) around each pixel's channel mean;
  contrast x U(0.5, 1.5) around the image's mean;
- translation: a shift of up to 1/8 of the side in each direction, zero-padded;
- cutout: a square of half the side set to 0, its centre anywhere in the image.

Every random choice comes from `UNIFORMS` uniform numbers per image, so the transform is a pure
function of (images, uniforms): `apply` takes them (bin/train's input pipeline draws them
statelessly over the global batch with the latents, so a resumed run augments exactly as an
uninterrupted one and the global batch is augmented the same on any number of replicas), and
`diff_augment` draws them from a stateless seed.

The policy "ada" is the other augmentation: ADA's adaptive pipeline (qagan_tf/ada.py), which
reads p beside its uniforms (`ada.UNIFORMS` per image). It is exclusive with DiffAugment's parts.
"""

import tensorflow as tf

from qagan_tf import ada

POLICIES = ("color", "translation", "cutout")
ADA = ("ada",)
UNIFORMS = 8  # Per image: brightness, saturation, contrast, 2 shifts, 2 cutout centres, spare.
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def parse_policy(policy):
  """A policy string ("color,translation,cutout", "ada", "" or "none") -> a tuple of POLICIES,
  or `ADA`.

  Raises:
    ValueError: naming an unknown part and the valid ones, or ada beside DiffAugment's parts.
  """
  if policy is None:
    return ()
  parts = tuple(p.strip() for p in str(policy).split(",") if p.strip())
  if parts in ((), ("none",)):
    return ()
  if parts == ADA:
    return ADA
  if "ada" in parts:
    raise ValueError(f"augment policy {policy!r}: ada (adaptive augmentation) and DiffAugment's "
                     f"{', '.join(POLICIES)} are exclusive: use ada alone, or DiffAugment's "
                     "parts without it.")
  unknown = [p for p in parts if p not in POLICIES]
  if unknown or len(set(parts)) != len(parts):
    raise ValueError(f"augment policy {policy!r}: use none, ada, or a comma-separated list of "
                     f"{', '.join(POLICIES)} (each once); got {', '.join(unknown) or 'a repeat'}.")
  return tuple(p for p in POLICIES if p in parts)  # The documented order.


def _per_image(u):
  return tf.reshape(u, [-1, 1, 1, 1])


def _color(x, u):
  x = x + _per_image(u[:, 0]) - 0.5  # Brightness.
  mean = tf.reduce_mean(x, axis=3, keepdims=True)
  x = (x - mean) * _per_image(2.0 * u[:, 1]) + mean  # Saturation.
  mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
  return (x - mean) * _per_image(u[:, 2] + 0.5) + mean  # Contrast.


def _shift_indices(size, pad, u):
  """Per-image integer shifts in [-pad, pad] (uniform over the 2 pad + 1 values) as the indices
  of the padded image that each output pixel reads: (B, size) int32."""
  shift = tf.minimum(tf.cast(tf.floor(u * (2 * pad + 1)), tf.int32), 2 * pad) - pad
  return tf.range(size)[None, :] + pad + shift[:, None]


def _translation(x, u):
  h, w = x.shape[1], x.shape[2]
  ph, pw = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
  padded = tf.pad(x, [[0, 0], [ph, ph], [pw, pw], [0, 0]])
  rows = tf.gather(padded, _shift_indices(h, ph, u[:, 3]), axis=1, batch_dims=1)
  return tf.gather(rows, _shift_indices(w, pw, u[:, 4]), axis=2, batch_dims=1)


def _cutout(x, u):
  h, w = x.shape[1], x.shape[2]
  ch, cw = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
  # Centres anywhere in [0, size) (DiffAugment: offsets in [0, size + (1 - cut % 2))).
  cy = tf.cast(tf.floor(u[:, 5] * (h + 1 - ch % 2)), tf.int32)
  cx = tf.cast(tf.floor(u[:, 6] * (w + 1 - cw % 2)), tf.int32)
  ys, xs = tf.range(h)[None, :], tf.range(w)[None, :]
  in_y = (ys >= cy[:, None] - ch // 2) & (ys < cy[:, None] - ch // 2 + ch)  # (B, h)
  in_x = (xs >= cx[:, None] - cw // 2) & (xs < cx[:, None] - cw // 2 + cw)  # (B, w)
  keep = tf.logical_not(in_y[:, :, None] & in_x[:, None, :])
  return x * tf.cast(keep, x.dtype)[..., None]


_OPS = {"color": _color, "translation": _translation, "cutout": _cutout}


def uniforms_of(policy):
  """The uniforms per image that the parsed `policy` reads (0 for none)."""
  policy = tuple(policy)
  return ada.UNIFORMS if policy == ADA else UNIFORMS if policy else 0


def apply(images, uniforms, policy, p=None):
  """T(images): the parsed `policy` (a tuple of POLICIES, `ADA`, or a string) with each image's
  random choices from `uniforms` (B, uniforms_of(policy)) in [0, 1), and for ADA its p (a float32
  scalar). Differentiable with respect to `images`; images (B, H, W, C) with static H, W, C;
  returns the same shape and dtype."""
  policy = parse_policy(policy) if isinstance(policy, str) else tuple(policy)
  if not policy:
    return images
  if policy == ADA:
    if p is None:
      raise ValueError("the ada augmentation needs its p (a float32 scalar in [0, 1]).")
    return ada.apply(images, uniforms, p)
  dtype = images.dtype
  x = tf.cast(images, tf.float32)
  u = tf.cast(uniforms, tf.float32)
  for name in policy:
    x = _OPS[name](x, u)
  return tf.cast(x, dtype)


def diff_augment(images, policy="color,translation,cutout", seed=(0, 0)):
  """DiffAugment of a batch of images with random choices drawn from a stateless `seed`: the
  same seed gives the same augmentation.

  Args:
    images: float (B, H, W, C) in [-1, 1] (e.g. a critic's real or generated inputs).
    policy: comma-separated parts of color, translation, cutout; "" or "none": unchanged.
    seed: a stateless seed, two integers (e.g. (run seed, step)).

  Returns:
    the augmented images, of the same shape and dtype.

  Raises:
    ValueError: an unknown policy, or images that are not float (B, H, W, C) with static H, W, C.
  """
  parts = parse_policy(policy)
  images = tf.convert_to_tensor(images)
  if not images.dtype.is_floating or images.shape.rank != 4 or None in images.shape[1:]:
    raise ValueError(f"images must be float (B, H, W, C) with static H, W, C; got "
                     f"{images.dtype.name} {images.shape}.")
  if not parts:
    return images
  uniforms = tf.random.stateless_uniform(tf.stack([tf.shape(images)[0], UNIFORMS]),
                                         tf.cast(tf.convert_to_tensor(seed), tf.int64))
  return apply(images, uniforms, parts)
