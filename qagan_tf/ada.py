"""Adaptive discriminator augmentation's pipeline (ADA: Karras et al., "Training Generative
Adversarial Networks with Limited Data", NeurIPS 2020): the "bgc" transforms, each applied to an
image with probability p, as a pure, differentiable function of (images, uniforms, p).

The transforms, in the order they act (the paper's appendix B; its ranges below):
- blit: x-flip, rotation by a multiple of 90 degrees, integer translation (up to 1/8 of the
  side);
- geometric: isotropic scaling (lognormal, std 0.2 in log2), rotation (uniform, drawn twice
  with probability 1 - sqrt(1 - p) each, so that some rotation happens with probability p),
  anisotropic scaling (std 0.2 in log2), fractional translation (normal, std 1/8 of the side);
- colour: brightness (+ normal, std 0.2), contrast (x lognormal, std 0.5 in log2), luma flip,
  hue rotation (uniform) and saturation (lognormal, std 1 in log2) about the luma axis.

The blit and geometric transforms make one sampling matrix per image, and the image is resampled
once: bicubic interpolation (Keys, a = -0.5) with symmetric reflection at the borders (the
paper's reflect padding). The paper also upsamples 2x with a wavelet filter to suppress
aliasing; at 32-96 px we resample directly. The colour transforms make one 4x4 matrix per image
about the origin of [-1, 1]. An image none of whose transforms is drawn is returned as it was,
bit for bit, so p = 0 is the identity.

Every random choice comes from `UNIFORMS` uniform numbers per image (`COLUMNS` names them): the
training input pipeline draws them statelessly over the global batch, as DiffAugment's, so a
resumed run augments exactly as an uninterrupted one. p is a float32 scalar tensor (the
adaptive p of `objectives/terms/ada.py`, or a fixed one).
"""

import math

import tensorflow as tf

GROUPS = {"b": ("xflip", "rotate90", "xint"),
          "g": ("scale", "rotate", "aniso", "xfrac"),
          "c": ("brightness", "contrast", "lumaflip", "hue", "saturation")}
TRANSFORMS = tuple(t for group in GROUPS.values() for t in group)  # "bgc": all of them.
GEOMETRIC = GROUPS["b"] + GROUPS["g"]

# The paper's strengths (appendix B.2).
XINT_MAX = 0.125  # Integer translation: up to this fraction of the side.
SCALE_STD = 0.2  # log2 of the isotropic scale.
ROTATE_MAX = 1.0  # Rotation: uniform in +-pi times this.
ANISO_STD = 0.2  # log2 of the anisotropic scale.
XFRAC_STD = 0.125  # Fractional translation: normal, this fraction of the side.
BRIGHTNESS_STD = 0.2
CONTRAST_STD = 0.5  # log2.
HUE_MAX = 1.0  # Hue rotation: uniform in +-pi times this.
SATURATION_STD = 1.0  # log2.

# Each transform's columns in the per-image uniforms: its gate (drawn when < p), then its
# parameters. Rotation has two gates and angles (before and after the anisotropic scaling).
COLUMNS = {"xflip": (0, 1), "rotate90": (2, 3), "xint": (4, 5, 6), "scale": (7, 8),
           "rotate": (9, 10, 13, 14), "aniso": (11, 12), "xfrac": (15, 16, 17),
           "brightness": (18, 19), "contrast": (20, 21), "lumaflip": (22, 23), "hue": (24, 25),
           "saturation": (26, 27)}
UNIFORMS = 28

def parse_transforms(transforms):
  """"bgc", "bg", ..., or an iterable of `TRANSFORMS` names -> a tuple in the pipeline's order.

  Raises:
    ValueError: naming what is unknown and the valid groups and names.
  """
  if isinstance(transforms, str):
    unknown = sorted(set(transforms) - set(GROUPS))
    if unknown or not transforms:
      raise ValueError(f"ADA transforms {transforms!r}: use a combination of the groups b, g, c "
                       f"(e.g. bgc) or names of {', '.join(TRANSFORMS)}.")
    names = {t for g in transforms for t in GROUPS[g]}
  else:
    names = set(transforms)
    unknown = sorted(names - set(TRANSFORMS))
    if unknown:
      raise ValueError(f"unknown ADA transform(s) {', '.join(unknown)}: choose from "
                       f"{', '.join(TRANSFORMS)}.")
  return tuple(t for t in TRANSFORMS if t in names)


def _exp2(x):
  return tf.pow(2.0, x)


def _normal(u):
  """A standard normal from a uniform in [0, 1) (the inverse CDF, clipped off 0 and 1)."""
  return tf.math.ndtri(tf.clip_by_value(u, 1e-6, 1.0 - 1e-6))


def _matrix(rows):
  """(B, 3, 3) from 3 rows of 3 (B,) tensors or numbers."""
  return tf.stack([tf.stack(row, axis=-1) for row in rows], axis=-2)


def _translate(tx, ty):
  one, zero = tf.ones_like(tx), tf.zeros_like(tx)
  return _matrix([[one, zero, tx], [zero, one, ty], [zero, zero, one]])


def _scale(sx, sy):
  one, zero = tf.ones_like(sx), tf.zeros_like(sx)
  return _matrix([[sx, zero, zero], [zero, sy, zero], [zero, zero, one]])


def _rotate(cos, sin):
  one, zero = tf.ones_like(cos), tf.zeros_like(cos)
  return _matrix([[cos, -sin, zero], [sin, cos, zero], [zero, zero, one]])


def _sampling_matrix(u, p, names, size):
  """Each image's map from an output pixel to where it reads the input ((B, 3, 3), on
  coordinates centred on the image, in pixels), and whether any geometric transform was drawn.

  Every transform's parameters are distributed symmetrically, so a draw of the map is a draw of
  the transform itself."""
  on = {}

  def gate(name, column, probability=p):
    drawn = u[:, column] < probability
    on[name] = tf.logical_or(on.get(name, False), drawn)
    return drawn

  m = tf.eye(3, batch_shape=tf.shape(u)[:1])
  if "xflip" in names:
    c = COLUMNS["xflip"]
    flip = gate("xflip", c[0]) & (u[:, c[1]] >= 0.5)
    m = m @ _scale(tf.where(flip, -1.0, 1.0), tf.ones_like(u[:, 0]))
  if "rotate90" in names:
    c = COLUMNS["rotate90"]
    k = tf.where(gate("rotate90", c[0]), tf.minimum(tf.cast(u[:, c[1]] * 4, tf.int32), 3), 0)
    m = m @ _rotate(tf.gather([1.0, 0.0, -1.0, 0.0], k), tf.gather([0.0, 1.0, 0.0, -1.0], k))
  if "xint" in names:
    c = COLUMNS["xint"]
    drawn = gate("xint", c[0])
    t = [tf.where(drawn, tf.round((u[:, i] * 2 - 1) * XINT_MAX * size), 0.0) for i in c[1:]]
    m = m @ _translate(*t)
  rotations = []
  if "rotate" in names:
    c = COLUMNS["rotate"]
    p_rotate = 1.0 - tf.sqrt(tf.maximum(1.0 - p, 0.0))
    for g, a in ((c[0], c[1]), (c[2], c[3])):
      theta = tf.where(gate("rotate", g, p_rotate), (u[:, a] * 2 - 1) * math.pi * ROTATE_MAX,
                       0.0)
      rotations.append(_rotate(tf.cos(theta), tf.sin(theta)))
  if "scale" in names:
    c = COLUMNS["scale"]
    s = tf.where(gate("scale", c[0]), _exp2(_normal(u[:, c[1]]) * SCALE_STD), 1.0)
    m = m @ _scale(s, s)
  if rotations:
    m = m @ rotations[0]
  if "aniso" in names:
    c = COLUMNS["aniso"]
    s = tf.where(gate("aniso", c[0]), _exp2(_normal(u[:, c[1]]) * ANISO_STD), 1.0)
    m = m @ _scale(s, 1.0 / s)
  if rotations:
    m = m @ rotations[1]
  if "xfrac" in names:
    c = COLUMNS["xfrac"]
    drawn = gate("xfrac", c[0])
    t = [tf.where(drawn, _normal(u[:, i]) * XFRAC_STD * size, 0.0) for i in c[1:]]
    m = m @ _translate(*t)
  any_on = tf.zeros_like(u[:, 0], tf.bool)
  for drawn in on.values():
    any_on = any_on | drawn
  return m, any_on


def _cubic_weights(f):
  """Keys' cubic (a = -0.5) weights of the taps at -1, 0, 1, 2 for offsets f in [0, 1)."""
  a = -0.5

  def near(t):
    return ((a + 2) * t - (a + 3)) * t * t + 1

  def far(t):
    return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
  return tf.stack([far(1 + f), near(f), near(1 - f), far(2 - f)], axis=-1)


def _reflect(index, size):
  """Integer indices reflected symmetrically into [0, size) (..., 1, 0, 0, 1, ... at the edge)."""
  index = tf.math.floormod(index, 2 * size)
  return tf.where(index >= size, 2 * size - 1 - index, index)


def _resample(x, m):
  """x (B, H, W, C) float32 sampled at m's map of every output pixel: bicubic, reflected."""
  h, w, channels = x.shape[1], x.shape[2], x.shape[3]
  ys, xs = tf.meshgrid(tf.range(h, dtype=tf.float32) - (h - 1) / 2,
                       tf.range(w, dtype=tf.float32) - (w - 1) / 2, indexing="ij")
  sx = (m[:, 0, 0, None, None] * xs + m[:, 0, 1, None, None] * ys + m[:, 0, 2, None, None]
        + (w - 1) / 2)
  sy = (m[:, 1, 0, None, None] * xs + m[:, 1, 1, None, None] * ys + m[:, 1, 2, None, None]
        + (h - 1) / 2)
  taps = tf.range(-1, 3)
  x0, y0 = tf.floor(sx), tf.floor(sy)
  wx, wy = _cubic_weights(sx - x0), _cubic_weights(sy - y0)  # (B, H, W, 4)
  ix = _reflect(tf.cast(x0, tf.int32)[..., None] + taps, w)
  iy = _reflect(tf.cast(y0, tf.int32)[..., None] + taps, h)
  flat = iy[..., :, None] * w + ix[..., None, :]  # (B, H, W, 4, 4)
  batch = tf.shape(x)[0]
  pixels = tf.gather(tf.reshape(x, [batch, h * w, channels]), tf.reshape(flat, [batch, -1]),
                     batch_dims=1)
  pixels = tf.reshape(pixels, [batch, h, w, 4, 4, channels])
  weights = wy[..., :, None, None] * wx[..., None, :, None]
  return tf.reduce_sum(pixels * weights, axis=[3, 4])


def _colour_matrix(u, p, names):
  """Each image's 4x4 colour matrix (B, 4, 4), about the origin of [-1, 1], and whether any
  colour transform was drawn."""
  batch = tf.shape(u)[:1]
  eye = tf.eye(4, batch_shape=batch)
  c_matrix = eye
  any_on = tf.zeros_like(u[:, 0], tf.bool)
  v = tf.constant([1.0, 1.0, 1.0, 0.0]) / math.sqrt(3.0)  # The unit luma axis, homogeneous.
  vv = v[:, None] * v[None, :]  # The luma axis's projector (4, 4).

  def gated(name):
    nonlocal any_on
    drawn = u[:, COLUMNS[name][0]] < p
    any_on = any_on | drawn
    return drawn, u[:, COLUMNS[name][1]]

  def per_image(values):
    return tf.reshape(values, [-1, 1, 1])

  if "brightness" in names:
    drawn, r = gated("brightness")
    b = tf.where(drawn, _normal(r) * BRIGHTNESS_STD, 0.0)
    shift = tf.constant([[0.0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]])  # + b to r, g, b.
    c_matrix = (eye + per_image(b) * shift) @ c_matrix
  if "contrast" in names:
    drawn, r = gated("contrast")
    c = tf.where(drawn, _exp2(_normal(r) * CONTRAST_STD), 1.0)
    scale = tf.linalg.diag(tf.stack([c, c, c, tf.ones_like(c)], axis=-1))
    c_matrix = scale @ c_matrix
  if "lumaflip" in names:
    drawn, r = gated("lumaflip")
    flip = tf.cast(drawn & (r >= 0.5), tf.float32)
    c_matrix = (eye - 2.0 * per_image(flip) * vv) @ c_matrix
  if "hue" in names:
    drawn, r = gated("hue")
    theta = tf.where(drawn, (r * 2 - 1) * math.pi * HUE_MAX, 0.0)
    cross = tf.constant([[0.0, -1.0, 1.0, 0.0], [1.0, 0.0, -1.0, 0.0], [-1.0, 1.0, 0.0, 0.0],
                         [0.0, 0.0, 0.0, 0.0]]) / math.sqrt(3.0)  # [v]x for the luma axis.
    rgb = tf.constant([1.0, 1.0, 1.0, 0.0])
    identity3 = tf.linalg.diag(rgb)
    rotation = (per_image(tf.cos(theta)) * identity3 + per_image(tf.sin(theta)) * cross
                + per_image(1.0 - tf.cos(theta)) * vv + tf.linalg.diag(1.0 - rgb))
    c_matrix = rotation @ c_matrix
  if "saturation" in names:
    drawn, r = gated("saturation")
    s = tf.where(drawn, _exp2(_normal(r) * SATURATION_STD), 1.0)
    rgb = tf.linalg.diag(tf.constant([1.0, 1.0, 1.0, 0.0]))
    saturation = vv + per_image(s) * (rgb - vv) + tf.linalg.diag(tf.constant([0.0, 0, 0, 1]))
    c_matrix = saturation @ c_matrix
  return c_matrix, any_on


def apply(images, uniforms, p, transforms=TRANSFORMS):
  """The ADA pipeline: each of `transforms` applied to each image with probability p.

  Args:
    images: float (B, H, W, 3) in [-1, 1], square, with static H, W (what the critic sees).
    uniforms: (B, UNIFORMS) in [0, 1): every random choice of each image.
    p: float32 scalar in [0, 1] (a tensor or a number).
    transforms: a subset of `TRANSFORMS` (names, or groups such as "bgc"); default all.

  Returns:
    the augmented images, of the same shape and dtype. Differentiable with respect to `images`;
    an image no transform was drawn for is returned unchanged, bit for bit.
  """
  names = parse_transforms(transforms)
  dtype = images.dtype
  x = tf.cast(images, tf.float32)
  u = tf.cast(uniforms, tf.float32)
  p = tf.cast(p, tf.float32)
  if any(n in GEOMETRIC for n in names):
    m, moved = _sampling_matrix(u, p, names, float(x.shape[2]))
    x = tf.where(moved[:, None, None, None], _resample(x, m), x)
  if any(n in GROUPS["c"] for n in names):
    c, coloured = _colour_matrix(u, p, names)
    recoloured = tf.einsum("bij,bhwj->bhwi", c[:, :3, :3], x) + c[:, None, None, :3, 3]
    x = tf.where(coloured[:, None, None, None], recoloured, x)
  return tf.cast(x, dtype) if dtype != tf.float32 else x
