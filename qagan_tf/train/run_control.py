"""Run control: signals (stop after the step, with a checkpoint), agreement between workers,
the non-finite watch, and keeping the main thread responsive during long TF calls."""

import os
import signal
import sys
import threading

import tensorflow as tf
from absl import logging


class TrainingInterrupted(Exception):
  """SIGINT/SIGTERM arrived; a checkpoint of the last finished step was written."""

  def __init__(self, signum, step, path):
    super().__init__(f"Stopped by {signal.Signals(signum).name} after step {step}; saved "
                     f"{path}. Run the same command again to resume.")
    self.signum, self.step, self.path = signum, step, path


class NonFiniteWatch:
  """Applies --on_nonfinite after each step (the step itself never applies a non-finite update).

  stop: raise at the first step with a NaN/Inf loss or gradient; no checkpoint is written, so the
  latest one stays the last good one. skip: warn and go on, but stop after
  MAX_CONSECUTIVE_SKIPS steps in a row that all had updates dropped (nothing is learning).
  """
  MAX_CONSECUTIVE_SKIPS = 50

  def __init__(self, counter, checkpoints, policy, weights=""):
    """counter: the int64 variable counting steps with a dropped update; checkpoints: the
    run's `checkpoints.Checkpoints`; policy: "stop" or "skip"; weights: the objective's weights,
    largest first (`Objective.describe_weights`), named in the error as the first suspects."""
    self.counter, self.checkpoints, self.policy = counter, checkpoints, policy
    self.weights = weights
    self.total = int(counter.numpy())
    self.consecutive = 0

  def _error(self, what):
    latest = self.checkpoints.latest
    kept = (f"the latest checkpoint {latest} is the last good one" if latest
            else f"no checkpoint was written to {self.checkpoints.model_dir}")
    suspects = f"The largest weights in play: {self.weights}; lower the largest, or " if (
        self.weights) else "Lower "
    return FloatingPointError(f"{what}; {kept}. {suspects}--lr, check the data, or resume "
                              "with --on_nonfinite=skip to drop such updates and go on.")

  def update(self, step):
    total = int(self.counter.numpy())
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


class AgreedSignal:
  """The signal to stop for, agreed by all workers: one worker's SIGTERM stops every worker
  after the same step (the checkpoint save is collective, so they must all take part)."""

  def __init__(self, strategy):
    self.strategy = strategy
    self._fn = None

  def __call__(self, signum):
    if not isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
      return signum
    if self._fn is None:
      strategy = self.strategy

      @tf.function
      def total(local):
        per_replica = strategy.run(lambda: tf.identity(local))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
      self._fn = total
    stop = float(self._fn(tf.constant(0.0 if signum is None else 1.0))) > 0
    return (signum or signal.SIGTERM) if stop else None


def responsive(fn):
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


class SignalFlag:
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
