"""Index-based, stateless training input: every value is a pure function of (seed, position).

Each element holds one training iteration for one replica: `disc_iters` real batches with their
latent codes and interpolation weights for the discriminator updates, and the latent codes of the
generator update. Global sample n of the run is the image at position index_shuffle(n mod N) of
epoch n // N, flipped and dequantised with noise drawn from seeds derived from the global batch.
So the stream needs no shuffle buffer and no checkpointed iterator: starting the pipeline at
iteration t gives exactly what iterating to t would have, and the global batch is the same for any
number of replicas or workers.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from qagan_tf import augment as augment_lib

# Stream ids folded into the seed so that each random quantity has its own stream.
_SHUFFLE, _FLIP, _DEQUANT, _Z_DISC, _EPS, _Z_GEN, _AUG_REAL, _AUG_FAKE, _AUG_GEN, _AUG_GEN_REAL = (
    range(10))


@dataclasses.dataclass(frozen=True)
class InputSpec:
  """What one training iteration consumes (global sizes)."""
  batch_size: int  # Global real batch of one discriminator update.
  disc_iters: int
  z_dim: int
  g_batch_multiplier: int = 2  # The generator update uses this many times batch_size codes.
  seed: int = 0
  augment: int = 0  # The uniforms per image of the augmentation's random choices (0: none).


def _seed(seed, stream, counter):
  """A stateless seed (shape [2], int64) for one stream at one counter value."""
  base = tf.constant([seed, stream], tf.int64)
  return tf.random.experimental.stateless_fold_in(base, tf.cast(counter, tf.int64))


def _to_float(images_uint8, noise):
  """uint8 [0, 255] + noise in [0, 1) -> float32 in [-1, 1): ((x + u) / 256) * 2 - 1."""
  return (tf.cast(images_uint8, tf.float32) + noise) / 128.0 - 1.0


def iteration_inputs(images, spec, iteration, replica, num_replicas):
  """The inputs of one training iteration for one replica (graph-compatible).

  Args:
    images: uint8 numpy array (N, H, W, 3), the whole training set.
    spec: `InputSpec`.
    iteration: int64 scalar tensor, the generator iteration (0-based).
    replica: int scalar tensor, this replica's index in [0, num_replicas).
    num_replicas: number of replicas in sync (divides spec.batch_size).

  Returns:
    dict with float32 tensors: "real" (disc_iters, B, H, W, 3) in [-1, 1), "z" (disc_iters, B,
    z_dim), "eps" (disc_iters, B) in [0, 1), "z_gen" (multiplier * B, z_dim), where B is the
    per-replica batch.
  """
  n_images = images.shape[0]
  gb, k = spec.batch_size, spec.disc_iters
  b = gb // num_replicas
  lo = tf.cast(replica, tf.int64) * b
  iteration = tf.cast(iteration, tf.int64)
  # Global sample numbers of this iteration's D batches: (k, gb); this replica's columns.
  batch_ids = iteration * k + tf.range(k, dtype=tf.int64)
  samples = batch_ids[:, None] * gb + tf.range(gb, dtype=tf.int64)[None, :]
  samples = samples[:, lo:lo + b]
  epochs = samples // n_images
  # One permutation per epoch: seed (seed, epoch) for the shuffle stream.
  flat_epochs = tf.reshape(epochs, [-1])
  shuffle_seeds = tf.stack([tf.fill(tf.shape(flat_epochs), tf.constant(spec.seed, tf.int64)),
                            flat_epochs, tf.fill(tf.shape(flat_epochs), tf.constant(
                                _SHUFFLE, tf.int64))], axis=1)
  # The raw op: the public wrapper pads a batched [n, 2] seed along the wrong axis (TF 2.21).
  index = tf.raw_ops.RandomIndexShuffle(
      index=tf.reshape(samples % n_images, [-1]), seed=shuffle_seeds,
      max_index=tf.fill(tf.shape(flat_epochs), tf.cast(n_images - 1, tf.int64)), rounds=4)
  h, w, c = images.shape[1:]
  real = tf.numpy_function(lambda i: images[i], [index], tf.uint8, stateful=False)
  real = tf.reshape(real, [k, b, h, w, c])

  per_batch = []
  for j in range(k):
    flip = tf.random.stateless_uniform([gb], _seed(spec.seed, _FLIP, batch_ids[j]))[lo:lo + b]
    noise = tf.random.stateless_uniform([gb, h, w, c],
                                        _seed(spec.seed, _DEQUANT, batch_ids[j]))[lo:lo + b]
    x = _to_float(real[j], noise)
    per_batch.append(tf.where(flip[:, None, None, None] < 0.5, x, x[:, :, ::-1, :]))
  return {"real": tf.stack(per_batch),
          **iteration_latents(spec.seed, iteration, k, gb, spec.z_dim, spec.g_batch_multiplier,
                              replica, num_replicas, spec.augment)}


def iteration_latents(seed, iteration, disc_iters, global_batch, z_dim, g_batch_multiplier=2,
                      replica=0, num_replicas=1, augment=False):
  """The latents and interpolation weights of one training iteration, for one replica: the one
  place they are drawn (bin/train's pipeline and Keras' QAGAN both call it).

  Each is drawn over the global batch from a stateless seed of (seed, stream, iteration) and
  sliced to this replica's part, so the iteration's values do not depend on the number of
  replicas, and a resumed run draws what an uninterrupted one would.

  Args:
    seed: int, the run's seed.
    iteration: int64 scalar, the generator iteration (0-based).
    disc_iters: D updates of the iteration (static).
    global_batch: the D batch summed over replicas (int or int scalar tensor).
    z_dim: the latent size.
    g_batch_multiplier: the G update draws this many times global_batch latents.
    replica, num_replicas: this replica's index and the number in sync.
    augment: the number of uniforms per image of the augmentation's random choices
      (`augment.uniforms_of`: DiffAugment's or ADA's; 0 or False: none), each kind of image's
      from a stream of its own (the other values are the same with or without them; True means
      DiffAugment's, as before ADA).

  Returns:
    {"z": float32 (disc_iters, B, z_dim), "eps": (disc_iters, B) in [0, 1), "z_gen":
    (g_batch_multiplier * B, z_dim)}, B = global_batch // num_replicas; with augment also
    "u_real", "u_fake" (disc_iters, B, U) for the D updates' real and fake images and "u_gen",
    "u_gen_real" (g_batch_multiplier * B, U) for the G update's, U = augment.
  """
  k, m = disc_iters, g_batch_multiplier
  iteration = tf.cast(iteration, tf.int64)
  gb = tf.cast(global_batch, tf.int64)
  b = gb // num_replicas
  lo = tf.cast(replica, tf.int64) * b
  z = tf.random.stateless_normal(tf.stack([gb * k, z_dim]), _seed(seed, _Z_DISC, iteration))
  z = tf.reshape(z, tf.stack([k, gb, z_dim]))[:, lo:lo + b]
  eps = tf.random.stateless_uniform(tf.stack([k, gb]), _seed(seed, _EPS, iteration))
  z_gen = tf.random.stateless_normal(tf.stack([m * gb, z_dim]), _seed(seed, _Z_GEN, iteration))
  out = {"z": z, "eps": eps[:, lo:lo + b], "z_gen": z_gen[m * lo:m * (lo + b)]}
  if augment:
    u = augment_lib.UNIFORMS if augment is True else int(augment)
    for name, stream in (("u_real", _AUG_REAL), ("u_fake", _AUG_FAKE)):
      out[name] = tf.random.stateless_uniform(tf.stack([k, gb, u]),
                                              _seed(seed, stream, iteration))[:, lo:lo + b]
    for name, stream in (("u_gen", _AUG_GEN), ("u_gen_real", _AUG_GEN_REAL)):
      out[name] = tf.random.stateless_uniform(tf.stack([m * gb, u]),
                                              _seed(seed, stream, iteration))[m * lo:m * (lo + b)]
  return out


def make_dataset(images, spec, start_iteration=0, input_context=None):
  """An infinite tf.data.Dataset of per-replica iteration inputs starting at `start_iteration`.

  With an `input_context` (from `strategy.distribute_datasets_from_function`), this pipeline
  produces the elements of the local replicas of its worker, interleaved as tf.distribute expects
  (element t * L + l goes to local replica l).

  Args:
    images: uint8 numpy array (N, H, W, 3).
    spec: `InputSpec`; spec.batch_size must be divisible by the number of replicas.
    start_iteration: first generator iteration to produce (the restored training step).
    input_context: optional `tf.distribute.InputContext`.

  Raises:
    ValueError: if the global batch is not divisible by the number of replicas.
  """
  images = np.ascontiguousarray(images)
  replicas = input_context.num_replicas_in_sync if input_context else 1
  workers = input_context.num_input_pipelines if input_context else 1
  worker = input_context.input_pipeline_id if input_context else 0
  if spec.batch_size % replicas:
    raise ValueError(f"batch_size={spec.batch_size} must be divisible by the number of "
                     f"replicas ({replicas}).")
  local = replicas // workers

  def element(e):
    iteration = e // local
    replica = worker * local + e % local
    return iteration_inputs(images, spec, iteration, replica, replicas)

  ds = tf.data.Dataset.range(start_iteration * local, 2**62)
  ds = ds.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
  return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
