"""`QAGAN`: a keras.Model that trains anyone's generator and discriminator with `fit`. Its
`train_step` is a thin adapter over the one training iteration that bin/train runs too
(`update.iteration.iteration`): the same updates, lazy schedule, loss scaling and XLA choice;
only the inputs, the variables' home and the metric trackers are Keras'."""

import dataclasses
import json
import numbers
import os

import keras
import numpy as np
import tensorflow as tf

from qagan_tf import augment as augment_lib
from qagan_tf import config as config_lib
from qagan_tf.data import pipeline
from qagan_tf.gan import inputs as inputs_lib
from qagan_tf.gan import state as state_lib
from qagan_tf.objectives import losses
from qagan_tf.objectives import objective as objective_lib
from qagan_tf.objectives import penalties
from qagan_tf.objectives import penalty_api
from qagan_tf.update import device
from qagan_tf.update import iteration as iteration_lib
from qagan_tf.utils import fields


_TEST_LATENT_STREAM = 20191211  # The fixed latents of test_step's fakes.
# Where QAGAN's defaults differ from bin/train's flags: no drift term (the authors' trick).
_DEFAULTS = {"drift_weight": 0.0}
_KERAS_KEYWORDS = ("name", "trainable", "dtype")  # keras.Model's own.


class _NonFiniteWatch(keras.callbacks.Callback):
  """Stops fit at the first batch whose critic loss is NaN/Inf (as bin/train stops)."""

  def __init__(self):
    super().__init__()
    self.step = self.value = None

  def on_train_batch_end(self, batch, logs=None):
    value = (logs or {}).get("d_loss")
    if value is not None and not np.isfinite(float(value)) and self.step is None:
      self.step, self.value = int(self.model.state.step.numpy()), float(value)
      self.model.stop_training = True


@keras.saving.register_keras_serializable(package="qagan_tf", name="QAGAN")
class QAGAN(keras.Model):
  """A GAN of a user's `generator` and `discriminator` trained with a QAGAN objective.

  Each `train_step` runs `disc_iters` critic updates, each on its own slice of the batch and its
  own latents and interpolation weights, then one generator update: bin/train's iteration
  (`update.iteration.iteration`; tests check the two agree to float32 round-off). Losses are averaged
  over the global batch, so under `tf.distribute.MirroredStrategy().scope()` the update equals
  one device's. As in bin/train, an update whose loss or gradients are NaN/Inf on any replica is
  dropped whole (metric `skipped_updates` counts them).

  Args:
    generator: keras.Model, z float (B, latent_dim) -> images (B, H, W, C) in [-1, 1].
    discriminator: keras.Model, images -> scores (B,) or (B, 1); no batch-dependent layer.
    latent_dim: the generator's input size.
    loss: an adversarial loss (objectives/losses.py, `LOSSES`): wasserstein, hinge,
      nonsaturating or rpgan.
    penalty: the quality-aware penalty: niqe, ssim, or wgan_gp / none (the 1-GP alone); or your
      own function fn(input_gradients, real, fake, d_real, d_fake) -> float (B,), unweighted
      and per example (D's input gradients at the interpolates, the real and fake images, the
      critic's scores), logged as `qa_penalty`.
    disc_iters: critic updates per generator update; the batch `fit` gives is split into this
      many equal real batches.
    ema_decay: keep an exponential moving average of the generator's weights (e.g. 0.99;
      `ema_weights()` swaps it in), or None.
    penalty_settings: the penalty's settings by name (as `qa.niqe_penalty`'s or
      `qa.ssim_distance_penalty`'s keywords).
    g_batch_multiplier: the generator update uses this many times a critic batch of latents.
    seed: of the latents and interpolation weights (a function of (seed, step): a resumed fit
      draws what an uninterrupted one would).
    augment: augmentation of every input of D: "none", "ada" (adaptive: the ada_* settings
      below) or DiffAugment's e.g. "color,translation,cutout".
    **settings: the critic's terms (objectives/regularizers.py) by bin/train's flag names, with
      its rules and defaults but drift_weight=0: gp_weight (1.0; 0: no 1-GP, a gradient penalty
      still reads D's input gradient), qa_weight (0.1), qa_points ("interpolates", the paper's;
      "real" reuses R1's gradient), the lazy intervals gp_every and qa_every (StyleGAN2 §B:
      every k-th critic update, counted over the fit, weight times k), R1, R2, LeCam and the
      drift term (docs/training.md, "Regularisers"); also keras.Model's name, trainable, dtype.

  Raises:
    ValueError: an unknown loss, penalty or setting (listing the valid ones), or a registry
      entry without a builder.
  """

  def __init__(self, generator, discriminator, latent_dim, loss="wasserstein", penalty="niqe",
               *, disc_iters=5, ema_decay=None, penalty_settings=None, g_batch_multiplier=1,
               seed=0, augment="none", **settings):
    keras_kwargs = {k: settings.pop(k) for k in _KERAS_KEYWORDS if k in settings}
    super().__init__(**keras_kwargs)
    for name, model in (("generator", generator), ("discriminator", discriminator)):
      if not callable(model) or not hasattr(model, "trainable_variables"):
        raise ValueError(f"{name} must be a keras.Model (or layer); got "
                         f"{type(model).__name__}.")
    unknown = sorted(set(settings) - set(objective_lib.flat_names()))
    if unknown:
      raise ValueError(f"unknown QAGAN setting(s) {', '.join(unknown)}; valid: "
                       f"{', '.join(objective_lib.flat_names())} (and loss, penalty, "
                       "disc_iters, ema_decay, penalty_settings, g_batch_multiplier, seed, "
                       "augment).")
    # bin/train's rules and messages for every value they share (the settings' fields).
    for name, value in (("z_dim", latent_dim), ("disc_iters", disc_iters),
                        ("g_batch_multiplier", g_batch_multiplier),
                        *(() if ema_decay is None else (("ema_decay", ema_decay),))):
      config_lib.check_setting(name, value, spell=lambda n: "latent_dim" if n == "z_dim" else n)
    terms = objective_lib.settings_from_flat(settings, _DEFAULTS)
    for group in terms.values():
      group.check_values()
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
      raise ValueError(f"seed={seed!r} must be an integer.")
    self.generator, self.discriminator = generator, discriminator
    self.latent_dim, self.disc_iters = int(latent_dim), int(disc_iters)
    self.g_batch_multiplier, self.seed = int(g_batch_multiplier), int(seed)
    self.penalty_name = penalty if isinstance(penalty, str) else "qa_penalty"
    if callable(penalty) and not isinstance(penalty, str):
      if penalty_settings:
        raise ValueError("penalty_settings apply to a named penalty; a function penalty takes "
                         "its settings itself (e.g. functools.partial).")
      self.entry, self.penalty_settings = None, None
      self.penalty_fn = penalty
      quality_penalty = penalty_api.callable_penalty(penalty)
    else:
      if not isinstance(penalty, str):
        raise ValueError(f"penalty must be a name ({', '.join(penalties.PENALTIES)}) or a "
                         f"function (input_gradients, real, fake, d_real, d_fake) -> (B,); got "
                         f"{type(penalty).__name__}.")
      self.entry = penalties.get_entry(penalty)
      self.penalty_fn = None
      self.penalty_settings = self._settings(penalty, penalty_settings or {})
      quality_penalty = None
    try:
      augment_policy = augment_lib.parse_policy(augment)
    except ValueError as e:
      raise ValueError(f"augment: {e}") from None
    self.objective = objective_lib.Objective(
        loss=losses.get_loss(loss), quality_penalty=quality_penalty, augment=augment_policy,
        terms=terms)
    self.ema_decay = None if ema_decay is None else float(ema_decay)
    self.ema = self.state = self.parts = None
    self.jit_compile_choice = False
    self._trackers = self._test_trackers = None
    self.image_shape = None

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
    for name, opt in (("d_optimizer", d_optimizer), ("g_optimizer", g_optimizer)):
      if not isinstance(opt, keras.optimizers.Optimizer):
        raise ValueError(f"{name} must be a keras.optimizers.Optimizer (e.g. keras.optimizers."
                         f"Adam(2e-4, beta_1=0.0, beta_2=0.9)); got {type(opt).__name__}.")
    if jit_compile not in (True, False, "auto"):
      raise ValueError(f"jit_compile={jit_compile!r}: use True, False or 'auto'.")
    self.jit_compile_choice = jit_compile
    if jit_compile == "auto":
      jit_compile, _ = device.device_jit_rule(lazy=self.objective.lazy)
    super().compile(jit_compile=False, **kwargs)
    self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer
    images = self.generator(tf.zeros([1, self.latent_dim]))
    if images.shape.rank != 4 or images.shape[-1] not in (1, 3):
      raise ValueError(f"the generator must map latents (B, {self.latent_dim}) to images (B, H, "
                       f"W, 1 or 3); it gave shape {images.shape}.")
    scores = self.discriminator(images)
    if scores.shape.rank not in (1, 2) or scores.shape[0] != 1 or (
        scores.shape.rank == 2 and scores.shape[1] != 1):
      raise ValueError(f"the discriminator must map images (B, H, W, C) to scores (B,) or (B, "
                       f"1); for one image it gave shape {scores.shape}.")
    self.image_shape = tuple(int(d) for d in images.shape[1:])
    if self.objective.needs_input_gradient:  # A critic that ignores its input: said now.
      losses.input_gradients(self.discriminator, tf.cast(images, tf.float32))
    self.d_optimizer.build(self.discriminator.trainable_variables)
    self.g_optimizer.build(self.generator.trainable_variables)
    if self.ema_decay is not None and self.ema is None:
      self.ema = state_lib.EmaWeights(self.generator.variables)
    if self.state is None:
      self.state = state_lib.TrainingState(
          self.objective, state_lib.float16(self.generator) or state_lib.float16(
              self.discriminator), json.dumps(self.fingerprint(), sort_keys=True))
    self.state.fingerprint_json = json.dumps(self.fingerprint(), sort_keys=True)
    ctx = tf.distribute.get_replica_context()
    replicas = ctx.num_replicas_in_sync if ctx is not None else (
        tf.distribute.get_strategy().num_replicas_in_sync)
    self._build_penalty(images.shape[1:], bool(jit_compile))
    self.parts = iteration_lib.Parts(
        self.generator, self.discriminator, self.d_optimizer, self.g_optimizer, self.objective,
        states=self.state.term_states).with_options(bool(jit_compile), replicas,
                                                    self.state.loss_scales)
    self._metric_trackers()  # Variables are made here, in the strategy's scope, not in a step.
    self.built = True

  # --- Keras conventions: fit's input, evaluate, saving and loading -------------------------

  def fingerprint(self):
    """What these weights belong to: the settings that shape training and a summary of G's and
    D's variables. Saved with the weights; `load_weights` refuses weights of another one."""
    def models(model):
      variables = model.weights
      return (f"{type(model).__name__}: {len(variables)} weights, "
              f"{int(sum(np.prod(v.shape) for v in variables))} values")
    config = {k: v for k, v in self._settings_config().items()
              if k not in ("generator", "discriminator", "name", "trainable", "dtype")}
    config.update(generator=models(self.generator), discriminator=models(self.discriminator))
    if self.penalty_fn is not None:
      config["penalty"] = getattr(self.penalty_fn, "__name__", "a function")
    return config

  def _settings_config(self):
    o = self.objective
    settings = (None if self.penalty_settings is None
                else dataclasses.asdict(self.penalty_settings))
    return {"latent_dim": self.latent_dim, "loss": o.loss.name,
            "penalty": self.penalty_name if self.penalty_fn is None else None,
            "disc_iters": self.disc_iters, "ema_decay": self.ema_decay,
            "penalty_settings": settings, "g_batch_multiplier": self.g_batch_multiplier,
            "seed": self.seed, "augment": ",".join(o.augment) or "none",
            **objective_lib.flat_values(o.settings)}

  def get_config(self):
    """The constructor's arguments, G and D serialised by Keras (a function penalty cannot be:
    `save` says so before writing anything)."""
    if self.penalty_fn is not None:
      raise NotImplementedError(
          "a QAGAN with a function penalty cannot be serialised (the function is not a Keras "
          "object); save its weights (save_weights / ModelCheckpoint(..., save_weights_only="
          "True)) or register the penalty by name (docs/extending.md).")
    config = super().get_config()
    config.update(self._settings_config())
    config.update(generator=keras.saving.serialize_keras_object(self.generator),
                  discriminator=keras.saving.serialize_keras_object(self.discriminator))
    return config

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    for name in ("generator", "discriminator"):
      config[name] = keras.saving.deserialize_keras_object(config[name])
    return cls(**config)

  def get_compile_config(self):
    if self.state is None:
      return None
    return {"d_optimizer": keras.saving.serialize_keras_object(self.d_optimizer),
            "g_optimizer": keras.saving.serialize_keras_object(self.g_optimizer),
            "jit_compile": self.jit_compile_choice}

  def compile_from_config(self, config):
    """Compiles as `compile` did when the model was saved: both optimizers (their variables are
    loaded next), the EMA and the training state."""
    self.compile(keras.saving.deserialize_keras_object(config["d_optimizer"]),
                 keras.saving.deserialize_keras_object(config["g_optimizer"]),
                 jit_compile=config.get("jit_compile", "auto"))

  def save(self, filepath, overwrite=True, **kwargs):
    """`keras.Model.save`, atomic: the model is serialised first (a user's G or D that Keras
    cannot serialise, or a function penalty, is one ValueError and no file), then written to a
    temporary file beside `filepath` and renamed into place."""
    filepath = os.fspath(filepath)
    if not filepath.endswith(".keras"):
      raise ValueError(f"QAGAN.save({filepath!r}): the file must end in .keras (or use "
                       "save_weights(...'.weights.h5') for the weights alone).")
    try:
      json.dumps(keras.saving.serialize_keras_object(self))
    except (NotImplementedError, TypeError, ValueError) as e:
      raise ValueError(f"QAGAN.save({filepath!r}): this model cannot be serialised: "
                       f"{str(e).splitlines()[0]} Give G and D get_config() (Keras "
                       "functional, Sequential or serialisable subclasses), or save the weights "
                       "alone with save_weights(...'.weights.h5'). Nothing was written.") from None
    if not overwrite and os.path.exists(filepath):
      raise FileExistsError(f"QAGAN.save({filepath!r}): the file exists and overwrite=False.")
    directory, base = os.path.split(os.path.abspath(filepath))
    tmp = os.path.join(directory, f".{base}.{os.getpid()}.tmp.keras")
    try:
      super().save(tmp, overwrite=True, **kwargs)
      os.replace(tmp, filepath)
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)

  def load_weights(self, filepath, *args, **kwargs):
    """`keras.Model.load_weights`, refused (with every weight as it was) when the file holds the
    weights of another QAGAN: other models, or settings that shape training (the fingerprint
    names the difference). This is what `BackupAndRestore` calls."""
    if self.state is None:
      raise ValueError("QAGAN.load_weights: compile the model first (compile builds the "
                       "optimizers, the EMA and the training state the file also holds).")
    mine = self.fingerprint()
    state = (list(self.variables) + list(self.d_optimizer.variables)
             + list(self.g_optimizer.variables))
    saved = [v.numpy() for v in state]

    def restore():
      for v, value in zip(state, saved):
        v.assign(value)
    self.state.loaded_fingerprint = ""
    try:
      super().load_weights(filepath, *args, **kwargs)
      failure = None
    except (ValueError, KeyError, OSError) as e:
      failure = str(e).splitlines()[0]
    stored, self.state.loaded_fingerprint = self.state.loaded_fingerprint, ""
    diff = []
    if stored:
      theirs = json.loads(stored)
      diff = [f"{k}: {theirs.get(k)!r} there, {mine.get(k)!r} here"
              for k in sorted(set(theirs) | set(mine)) if theirs.get(k) != mine.get(k)]
    if diff:
      restore()
      raise ValueError(f"{filepath} holds the weights of a QAGAN with other settings or models "
                       f"({'; '.join(diff)}). Nothing was changed: build and compile the QAGAN "
                       "as it was saved, or start in a new backup directory.")
    if failure is not None:
      restore()
      raise ValueError(f"{filepath} does not hold this QAGAN's weights ({failure}); this "
                       f"model's generator: {mine['generator']}, discriminator: "
                       f"{mine['discriminator']}. Nothing was changed.")

  def fit(self, x=None, y=None, batch_size=None, *args, validation_data=None, **kwargs):
    """`keras.Model.fit`, with the first batch checked first (for a tf.data.Dataset, NumPy or
    tensor images alike, and on a model already fit): images (B, H, W, C) of the generator's
    shape, float in [-1, 1], and a batch that splits into disc_iters critic batches of >= 1
    image. Each problem is one ValueError naming the input and the fix, before any training."""
    inputs_lib.check_input(self, x, batch_size, "x")
    if isinstance(x, tf.data.Dataset):  # A dataset shuffles in its own pipeline (Keras would
      kwargs.setdefault("shuffle", False)  # warn at every fit that shuffle=True is ignored).
    if validation_data is not None:
      inputs_lib.check_input(self, validation_data, kwargs.get("validation_batch_size") or batch_size,
                        "validation_data", split=False)
    watch = _NonFiniteWatch()
    kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [watch]
    history = super().fit(x, y, batch_size, *args, validation_data=validation_data, **kwargs)
    if watch.step is not None:
      raise FloatingPointError(
          f"QAGAN.fit stopped at step {watch.step}: the critic loss is {watch.value} (every "
          f"update with a NaN/Inf is dropped, so the weights are those before it). The largest "
          f"weights in play: {self.objective.describe_weights()}; lower the largest, or the "
          "learning rate, or check the data.")
    return history

  def evaluate(self, x=None, y=None, batch_size=None, *args, **kwargs):
    """`keras.Model.evaluate` on held-out real images (see `test_step`), checked as `fit`'s."""
    inputs_lib.check_input(self, x, batch_size, "x", split=False)
    return super().evaluate(x, y, batch_size, *args, **kwargs)

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
      self.objective = self.objective.replace(quality_penalty=built)

  def _metric_trackers(self):
    if self._trackers is None:
      names = tuple(self.objective.metric_names) + ("skipped_updates",)
      self._trackers = {n: keras.metrics.Mean(name=n) for n in names}
      self._test_trackers = {n: keras.metrics.Mean(name=f"test_{n}")
                             for n in ("d_loss", "wasserstein")}
    return self._trackers

  @property
  def metrics(self):
    if not self._trackers:
      return []
    return list(self._trackers.values()) + list(self._test_trackers.values())

  def test_step(self, data):
    """`evaluate` and `validation_data`: the critic's adversarial loss and Wasserstein estimate
    (mean D(x) - D(G(z))) on held-out real images against the generator's images of fixed
    latents, the D-overfitting signal (a critic that scores held-out images lower than training
    images is memorising them). No penalty, no update: no weight changes."""
    if isinstance(data, (tuple, list)):
      data = data[0]
    real = tf.cast(data, tf.float32)
    z = tf.random.stateless_normal(tf.stack([tf.shape(real)[0], self.latent_dim]),
                                   [self.seed, _TEST_LATENT_STREAM])
    fake = tf.cast(self.generator(z, training=False), tf.float32)
    d_real = losses.critic_scores(self.discriminator, real)
    d_fake = losses.critic_scores(self.discriminator, fake)
    values = {"d_loss": tf.reduce_mean(self.objective.loss.discriminator(d_real, d_fake)),
              "wasserstein": tf.reduce_mean(losses.wasserstein_estimate(d_real, d_fake))}
    for name, value in values.items():
      self._test_trackers[name].update_state(value)
    return {name: tracker.result() for name, tracker in self._test_trackers.items()}

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
        replica, replicas, augment=augment_lib.uniforms_of(self.objective.augment))}

  def train_step(self, data):
    inputs = self._inputs(data)
    ctx = tf.distribute.get_replica_context()
    replicas = ctx.num_replicas_in_sync if ctx is not None else 1
    result = iteration_lib.iteration(
        self.parts, inputs, step=self.state.step, disc_iters=self.disc_iters,
        global_batch_size=tf.shape(inputs["real"])[1] * replicas,
        g_global_batch_size=tf.shape(inputs["z_gen"])[0] * replicas,
        g_batch_multiplier=self.g_batch_multiplier)
    self.state.step.assign_add(1)
    if self.ema is not None:
      iteration_lib.ema_update(self.ema.averages, self.generator.variables, self.ema_decay)
    for name, (total, count) in result.items():
      # This replica's shares of the sum and of the number of updates that computed it.
      self._trackers[name].update_state(tf.math.divide_no_nan(total, count), sample_weight=count)
    return {name: tracker.result() for name, tracker in self._trackers.items()}

  def ema_weights(self):
    """A context manager that puts the EMA weights into the generator (samples, FID) and the
    trained ones back afterwards; without an EMA, the generator as it is."""
    return state_lib.EmaSwap(self)
