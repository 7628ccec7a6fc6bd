"""The distributed training loop: models, optimizers, checkpoints, TensorBoard and progress."""

import json
import os
import re
import signal
import sys
import threading
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from qagan_tf import data as data_lib
from qagan_tf import models
from qagan_tf.train import penalties as penalties_lib
from qagan_tf.train import schedule
from qagan_tf.train import step as step_lib
from qagan_tf.utils import images as images_lib
from qagan_tf.utils import precision
from qagan_tf.utils.progress import format_duration

# A resume that changes one of these would load weights into a different model or continue a
# different experiment; bin/train refuses it unless --allow_config_change.
INCOMPATIBLE_KEYS = ("dataset", "resolution", "width", "z_dim", "penalty", "seed",
                     "g_batch_multiplier", "disc_iters", "batch_size")
# For a NIQE run these define the penalty itself (a run from before priors carried metadata has
# its old values in config.json: see TrainConfig.from_dict).
NIQE_KEYS = ("niqe_prior", "niqe_block_size", "niqe_scales", "niqe_pooling", "niqe_grayscale",
             "niqe_transform", "niqe_normalization", "niqe_normalization_scale", "niqe_split",
             "niqe_split_temperature", "niqe_covariance_regularization")
_SAMPLE_SEED = 20191208


def _tf_config_workers():
  """Number of workers (chief included) in $TF_CONFIG's cluster; 0 without TF_CONFIG."""
  text = os.environ.get("TF_CONFIG", "")
  if not text:
    return 0
  try:
    cluster = json.loads(text).get("cluster", {})
  except (ValueError, AttributeError):
    raise ValueError(f"TF_CONFIG is not valid JSON: {text[:200]!r}") from None
  return sum(len(cluster.get(k, [])) for k in ("chief", "worker"))


# In-training evaluation: result key -> TensorBoard tag.
EVAL_SUMMARIES = (("fid", "eval/fid"), ("is_mean", "eval/is"), ("is_std", "eval/is_std"),
                  ("kid", "eval/kid"), ("precision", "eval/precision"),
                  ("recall", "eval/recall"), ("niqe", "eval/niqe"))

# The metrics the HParams dashboard shows beside each run's configuration (logged scalars).
HPARAMS_METRICS = tuple(name for _, name in EVAL_SUMMARIES if name != "eval/is_std") + (
    "train/d_loss", "train/g_loss", "train/wasserstein")


def hparams_values(config):
  """The configuration as HParams values: numbers, booleans and strings (None and lists as text)."""
  values = {}
  for key, value in config.to_dict().items():
    values[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
  return values


def write_hparams(config, trial_id):
  """Writes the run's HParams summary (its configuration, and which logged scalars are its
  metrics) to the default summary writer, so that runs can be compared in TensorBoard's HParams
  dashboard. Written at every start of training: a resumed run shows its current settings."""
  from tensorboard.plugins.hparams import api as hp
  hp.hparams_config(hparams=[hp.HParam(k) for k in sorted(hparams_values(config))],
                    metrics=[hp.Metric(tag) for tag in HPARAMS_METRICS])
  hp.hparams(hparams_values(config), trial_id=trial_id)


_COLLECTIVE_KEY_STRIDE = 10_000


def mirrored_strategy(devices=None):
  """A MirroredStrategy over `devices` (default: all GPUs, or the CPU) with its own collective keys.

  Every MirroredStrategy numbers its collective groups from the same class-wide base, and the
  process-wide collective executor remembers each (group, instance) key with the shapes it first
  saw. A second MirroredStrategy in one process (a benchmark training several variants, tests)
  would reuse those keys for different tensors and abort with "Shape mismatch in the collective
  instance". Moving the base on for each new strategy gives it keys no earlier one used.
  """
  tf.distribute.MirroredStrategy._collective_key_base += _COLLECTIVE_KEY_STRIDE  # pylint: disable=protected-access
  return tf.distribute.MirroredStrategy(devices)


def make_strategy(name="auto"):
  """Returns a tf.distribute strategy. Create it before any other TF work in the process.

  Args:
    name: "auto" (MultiWorkerMirroredStrategy when $TF_CONFIG lists several workers, else
      MirroredStrategy over all GPUs when there are several, else the default strategy),
      "default", "mirrored" (all local GPUs, or the CPU) or "multi_worker" (from $TF_CONFIG).

  Raises:
    ValueError: for an unknown name or an unusable TF_CONFIG.
  """
  if name == "auto":
    if _tf_config_workers() > 1:
      name = "multi_worker"
    else:
      gpus = tf.config.list_logical_devices("GPU")
      return mirrored_strategy() if len(gpus) > 1 else tf.distribute.get_strategy()
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    return mirrored_strategy()
  if name == "multi_worker":
    if not _tf_config_workers():
      raise ValueError("--strategy=multi_worker needs TF_CONFIG with the cluster and this "
                       "worker's task (see README, Distribution).")
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise ValueError(f"Unknown strategy {name!r}; use auto, default, mirrored or multi_worker.")


def worker_role(strategy):
  """(is_chief, task_id) of this process: the chief writes checkpoints, logs and samples."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True, 0
  task_type, task_id = resolver.task_type, resolver.task_id or 0
  cluster = resolver.cluster_spec().as_dict()
  is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0
                                      and "chief" not in cluster)
  return is_chief, task_id


_POLICIES = {"none": None, "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def build_models(config):
  """Builds (generator, discriminator, ema_generator) with all variables created.

  The EMA generator starts as a copy of the generator. With config.mixed_precision, G and D
  compute in 16 bits (Keras mixed policy: float32 weights, 16-bit activations, float32 outputs);
  the EMA generator stays float32 throughout (samples and evaluation).
  """
  policy = _POLICIES[config.mixed_precision]
  previous = keras.config.dtype_policy()
  if policy:
    keras.config.set_dtype_policy(policy)
  try:
    generator = models.Generator(config.resolution, config.width, config.z_dim)
    discriminator = models.Discriminator(config.resolution, config.width)
  finally:
    keras.config.set_dtype_policy(previous)
  ema_generator = models.Generator(config.resolution, config.width, config.z_dim,
                                   name="ema_generator")
  for model in (generator, discriminator, ema_generator):
    model.build_for_inference()
  for ema, value in zip(ema_generator.variables, generator.variables):
    ema.assign(value)
  return generator, discriminator, ema_generator


def check_config_change(old, new, allow_change=False):
  """Compares a saved run config with the requested one.

  Returns:
    list of (key, old, new) for every differing key.

  Raises:
    ValueError: naming the differing incompatible keys, unless allow_change.
  """
  old_d, new_d = old.to_dict(), new.to_dict()
  changes = [(k, old_d[k], new_d[k]) for k in sorted(new_d) if old_d.get(k) != new_d[k]]
  bad = [c for c in changes if c[0] in INCOMPATIBLE_KEYS
         or (new.penalty == "niqe" and c[0] in NIQE_KEYS)]
  if bad and not allow_change:
    listed = ", ".join(f"{k}: {o!r} -> {n!r}" for k, o, n in bad)
    raise ValueError(f"The run in this model_dir was started with a different configuration "
                     f"({listed}). Use a new --model_dir, restore the original values, or pass "
                     "--allow_config_change if the change is deliberate.")
  return changes


class Trainer:
  """Trains a generator/discriminator pair under a tf.distribute strategy.

  Everything random in a run (data order, flips, dequantisation noise, latent codes, interpolation
  weights) is a pure function of (config.seed, step), so a checkpoint with the models, the EMA
  generator, both optimizers and the step resumes exactly.
  """

  def __init__(self, config, model_dir, strategy=None, images=None):
    """Args:
      config: `TrainConfig`.
      model_dir: run directory (checkpoints, TensorBoard events, samples, config.json).
      strategy: tf.distribute strategy (default: `make_strategy("auto")`).
      images: optional uint8 (N, R, R, 3) training images; loaded from config.dataset if None.
    """
    self.config = config.validate()
    self.model_dir = model_dir
    self.strategy = strategy or make_strategy("auto")
    self.quality_penalty = penalties_lib.make_quality_penalty(config.penalty, config)
    self._images = images
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
      tf.config.experimental.enable_op_determinism()
    precision.set_tensor_float_32(config.allow_tf32)  # Process-wide; see utils/precision.py.
    with self.strategy.scope():
      self.generator, self.discriminator, self.ema_generator = build_models(config)
      self.g_optimizer = self._make_optimizer(config.max_steps)
      self.d_optimizer = self._make_optimizer(config.max_steps * config.disc_iters)
      self.g_optimizer.build(self.generator.trainable_variables)
      self.d_optimizer.build(self.discriminator.trainable_variables)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
      # Dynamic loss scales (used with --mixed_precision=float16; checkpointed always, so that
      # the checkpoint layout does not depend on the precision).
      self.d_loss_scale = step_lib.LossScale(name="d_loss_scale")
      self.g_loss_scale = step_lib.LossScale(name="g_loss_scale")
      # Steps in which a NaN/Inf loss or gradient dropped an update (see --on_nonfinite).
      self.nonfinite_steps = tf.Variable(0, dtype=tf.int64, trainable=False,
                                         name="nonfinite_steps")
    core = dict(
        step=self.step, generator=self.generator, discriminator=self.discriminator,
        ema_generator=self.ema_generator, g_optimizer=self.g_optimizer,
        d_optimizer=self.d_optimizer, nonfinite_steps=self.nonfinite_steps)
    loss_scales = {"d": self.d_loss_scale.scale, "d_good": self.d_loss_scale.good_steps,
                   "g": self.g_loss_scale.scale, "g_good": self.g_loss_scale.good_steps}
    self.checkpoint = tf.train.Checkpoint(**core, loss_scales=loss_scales)  # What is saved.
    # Restoring checks the core objects strictly; the loss scales are optional (checkpoints
    # written before they existed keep working; the scales then start afresh).
    self._core_checkpoint = tf.train.Checkpoint(**core)
    # Multi-worker: every worker saves (the save is collective), only the chief into model_dir;
    # the others write to a scratch directory that is deleted after each save.
    self.is_chief, task_id = worker_role(self.strategy)
    self._write_dir = model_dir if self.is_chief else os.path.join(
        model_dir, f".worker{task_id}_scratch")
    logging.info("%s: %d replica(s) in sync; this process is %s.", type(self.strategy).__name__,
                 self.strategy.num_replicas_in_sync,
                 "the chief" if self.is_chief else f"worker {task_id}")
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, self._write_dir, max_to_keep=config.keep_checkpoints,
        step_counter=self.step, checkpoint_name="ckpt")
    if config.jit_compile:  # XLA for the loss+gradient computations, updates outside.
      self._d_gradients = tf.function(step_lib.discriminator_gradients, jit_compile=True)
      self._g_gradients = tf.function(step_lib.generator_gradients, jit_compile=True)
    else:
      self._d_gradients = self._g_gradients = None
    self._metric_sums = None
    self._restored = None
    self._signal_fn = None
    self._iteration_fn = None
    self._evaluator = None

  def _make_optimizer(self, decay_steps):
    c = self.config
    lr = schedule.LinearDecay(c.lr, decay_steps if c.lr_decay == "linear" else 0)
    return keras.optimizers.Adam(learning_rate=lr, beta_1=c.beta1, beta_2=c.beta2, epsilon=1e-8)

  @property
  def input_spec(self):
    c = self.config
    return data_lib.InputSpec(batch_size=c.batch_size, disc_iters=c.disc_iters, z_dim=c.z_dim,
                              g_batch_multiplier=c.g_batch_multiplier, seed=c.seed)

  def restore(self):
    """Restores the latest checkpoint in model_dir, if any (once). Returns the restored step.

    Raises:
      CheckpointError: for a corrupt checkpoint or one of another architecture; the files are
        left as they are.
    """
    latest = tf.train.latest_checkpoint(self.model_dir)  # The chief's, on every worker.
    if latest and latest != self._restored:
      c = self.config
      try:
        status = self._core_checkpoint.restore(latest)
        try:
          status.assert_existing_objects_matched()
        except AssertionError:
          status.expect_partial()  # Refused below: no unrestored-values warnings on top.
          raise
        # The file also holds the optional parts restored next: no "could not be found"
        # warnings for them when this status is collected.
        status.expect_partial()
        # Then the optional parts (loss scales) and the save counter, where present.
        self.checkpoint.restore(latest).expect_partial()
      except (ValueError, AssertionError) as e:
        _quiet_unrestored_warnings()
        raise CheckpointError(
            f"Checkpoint {latest} does not fit this configuration (resolution {c.resolution}, "
            f"width {c.width}, z_dim {c.z_dim}): {str(e).splitlines()[0]} It was written by "
            f"another architecture: resume with the values in {self.model_dir}/config.json, "
            "or train in a new --model_dir.") from None
      except (tf.errors.OpError, IndexError, OSError) as e:
        older = [os.path.basename(p)[:-len(".index")] for p in sorted(
            tf.io.gfile.glob(os.path.join(self.model_dir, "ckpt-*.index")))]
        older = [p for p in older if p != os.path.basename(latest)]
        fix = (f"move {os.path.basename(latest)}.* out of {self.model_dir} and set "
               f"model_checkpoint_path in {self.model_dir}/checkpoint to an older one "
               f"({', '.join(older)})" if older else "start again in a new --model_dir")
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"Checkpoint {latest} cannot be read ({message}): it is corrupt "
                              f"or truncated; nothing was changed. Restore it from a backup, "
                              f"or {fix}.") from None
      self._restored = latest
      logging.info("Restored %s (step %d).", latest, int(self.step.numpy()))
    return int(self.step.numpy())

  def save(self):
    """Writes a checkpoint at the current step (atomically, through the CheckpointManager).

    Raises:
      FloatingPointError: when a model variable is NaN/Inf; nothing is written, so the latest
        checkpoint stays the last good one.
    """
    models_ = (self.generator, self.discriminator, self.ema_generator)
    bad = [v.path for m in models_ for v in m.variables
           if not bool(tf.reduce_all(tf.math.is_finite(v)))]
    if bad:
      raise FloatingPointError(
          f"Non-finite values in {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} at step "
          f"{int(self.step.numpy())}; no checkpoint written. The latest checkpoint in "
          f"{self.model_dir} is the last good one; lower --lr or check the data.")
    try:
      path = self.manager.save(checkpoint_number=self.step)
      if not self.is_chief:
        tf.io.gfile.rmtree(self._write_dir)
        return None
      self._restored = path
      return path
    except (tf.errors.OpError, OSError) as e:
      prefix = os.path.join(self.model_dir, f"ckpt-{int(self.step.numpy())}")
      for partial in tf.io.gfile.glob(prefix + "_temp*"):  # The saver's staging area.
        tf.io.gfile.rmtree(partial)
      raise OSError(f"cannot write checkpoint {prefix} ({_tf_message(e)}); free disk space or "
                    f"move the run. {self._latest_sentence()}") from None

  def _latest_sentence(self):
    latest = self.manager.latest_checkpoint
    return (f"The latest complete checkpoint is {latest}." if latest
            else "No checkpoint was written yet.")

  # --- the compiled iteration -------------------------------------------------------------

  def _replica_iteration(self, inputs):
    c = self.config
    gb = c.batch_size
    d_metrics = []
    for i in range(c.disc_iters):  # Unrolled: optimizer updates call merge_call.
      d_metrics.append(step_lib.discriminator_update(
          self.generator, self.discriminator, self.d_optimizer, inputs["real"][i],
          inputs["z"][i], inputs["eps"][i], global_batch_size=gb, gp_weight=c.gp_weight,
          drift_weight=c.drift_weight, qa_weight=c.qa_weight,
          quality_penalty=self.quality_penalty, gradients_fn=self._d_gradients,
          loss_scale=self._scale(self.d_loss_scale)))
    skipped = [m.pop("skipped") for m in d_metrics]
    metrics = {k: tf.add_n([m[k] for m in d_metrics]) / c.disc_iters for k in d_metrics[0]}
    metrics.update(step_lib.generator_update(
        self.generator, self.discriminator, self.g_optimizer, inputs["z_gen"],
        global_batch_size=gb * c.g_batch_multiplier, gradients_fn=self._g_gradients,
        loss_scale=self._scale(self.g_loss_scale)))
    metrics["skipped_updates"] = tf.add_n(skipped + [metrics.pop("skipped")])
    return metrics

  def _scale(self, loss_scale):
    return loss_scale if self.config.mixed_precision == "float16" else None

  def _build_iteration_fns(self):
    """(one(inputs) -> metrics, several(iterator, count)), both tf.functions."""
    strategy = self.strategy

    def iteration(inputs):
      per_replica = strategy.run(self._replica_iteration, args=(inputs,))
      metrics = {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                 for k, v in per_replica.items()}
      step_lib.ema_update(self.ema_generator.variables, self.generator.variables,
                          self.config.ema_decay)
      self.step.assign_add(1)
      # A step with a dropped (non-finite) update is counted, and left out of the logged means.
      dropped = metrics["skipped_updates"] > 0
      self.nonfinite_steps.assign_add(tf.cast(dropped, tf.int64))
      good = 1.0 - tf.cast(dropped, tf.float32)
      for k, v in metrics.items():
        if k in self._metric_sums:
          self._metric_sums[k].assign_add(tf.where(dropped, 0.0, v))
      self._metric_sums["_count"].assign_add(good)
      return metrics

    @tf.function(autograph=False)
    def several(iterator, count):
      # One tf.while_loop, one trace whatever the count. Written out rather than left to
      # AutoGraph: the loop is traced in a helper thread (see `_responsive`), where AutoGraph
      # does not convert `for` over a tensor.
      def body(i):
        iteration(next(iterator))
        return (i + 1,)
      tf.while_loop(lambda i: i < count, body, (tf.constant(0, count.dtype),))

    return tf.function(iteration), several

  def _init_metric_sums(self):
    names = ["d_loss", "g_loss", "wasserstein", "gp", "drift", "d_real", "d_fake", "grad_norm"]
    if self.quality_penalty is not None:
      names.append(self.quality_penalty.summary_tag)
      names.extend(self.quality_penalty.extra_tags)
    with tf.init_scope():
      self._metric_sums = {k: tf.Variable(0.0, trainable=False) for k in names + ["_count"]}

  def pop_metric_means(self):
    """Means over the finite steps since the last call ({} when there were none) and reset."""
    count = float(self._metric_sums["_count"].numpy())
    means = {k: float(v.numpy()) / count for k, v in self._metric_sums.items()
             if k != "_count"} if count else {}
    for v in self._metric_sums.values():
      v.assign(0.0)
    return means

  def train_iterations(self, dataset_iterator, count):
    """Runs `count` iterations (disc_iters D updates + 1 G update each) in one call.

    This is what `train` runs, for every --steps_per_call: the loop body is one graph whatever
    the count, so the results do not depend on steps_per_call (a step compiled outside the loop
    is fused differently by grappler and differs in float32 round-off).
    """
    self._ensure_iteration_fns()
    self._iterations_fn(dataset_iterator, tf.constant(count, tf.int64))

  def train_step(self, dataset_iterator):
    """Runs one iteration and returns its metrics (global means; benchmarks and tests)."""
    self._ensure_iteration_fns()
    return self._iteration_fn(next(dataset_iterator))

  def _ensure_iteration_fns(self):
    if self._iteration_fn is None:
      self._init_metric_sums()
      self._iteration_fn, self._iterations_fn = self._build_iteration_fns()

  def load_data(self):
    """Loads the training images (once). Raises data.DataError for an unusable source."""
    if self._images is None:
      c = self.config
      logging.info("Loading dataset %s at %d px ...", c.dataset, c.resolution)
      self._images = data_lib.load_images(c.dataset, c.resolution, c.data_dir or None,
                                          c.num_examples, c.seed, c.download)
      logging.info("Loaded %d images.", len(self._images))
      data_lib.warn_if_batch_exceeds(len(self._images), c.batch_size,
                                    f"dataset={c.dataset}")
    return self._images

  def distributed_dataset(self, start_iteration):
    images, spec = self.load_data(), self.input_spec
    return self.strategy.distribute_datasets_from_function(
        lambda ctx: data_lib.make_dataset(images, spec, start_iteration, ctx))

  # --- sampling and summaries --------------------------------------------------------------

  def sample(self, num, ema=True, seed=_SAMPLE_SEED):
    """Generates `num` images with fixed latent codes; float32 numpy (num, R, R, 3) in [-1, 1]."""
    z = tf.random.stateless_normal([num, self.config.z_dim], [seed, 0])
    model = self.ema_generator if ema else self.generator
    return model(z, training=False).numpy()

  def _write_samples(self, step):
    for tag, ema in (("ema", True), ("raw", False)):
      grid = images_lib.make_grid(images_lib.to_uint8(
          self.sample(self.config.num_sample_images, ema=ema)))
      images_lib.save_png(os.path.join(self.model_dir, "samples", f"step_{step:07d}_{tag}.png"),
                          grid)
      tf.summary.image(f"samples/{tag}", grid[None], step=step)

  def _write_histograms(self, step):
    for v in self.discriminator.trainable_variables:
      tf.summary.histogram(v.path, v, step=step)  # v.path starts with "discriminator/".
    if self.quality_penalty is not None and self.quality_penalty.prior is not None:
      self._write_niqe_summaries(step)

  def _write_niqe_summaries(self, step):
    """NIQE (under the penalty's prior and transform) of D's input gradients at real and
    interpolated images, and MSCN histograms of the images and of those transformed gradients,
    real vs generated (the paper's supplementary Figs. 1 and 4)."""
    from qagan_tf.train import niqe_prior
    from qagan_tf.train import quality_penalties as qp
    c = self.config
    prior, settings = self.quality_penalty.prior, self.quality_penalty.settings
    n = min(c.batch_size, 16, len(self.load_data()))
    real = tf.constant(self.load_data()[:n], tf.float32) / 127.5 - 1.0
    fake = tf.constant(self.sample(n, ema=False, seed=_SAMPLE_SEED + 2))
    x_hat = 0.5 * real + 0.5 * fake
    grads = {}
    for name, x in (("real", real), ("fake", fake), ("interpolated", x_hat)):
      with tf.GradientTape() as tape:
        tape.watch(x)
        score = tf.reduce_sum(tf.cast(self.discriminator(x), tf.float32))
      grads[name] = tape.gradient(score, x)
    for name in ("real", "interpolated"):
      tf.summary.scalar(f"quality/niqe_grad_{name}", tf.reduce_mean(
          niqe_prior.gradient_distance(grads[name], prior, settings)), step=step)
    for name, images in (("real", real), ("fake", fake)):
      tf.summary.histogram(f"quality/mscn_spatial_{name}",
                           qp.mscn_sample((images + 1.0) * 127.5), step=step)
      maps = niqe_prior.penalty_inputs(grads[name], settings)
      tf.summary.histogram(f"quality/mscn_grad_{name}", qp.mscn_sample(maps[..., None]),
                           step=step)

  def prepare_evaluation(self):
    """Loads the Inception and the reference statistics for in-training FID (fails fast, before
    any training, when either is missing or invalid)."""
    c = self.config
    if not c.eval_every or self._evaluator is not None:
      return
    from qagan_tf.metrics import features, stats_io
    reference = stats_io.load_statistics(c.eval_stats, dim=2048)
    extractor = features.InceptionFeatures(c.inception_weights or None)
    self._evaluator = (extractor, reference)

  def evaluate(self, step):
    """FID (IS when the weights have logits; KID and precision/recall when the statistics keep
    activations) and NIQE of the EMA generator on eval_num_samples, logged as eval/*."""
    from qagan_tf.metrics import evaluation
    extractor, reference = self._evaluator
    n = self.config.eval_num_samples
    logging.info("step %d | evaluating %d EMA samples with the Inception network ...", step, n)
    with precision.tensor_float_32(False):  # Comparable with bin/evaluate under --allow_tf32.
      result = evaluation.evaluate_generator(
          self.ema_generator, extractor, reference, n, seed=_SAMPLE_SEED + 1,
          batch_size=min(250, n),
          kid_samples=n if reference.get("activations") is not None else 0,
          niqe_samples=min(n, 500), progress=True, label=f"step {step} eval",
          log=lambda m: logging.info("%s", m))
    for key, name in EVAL_SUMMARIES:
      if key in result:
        tf.summary.scalar(name, result[key], step=step)
    logging.info("step %d | eval on %d EMA samples: %s", step, result["count"], " ".join(
        f"{k}={result[k]:.4g}" for k, _ in EVAL_SUMMARIES if k in result))
    return result

  # --- the loop ----------------------------------------------------------------------------

  def train(self, stop_at=None):
    """Trains from the latest checkpoint (or from scratch) to config.max_steps.

    Args:
      stop_at: optional step at which to stop early (with a checkpoint), e.g. to split a run.

    Returns:
      the final step.

    Raises:
      TrainingInterrupted: after SIGINT/SIGTERM, once the current step finished and a checkpoint
        of it was written.
    """
    c = self.config
    start = self.restore()
    end = min(c.max_steps, stop_at or c.max_steps)
    if start >= end:
      logging.info("Step %d >= %d: nothing to train.", start, end)
      return start
    self.prepare_evaluation()
    iterator = iter(self.distributed_dataset(start))
    writer = (tf.summary.create_file_writer(self.model_dir) if self.is_chief
              else tf.summary.create_noop_writer())
    progress = Progress(start, c.max_steps)
    nonfinite = _NonFiniteWatch(self, c.on_nonfinite)
    step = start
    with writer.as_default(), _SignalFlag() as interrupt:
      if self.is_chief:
        write_hparams(c, os.path.basename(os.path.normpath(self.model_dir)))
      while step < end:
        signum = self._agreed_signal(interrupt.signum)
        if signum is not None:
          writer.flush()
          raise TrainingInterrupted(signum, step, self.save())
        count = self._steps_to_next_event(step, end)
        if step == start:
          logging.info("Compiling and running the first %d step(s) (tracing the training step "
                       "takes about a minute on CPU; Ctrl-C is answered after it) ...", count)
          t_first = time.time()
        _responsive(lambda: self.train_iterations(iterator, count))
        if step == start:
          logging.info("First call done in %s.", format_duration(time.time() - t_first))
        step += count
        nonfinite.update(step)
        last = step == end
        try:
          self._write_step_outputs(step, last, progress, nonfinite.total)
          writer.flush()
        except tf.errors.OpError as e:  # Full disk, quota, vanished directory.
          raise OSError(f"cannot write to {self.model_dir} at step {step} ({_tf_message(e)}); "
                        f"free disk space or move the run. {self._latest_sentence()}") from None
        if c.eval_every and (step % c.eval_every == 0 or last) and self.is_chief:
          self.evaluate(step)
        if step % c.save_every == 0 or last:
          path = self.save()
          logging.info("Saved checkpoint %s", path)
    return step

  def _agreed_signal(self, signum):
    """The signal to stop for, agreed by all workers: one worker's SIGTERM stops every worker
    after the same step (the checkpoint save is collective, so they must all take part)."""
    if not isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
      return signum
    if self._signal_fn is None:
      strategy = self.strategy

      @tf.function
      def total(local):
        per_replica = strategy.run(lambda: tf.identity(local))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
      self._signal_fn = total
    stop = float(self._signal_fn(tf.constant(0.0 if signum is None else 1.0))) > 0
    return (signum or signal.SIGTERM) if stop else None

  def _steps_to_next_event(self, step, end):
    """Steps to run in the next call: up to steps_per_call, stopping at the next step that logs,
    samples, evaluates or saves, so that none is skipped."""
    c = self.config
    target = min(end, step + c.steps_per_call)
    for every in (c.log_every, c.sample_every, c.histogram_every, c.save_every, c.eval_every):
      if every:
        target = min(target, (step // every + 1) * every)
    return target - step

  def _write_step_outputs(self, step, last, progress, nonfinite_total):
    """Scalars and the console line (every log_every), sample grids, histograms."""
    c = self.config
    if step % c.log_every == 0 or last:
      means = self.pop_metric_means()
      self._check_finite(means, step)
      rate = progress.update(step)
      for k, v in means.items():
        tf.summary.scalar(f"train/{k}", v, step=step)
      tf.summary.scalar("train/nonfinite_steps", nonfinite_total, step=step)
      tf.summary.scalar("train/lr_generator", self.g_optimizer.learning_rate, step=step)
      tf.summary.scalar("train/lr_discriminator", self.d_optimizer.learning_rate, step=step)
      tf.summary.scalar("train/steps_per_sec", rate, step=step)
      shown = ["d_loss", "g_loss", "wasserstein", "gp"]
      if self.quality_penalty is not None:
        shown.append(self.quality_penalty.summary_tag)
      logging.info("%s | %s", progress.describe(step), " ".join(
          f"{k}={means[k]:.4g}" for k in shown if k in means) or "no finite step")
    if (step % c.sample_every == 0 or last) and self.is_chief:
      self._write_samples(step)
    if (step % c.histogram_every == 0 or last) and self.is_chief:
      self._write_histograms(step)

  def _check_finite(self, means, step):
    bad = sorted(k for k, v in means.items() if not np.isfinite(v))
    if bad:
      raise FloatingPointError(
          f"Non-finite training values at step {step}: {', '.join(bad)}. The latest checkpoint "
          f"in {self.model_dir} is the last good one; lower --lr or check the data.")


def _quiet_unrestored_warnings():
  """A refused checkpoint leaves a half-restored status behind, whose garbage collection logs a
  dozen "unrestored values" warnings around our one-line error; the run is ending anyway."""
  import logging as py_logging
  py_logging.getLogger("tensorflow").setLevel(py_logging.ERROR)


def _tf_message(error):
  """The first line of a TF error's message, without the {{function_node ...}} prefix."""
  text = getattr(error, "message", None) or str(error) or type(error).__name__
  text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text).strip()
  return text.splitlines()[0] if text else type(error).__name__


class CheckpointError(ValueError):
  """The latest checkpoint cannot be restored (corrupt, or another architecture)."""


class _NonFiniteWatch:
  """Applies --on_nonfinite after each step (the step itself never applies a non-finite update).

  stop: raise at the first step with a NaN/Inf loss or gradient; no checkpoint is written, so the
  latest one stays the last good one. skip: warn and go on, but stop after
  MAX_CONSECUTIVE_SKIPS steps in a row that all had updates dropped (nothing is learning).
  """
  MAX_CONSECUTIVE_SKIPS = 50

  def __init__(self, trainer, policy):
    self.trainer, self.policy = trainer, policy
    self.total = int(trainer.nonfinite_steps.numpy())
    self.consecutive = 0

  def _error(self, what):
    latest = self.trainer.manager.latest_checkpoint
    kept = (f"the latest checkpoint {latest} is the last good one" if latest
            else f"no checkpoint was written to {self.trainer.model_dir}")
    return FloatingPointError(f"{what}; {kept}. Lower --lr, check the data, or resume with "
                              f"--on_nonfinite=skip to drop such updates and go on.")

  def update(self, step):
    total = int(self.trainer.nonfinite_steps.numpy())
    new, self.total = total - self.total, total
    if not new:
      self.consecutive = 0
      return
    self.consecutive += new
    if self.policy == "stop":
      raise self._error(f"Non-finite loss or gradient at step {step} (its update was not "
                        "applied; --on_nonfinite=stop)")
    logging.warning("step %d: non-finite loss or gradient, update dropped (%d such steps so "
                    "far, train/nonfinite_steps).", step, total)
    if self.consecutive >= self.MAX_CONSECUTIVE_SKIPS:
      raise self._error(f"{self.consecutive} steps in a row up to step {step} had non-finite "
                        "losses or gradients (--on_nonfinite=skip gives up after "
                        f"{self.MAX_CONSECUTIVE_SKIPS})")


class TrainingInterrupted(Exception):
  """SIGINT/SIGTERM arrived; a checkpoint of the last finished step was written."""

  def __init__(self, signum, step, path):
    super().__init__(f"Stopped by {signal.Signals(signum).name} after step {step}; saved "
                     f"{path}. Run the same command again to resume.")
    self.signum, self.step, self.path = signum, step, path


def _responsive(fn):
  """Runs fn() in a helper thread while the main thread waits in short slices, so that Python
  signal handlers (which only ever run in the main thread, between bytecodes) answer Ctrl-C
  within 0.2 s even while a long TF call (the first step's tracing, a minute on CPU) runs.
  Returns fn's result; re-raises its exception here."""
  if threading.current_thread() is not threading.main_thread():
    return fn()
  outcome = {}

  def target():
    try:
      outcome["value"] = fn()
    except BaseException as e:  # Re-raised in the main thread.
      outcome["error"] = e
  worker = threading.Thread(target=target, name="qagan-train-step", daemon=True)
  worker.start()
  while worker.is_alive():
    worker.join(0.2)
  if "error" in outcome:
    raise outcome["error"]
  return outcome.get("value")


class _SignalFlag:
  """Records SIGINT/SIGTERM instead of dying mid-step (main thread only; restored on exit).

  The first signal is acknowledged at once (the run stops after the current step and saves a
  checkpoint); a second Ctrl-C aborts at once without saving, and says so (the latest complete
  checkpoint stays the latest: checkpoints are written atomically)."""

  def __init__(self):
    self.signum = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for signum in (signal.SIGINT, signal.SIGTERM):
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None and signum == signal.SIGINT:
      sys.stderr.write("\nSecond Ctrl-C: aborting now, without saving; the latest checkpoint "
                       "is the one before this step.\n")
      sys.stderr.flush()
      os._exit(130)
    self.signum = signum
    name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    sys.stderr.write(f"\n{name}: stopping after the current step and saving a checkpoint "
                     "(Ctrl-C again aborts at once, without saving) ...\n")
    sys.stderr.flush()

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)


class Progress:
  """Steps per second (over the last interval) and ETA."""

  def __init__(self, start, total):
    self.start, self.total = start, total
    self._t0 = self._last_t = time.time()
    self._last_step = start
    self.rate = 0.0

  def update(self, step):
    now = time.time()
    if step > self._last_step:
      self.rate = (step - self._last_step) / max(now - self._last_t, 1e-9)
    self._last_t, self._last_step = now, step
    return self.rate

  def describe(self, step):
    eta = (self.total - step) / self.rate if self.rate > 0 else float("nan")
    return (f"step {step}/{self.total} ({100.0 * step / self.total:.1f}%) "
            f"{self.rate:.2f} it/s ETA {format_duration(eta)}")

