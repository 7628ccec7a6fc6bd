"""Helper of tests/gan/test_qagan.py: a 4-epoch QAGAN fit with BackupAndRestore in the directory
argv[1]; with KILL_AT_EPOCH=k it sends itself SIGKILL from a callback at the end of epoch k
(after the backup). Writes DIR/result.json (epochs run, final weights, ADA's p) when it
finishes. The QAGAN trains with NIQE, drift and ADA (p moving after every D update)."""

import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from qagan_tf.gan import QAGAN  # noqa: E402
from tests.gan.models import LATENT, _images, user_models  # noqa: E402


class Kill(keras.callbacks.Callback):
  def __init__(self, at):
    super().__init__()
    self.at = at

  def on_epoch_end(self, epoch, logs=None):
    if epoch == self.at:
      os.kill(os.getpid(), signal.SIGKILL)


class Epochs(keras.callbacks.Callback):
  def __init__(self):
    super().__init__()
    self.run = []

  def on_epoch_begin(self, epoch, logs=None):
    self.run.append(epoch)


def main():
  directory = sys.argv[1]
  g, d = user_models()
  gan = QAGAN(g, d, LATENT, penalty="niqe", disc_iters=2, drift_weight=1e-3, ema_decay=0.9,
              augment="ada", ada_p=0.2, ada_interval=1, ada_kimg=1.0)
  gan.compile(keras.optimizers.Adam(1e-3, 0.0, 0.9), keras.optimizers.Adam(1e-3, 0.0, 0.9))
  epochs = Epochs()
  callbacks = [keras.callbacks.BackupAndRestore(os.path.join(directory, "backup")), epochs]
  if os.environ.get("KILL_AT_EPOCH"):
    callbacks.append(Kill(int(os.environ["KILL_AT_EPOCH"]) - 1))
  data = tf.data.Dataset.from_tensor_slices(_images(32)).batch(16, drop_remainder=True)
  gan.fit(data, epochs=4, callbacks=callbacks, verbose=0)
  weights = np.concatenate([v.numpy().ravel() for v in g.variables + d.variables
                            + gan.ema.averages])
  with open(os.path.join(directory, "result.json"), "w") as f:
    json.dump({"epochs_run": epochs.run, "weights": weights.tolist(),
               "d_iterations": int(gan.d_optimizer.iterations),
               "ada_p": float(gan.state.term_states["ada"].p(gan.objective.settings["ada"]))}, f)


if __name__ == "__main__":
  main()
