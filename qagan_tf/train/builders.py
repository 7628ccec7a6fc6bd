"""The models and optimizers of a run, built from its configuration."""

import keras

from qagan_tf import models
from qagan_tf.train import optimizers
from qagan_tf.train import schedule

_POLICIES = {"none": None, "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def build_models(config):
  """Builds (generator, discriminator, ema_generator) of config.architecture (the registry in
  qagan_tf/models/registry.py) with all variables created.

  The EMA generator starts as a copy of the generator. With config.mixed_precision, G and D
  compute in 16 bits (Keras mixed policy: float32 weights, 16-bit activations, float32 outputs);
  the EMA generator stays float32 throughout (samples and evaluation). With
  config.d_norm == "spectral", every layer of D is spectrally normalised.
  """
  policy = _POLICIES[config.mixed_precision]
  settings = models.settings_of(config)  # The architecture's own, if it has any.
  previous = keras.config.dtype_policy()
  if policy:
    keras.config.set_dtype_policy(policy)
  try:
    generator = models.build_generator(config.architecture, config.resolution,
                                       config.generator_width, config.z_dim, settings=settings)
    discriminator = models.build_discriminator(
        config.architecture, config.resolution, config.discriminator_width,
        spectral_norm=config.d_norm == "spectral", settings=settings)
  finally:
    keras.config.set_dtype_policy(previous)
  ema_generator = models.build_generator(config.architecture, config.resolution,
                                         config.generator_width, config.z_dim,
                                         model_name="ema_generator", settings=settings)
  for model in (generator, discriminator, ema_generator):
    model.build_for_inference()
  for ema, value in zip(ema_generator.variables, generator.variables):
    ema.assign(value)
  return generator, discriminator, ema_generator


def make_optimizer(config, decay_steps):
  """Adam with the configured betas and learning rate, decayed linearly over decay_steps when
  config.lr_decay == "linear" (`optimizers.FusedAdam`: Keras' Adam as one kernel per
  variable)."""
  lr = schedule.LinearDecay(config.lr, decay_steps if config.lr_decay == "linear" else 0)
  return optimizers.FusedAdam(learning_rate=lr, beta_1=config.beta1, beta_2=config.beta2,
                              epsilon=1e-8)
