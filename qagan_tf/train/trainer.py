"""The training loop: one `Trainer` ties models, optimizers, data and the compiled iteration to a
run directory. Its parts live beside it: distribution (strategies, worker roles), builders
(models, optimizers), checkpoints, summaries and run_control (signals, the non-finite watch);
the iteration itself is qagan_tf/update's, shared with Keras' QAGAN."""

import math
import os
import time

import keras
import tensorflow as tf
from absl import logging

from qagan_tf import augment as augment_lib
from qagan_tf import compat
from qagan_tf import config as config_lib
from qagan_tf import data as data_lib
from qagan_tf import evaluation
from qagan_tf import sampling
from qagan_tf.objectives import penalties
from qagan_tf.objectives.objective import Objective
from qagan_tf.train import builders
from qagan_tf.train import checkpoints as checkpoints_lib
from qagan_tf.train import distribution
from qagan_tf.train import memory
from qagan_tf.train import run_control
from qagan_tf.train import summaries
from qagan_tf.update import collector as collector_lib
from qagan_tf.update import iteration as iteration_lib
from qagan_tf.update import numerics
from qagan_tf.utils import files
from qagan_tf.utils import precision
from qagan_tf.utils import runlock
from qagan_tf.utils.progress import Progress, format_duration


class Trainer:
  """Trains a generator/discriminator pair under a tf.distribute strategy.

  Everything random in a run (data order, flips, dequantisation noise, latent codes, interpolation
  weights) is a pure function of (config.seed, step), so a checkpoint with the models (D's
  spectral-norm vectors included), the EMA generator, both optimizers and the step resumes
  exactly.
  """

  def __init__(self, config, model_dir, strategy=None, images=None):
    """Args:
      config: `TrainConfig`.
      model_dir: run directory (checkpoints, TensorBoard events, samples, config.json).
      strategy: tf.distribute strategy (default: `distribution.make_strategy("auto")`).
      images: optional uint8 (N, R, R, 3) training images; loaded from config.dataset if None.
    """
    self.config = c = config.validate()
    self.model_dir = model_dir
    self.strategy = strategy or distribution.make_strategy("auto")
    replicas = self.strategy.num_replicas_in_sync
    penalties.get_entry(c.penalty).check_strategy(c, replicas)
    self.quality_penalty = penalties.build_for_config(c)
    self.objective = Objective.from_config(c, self.quality_penalty)
    self._images = images
    keras.utils.set_random_seed(c.seed)
    if c.deterministic:
      tf.config.experimental.enable_op_determinism()
    precision.set_tensor_float_32(c.allow_tf32)  # Process-wide; see utils/precision.py.
    with self.strategy.scope():
      self.generator, self.discriminator, self.ema_generator = builders.build_models(c)
      self.g_optimizer = builders.make_optimizer(c, c.max_steps)
      self.d_optimizer = builders.make_optimizer(c, c.max_steps * c.disc_iters)
      self.g_optimizer.build(self.generator.trainable_variables)
      self.d_optimizer.build(self.discriminator.trainable_variables)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
      # Dynamic loss scales (used with --mixed_precision=float16; checkpointed always, so that
      # the checkpoint layout does not depend on the precision).
      self.d_loss_scale = numerics.LossScale(name="d_loss_scale")
      self.g_loss_scale = numerics.LossScale(name="g_loss_scale")
      # The stateful terms' state (LeCam's anchors), by term name: made and checkpointed
      # always, as the loss scales.
      self.term_states = self.objective.make_states(lambda name: tf.Variable(
          0.0, trainable=False, name=name, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA))
      # Steps in which a NaN/Inf loss or gradient dropped an update (see --on_nonfinite).
      self.nonfinite_steps = tf.Variable(0, dtype=tf.int64, trainable=False,
                                         name="nonfinite_steps")
    self.is_chief, task_id = distribution.worker_role(self.strategy)
    logging.info("%s: %d replica(s) in sync; this process is %s.", type(self.strategy).__name__,
                 self.strategy.num_replicas_in_sync,
                 "the chief" if self.is_chief else f"worker {task_id}")
    parts = dict(step=self.step, generator=self.generator, discriminator=self.discriminator,
                 ema_generator=self.ema_generator, g_optimizer=self.g_optimizer,
                 d_optimizer=self.d_optimizer, nonfinite_steps=self.nonfinite_steps,
                 loss_scales={"d": self.d_loss_scale.scale,
                              "d_good": self.d_loss_scale.good_steps,
                              "g": self.g_loss_scale.scale,
                              "g_good": self.g_loss_scale.good_steps},
                 **{term.name: term.checkpoint(self.term_states[term.name])
                    for term in self.objective.stateful_terms})
    # What older checkpoints lack is optional on restore (compat.OPTIONAL_CHECKPOINT_PARTS).
    optional = {k: v for k, v in parts.items() if k in compat.OPTIONAL_CHECKPOINT_PARTS}
    self.checkpoints = checkpoints_lib.Checkpoints(
        model_dir, core={k: v for k, v in parts.items() if k not in optional},
        optional=optional,
        step=self.step, max_to_keep=c.keep_checkpoints, is_chief=self.is_chief,
        task_id=task_id, describe_architecture=(
            f"architecture {c.architecture}, resolution {c.resolution}, G width "
            f"{c.generator_width}, D width {c.discriminator_width}, z_dim {c.z_dim}, d_norm "
            f"{c.d_norm}"))
    # What the updates run on: XLA for the loss+gradient computations (updates outside);
    # float16's loss scales.
    self.parts = iteration_lib.Parts(
        self.generator, self.discriminator, self.d_optimizer, self.g_optimizer, self.objective,
        states=self.term_states).with_options(
            c.jit_compile, replicas, (self.d_loss_scale, self.g_loss_scale)
            if c.mixed_precision == "float16" else None, log=logging.info)
    self.metric_sums = None
    self.evaluator = evaluation.TrainingEvaluator(c) if c.eval_every else None
    self._iteration_fn = self._iterations_fn = None
    self.lock = None

  # --- the run directory ------------------------------------------------------------------

  @classmethod
  def open(cls, model_dir, config, strategy=None, *, saved=None, allow_config_change=False):
    """Opens `model_dir` for training with `config`: every check before anything is written.

    In order: the directory must be writable; a run already there (`saved`, its config.json)
    may resume only with a compatible config (`config_lib.check_config_change`); the chief
    takes the directory's lock (an existing directory before its checkpoint is read, a new one
    only once every check passed, so a run that cannot start creates nothing); the latest
    checkpoint is restored, the data loaded, in-training evaluation prepared; then config.json
    is written, unless the run is already at config.max_steps (nothing to train: the run's own
    record is kept, and `train` returns at once).

    Args:
      model_dir: the run directory (created if needed).
      config: the `TrainConfig` to train with.
      strategy: tf.distribute strategy (default: `distribution.make_strategy("auto")`).
      saved: the run's own config (`config_lib.saved_config(model_dir)`), or None for a new run.
      allow_config_change: resume even where the configuration defines another run.

    Returns:
      the `Trainer`, holding the lock until `close()` (or the end of a `with` block).

    Raises:
      ValueError, OSError (runlock.RunDirectoryInUse, a checkpoint error), data.DataError.
    """
    files.check_writable_directory(os.path.join(model_dir, config_lib.CONFIG_FILENAME))
    memory.check_fits(config)  # Before anything is built or written.
    if saved is not None:
      for key, before, after in config_lib.check_config_change(saved, config,
                                                               allow_config_change):
        logging.info("Config change on resume: %s %r -> %r", key, before, after)
    if config.eval_stats and not config.eval_every:
      logging.warning("--eval_stats=%s without --eval_every: no in-training FID is computed; "
                      "add --eval_every=N (e.g. 5000) to evaluate every N steps.",
                      config.eval_stats)
    trainer = cls(config, model_dir, strategy)
    try:
      if trainer.is_chief and files.isdir(model_dir):
        trainer.lock = runlock.acquire(model_dir)
      step = trainer.restore()
      trainer.load_data()
      trainer.prepare_evaluation()
      if trainer.is_chief and trainer.lock is None:
        trainer.lock = runlock.acquire(model_dir)
      logging.info("Run directory %s: dataset %s at %d px, penalty %s, %s.",
                   files.absolute(model_dir), config.dataset, config.resolution, config.penalty,
                   f"resuming at step {step}" if step else "starting at step 0")
      if saved is not None and step >= config.max_steps:
        logging.info("Already at step %d (--max_steps=%d); nothing to train and %s is "
                     "unchanged. Give a larger --max_steps to train on.", step,
                     config.max_steps, os.path.join(model_dir, config_lib.CONFIG_FILENAME))
      elif trainer.is_chief:
        config_lib.save_config(config, model_dir)
    except BaseException:
      trainer.close()
      raise
    return trainer

  def close(self):
    """Releases the run directory's lock (idempotent)."""
    if self.lock is not None:
      self.lock.release()
      self.lock = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  @property
  def checkpoint(self):
    return self.checkpoints.checkpoint

  @property
  def input_spec(self):
    c = self.config
    return data_lib.InputSpec(batch_size=c.batch_size, disc_iters=c.disc_iters, z_dim=c.z_dim,
                              g_batch_multiplier=c.g_batch_multiplier, seed=c.seed,
                              augment=augment_lib.uniforms_of(self.objective.augment))

  def restore(self):
    """Restores the latest checkpoint, if any; returns the step (see `Checkpoints.restore`)."""
    return self.checkpoints.restore()

  def save(self):
    """Writes a checkpoint of the current step (see `Checkpoints.save`)."""
    return self.checkpoints.save((self.generator, self.discriminator, self.ema_generator))

  # --- the compiled iteration -------------------------------------------------------------

  @property
  def update_options(self):
    """The iteration's compiled gradient functions and loss scales (`iteration.Parts`)."""
    return self.parts

  def _replica_iteration(self, inputs):
    c = self.config
    return iteration_lib.iteration(
        self.parts, inputs, step=self.step, disc_iters=c.disc_iters,
        global_batch_size=c.batch_size, g_global_batch_size=c.batch_size * c.g_batch_multiplier,
        g_batch_multiplier=c.g_batch_multiplier)

  def _build_iteration_fns(self):
    """(one(inputs) -> collector result, several(iterator, count)), both tf.functions."""
    strategy = self.strategy

    def iteration(inputs):
      per_replica = strategy.run(self._replica_iteration, args=(inputs,))
      result = tf.nest.map_structure(
          lambda v: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None), per_replica)
      iteration_lib.ema_update(self.ema_generator.variables, self.generator.variables,
                               self.config.ema_decay)
      self.step.assign_add(1)
      # A step with a dropped (non-finite) update is counted, and left out of the logged means.
      dropped = result[collector_lib.SKIPPED][0] > 0
      self.nonfinite_steps.assign_add(tf.cast(dropped, tf.int64))
      self.metric_sums.add(result, dropped)
      return result

    @tf.function(autograph=False)
    def several(iterator, count):
      # One tf.while_loop, one trace whatever the count. Written out rather than left to
      # AutoGraph: the loop is traced in a helper thread (see `run_control.responsive`), where
      # AutoGraph does not convert `for` over a tensor.
      def body(i):
        iteration(next(iterator))
        return (i + 1,)
      tf.while_loop(lambda i: i < count, body, (tf.constant(0, count.dtype),))

    # No tensor control flow in the iteration (as in `several`): AutoGraph would only convert
    # every function it calls, seconds of a first step's tracing.
    return tf.function(iteration, autograph=False), several

  def pop_metric_means(self):
    """Means of every metric over the finite steps since the last call ({} when none)."""
    return self.metric_sums.pop_means()

  def train_iterations(self, dataset_iterator, count):
    """Runs `count` iterations (disc_iters D updates + 1 G update each) in one call.

    This is what `train` runs, for every --steps_per_call: the loop body is one graph whatever
    the count, so the results do not depend on steps_per_call (a step compiled outside the loop
    is fused differently by grappler and differs in float32 round-off).
    """
    self._ensure_iteration_fns()
    self._iterations_fn(dataset_iterator, tf.constant(count, tf.int64))

  def train_step(self, dataset_iterator, with_counts=False):
    """Runs one iteration and returns its metrics (global means; benchmarks and tests): a lazy
    regulariser's metric is the mean over the D updates that computed it (0 when none did).
    with_counts: also return {name: how many updates computed it}."""
    self._ensure_iteration_fns()
    result = self._iteration_fn(next(dataset_iterator))
    means = collector_lib.means(result)
    return (means, collector_lib.counts(result)) if with_counts else means

  def _ensure_iteration_fns(self):
    if self._iteration_fn is None:
      self.metric_sums = summaries.MetricSums(self.objective.metric_names)
      self._iteration_fn, self._iterations_fn = self._build_iteration_fns()

  # --- data, samples and evaluation ---------------------------------------------------------

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

  def sample(self, num, ema=True, seed=summaries.SAMPLE_SEED):
    """Generates `num` images with fixed latent codes; float32 numpy (num, R, R, 3) in [-1, 1]."""
    return sampling.generate(self.ema_generator if ema else self.generator, num,
                             batch_size=num, seed=seed, uint8=False)

  def prepare_evaluation(self):
    """Loads what in-training evaluation needs (fails fast, before any training; once)."""
    if self.evaluator is not None:
      self.evaluator.prepare()

  def evaluate(self, step):
    """Evaluates the EMA generator and logs eval/* (see `evaluation.TrainingEvaluator`)."""
    return self.evaluator(self.ema_generator, step)

  # --- the loop ----------------------------------------------------------------------------

  def train(self, stop_at=None):
    """Trains from the latest checkpoint (or from scratch) to config.max_steps.

    Args:
      stop_at: optional step at which to stop early (with a checkpoint), e.g. to split a run.

    Returns:
      the final step.

    Raises:
      run_control.TrainingInterrupted: after SIGINT/SIGTERM, once the current step finished and
        a checkpoint of it was written.
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
    progress = Progress(c.max_steps, "step", unit="it", start=start)
    nonfinite = run_control.NonFiniteWatch(self.nonfinite_steps, self.checkpoints,
                                           c.on_nonfinite, self.objective.describe_weights("--"))
    agreed_signal = run_control.AgreedSignal(self.strategy)
    step = start
    t_start, compile_seconds, evaluating = time.time(), 0.0, 0.0
    with writer.as_default(), run_control.SignalFlag() as interrupt:
      if self.is_chief:
        summaries.write_hparams(c, os.path.basename(os.path.normpath(self.model_dir)))
      while step < end:
        signum = agreed_signal(interrupt.signum)
        if signum is not None:
          writer.flush()
          raise run_control.TrainingInterrupted(signum, step, self.save())
        count = self._steps_to_next_event(step, end)
        if step == start:
          logging.info("Compiling and running the first %d step(s) (tracing the training step "
                       "takes about a minute on CPU; Ctrl-C is answered after it) ...", count)
          t_first = time.time()
        run_control.responsive(lambda: self.train_iterations(iterator, count))
        if step == start:
          compile_seconds = time.time() - t_first
          logging.info("First call done in %s (compiling included; the rate and ETA leave it "
                       "out).", format_duration(compile_seconds))
          progress.skip(step + count)
        step += count
        nonfinite.update(step)
        last = step == end
        try:
          self._write_step_outputs(step, last, progress, nonfinite.total)
          writer.flush()
        except tf.errors.OpError as e:  # Full disk, quota, vanished directory.
          raise OSError(f"cannot write to {self.model_dir} at step {step} "
                        f"({checkpoints_lib.tf_message(e)}); free disk space or move the run. "
                        f"{self.checkpoints.latest_sentence()}") from None
        if c.eval_every and (step % c.eval_every == 0 or last) and self.is_chief:
          t_eval = time.time()
          self.evaluate(step)
          progress.skip()  # Evaluation is not training time: the rate and ETA leave it out.
          evaluating += time.time() - t_eval
        if step % c.save_every == 0 or last:
          logging.info("Saved checkpoint %s", self.save())
    total = time.time() - t_start
    logging.info("%s step %d of %d in %s (first call %s, evaluation %s).",
                 "Finished:" if step >= c.max_steps else "Stopped at", step, c.max_steps,
                 format_duration(total), format_duration(compile_seconds),
                 format_duration(evaluating))
    if self.is_chief:
      logging.info("Outputs: samples in %s, checkpoint %s; tensorboard --logdir=%s",
                   os.path.join(self.model_dir, "samples"), self.checkpoints.latest,
                   self.model_dir)
    return step

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
      bad = sorted(k for k, v in means.items() if not math.isfinite(v))
      if bad:
        raise FloatingPointError(
            f"Non-finite training values at step {step}: {', '.join(bad)}. The latest "
            f"checkpoint in {self.model_dir} is the last good one. The largest weights in "
            f"play: {self.objective.describe_weights('--')}; lower the largest, or --lr, or "
            "check the data.")
      rate = progress.set(step)
      summaries.write_scalars(means, step, {
          "nonfinite_steps": nonfinite_total, "steps_per_sec": rate,
          "lr_generator": self.g_optimizer.learning_rate,
          "lr_discriminator": self.d_optimizer.learning_rate})
      penalty = self.quality_penalty
      shown = (("d_loss", "g_loss") + self.objective.loss.metric_names + ("gp",)
               + ((penalty.summary_tag,) if penalty else ()))
      logging.info("%s | %s", progress.describe(), " ".join(
          f"{k}={means[k]:.4g}" for k in shown if k in means) or "no finite step")
    if (step % c.sample_every == 0 or last) and self.is_chief:
      summaries.write_samples(self.model_dir, {"ema": self.ema_generator,
                                               "raw": self.generator},
                              c.num_sample_images, step)
    if (step % c.histogram_every == 0 or last) and self.is_chief:
      summaries.write_histograms(self.discriminator, self.generator,
                                 self.load_data()[:c.batch_size], self.quality_penalty, step)
