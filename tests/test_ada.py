"""ADA (qagan_tf.ada and the adaptive p of objectives/terms/ada.py): p = 0 is the identity bit
for bit, p = 1 makes every transform act as it says, the pipeline is differentiable and
compiles, p moves as the paper's rule says, and the augmentations do not leak into a generator
trained through them at p = 0.5."""

import numpy as np
import pytest
import tensorflow as tf

from qagan_tf import ada, augment
from qagan_tf.objectives.terms import ada as ada_term


def _images(n=16, size=16, seed=0):
  return tf.constant(np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)), tf.float32)


def _uniforms(n=16, seed=1):
  return tf.constant(np.random.default_rng(seed).uniform(0, 1, (n, ada.UNIFORMS)), tf.float32)


def test_p_zero_is_the_identity_bit_for_bit_eager_compiled_and_in_float16():
  x, u = _images(), _uniforms()
  compiled = tf.function(ada.apply, jit_compile=True)
  for fn in (ada.apply, compiled):
    np.testing.assert_array_equal(fn(x, u, tf.constant(0.0)), x)
  half = tf.cast(x, tf.float16)
  out = ada.apply(half, u, 0.0)
  assert out.dtype == tf.float16
  np.testing.assert_array_equal(out, half)
  # Through the augmentation's front door, which refuses ada without its p.
  np.testing.assert_array_equal(augment.apply(x, u, augment.ADA, tf.constant(0.0)), x)
  with pytest.raises(ValueError, match="needs its p"):
    augment.apply(x, u, "ada")


def _changed(out, x):
  return np.any(out.numpy() != x.numpy(), axis=(1, 2, 3))


def test_at_p_one_every_transform_acts_on_exactly_the_images_its_draws_say():
  """Each transform alone at p = 1: the blit transforms move pixels exactly (a flip is the
  mirror image, a quarter turn np.rot90, an integer shift the shifted image, reflected), on
  exactly the images whose draw is not neutral; the continuous ones change every image; the
  colour ones keep or flip the luma as they should."""
  x, u = _images(), _uniforms()
  xn, un = x.numpy(), u.numpy()
  for name in ada.TRANSFORMS:
    out = ada.apply(x, u, 1.0, (name,))
    assert out.shape == x.shape and np.all(np.isfinite(out.numpy())), name
    changed = _changed(out, x)
    c = ada.COLUMNS[name]
    if name == "xflip":
      flipped = un[:, c[1]] >= 0.5
      np.testing.assert_array_equal(changed, flipped)
      np.testing.assert_array_equal(out.numpy()[flipped], xn[flipped][:, :, ::-1])
    elif name == "rotate90":
      k = np.minimum((un[:, c[1]] * 4).astype(int), 3)
      np.testing.assert_array_equal(changed, k != 0)
      for i in range(len(k)):  # A quarter turn one way or the other, exactly.
        assert any(np.array_equal(out.numpy()[i], np.rot90(xn[i], j, axes=(0, 1)))
                   for j in range(4)), i
    elif name == "xint":
      shifts = np.round((un[:, c[1:]] * 2 - 1) * ada.XINT_MAX * 16)
      np.testing.assert_array_equal(changed, np.any(shifts != 0, axis=1))
      assert np.isin(out.numpy(), xn).all()  # Pixels moved, none made.
    elif name == "lumaflip":
      np.testing.assert_array_equal(changed, un[:, c[1]] >= 0.5)
    else:
      assert changed.all(), name
  luma = lambda images: images.numpy().mean(axis=3)
  flip = ada.apply(x, u, 1.0, ("lumaflip",))
  flipped = un[:, ada.COLUMNS["lumaflip"][1]] >= 0.5
  np.testing.assert_allclose(luma(flip)[flipped], -luma(x)[flipped], atol=1e-5)
  for name in ("hue", "saturation"):  # Both turn or stretch the colour about the luma axis.
    np.testing.assert_allclose(luma(ada.apply(x, u, 1.0, (name,))), luma(x), atol=1e-5)
  bright = ada.apply(x, u, 1.0, ("brightness",)).numpy() - xn
  np.testing.assert_allclose(bright, bright[:, :1, :1, :1] * np.ones_like(bright), atol=1e-5)


def test_p_sets_how_often_each_transform_is_drawn_and_names_are_checked():
  x = _images(n=400, size=8)
  u = _uniforms(n=400, seed=3)
  for p in (0.25, 0.5):
    changed = _changed(ada.apply(x, u, p, ("scale",)), x).mean()
    assert abs(changed - p) < 0.08, (p, changed)
    # Rotation is drawn twice at 1 - sqrt(1 - p), so some rotation happens with probability p.
    changed = _changed(ada.apply(x, u, p, ("rotate",)), x).mean()
    assert abs(changed - p) < 0.08, (p, changed)
  assert ada.parse_transforms("bg") == ada.GROUPS["b"] + ada.GROUPS["g"]
  with pytest.raises(ValueError, match="groups b, g, c"):
    ada.parse_transforms("bgx")
  with pytest.raises(ValueError, match="unknown ADA transform.*flip"):
    ada.parse_transforms(["flip"])
  with pytest.raises(ValueError, match="ada .* and DiffAugment.* are exclusive"):
    augment.parse_policy("ada,color")
  assert augment.parse_policy("ada") == augment.ADA and augment.uniforms_of(augment.ADA) == 28


def test_the_pipeline_is_differentiable_with_respect_to_the_images():
  """For fixed draws the pipeline is affine in the images: the tape's gradient of <v, A(x)>
  along random directions d equals the central difference of A's output there."""
  x = _images(n=2, size=8)
  u = _uniforms(n=2, seed=5)
  rng = np.random.default_rng(6)
  v = tf.constant(rng.normal(size=x.shape), tf.float32)
  with tf.GradientTape() as tape:
    tape.watch(x)
    value = tf.reduce_sum(v * ada.apply(x, u, 1.0))
  grad = tape.gradient(value, x).numpy()
  assert np.abs(grad).max() > 0
  for _ in range(3):
    d = rng.normal(size=x.shape).astype(np.float32)
    h = 1e-2
    diff = (tf.reduce_sum(v * ada.apply(x + h * d, u, 1.0))
            - tf.reduce_sum(v * ada.apply(x - h * d, u, 1.0))) / (2 * h)
    assert float(diff) == pytest.approx(float(np.sum(grad * d)), rel=1e-3, abs=1e-2)


class _Variables:
  """make_variable for the control, as bin/train's (float32 scalars at 0)."""

  def __call__(self, name):
    return tf.Variable(0.0, name=name)


def test_p_moves_by_the_papers_rule_every_interval_and_stays_in_range():
  settings = ada_term.AdaSettings(target=0.6, interval=2, kimg=1.0, p=0.1)
  control = ada_term.Control(_Variables())
  step = 64 * 2 / 1000.0  # 64 images per update, 2 updates per move, 1 kimg.
  control.update(settings, tf.constant(1.0), 64.0)
  assert float(control.p(settings)) == pytest.approx(0.1)  # Not due yet.
  control.update(settings, tf.constant(0.5), 64.0)  # r_t = 0.75 > 0.6: p rises.
  assert float(control.p(settings)) == pytest.approx(0.1 + step)
  control.update(settings, tf.constant(np.nan), 64.0)  # A dropped update counts nothing.
  assert float(control.updates) == 0.0
  for _ in range(4):  # r_t = -1 < 0.6: p falls, and stops at 0.
    control.update(settings, tf.constant(-1.0), 64.0)
  assert float(control.p(settings)) == 0.0
  fixed = ada_term.AdaSettings(kimg=0.0, p=0.3)
  still = ada_term.Control(_Variables())
  for _ in range(8):
    still.update(fixed, tf.constant(1.0), 64.0)
  assert float(still.p(fixed)) == pytest.approx(0.3)


def _train_through_the_pipeline(p, transforms=ada.TRANSFORMS, steps=150, n=512, size=8):
  """G, one learnable image that starts as the target's mirror image, trained so that its
  augmented images match the augmented target's on average (the first moment of the two
  augmented distributions, each side with draws of its own: paired draws would tell G which of
  its images were flipped): returns (G's image, target)."""
  target = np.zeros((size, size, 3), np.float32)
  target[:, : size // 2] = 0.8  # Bright left half, dark right: a flip is visible.
  target[:, size // 2:] = -0.8
  target[: size // 4, :, 0] = -0.2  # A red-less top band: a rotation is visible.
  image = tf.Variable(target[:, ::-1].copy())
  optimizer = tf.keras.optimizers.Adam(0.04)

  @tf.function
  def train(i):
    u = tf.random.stateless_uniform([2, n, ada.UNIFORMS], tf.stack([i, tf.constant(7, tf.int64)]))
    with tf.GradientTape() as tape:
      fake = ada.apply(tf.tile(image[None], [n, 1, 1, 1]), u[0], p, transforms)
      real = ada.apply(tf.tile(tf.constant(target)[None], [n, 1, 1, 1]), u[1], p, transforms)
      loss = tf.reduce_mean(tf.square(tf.reduce_mean(fake, 0) - tf.reduce_mean(real, 0)))
    optimizer.apply_gradients([(tape.gradient(loss, image), image)])

  for i in range(steps):
    train(tf.constant(i, tf.int64))
  return image.numpy(), target


def _asymmetry(image):
  """The left half's mean minus the right half's (the target's 1.47, its mirror's -1.47)."""
  half = image.shape[1] // 2
  return float(image[:, :half].mean() - image[:, half:].mean())


@pytest.mark.slow
def test_a_generator_trained_through_the_pipeline_at_p_half_learns_the_unaugmented_target():
  """The leak check. At p = 0.5 every transform is drawn half the time, so the augmented
  distributions differ unless G's image is the target: G, started at the mirror image, turns
  to the target's side (not flipped on average: its bright half on the left; 150 noisy steps
  bring it from -1.47 to 0.81). The same training at p = 1 with the x-flip alone, which leaks (a
  flip drawn half the time makes an image and its mirror indistinguishable on average), does not
  (-0.02): the check can see a leak."""
  learned, target = _train_through_the_pipeline(0.5)
  assert _asymmetry(target) == pytest.approx(1.4667, abs=1e-4) and _asymmetry(learned) > 0.5
  leaked, _ = _train_through_the_pipeline(1.0, ("xflip",))
  assert _asymmetry(leaked) < 0.4


def _objective_runs(objective, iterations=2, batch=4, k=2):
  """Runs `iterations` training iterations of `objective` (eagerly, tiny ResNet G and D at 32
  px) with the input pipeline's inputs; returns (the last iteration's metric means, the p of
  the ADA state after each iteration)."""
  import keras
  from qagan_tf import models
  from qagan_tf.data import pipeline, sources
  from qagan_tf.update import collector, iteration
  keras.utils.set_random_seed(0)
  g, d = models.Generator(32, width=4, z_dim=8), models.Discriminator(32, width=4)
  g.build_for_inference()
  d.build_for_inference()
  d_opt, g_opt = keras.optimizers.Adam(1e-3, 0.0, 0.9), keras.optimizers.Adam(1e-3, 0.0, 0.9)
  d_opt.build(d.trainable_variables)
  g_opt.build(g.trainable_variables)
  states = objective.make_states(lambda name: tf.Variable(0.0, name=name))
  parts = iteration.Parts(g, d, d_opt, g_opt, objective, states=states)
  images = tf.constant(sources.embedded_images(32, batch * k, 0), tf.float32) / 127.5 - 1.0
  ps = []
  for step in range(iterations):
    inputs = {"real": tf.reshape(images, [k, batch, 32, 32, 3]),
              **pipeline.iteration_latents(0, step, k, batch, 8, 2,
                                           augment=augment.uniforms_of(objective.augment))}
    means = collector.means(iteration.iteration(
        parts, inputs, step=step, disc_iters=k, global_batch_size=batch,
        g_global_batch_size=2 * batch, g_batch_multiplier=2))
    ps.append(float(states["ada"].p(objective.settings["ada"])))
  return {k: float(v) for k, v in means.items()}, ps


@pytest.mark.slow
def test_ada_trains_with_every_loss_and_beside_every_term_and_penalty():
  """One objective per loss (with the 1-GP), then SSIM with R1 and LeCam, then NIQE at R1's
  points with R2 under RpGAN: each trains with --augment=ada, logs p and r_t, and moves p by the
  rule (interval 1: after every D update; the tiny D's r_t is never exactly the target)."""
  from qagan_tf import config as config_lib
  from qagan_tf.objectives import losses, penalties
  from qagan_tf.objectives.objective import Objective
  ada_settings = dict(ada_p=0.5, ada_interval=1, ada_kimg=0.1)
  step = 4 / 100.0  # Each D update moves p by batch / (kimg * 1000).

  def penalty(name):
    config = config_lib.TrainConfig.create(dataset="embedded", resolution=32, penalty=name,
                                           niqe_group_size=4).validate()
    return penalties.build_for_config(config)
  objectives = {name: Objective(loss=loss, augment=augment.ADA, gp_weight=1.0, **ada_settings)
                for name, loss in losses.LOSSES.items()}
  objectives["ssim_r1_lecam"] = Objective(
      augment=augment.ADA, quality_penalty=penalty("ssim"), qa_weight=0.1, r1_weight=0.1,
      lecam_weight=0.1, **ada_settings)
  objectives["rpgan_niqe_r1_r2"] = Objective(
      loss=losses.get_loss("rpgan"), augment=augment.ADA, quality_penalty=penalty("niqe"),
      qa_weight=0.1, qa_points="real", gp_weight=0.0, r1_weight=0.1, r2_weight=0.1,
      **ada_settings)
  for name, objective in objectives.items():
    assert [t.name for t in objective.terms][-1] == "ada", name
    means, ps = _objective_runs(objective, iterations=1)
    assert all(np.isfinite(v) for v in means.values()), (name, means)
    # The first D update saw p = 0.5 and moved it by one step; the second moved it again.
    assert -1.0 <= means["ada_rt"] <= 1.0, (name, means)
    assert min(abs(means["ada_p"] - (0.5 + d * step / 2)) for d in (-1, 1)) < 1e-6, (name, means)
    assert min(abs(ps[-1] - (0.5 + d * step)) for d in (-2, 0, 2)) < 1e-6, (name, ps)
