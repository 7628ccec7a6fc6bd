"""A run's checkpoints: what is saved, strict restore with clear errors, atomic saves."""

import logging as py_logging
import os
import re

import tensorflow as tf
from absl import logging

from qagan_tf.utils import files


class _DropSaverTimings(py_logging.Filter):
  """TF's saver logs "Sharding callback duration: N microseconds" at INFO on every save."""

  def filter(self, record):
    return not str(record.msg).startswith("Sharding callback duration")


for _name in ("absl", "tensorflow"):  # TF's functional_saver logs through absl.
  py_logging.getLogger(_name).addFilter(_DropSaverTimings())


class CheckpointError(ValueError):
  """The latest checkpoint cannot be restored (corrupt, or another architecture)."""


def tf_message(error):
  """The first line of a TF error's message, without the {{function_node ...}} prefix."""
  text = getattr(error, "message", None) or str(error) or type(error).__name__
  text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text).strip()
  return text.splitlines()[0] if text else type(error).__name__


def _quiet_unrestored_warnings():
  """A refused checkpoint leaves a half-restored status behind, whose garbage collection logs a
  dozen "unrestored values" warnings around our one-line error; the run is ending anyway."""
  py_logging.getLogger("tensorflow").setLevel(py_logging.ERROR)


class Checkpoints:
  """The checkpoints of one run.

  `core` objects (step, models, optimizers, counters) must all be in a checkpoint to restore it;
  `optional` ones (e.g. loss scales, added later) are restored where present. Multi-worker:
  every worker saves (the save is collective), only the chief into model_dir; the others write
  to a scratch directory that is deleted after each save.
  """

  def __init__(self, model_dir, core, optional, step, max_to_keep, is_chief=True, task_id=0,
               describe_architecture=""):
    self.model_dir, self.step, self.is_chief = model_dir, step, is_chief
    self.describe_architecture = describe_architecture
    self.checkpoint = tf.train.Checkpoint(**core, **optional)  # What is saved.
    self.core_checkpoint = tf.train.Checkpoint(**core)  # What a restore checks strictly.
    self.write_dir = model_dir if is_chief else os.path.join(model_dir,
                                                             f".worker{task_id}_scratch")
    self.manager = tf.train.CheckpointManager(self.checkpoint, self.write_dir,
                                              max_to_keep=max_to_keep, step_counter=step,
                                              checkpoint_name="ckpt")
    self._restored = None

  @property
  def latest(self):
    return self.manager.latest_checkpoint

  def latest_sentence(self):
    latest = self.latest
    return (f"The latest complete checkpoint is {latest}." if latest
            else "No checkpoint was written yet.")

  def restore(self):
    """Restores the latest checkpoint in model_dir, if any (once). Returns the restored step.

    Raises:
      CheckpointError: for a corrupt checkpoint or one of another architecture; the files are
        left as they are.
    """
    # The chief's, on every worker; the newest ckpt-N when the index file is missing.
    latest = files.latest_checkpoint(self.model_dir,
                                     log=logging.warning if self.is_chief else None)
    if latest and latest != self._restored:
      try:
        status = self.core_checkpoint.restore(latest)
        try:
          status.assert_existing_objects_matched()
        except AssertionError:
          status.expect_partial()  # Refused below: no unrestored-values warnings on top.
          raise
        # The file also holds the optional parts restored next: no "could not be found"
        # warnings for them when this status is collected.
        status.expect_partial()
        self.checkpoint.restore(latest).expect_partial()  # Optional parts, save counter.
      except (ValueError, AssertionError) as e:
        _quiet_unrestored_warnings()
        raise CheckpointError(
            f"Checkpoint {latest} does not fit this configuration ({self.describe_architecture}"
            f"): {str(e).splitlines()[0]} It was written by another architecture: resume with "
            f"the values in {self.model_dir}/config.json, or train in a new --model_dir."
        ) from None
      except (tf.errors.OpError, IndexError, OSError) as e:
        _quiet_unrestored_warnings()  # The half-read status would log ~30 warnings after ours.
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

  def save(self, models):
    """Writes a checkpoint at the current step (atomically, through the CheckpointManager).

    Raises:
      FloatingPointError: when a variable of `models` is NaN/Inf; nothing is written, so the
        latest checkpoint stays the last good one.
      OSError: when it cannot be written (the partial files are removed).
    """
    bad = [v.path for m in models for v in m.variables
           if not bool(tf.reduce_all(tf.math.is_finite(v)))]
    if bad:
      raise FloatingPointError(
          f"Non-finite values in {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} at step "
          f"{int(self.step.numpy())}; no checkpoint written. The latest checkpoint in "
          f"{self.model_dir} is the last good one; lower --lr or check the data.")
    try:
      path = self.manager.save(checkpoint_number=self.step)
      if not self.is_chief:
        tf.io.gfile.rmtree(self.write_dir)
        return None
      self._restored = path
      return path
    except (tf.errors.OpError, OSError) as e:
      prefix = os.path.join(self.model_dir, f"ckpt-{int(self.step.numpy())}")
      for partial in tf.io.gfile.glob(prefix + "_temp*"):  # The saver's staging area.
        tf.io.gfile.rmtree(partial)
      raise OSError(f"cannot write checkpoint {prefix} ({tf_message(e)}); free disk space or "
                    f"move the run. {self.latest_sentence()}") from None
