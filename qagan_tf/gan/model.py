"""`QAGAN`: a keras.Model that trains anyone's generator and discriminator with `fit`, with the
losses and quality-aware penalties of bin/train (the same functions: train/step.py)."""

import dataclasses

import keras
import tensorflow as tf

from qagan_tf.objectives import losses
from qagan_tf.objectives import penalties
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


class QAGAN(keras.Model):
  """A GAN of a user's `generator` and `discriminator` trained with a QAGAN objective.

  Each `train_step` runs `disc_iters` critic updates, each on its own slice of the batch and its
  own latents and interpolation weights, then one generator update: the loss and gradient
  functions of one bin/train iteration (tests check the two agree to float32 round-off). Losses
  are averaged over the global batch, so under `tf.distribute.MirroredStrategy().scope()` the
  update equals one device's. As in bin/train, an update whose loss or gradients are NaN/Inf on
  any replica is dropped whole (metric `skipped_updates` counts them).

  Args:
    generator: keras.Model, z float (B, latent_dim) -> images (B, H, W, C) in [-1, 1].
    discriminator: keras.Model, images -> scores (B,) or (B, 1); no batch-dependent layer.
    latent_dim: the generator's input size.
    loss: an adversarial loss: wasserstein, hinge or nonsaturating.
    penalty: the quality-aware penalty: niqe, ssim, or wgan_gp / none (the 1-GP alone).
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

  Raises:
    ValueError: an unknown loss, penalty or setting (listing the valid ones).
  """

  def __init__(self, generator, discriminator, latent_dim, loss="wasserstein", penalty="niqe",
               gp_weight=1.0, qa_weight=0.1, drift_weight=0.0, disc_iters=5, ema_decay=None,
               penalty_settings=None, g_batch_multiplier=1, seed=0, **kwargs):
    super().__init__(**kwargs)
    self.generator, self.discriminator = generator, discriminator
    self.latent_dim, self.disc_iters = int(latent_dim), int(disc_iters)
    self.g_batch_multiplier, self.seed = int(g_batch_multiplier), int(seed)
    if self.disc_iters < 1 or self.g_batch_multiplier < 1 or self.latent_dim < 1:
      raise ValueError("latent_dim, disc_iters and g_batch_multiplier must be >= 1.")
    self.entry = penalties.get_entry(penalty)
    self.penalty_name = penalty
    self.penalty_settings = self._settings(penalty, penalty_settings or {})
    self.objective = step_lib.Objective(losses.get_loss(loss), float(gp_weight),
                                        float(drift_weight), float(qa_weight), None)
    self.ema_decay = ema_decay
    self.ema = None
    self._quality_penalty = self._trackers = None

  def _settings(self, penalty, given):
    settings_cls = self.entry.settings
    if settings_cls is None:
      if given:
        raise ValueError(f"penalty={penalty!r} has no settings; got {', '.join(sorted(given))}.")
      return None
    return fields.from_keywords(settings_cls, given, "penalty_settings key(s)",
                                spell=lambda name: f"penalty_settings[{name!r}]",
                                where=f" for penalty={penalty!r}")

  def compile(self, d_optimizer, g_optimizer, **kwargs):
    """d_optimizer, g_optimizer: Keras optimizers of the critic and the generator. Builds every
    variable (the models', the optimizers', the EMA's): `BackupAndRestore` and `load_weights`
    need them before the first step, and under a strategy they must be made in its scope."""
    super().compile(**kwargs)
    self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer
    images = self.generator(tf.zeros([1, self.latent_dim]))
    self.discriminator(images)
    self.d_optimizer.build(self.discriminator.trainable_variables)
    self.g_optimizer.build(self.generator.trainable_variables)
    if self.ema_decay is not None and self.ema is None:
      self.ema = _EmaWeights(self.generator.variables)
    self._objective(images.shape[1:])
    self._metric_trackers()  # Variables are made here, in the strategy's scope, not in a step.
    self.built = True

  def call(self, z, training=False):
    """The generator's images for latents z (B, latent_dim)."""
    return self.generator(z, training=training)

  @property
  def quality_penalty(self):
    return self._quality_penalty

  def _objective(self, image_shape):
    """The objective with its penalty, built once the image size (H, W, C) is known."""
    if self._quality_penalty is None and self.entry.build is not None:
      self._quality_penalty = self.entry.build(self.penalty_settings, int(image_shape[0]))
      self.objective = dataclasses.replace(self.objective, quality_penalty=self._quality_penalty)
    return self.objective

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
    update j mod disc_iters), with latents and interpolation weights drawn statelessly from
    (seed, step) over the global batch, so that the updates do not depend on how many replicas
    share it (each replica takes its slice); or (tests, exact reproduction) a dict of them as
    bin/train's input pipeline makes them ({real (k, B, ...), z, eps, z_gen})."""
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
    rid = tf.cast(ctx.replica_id_in_sync_group if ctx is not None else 0, tf.int32)
    step = tf.cast(self.g_optimizer.iterations, tf.int64)
    seeds = tf.random.experimental.stateless_split(
        tf.stack([tf.constant(self.seed, tf.int64), step]), 4)

    def global_draw(fn, seed, shape, per_replica, axis):
      values = fn(shape, seed)
      return tf.gather(values, tf.range(rid * per_replica, (rid + 1) * per_replica), axis=axis)

    m = self.g_batch_multiplier
    return {"real": real,
            "z": global_draw(tf.random.stateless_normal, seeds[0],
                             [k, b * replicas, self.latent_dim], b, 1),
            "eps": global_draw(tf.random.stateless_uniform, seeds[1], [k, b * replicas], b, 1),
            "z_gen": global_draw(tf.random.stateless_normal, seeds[2],
                                 [m * b * replicas, self.latent_dim], m * b, 0)}

  def train_step(self, data):
    inputs = self._inputs(data)
    objective, trackers = self.objective, self._trackers
    ctx = tf.distribute.get_replica_context()
    replicas = ctx.num_replicas_in_sync if ctx is not None else 1
    batch = tf.shape(inputs["real"])[1]
    d_metrics = []
    for i in range(self.disc_iters):
      d_metrics.append(step_lib.discriminator_update(
          self.generator, self.discriminator, self.d_optimizer, inputs["real"][i],
          inputs["z"][i], inputs["eps"][i], objective, global_batch_size=batch * replicas))
    skipped = [m.pop("skipped") for m in d_metrics]
    metrics = {k: tf.add_n([m[k] for m in d_metrics]) / self.disc_iters for k in d_metrics[0]}
    g_batch = tf.shape(inputs["z_gen"])[0]
    metrics.update(step_lib.generator_update(
        self.generator, self.discriminator, self.g_optimizer, inputs["z_gen"], objective.loss,
        global_batch_size=g_batch * replicas))
    metrics["skipped_updates"] = tf.add_n(skipped + [metrics.pop("skipped")])
    if self.ema is not None:
      step_lib.ema_update(self.ema.averages, self.generator.variables, self.ema_decay)
    for name, tracker in trackers.items():
      # Each value is this replica's share of the global mean: times the replicas, the mean.
      tracker.update_state(metrics[name] * replicas)
    return {name: tracker.result() for name, tracker in trackers.items()}

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
