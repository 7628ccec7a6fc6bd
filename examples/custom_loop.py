#!/usr/bin/env python3
"""The NIQE penalty in a hand-written tf.GradientTape training loop (WGAN-GP critic + QA
penalty), with a user's own small DCGAN, on the embedded images.

  python examples/custom_loop.py --steps=1000
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from examples.keras_dcgan_qagan import LATENT_DIM, dataset, make_discriminator, make_generator  # noqa: E402,E501


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=1000)
  args = parser.parse_args()
  generator, discriminator = make_generator(), make_discriminator()
  d_optimizer = keras.optimizers.Adam(2e-4, beta_1=0.0, beta_2=0.9)
  g_optimizer = keras.optimizers.Adam(2e-4, beta_1=0.0, beta_2=0.9)
  batches = iter(dataset(batch_size=64))

  # [custom loop]
  from qagan_tf import qa

  @tf.function
  def critic_step(real):
    z = tf.random.normal([tf.shape(real)[0], LATENT_DIM])
    with tf.GradientTape() as tape:
      fake = generator(z, training=True)
      d_real, d_fake = discriminator(real), discriminator(fake)
      gp, input_gradients = qa.gradient_penalty(discriminator, real, fake)  # (B,), (B, H, W, C)
      niqe = qa.niqe_penalty(input_gradients)  # (B,), unweighted
      loss = tf.reduce_mean(d_fake - d_real) + tf.reduce_mean(1.0 * gp + 0.1 * niqe)
    grads = tape.gradient(loss, discriminator.trainable_variables)
    d_optimizer.apply_gradients(zip(grads, discriminator.trainable_variables))
    return loss, tf.reduce_mean(niqe)

  @tf.function
  def generator_step(batch_size):
    with tf.GradientTape() as tape:
      loss = -tf.reduce_mean(discriminator(generator(tf.random.normal([batch_size, LATENT_DIM]),
                                                     training=True)))
    grads = tape.gradient(loss, generator.trainable_variables)
    g_optimizer.apply_gradients(zip(grads, generator.trainable_variables))
    return loss
  # [end]

  for step in range(1, args.steps + 1):
    for _ in range(5):
      d_loss, niqe = critic_step(next(batches))
    g_loss = generator_step(64)
    print(f"step {step}: d_loss {float(d_loss):.4f} niqe {float(niqe):.3f} g_loss "
          f"{float(g_loss):.4f}", flush=True)


if __name__ == "__main__":
  main()
