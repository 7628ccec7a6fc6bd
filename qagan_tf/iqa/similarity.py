"""SSIM components (luminance L, contrast-structure CS), SSIM and the quality-aware distance dQ.

Paper eqs. 4-6 and 10-11: per pixel, L = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1) and
CS = (2 sigma_xy + C2) / (sigma_x^2 + sigma_y^2 + C2) over a local window; SSIM = mean(L * CS);
dQ = mean(sqrt(2 - L - CS)), a metric; 0 <= dQ <= sqrt(2) when L, CS >= 0, and <= 2 in general
(on [-1, 1] images L and CS can reach -1).
"""

import numpy as np
import tensorflow as tf

# MATLAB rgb2gray (ITU-R BT.601) coefficients.
RGB_TO_GRAY = (0.298936021293775, 0.587043074451121, 0.114020904255103)
WINDOWS = ("gaussian", "uniform", "tf_image")
# Smallest argument at which sqrt's derivative is evaluated (keeps gradients finite at 0).
_SQRT_GRAD_FLOOR = 1e-12


def rgb_to_gray(images):
  """(..., 3) RGB -> (..., 1) luma with MATLAB rgb2gray's weights (no rounding); same dtype."""
  weights = tf.constant(RGB_TO_GRAY, images.dtype)
  return tf.reduce_sum(images * weights, axis=-1, keepdims=True)


def window_kernel(window="gaussian", size=8, sigma=1.5):
  """The normalised 2-D averaging window as a float64 numpy (size, size) array.

  Args:
    window: "gaussian" (size x size, standard deviation sigma, centred between pixels for an
      even size), "uniform" (size x size box; the paper's (2K+1)^2 window) or "tf_image" (what
      tf.image.ssim uses: Gaussian 11x11, sigma 1.5; size and sigma are ignored).
  """
  if window == "tf_image":
    window, size, sigma = "gaussian", 11, 1.5
  if window not in ("gaussian", "uniform"):
    raise ValueError(f"window={window!r}: use one of {', '.join(WINDOWS)}.")
  if int(size) != size or size < 1:
    raise ValueError(f"window size={size!r} must be a positive integer.")
  if window == "uniform":
    kernel = np.ones((size, size))
  else:
    if not sigma > 0:
      raise ValueError(f"sigma={sigma!r} must be > 0.")
    coords = np.arange(size) - (size - 1) / 2.0
    g = np.exp(-coords**2 / (2.0 * sigma**2))
    kernel = np.outer(g, g)
  return kernel / kernel.sum()


@tf.custom_gradient
def _sqrt_finite_grad(v):
  """sqrt(max(v, 0)) whose derivative is evaluated at max(v, floor): finite at 0."""
  def grad(upstream):
    return upstream * 0.5 * tf.math.rsqrt(tf.maximum(v, tf.cast(_SQRT_GRAD_FLOOR, v.dtype)))
  return tf.sqrt(tf.maximum(v, 0.0)), grad


def _check_pair(x, y):
  x = tf.convert_to_tensor(x)
  if not x.dtype.is_floating:
    x = tf.cast(x, tf.float32)
  y = tf.cast(tf.convert_to_tensor(y), x.dtype)
  if x.shape.rank != 4 or y.shape.rank != 4:
    raise ValueError(f"Expected NHWC image batches of rank 4, got shapes {x.shape} and {y.shape}.")
  if x.shape.is_fully_defined() and y.shape.is_fully_defined() and x.shape != y.shape:
    raise ValueError(f"x and y must have the same shape, got {x.shape} and {y.shape}.")
  return x, y


def _separable(kernel):
  """(column, row) 1-D factors with kernel == outer(column, row), or None when it has none."""
  u, sv, vt = np.linalg.svd(kernel)
  if sv[1:].max(initial=0.0) > 1e-12 * sv[0]:
    return None
  return u[:, 0] * np.sqrt(sv[0]), vt[0] * np.sqrt(sv[0])


def _local_means(t, kernel):
  """'valid' correlation of every channel of t (N, H, W, C) with the 2-D kernel, as one
  depthwise filtering of all channels: a separable kernel (the Gaussian and uniform windows) as
  a column pass and a row pass (2s instead of s^2 products per pixel; the same products in
  another order, float32 round-off), any other as one 2-D pass. Each channel is filtered with
  the same operations, so equal channels give equal results (dQ(x, x) is exactly 0)."""
  channels = t.shape[-1]
  factors = _separable(kernel)
  if factors is None:
    passes = [kernel]
  else:
    passes = [factors[0][:, None], factors[1][None, :]]
  for k in passes:
    weights = tf.constant(np.tile(k[:, :, None, None], (1, 1, channels, 1)), t.dtype)
    t = tf.nn.depthwise_conv2d(t, weights, [1, 1, 1, 1], "VALID")
  return t


def ssim_components(x, y, *, window="gaussian", size=8, sigma=1.5, max_val=2.0,
                    grayscale=False, k1=0.01, k2=0.03, cs_denominator_offset=0.0):
  """Per-pixel luminance and contrast-structure maps.

  Args:
    x, y: float (N, H, W, C) images, same shape; values on a scale of dynamic range `max_val`
      (default [-1, 1], max_val 2; use 255 for [0, 255]). H, W >= the window size.
    window, size, sigma: see `window_kernel`. Defaults: the authors' 8x8 Gaussian, sigma 1.5.
    max_val: dynamic range L; C1 = (k1 L)^2, C2 = (k2 L)^2.
    grayscale: convert RGB to luma first (MATLAB rgb2gray weights) as the authors did.
    k1, k2: SSIM constants.
    cs_denominator_offset: added to CS's denominator. 0 (default) is the paper's equation;
      0.01 reproduces the authors' code.

  Returns:
    (L, CS): float (N, H - s + 1, W - s + 1, C') maps ('valid' windows, as tf.image.ssim), C' = 1
    with grayscale else C.
  """
  x, y = _check_pair(x, y)
  if grayscale:
    x, y = rgb_to_gray(x), rgb_to_gray(y)
  kernel = window_kernel(window, size, sigma)
  s = kernel.shape[0]
  if x.shape[1] is not None and (x.shape[1] < s or x.shape[2] < s):
    raise ValueError(f"Images of {x.shape[1]}x{x.shape[2]} px are smaller than the {s}x{s} "
                     "SSIM window; use a smaller window size.")
  c1 = tf.constant((k1 * max_val) ** 2, x.dtype)
  c2 = tf.constant((k2 * max_val) ** 2, x.dtype)
  # The five local means in one filtering of the stacked maps (one kernel instead of five).
  stacked = tf.concat([x, y, x * x, y * y, x * y], axis=-1)
  mu_x, mu_y, mean_xx, mean_yy, mean_xy = tf.split(
      _local_means(stacked, kernel), 5, axis=-1)
  var_x = mean_xx - mu_x * mu_x
  var_y = mean_yy - mu_y * mu_y
  cov = mean_xy - mu_x * mu_y
  luminance = (2.0 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
  cs = (2.0 * cov + c2) / (var_x + var_y + c2 + cs_denominator_offset)
  return luminance, cs


def ssim(x, y, **kwargs):
  """Mean SSIM = mean(L * CS) per image: float (N, H, W, C) x2 -> float (N,). See ssim_components."""
  luminance, cs = ssim_components(x, y, **kwargs)
  return tf.reduce_mean(luminance * cs, axis=[1, 2, 3])


def ssim_distance(x, y, **kwargs):
  """Quality-aware distance dQ = mean over pixels of sqrt(2 - L - CS) (paper eqs. 10-11).

  Finite values and gradients everywhere, including x == y (where dQ = 0): 2 - L - CS is clamped
  at 0 against round-off and sqrt's derivative is evaluated no closer to 0 than 1e-12.

  Args:
    x, y: float (N, H, W, C); see `ssim_components` for the options.

  Returns:
    float (N,) in [0, 2] ([0, sqrt(2)] when L, CS >= 0).
  """
  luminance, cs = ssim_components(x, y, **kwargs)
  return tf.reduce_mean(_sqrt_finite_grad(2.0 - luminance - cs), axis=[1, 2, 3])
