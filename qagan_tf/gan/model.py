"""`QAGAN`: a keras.Model that trains anyone's generator and discriminator with `fit`. Its
`train_step` is a thin adapter over bin/train's one training iteration (`train.step.iteration`):
the same updates, lazy schedule, loss scaling and XLA choice; only the inputs, the variables'
home and the metric trackers are Keras'."""

import dataclasses

import keras
import tensorflow as tf

from qagan_tf.data import pipeline
from qagan_tf import augment as augment_lib
from qagan_tf.objectives import lecam
from qagan_tf.objectives import losses
from qagan_tf.objectives import penalties
from qagan_tf.objectives import penalty_api
from qagan_tf.objectives.objective import Objective
from qagan_tf.train import distribution
from qagan_tf.train import step as step_lib
from qagan_tf.utils import fields


class _EmaWeights(keras.layers.Layer):
  """The generator's exponential moving average, as weights Keras saves and restores (with
  `save_weights`, `ModelCheckpoint` and `BackupAndRestore`)."""

  def __init__(self, variables, name="ema"):
    super().__init__(name=name)
    self.averages = [self.add_weight(shape=v.shape, dtype=v.dtype, trainable=False,
                                     initializer="zeros", name=f"ema_{i}")
                     for i, v in enumerate(variables)]
    for average, v in zip(self.averages, variables):
      average.assign(v)
    self.built = True  # Its weights exist: nothing for Keras to build symbolically.


class _TrainingState(keras.layers.Layer):
  """The iteration counter (the latents' and the lazy schedule's), LeCam's anchors and, under a
  float16 policy, the dynamic loss scales, as weights Keras saves and restores."""

  def __init__(self, loss_scaled, name="training_state"):
    super().__init__(name=name)
    self.step = self.add_weight(shape=(), dtype="int64", trainable=False, initializer="zeros",
                                name="step")
    self.lecam = lecam.Anchors(*[self.add_weight(
        shape=(), dtype="float32", trainable=False, initializer="zeros",
        aggregation="only_first_replica", name=f"lecam_anchor_{side}")
                                 for side in ("real", "fake")])
    self.loss_scales = None
    if loss_scaled:
      def scale(side):
        value = self.add_weight(shape=(), dtype="float32", trainable=False, name=f"{side}_scale",
                                initializer=keras.initializers.Constant(2.0**15))
        good = self.add_weight(shape=(), dtype="int64", trainable=False, initializer="zeros",
                               name=f"{side}_good_steps")
        return step_lib.LossScale(scale=value, good_steps=good)
      self.loss_scales = (scale("d"), scale("g"))
    self.built = True


def _float16(model):
  policy = getattr(model, "dtype_policy", None)
  return getattr(policy, "compute_dtype", None) == "float16"


class QAGAN(keras.Model):
  """A GAN of a user's `generator` and `discriminator` trained with a QAGAN objective.

  Each `train_step` runs `disc_iters` critic updates, each on its own slice of the batch and its
  own latents and interpolation weights, then one generator update: bin/train's iteration
  (`train.step.iteration`; tests check the two agree to float32 round-off). Losses are averaged
  over the global batch, so under `tf.distribute.MirroredStrategy().scope()` the update equals
  one device's. As in bin/train, an update whose loss or gradients are NaN/Inf on any replica is
  dropped whole (metric `skipped_updates` counts them).

  Args:
    generator: keras.Model, z float (B, latent_dim) -> images (B, H, W, C) in [-1, 1].
    discriminator: keras.Model, images -> scores (B,) or (B, 1); no batch-dependent layer.
    latent_dim: the generator's input size.
    loss: an adversarial loss: wasserstein, hinge or nonsaturating.
    penalty: the quality-aware penalty: niqe, ssim, or wgan_gp / none (the 1-GP alone); or your
      own function fn(input_gradients, real, fake, d_real, d_fake) -> float (B,), unweighted
      and per example (D's input gradients at the interpolates, the real and fake images, the
      critic's scores), logged as `qa_penalty`.
    gp_weight: weight of the 1-GP (0: none; the NIQE penalty still uses D's input gradient).
    qa_weight: weight of the quality-aware penalty.
    drift_weight: weight of mean(D(x)^2).
    disc_iters: critic updates per generator update; the batch `fit` gives is split into this
      many equal real batches.
    ema_decay: keep an exponential moving average of the generator's weights (e.g. 0.99;
      `ema_weights()` swaps it in), or None.
    penalty_settings: the penalty's settings by name (as `qa.niqe_penalty`'s or
      `qa.ssim_distance_penalty`'s keywords).
    g_batch_multiplier: the generator update uses this many times a critic batch of latents.
    seed: of the latents and interpolation weights (a function of (seed, step): a resumed fit
      draws what an uninterrupted one would).
    gp_every, qa_every: lazy regularisation (StyleGAN2 §B): the 1-GP / the QA penalty on every
      k-th critic update only (counted over the fit, as bin/train's --gp_every/--qa_every),
      its weight multiplied by k.
    r1_weight, r2_weight, r1_every: the zero-centred R1 (at real images) and R2 (at fakes)
      penalties gamma/2 ||grad_x D(x)||^2 and their lazy interval (loss="rpgan" with both:
      R3GAN's objective).
    lecam_weight, lecam_decay: LeCam regularisation and its anchors' EMA decay.
    augment: DiffAugment of every input of D: "none" or e.g. "color,translation,cutout".
    qa_points: where a gradient penalty reads D's input gradient: "interpolates" (the paper's),
      "real" (R1's: reuses its gradient) or "fake".

  Raises:
    ValueError: an unknown loss, penalty or setting (listing the valid ones), or a registry
      entry without a builder.
  """

  def __init__(self, generator, discriminator, latent_dim, loss="wasserstein", penalty="niqe",
               gp_weight=1.0, qa_weight=0.1, drift_weight=0.0, disc_iters=5, ema_decay=None,
               penalty_settings=None, g_batch_multiplier=1, seed=0, gp_every=1, qa_every=1,
               r1_weight=0.0, r2_weight=0.0, r1_every=1, lecam_weight=0.0,
               lecam_decay=lecam.DEFAULT_DECAY, augment="none", qa_points="interpolates",
               **kwargs):
    super().__init__(**kwargs)
    self.generator, self.discriminator = generator, discriminator
    self.latent_dim, self.disc_iters = int(latent_dim), int(disc_iters)
    self.g_batch_multiplier, self.seed = int(g_batch_multiplier), int(seed)
    if min(self.disc_iters, self.g_batch_multiplier, self.latent_dim, int(gp_every),
           int(qa_every), int(r1_every)) < 1:
      raise ValueError("latent_dim, disc_iters, g_batch_multiplier, gp_every, qa_every and "
                       "r1_every must be >= 1.")
    self.penalty_name = penalty if isinstance(penalty, str) else "qa_penalty"
    if callable(penalty) and not isinstance(penalty, str):
      if penalty_settings:
        raise ValueError("penalty_settings apply to a named penalty; a function penalty takes "
                         "its settings itself (e.g. functools.partial).")
      self.entry, self.penalty_settings = None, None
      quality_penalty = penalty_api.callable_penalty(penalty)
    else:
      self.entry = penalties.get_entry(penalty)
      self.penalty_settings = self._settings(penalty, penalty_settings or {})
      quality_penalty = None
    self.objective = Objective(
        losses.get_loss(loss), float(gp_weight), float(drift_weight), float(qa_weight),
        quality_penalty, int(gp_every), int(qa_every), float(r1_weight), float(r2_weight),
        int(r1_every), float(lecam_weight), float(lecam_decay),
        augment_lib.parse_policy(augment), qa_points)
    self.ema_decay = ema_decay
    self.ema = self.state = None
    self.update_options = step_lib.UpdateOptions()
    self._trackers = None

  def _settings(self, penalty, given):
    settings_cls = self.entry.settings
    if settings_cls is None:
      if given:
        raise ValueError(f"penalty={penalty!r} has no settings; got {', '.join(sorted(given))}.")
      return None
    return fields.from_keywords(settings_cls, given, "penalty_settings key(s)",
                                spell=lambda name: f"penalty_settings[{name!r}]",
                                where=f" for penalty={penalty!r}")

  def compile(self, d_optimizer, g_optimizer, jit_compile="auto", **kwargs):
    """d_optimizer, g_optimizer: Keras optimizers of the critic and the generator. Builds every
    variable (the models', the optimizers', the EMA's, the iteration counter): `BackupAndRestore`
    and `load_weights` need them before the first step, and under a strategy they must be made
    in its scope.

    jit_compile: True compiles each critic and generator loss+gradient computation with XLA
    (the optimizer updates stay outside, as bin/train's --jit_compile); "auto" decides as
    bin/train's --jit_compile=auto for a long run (on for GPUs and AVX2 CPUs, off with lazy
    regularisation and on AVX-512 CPUs). Keras' own whole-step compilation is not used.
    Under a mixed_float16 policy (of G or D) both updates use dynamic loss scaling.
    """
    if jit_compile == "auto":
      jit_compile, _ = distribution.device_jit_rule(lazy=self.objective.lazy)
    super().compile(jit_compile=False, **kwargs)
    self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer
    images = self.generator(tf.zeros([1, self.latent_dim]))
    self.discriminator(images)
    self.d_optimizer.build(self.discriminator.trainable_variables)
    self.g_optimizer.build(self.generator.trainable_variables)
    if self.ema_decay is not None and self.ema is None:
      self.ema = _EmaWeights(self.generator.variables)
    if self.state is None:
      self.state = _TrainingState(_float16(self.generator) or _float16(self.discriminator))
    ctx = tf.distribute.get_replica_context()
    replicas = ctx.num_replicas_in_sync if ctx is not None else (
        tf.distribute.get_strategy().num_replicas_in_sync)
    self.update_options = step_lib.UpdateOptions.make(bool(jit_compile), replicas,
                                                      self.state.loss_scales, self.state.lecam)
    self._build_penalty(images.shape[1:], bool(jit_compile))
    self._metric_trackers()  # Variables are made here, in the strategy's scope, not in a step.
    self.built = True

  def call(self, z, training=False):
    """The generator's images for latents z (B, latent_dim)."""
    return self.generator(z, training=training)

  @property
  def quality_penalty(self):
    return self.objective.quality_penalty

  def _build_penalty(self, image_shape, xla):
    """The objective's penalty, built once the image size (H, W, C) is known: the registry's
    one builder (bin/train's too)."""
    if self.entry is not None and self.objective.quality_penalty is None:
      built = self.entry.build(self.penalty_settings, int(image_shape[0]), xla=xla)
      self.objective = dataclasses.replace(self.objective, quality_penalty=built)

  def _metric_trackers(self):
    if self._trackers is None:
      names = tuple(self.objective.metric_names) + ("skipped_updates",)
      self._trackers = {n: keras.metrics.Mean(name=n) for n in names}
    return self._trackers

  @property
  def metrics(self):
    return list(self._trackers.values()) if self._trackers else []

  def _inputs(self, data):
    """Per-update inputs: a batch of images split into disc_iters real batches (image j goes to
    update j mod disc_iters), with latents and interpolation weights of this iteration
    (`data.iteration_latents`, as bin/train draws them, over the global batch); or (tests, exact
    reproduction) a dict of them as bin/train's input pipeline makes them ({real (k, B, ...),
    z, eps, z_gen})."""
    if isinstance(data, dict):
      return data
    if isinstance(data, (tuple, list)):
      data = data[0]
    real = tf.convert_to_tensor(data)
    if real.shape.rank != 4:
      raise ValueError(f"QAGAN.fit expects batches of images (B, H, W, C) in [-1, 1]; got "
                       f"shape {real.shape}.")
    k = self.disc_iters
    if real.shape[0] is not None and real.shape[0] % k:
      raise ValueError(f"the batch of {real.shape[0]} images does not split into disc_iters="
                       f"{k} equal real batches; use a batch size that is a multiple of {k}.")
    b = tf.shape(real)[0] // k
    image_shape = tf.shape(real)[1:]
    real = tf.reshape(tf.cast(real, tf.float32), tf.concat([[b, k], image_shape], 0))
    real = tf.transpose(real, tf.concat([[1, 0], tf.range(2, tf.rank(real))], 0))
    ctx = tf.distribute.get_replica_context()
    replicas = ctx.num_replicas_in_sync if ctx is not None else 1
    replica = ctx.replica_id_in_sync_group if ctx is not None else 0
    return {"real": real, **pipeline.iteration_latents(
        self.seed, self.state.step, k, b * replicas, self.latent_dim, self.g_batch_multiplier,
        replica, replicas, augment=bool(self.objective.augment))}

  def train_step(self, data):
    inputs = self._inputs(data)
    ctx = tf.distribute.get_replica_context()
    replicas = ctx.num_replicas_in_sync if ctx is not None else 1
    result = step_lib.iteration(
        self.generator, self.discriminator, self.d_optimizer, self.g_optimizer, self.objective,
        inputs, step=self.state.step, global_batch_size=tf.shape(inputs["real"])[1] * replicas,
        g_global_batch_size=tf.shape(inputs["z_gen"])[0] * replicas,
        g_batch_multiplier=self.g_batch_multiplier, options=self.update_options)
    self.state.step.assign_add(1)
    if self.ema is not None:
      step_lib.ema_update(self.ema.averages, self.generator.variables, self.ema_decay)
    for name, (total, count) in result.items():
      # This replica's shares of the sum and of the number of updates that computed it.
      self._trackers[name].update_state(tf.math.divide_no_nan(total, count), sample_weight=count)
    return {name: tracker.result() for name, tracker in self._trackers.items()}

  def ema_weights(self):
    """A context manager that puts the EMA weights into the generator (samples, FID) and the
    trained ones back afterwards; without an EMA, the generator as it is."""
    return _Swap(self)


class _Swap:
  def __init__(self, model):
    self.model, self.saved = model, None

  def __enter__(self):
    if self.model.ema is not None:
      self.saved = [v.numpy() for v in self.model.generator.variables]
      for v, average in zip(self.model.generator.variables, self.model.ema.averages):
        v.assign(average)
    return self.model.generator

  def __exit__(self, *exc):
    if self.saved is not None:
      for v, value in zip(self.model.generator.variables, self.saved):
        v.assign(value)
