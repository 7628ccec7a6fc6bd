"""qagan_tf.gan.QAGAN: a user's Keras GAN trained with compile/fit and the QAGAN objective; one
train_step equals one bin/train iteration; (B, 1) critics; MirroredStrategy; BackupAndRestore
across a SIGKILL."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from qagan_tf import config as config_lib
from qagan_tf import data as data_lib
from qagan_tf.data import sources
from qagan_tf.gan import QAGAN
from qagan_tf.train import builders
from qagan_tf.train import distribution
from qagan_tf.train import trainer as trainer_lib

from tests.gan.models import LATENT, _images, user_models

HERE = os.path.dirname(os.path.abspath(__file__))


def _adam():
  return keras.optimizers.Adam(1e-3, beta_1=0.0, beta_2=0.9)


@pytest.fixture(scope="module")
def fitted():
  """One fit per penalty, 3 steps each (shared by the tests that only read the results)."""
  out = {}
  for penalty in ("wgan_gp", "ssim", "niqe"):
    g, d = user_models()
    gan = QAGAN(g, d, LATENT, penalty=penalty, disc_iters=2, drift_weight=1e-3, ema_decay=0.9)
    gan.compile(_adam(), _adam())
    before = [v.numpy().copy() for v in g.trainable_variables + d.trainable_variables]
    history = gan.fit(tf.data.Dataset.from_tensor_slices(_images()).batch(16, drop_remainder=True),
                      epochs=1, steps_per_epoch=3, verbose=0)
    out[penalty] = (gan, before, history)
  return out


@pytest.mark.slow
@pytest.mark.parametrize("penalty,tag", [("wgan_gp", None), ("ssim", "ssim_penalty"),
                                         ("niqe", "niqe_penalty")])
def test_a_users_keras_gan_trains_with_fit_and_every_penalty(fitted, penalty, tag):
  gan, before, history = fitted[penalty]
  assert int(gan.g_optimizer.iterations) == 3 and int(gan.d_optimizer.iterations) == 6
  for key in ("d_loss", "g_loss", "gp", "wasserstein") + ((tag,) if tag else ()):
    assert key in history.history and np.isfinite(history.history[key]).all(), key
  after = [v.numpy() for v in gan.generator.trainable_variables
           + gan.discriminator.trainable_variables]
  moved = [not np.array_equal(a, b) for a, b in zip(before, after)]
  assert all(moved), moved
  # The EMA trails the weights and is what the callbacks sample.
  with gan.ema_weights() as generator:
    ema = [v.numpy() for v in generator.trainable_variables]
  assert not np.array_equal(ema[0], after[0])
  np.testing.assert_array_equal(gan.generator.trainable_variables[0].numpy(), after[0])


def test_bad_arguments_list_the_valid_ones():
  g, d = user_models()
  with pytest.raises(ValueError, match="Unknown loss 'wgan'; valid losses: wasserstein"):
    QAGAN(g, d, LATENT, loss="wgan")
  with pytest.raises(ValueError, match="Unknown penalty 'nique'; valid penalties: wgan_gp"):
    QAGAN(g, d, LATENT, penalty="nique")
  with pytest.raises(ValueError, match="unknown penalty_settings key.*poolin.*valid: prior"):
    QAGAN(g, d, LATENT, penalty="niqe", penalty_settings={"poolin": "batch"})
  with pytest.raises(ValueError, match=r"penalty_settings\['pooling'\]='mean': use one of"):
    QAGAN(g, d, LATENT, penalty="niqe", penalty_settings={"pooling": "mean"})
  gan = QAGAN(g, d, LATENT, penalty="ssim", disc_iters=5)
  gan.compile(_adam(), _adam())
  with pytest.raises(ValueError, match="batch of 12 images does not split into disc_iters=5"):
    gan.fit(np.zeros((12, 32, 32, 3), np.float32), batch_size=12, epochs=1, verbose=0)


def _trainer_and_gan(tmp_path, penalty="niqe", gp_every=1, qa_every=1, precision="none",
                     disc_iters=2):
  """A bin/train Trainer (tiny ResNet) and a QAGAN of copies of its models, optimizers and
  EMA, starting from identical weights."""
  config = config_lib.TrainConfig.create(
      dataset="embedded", resolution=32, width=4, z_dim=8, batch_size=4, disc_iters=disc_iters,
      penalty=penalty, gp_weight=1.0, qa_weight=0.1, niqe_group_size=4, max_steps=10,
      gp_every=gp_every, qa_every=qa_every, mixed_precision=precision).validate()
  images = sources.embedded_images(32, 16, seed=0)
  trainer = trainer_lib.Trainer(config, str(tmp_path), images=images)
  g, d, _ = builders.build_models(config)
  for ours, theirs in ((g, trainer.generator), (d, trainer.discriminator)):
    for a, b in zip(ours.variables, theirs.variables):
      a.assign(b)
  settings = {"group_size": 4} if penalty == "niqe" else None
  gan = QAGAN(g, d, 8, penalty=penalty, gp_weight=1.0, qa_weight=0.1,
              drift_weight=config.drift_weight, disc_iters=disc_iters,
              ema_decay=config.ema_decay, penalty_settings=settings, g_batch_multiplier=2,
              gp_every=gp_every, qa_every=qa_every)
  gan.compile(builders.make_optimizer(config, config.max_steps * config.disc_iters),
              builders.make_optimizer(config, config.max_steps), jit_compile=False)
  return trainer, gan


@pytest.mark.slow
@pytest.mark.parametrize("penalty,gp_every,qa_every,precision", [
    ("wgan_gp", 1, 1, "none"), ("ssim", 1, 1, "none"), ("niqe", 1, 1, "none"),
    ("niqe", 4, 4, "none"), ("ssim", 1, 1, "float16")])
def test_one_train_step_equals_one_trainer_iteration(tmp_path, penalty, gp_every, qa_every,
                                                     precision):
  """The same iteration function on the same inputs: the losses agree to float32 round-off, and
  so do the weights, up to Adam's sign noise (a weight whose true gradient is 0, as G's conv
  biases before batch norm, moves by about +-lr whatever the sign of its round-off gradient).
  Lazy (k = 4 over 3 iterations of 2 D updates: the 1-GP and the penalty on updates 0 and 4),
  and under mixed_float16, where both sides scale the losses (the scales agree too)."""
  trainer, gan = _trainer_and_gan(tmp_path, penalty, gp_every, qa_every, precision)
  lr = trainer.config.lr
  iterator = iter(trainer.distributed_dataset(0))  # The pipeline's inputs of iterations 0, 1, 2.
  tag = {"wgan_gp": "gp", "ssim": "ssim_penalty", "niqe": "niqe_penalty"}[penalty]
  for _ in range(3 if gp_every > 1 else 1):
    inputs = next(iterator)
    expected, counts = trainer.train_step(iter([inputs]), with_counts=True)
    for tracker in gan.metrics:  # A fresh mean per step, as the trainer's step means.
      tracker.reset_state()
    got = gan.train_step(inputs)
    for key in ("d_loss", "g_loss", "gp", tag, "wasserstein"):
      if counts[key] > 0:
        # g_loss follows the D updates: Adam's sign noise moves it by ~1e-6 absolute; float16
        # scores (|D| ~ 0.5) differ by their round-off between a graph and eager execution.
        half = precision == "float16"
        np.testing.assert_allclose(float(got[key]), float(expected[key]), rtol=1e-3 if half
                                   else 1e-5, atol=1e-4 if half else 1e-5, err_msg=key)
      assert float(gan._trackers[key].count) == pytest.approx(float(counts[key])), key
  for name, ours, theirs in (("G", gan.generator, trainer.generator),
                             ("D", gan.discriminator, trainer.discriminator)):
    for a, b in zip(ours.variables, theirs.variables):
      np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=2.5 * lr, err_msg=name)
  for a, b in zip(gan.ema.averages, trainer.ema_generator.variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=2.5 * lr)
  if precision == "float16":
    d_scale, g_scale = gan.state.loss_scales
    assert float(d_scale.value()) == float(trainer.d_loss_scale.value())
    assert float(g_scale.value()) == float(trainer.g_loss_scale.value())
    assert int(d_scale.good_steps.numpy()) == int(trainer.d_loss_scale.good_steps.numpy()) > 0


@pytest.mark.slow
def test_fit_regularises_exactly_the_d_updates_of_bin_trains_lazy_schedule(tmp_path):
  """gp_every = qa_every = 4 and 3 D updates per iteration: D updates 0, 4, 8 of the first 12
  carry the 1-GP and the quality penalty, counted over the whole fit, in QAGAN.fit as in
  bin/train (an iteration with none, one and the wrap-around are all in it). The schedule does
  not depend on the penalty: SSIM's graph is the cheapest to trace."""
  trainer, gan = _trainer_and_gan(tmp_path, "ssim", 4, 4, disc_iters=3)
  iterations = 5
  due = [n for n in range(3 * iterations) if n % 4 == 0]
  assert due == [0, 4, 8, 12]
  per_iteration = [sum(1 for n in due if n // 3 == i) for i in range(iterations)]
  assert per_iteration == [1, 1, 1, 0, 1]
  dataset = data_lib.make_dataset(trainer.load_data(), trainer.input_spec, 0)
  iterator = iter(trainer.distributed_dataset(0))
  ours = [trainer.train_step(iterator, with_counts=True)[1] for _ in range(iterations)]

  class Counts(keras.callbacks.Callback):  # One step per epoch: the trackers count one step.
    seen = []

    def on_epoch_end(self, epoch, logs=None):
      self.seen.append({k: float(self.model._trackers[k].count) for k in ("gp", "ssim_penalty",
                                                                          "d_loss")})
  gan.fit(dataset, epochs=iterations, steps_per_epoch=1, callbacks=[Counts()], verbose=0)
  for name in ("gp", "ssim_penalty"):
    assert [int(c[name]) for c in ours] == per_iteration, name
    assert [int(c[name]) for c in Counts.seen] == per_iteration, name
  assert [int(c["d_loss"]) for c in Counts.seen] == [3] * iterations  # Every update.


def test_a_penalty_function_of_your_own_trains_through_fit():
  def gradient_energy(input_gradients, real, fake, d_real, d_fake):
    del real, fake, d_real, d_fake
    return tf.reduce_mean(tf.square(input_gradients), axis=[1, 2, 3])

  g, d = user_models()
  gan = QAGAN(g, d, LATENT, penalty=gradient_energy, disc_iters=2, qa_weight=10.0)
  gan.compile(_adam(), _adam())
  assert gan.quality_penalty.needs_input_gradient
  before = [v.numpy().copy() for v in d.trainable_variables]
  history = gan.fit(tf.data.Dataset.from_tensor_slices(_images()).batch(16, drop_remainder=True),
                    epochs=1, steps_per_epoch=2, verbose=0)
  values = history.history["qa_penalty"]
  assert len(values) == 1 and np.isfinite(values[0]) and values[0] > 0
  assert all(not np.array_equal(b, v.numpy()) for b, v in zip(before, d.trainable_variables)
             if "kernel" in v.path)  # (The critic's last bias cancels in D(x) - D(G(z)).)
  with pytest.raises(ValueError, match="penalty_settings apply to a named penalty"):
    QAGAN(g, d, LATENT, penalty=gradient_energy, penalty_settings={"power": 2})


def test_a_registry_entry_without_a_builder_is_refused_at_construction(monkeypatch):
  from qagan_tf.objectives import penalties, penalty_api
  monkeypatch.setitem(penalties.PENALTIES, "half_done", penalty_api.PenaltyEntry(build=None))
  g, d = user_models()
  with pytest.raises(ValueError, match="penalty 'half_done' has no builder.*build=.*settings, "
                                       "resolution"):
    QAGAN(g, d, LATENT, penalty="half_done")
  with pytest.raises(ValueError, match="penalty 'half_done' has no builder"):
    config_lib.TrainConfig.create(dataset="embedded", penalty="half_done").validate()


def test_a_critic_returning_b_by_1_gives_the_same_losses_as_one_returning_b():
  results = []
  for flat in (False, True):
    g, d = user_models(flat_scores=flat)
    gan = QAGAN(g, d, LATENT, penalty="ssim", disc_iters=2, drift_weight=1e-3)
    gan.compile(_adam(), _adam())
    out = gan.train_step(tf.constant(_images(8)))
    results.append({k: float(v) for k, v in out.items()})
  assert results[0].keys() == results[1].keys()
  for key in results[0]:
    assert results[0][key] == pytest.approx(results[1][key], rel=1e-6, abs=1e-8), key


@pytest.mark.slow
def test_fit_under_mirrored_strategy_equals_one_device():
  """2 logical CPUs, SGD (linear in the gradient): the global-batch averaging of the step makes
  the summed replica updates the single-device one; latents and real batches are drawn over the
  global batch, so both see the same inputs."""
  devices = [dev.name for dev in tf.config.list_logical_devices("CPU")][:2]
  data = tf.data.Dataset.from_tensor_slices(_images(16)).batch(16, drop_remainder=True)
  weights = []
  for strategy in (tf.distribute.get_strategy(), distribution.mirrored_strategy(devices)):
    with strategy.scope():
      g, d = user_models(seed=3)
      gan = QAGAN(g, d, LATENT, penalty="niqe", disc_iters=2, drift_weight=1e-3,
                  penalty_settings={"group_size": 4})
      gan.compile(keras.optimizers.SGD(0.05), keras.optimizers.SGD(0.05))
    history = gan.fit(data, epochs=1, verbose=0)
    weights.append(([v.numpy() for v in g.variables + d.variables], history.history))
  (single, h1), (mirrored, h2) = weights
  for a, b in zip(single, mirrored):  # One step (2 D updates): float32 round-off of the sums.
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  for key in ("d_loss", "g_loss", "niqe_penalty"):
    assert h1[key][0] == pytest.approx(h2[key][0], rel=1e-4), key


@pytest.mark.slow
def test_backup_and_restore_resumes_a_fit_killed_by_sigkill_at_epoch_k(tmp_path):
  script = os.path.join(HERE, "fit_with_backup.py")

  def start(directory, kill_at=None):
    """A fit started in its own process, its output into a file (a pipe that nobody reads
    while the other fit runs could fill and stall it)."""
    env = dict(os.environ, KILL_AT_EPOCH=str(kill_at) if kill_at is not None else "")
    log = open(f"{directory}.{'killed' if kill_at else 'run'}.log", "w+")
    return subprocess.Popen([sys.executable, script, str(directory)], env=env, stdout=log,
                            stderr=subprocess.STDOUT), log

  def finish(started):
    """(exit status, output) of a started fit, once it has ended."""
    proc, log = started
    with log:
      proc.wait(timeout=900)
      log.seek(0)
      return proc.returncode, log.read()

  # The straight fit and the one to be killed are independent: they run side by side.
  straight, killed = start(tmp_path / "straight"), start(tmp_path / "killed", kill_at=2)
  (status, stderr), (killed_status, killed_stderr) = finish(straight), finish(killed)
  assert status == 0, stderr[-3000:]
  assert killed_status == -9, killed_stderr[-3000:]  # SIGKILL at the end of epoch 2.
  assert not (tmp_path / "killed" / "result.json").exists()
  status, stderr = finish(start(tmp_path / "killed"))
  assert status == 0, stderr[-3000:]
  with open(tmp_path / "straight" / "result.json") as f:
    a = json.load(f)
  with open(tmp_path / "killed" / "result.json") as f:
    b = json.load(f)
  assert b["epochs_run"] == [2, 3] and a["epochs_run"] == [0, 1, 2, 3]  # It resumed at epoch 2.
  np.testing.assert_allclose(b["weights"], a["weights"], rtol=1e-5, atol=1e-6)
  assert b["d_iterations"] == a["d_iterations"]
  # ADA's p, saved with the weights, resumed where it was and moved on as in the straight fit.
  assert b["ada_p"] == pytest.approx(a["ada_p"], abs=1e-6) and a["ada_p"] != pytest.approx(0.2)
