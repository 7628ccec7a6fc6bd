"""What a QAGAN keeps besides the models and optimizers, as Keras weights (saved by `save`,
`save_weights`, `ModelCheckpoint` and `BackupAndRestore`): the generator's EMA and the training
state (iteration counter, the stateful terms' state, float16 loss scales, the settings'
fingerprint)."""

import keras
import numpy as np

from qagan_tf import compat
from qagan_tf.update import numerics


class EmaWeights(keras.layers.Layer):
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


class TrainingState(keras.layers.Layer):
  """The iteration counter (the latents' and the lazy schedule's), the stateful terms' state
  (`Objective.make_states`: LeCam's anchors) and, under a float16 policy, the dynamic loss
  scales, as weights Keras saves and restores; beside them in the file (not a weight), the JSON
  of `QAGAN.fingerprint`, so that loading the weights of other settings or models is refused."""

  def __init__(self, objective, loss_scaled, fingerprint="", name="training_state"):
    super().__init__(name=name)
    self.fingerprint_json, self.loaded_fingerprint = fingerprint, ""
    self.step = self.add_weight(shape=(), dtype="int64", trainable=False, initializer="zeros",
                                name="step")
    self.term_states = objective.make_states(lambda name: self.add_weight(
        shape=(), dtype="float32", trainable=False, initializer="zeros",
        aggregation="only_first_replica", name=name))
    # The weights of the terms added since files were saved with this layer (ADA's p): a file
    # without them loads with them at 0.
    self._added_since = [v for term in objective.stateful_terms
                         if term.name in compat.TERMS_ADDED_TO_SAVED_STATE
                         for v in term.checkpoint(self.term_states[term.name]).values()]
    self.loss_scales = None
    if loss_scaled:
      def scale(side):
        value = self.add_weight(shape=(), dtype="float32", trainable=False, name=f"{side}_scale",
                                initializer=keras.initializers.Constant(2.0**15))
        good = self.add_weight(shape=(), dtype="int64", trainable=False, initializer="zeros",
                               name=f"{side}_good_steps")
        return numerics.LossScale(scale=value, good_steps=good)
      self.loss_scales = (scale("d"), scale("g"))
    self.built = True

  def save_own_variables(self, store):
    super().save_own_variables(store)
    store["fingerprint"] = np.frombuffer(self.fingerprint_json.encode(), np.uint8)

  def load_own_variables(self, store):
    # By position, as Keras saves them: the step, the terms' state in registry order, the
    # loss scales (the order of the layer's weights since LeCam's anchors were added).
    variables = self._trainable_variables + self._non_trainable_variables
    keys = [k for k in store.keys() if k != "fingerprint"]
    if len(keys) == len(variables) - len(self._added_since):  # Saved before them.
      variables = [v for v in variables if not any(v is a for a in self._added_since)]
    if len(keys) != len(variables):
      raise ValueError(f"the training state holds {len(keys)} values, this one "
                       f"{len(variables)} (float16 loss scales on one side only?)")
    for i, v in enumerate(variables):
      v.assign(store[f"{i}"])
    self.loaded_fingerprint = (bytes(np.asarray(store["fingerprint"], np.uint8)).decode(
        errors="replace") if "fingerprint" in store.keys() else "")


def float16(model):
  policy = getattr(model, "dtype_policy", None)
  return getattr(policy, "compute_dtype", None) == "float16"


class EmaSwap:
  """`QAGAN.ema_weights()`: the EMA weights in the generator inside the block."""

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
