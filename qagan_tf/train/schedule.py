"""Learning-rate schedule: linear decay to 0 over the run (as the authors' code)."""

import keras
import tensorflow as tf


class LinearDecay(keras.optimizers.schedules.LearningRateSchedule):
  """lr(step) = initial * max(0, 1 - step / decay_steps); constant when decay_steps == 0."""

  def __init__(self, initial_learning_rate, decay_steps):
    self.initial_learning_rate = float(initial_learning_rate)
    self.decay_steps = int(decay_steps)

  def __call__(self, step):
    lr = tf.constant(self.initial_learning_rate, tf.float32)
    if self.decay_steps <= 0:
      return lr
    frac = tf.cast(step, tf.float32) / float(self.decay_steps)
    return lr * tf.maximum(0.0, 1.0 - frac)

  def get_config(self):
    return {"initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps}
