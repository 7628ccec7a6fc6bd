#!/usr/bin/env python3
"""A user's own small DCGAN (not qagan_tf's ResNet) trained with Keras `fit` and the NIQE
penalty, an FID callback (the official Inception) and TensorBoard, on the embedded images.

  python examples/keras_dcgan_qagan.py --epochs=20 --steps_per_epoch=100 --log_dir=runs/dcgan
  python examples/keras_dcgan_qagan.py --mirrored    # the same under tf.distribute.MirroredStrategy
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from qagan_tf.data import sources  # noqa: E402

LATENT_DIM = 64


def make_generator():
  """z (B, 64) -> (B, 32, 32, 3) in [-1, 1]: Dense and Conv2DTranspose, as any DCGAN."""
  return keras.Sequential([
      keras.Input((LATENT_DIM,)),
      keras.layers.Dense(4 * 4 * 128), keras.layers.Reshape((4, 4, 128)),
      keras.layers.BatchNormalization(), keras.layers.ReLU(),
      keras.layers.Conv2DTranspose(64, 4, 2, padding="same"),
      keras.layers.BatchNormalization(), keras.layers.ReLU(),
      keras.layers.Conv2DTranspose(32, 4, 2, padding="same"),
      keras.layers.BatchNormalization(), keras.layers.ReLU(),
      keras.layers.Conv2DTranspose(3, 4, 2, padding="same", activation="tanh")],
      name="generator")


def make_discriminator():
  """(B, 32, 32, 3) -> scores (B, 1): Conv2D and LeakyReLU, no batch norm (gradient penalties
  are per example)."""
  return keras.Sequential([
      keras.Input((32, 32, 3)),
      keras.layers.Conv2D(32, 4, 2, padding="same"), keras.layers.LeakyReLU(0.2),
      keras.layers.Conv2D(64, 4, 2, padding="same"), keras.layers.LeakyReLU(0.2),
      keras.layers.Conv2D(128, 4, 2, padding="same"), keras.layers.LeakyReLU(0.2),
      keras.layers.Flatten(), keras.layers.Dense(1)], name="discriminator")


def dataset(batch_size, count=2048):
  images = sources.embedded_images(32, count, seed=0).astype("float32") / 127.5 - 1.0
  return tf.data.Dataset.from_tensor_slices(images).shuffle(count, seed=0).batch(
      batch_size, drop_remainder=True).repeat()


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=20)
  parser.add_argument("--steps_per_epoch", type=int, default=100)
  parser.add_argument("--batch_size", type=int, default=64, help="Images per critic update.")
  parser.add_argument("--disc_iters", type=int, default=5, help="Critic updates per step.")
  parser.add_argument("--log_dir", default="runs/keras_dcgan_qagan")
  parser.add_argument("--stats", default=None,
                      help="Reference statistics for the FID callback (bin/compute_stats); "
                      "without them, FID against the training images, computed once here.")
  parser.add_argument("--fid_samples", type=int, default=1000)
  parser.add_argument("--fid_every", type=int, default=5, help="Epochs between FIDs.")
  parser.add_argument("--reference_images", type=int, default=1024,
                      help="Without --stats: held-out embedded crops for the FID reference.")
  parser.add_argument("--mirrored", action="store_true",
                      help="Train under tf.distribute.MirroredStrategy (all GPUs, or the CPU).")
  args = parser.parse_args()

  if args.mirrored:
    # [fit under MirroredStrategy]
    from qagan_tf.gan import QAGAN
    strategy = tf.distribute.MirroredStrategy()
    with strategy.scope():
      gan = QAGAN(make_generator(), make_discriminator(), latent_dim=LATENT_DIM,
                  penalty="niqe", gp_weight=1.0, qa_weight=0.1, disc_iters=args.disc_iters)
      gan.compile(d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.0, beta_2=0.9),
                  g_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.0, beta_2=0.9))
    gan.fit(dataset(batch_size=args.batch_size * args.disc_iters), epochs=args.epochs,
            steps_per_epoch=args.steps_per_epoch)
    # [end]
    return
  stats = args.stats or reference_statistics(args.reference_images)
  # [fit]
  from qagan_tf.gan import FIDCallback, QAGAN, SampleGrid
  gan = QAGAN(make_generator(), make_discriminator(), latent_dim=LATENT_DIM, penalty="niqe",
              gp_weight=1.0, qa_weight=0.1, disc_iters=args.disc_iters, ema_decay=0.99)
  gan.compile(d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.0, beta_2=0.9),
              g_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.0, beta_2=0.9))
  history = gan.fit(
      dataset(batch_size=args.batch_size * args.disc_iters),  # One batch per critic update.
      epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
      validation_data=held_out(),  # val_d_loss, val_wasserstein: D overfitting shows here.
      callbacks=[FIDCallback(stats, every_n_epochs=args.fid_every, num_samples=args.fid_samples),
                 SampleGrid(os.path.join(args.log_dir, "samples"), log_dir=args.log_dir),
                 keras.callbacks.TensorBoard(args.log_dir),
                 keras.callbacks.BackupAndRestore(os.path.join(args.log_dir, "backup"))])
  # [end]
  # [save and load]
  gan.save(os.path.join(args.log_dir, "qagan.keras"))  # G, D, EMA, both optimizers, settings.
  gan = keras.models.load_model(os.path.join(args.log_dir, "qagan.keras"))
  print(gan.evaluate(held_out(), return_dict=True, verbose=0))  # The critic on held-out images.
  # [end]
  print({k: [round(float(v), 4) for v in values] for k, values in history.history.items()})


def held_out(count=256):
  """Embedded crops never trained on (another seed), in [-1, 1], batches of 64."""
  images = sources.embedded_images(32, count, seed=7).astype("float32") / 127.5 - 1.0
  return tf.data.Dataset.from_tensor_slices(images).batch(64)


def reference_statistics(count=1024):
  """Inception statistics of held-out embedded crops (for a quick FID without a stats file)."""
  from qagan_tf.metrics import features
  images = sources.embedded_images(32, count, seed=1_000_003)
  out = features.InceptionFeatures(with_logits=False).statistics([images], total=count,
                                                                  keep_logits=False)
  return {"mu": out["mu"], "sigma": out["sigma"]}


if __name__ == "__main__":
  main()
