"""QAGAN as solid as bin/train: its arguments checked by bin/train's rules, fit's first batch
checked before any training, save/load_model round trips, ModelCheckpoint, evaluate's
test_step, and weights of another QAGAN refused with the difference named."""

import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from qagan_tf import config as config_lib
from qagan_tf.gan import QAGAN

from tests.gan.models import LATENT, _images, user_models


def _adam():
  return keras.optimizers.Adam(1e-3, beta_1=0.0, beta_2=0.9)


def _compiled(penalty="ssim", disc_iters=2, seed=0, **kwargs):
  g, d = user_models(seed=seed)
  gan = QAGAN(g, d, LATENT, penalty=penalty, disc_iters=disc_iters, ema_decay=0.9, **kwargs)
  gan.compile(_adam(), _adam())
  return gan


def _values(gan):
  return [v.numpy().copy() for v in gan.variables + gan.d_optimizer.variables
          + gan.g_optimizer.variables]


def _same(before, gan):
  return all(np.array_equal(a, b.numpy()) for a, b in zip(
      before, gan.variables + gan.d_optimizer.variables + gan.g_optimizer.variables))


@pytest.mark.parametrize("name,value", [("ema_decay", 1.5), ("gp_weight", -1.0),
                                        ("qa_weight", float("nan")), ("disc_iters", 0),
                                        ("r1_every", 0), ("lecam_decay", 1.0)])
def test_arguments_are_checked_with_bin_trains_rules_and_words(name, value):
  g, d = user_models()
  with pytest.raises(ValueError) as ours:
    QAGAN(g, d, LATENT, **{name: value})
  with pytest.raises(ValueError) as cli:  # The same rule, the same message.
    config_lib.TrainConfig.create(**{name: value}).validate()
  assert str(ours.value) == str(cli.value), (str(ours.value), str(cli.value))
  assert f"{name}=" in str(ours.value)


def test_other_bad_arguments_name_themselves():
  g, d = user_models()
  for kwargs, match in (({"latent_dim": 0}, "latent_dim=0 must be a positive integer"),
                        ({"augment": "colour"}, "augment: .*colour"),
                        ({"qa_points": "middle"}, "qa_points='middle': use one of"),
                        ({"penalty": 3}, "penalty must be a name"),
                        ({"seed": 1.5}, "seed=1.5 must be an integer")):
    args = dict(latent_dim=LATENT)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
      QAGAN(g, d, **args)
  with pytest.raises(ValueError, match="generator must be a keras.Model"):
    QAGAN("g", d, LATENT)
  gan = QAGAN(g, d, LATENT)
  with pytest.raises(ValueError, match="d_optimizer must be a keras.optimizers.Optimizer"):
    gan.compile("adam", _adam())
  with pytest.raises(ValueError, match="compile.* before fit"):
    QAGAN(*user_models(), LATENT).fit(_images(8), batch_size=8, verbose=0)


@pytest.fixture(scope="module")
def fitted():
  gan = _compiled(disc_iters=2)
  gan.fit(tf.data.Dataset.from_tensor_slices(_images(32)).batch(16, drop_remainder=True),
          epochs=1, steps_per_epoch=2, verbose=0)
  return gan


@pytest.mark.parametrize("case,data,batch_size,match", [
    ("tf.data batch of 8, disc_iters 5", "tfdata8", None, "a batch of 8 images does not split "
     "into disc_iters=5"),
    ("uint8", "uint8", 10, "uint8 images.*scale to \\[-1, 1\\]"),
    ("floats in [0, 255]", "x255", 10, "values in \\[.*255\\].*scale to \\[-1, 1\\]"),
    ("grayscale", "gray", 10, "shape \\(10, 32, 32, 1\\).*generator makes \\(B, 32, 32, 3\\)"),
    ("NCHW", "nchw", 10, "NCHW\\? the critic takes NHWC"),
    ("numpy, 23 images in batches of 10", "numpy23", 10, "has 23 images: its last batch of 3 "
     "does not split into disc_iters=5"),
])
def test_fit_checks_the_first_batch_before_training(case, data, batch_size, match):
  gan = _compiled(disc_iters=5)
  images = _images(25)
  data = {"tfdata8": tf.data.Dataset.from_tensor_slices(images).batch(8),
          "uint8": ((images + 1) * 127.5).astype(np.uint8)[:20],
          "x255": ((images + 1) * 127.5)[:20], "gray": images[:20, ..., :1],
          "nchw": np.transpose(images[:20], (0, 3, 1, 2)), "numpy23": images[:23]}[data]
  before = _values(gan)
  with pytest.raises(ValueError, match=match):
    gan.fit(data, batch_size=batch_size, epochs=1, verbose=0)
  assert _same(before, gan), case  # Nothing trained.


def test_a_model_already_fit_gets_the_same_clear_error(fitted):
  with pytest.raises(ValueError, match="a batch of 15 images does not split into disc_iters=2"):
    fitted.fit(_images(15), batch_size=15, epochs=1, verbose=0)
  gan = _compiled(disc_iters=16)
  with pytest.raises(ValueError, match="a batch of 8 images does not split into disc_iters=16"):
    gan.fit(_images(8), batch_size=8, epochs=1, verbose=0)


def test_save_and_load_model_round_trip_to_the_next_train_step(fitted, tmp_path):
  path = str(tmp_path / "gan.keras")
  fitted.save(path)
  loaded = keras.models.load_model(path)  # No custom_objects: QAGAN is registered.
  assert isinstance(loaded, QAGAN) and loaded.ema is not None
  assert loaded.fingerprint() == fitted.fingerprint()
  z = tf.random.stateless_normal([4, LATENT], [3, 4])
  np.testing.assert_array_equal(loaded.generator(z).numpy(), fitted.generator(z).numpy())
  with loaded.ema_weights() as g1, fitted.ema_weights() as g2:
    np.testing.assert_array_equal(g1(z).numpy(), g2(z).numpy())
  assert int(loaded.state.step.numpy()) == int(fitted.state.step.numpy()) == 2
  assert int(loaded.d_optimizer.iterations.numpy()) == int(fitted.d_optimizer.iterations.numpy())
  batch = tf.constant(_images(16))
  for tracker in fitted.metrics + loaded.metrics:  # The step's own means, not the fit's.
    tracker.reset_state()
  a, b = fitted.train_step(batch), loaded.train_step(batch)
  for key in ("d_loss", "g_loss", "gp", "ssim_penalty"):
    np.testing.assert_allclose(float(a[key]), float(b[key]), rtol=1e-5, err_msg=key)
  for x, y in zip(fitted.generator.variables + fitted.discriminator.variables,
                  loaded.generator.variables + loaded.discriminator.variables):
    np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-5, atol=1e-7)


def test_model_checkpoint_writes_keras_and_weights_files(tmp_path):
  gan = _compiled()
  callbacks = [keras.callbacks.ModelCheckpoint(str(tmp_path / "m_{epoch}.keras")),
               keras.callbacks.ModelCheckpoint(str(tmp_path / "w_{epoch}.weights.h5"),
                                               save_weights_only=True)]
  gan.fit(_images(16), batch_size=16, epochs=2, verbose=0, callbacks=callbacks)
  for name in ("m_1.keras", "m_2.keras", "w_1.weights.h5", "w_2.weights.h5"):
    assert (tmp_path / name).stat().st_size > 1000, name
  other = _compiled()
  other.load_weights(str(tmp_path / "w_2.weights.h5"))
  np.testing.assert_array_equal(other.generator.variables[0].numpy(),
                                gan.generator.variables[0].numpy())
  assert isinstance(keras.models.load_model(str(tmp_path / "m_2.keras")), QAGAN)


def test_a_model_keras_cannot_serialise_is_one_error_and_no_file(tmp_path):
  class Critic(keras.Model):  # A subclass without get_config().
    def __init__(self, arg):
      super().__init__()
      self.arg, self.dense = arg, keras.layers.Dense(1)

    def call(self, x):
      return self.dense(tf.reshape(x, [tf.shape(x)[0], -1]))

  g, _ = user_models()
  gan = QAGAN(g, Critic(3), LATENT, penalty="wgan_gp", disc_iters=2)
  gan.compile(_adam(), _adam())
  path = tmp_path / "gan.keras"
  with pytest.raises(ValueError, match="cannot be serialised.*Nothing was written"):
    gan.save(str(path))
  fn_gan = QAGAN(*user_models(), LATENT, penalty=lambda g, r, f, a, b: a * 0.0, disc_iters=2)
  fn_gan.compile(_adam(), _adam())
  with pytest.raises(ValueError, match="function penalty cannot be serialised"):
    fn_gan.save(str(path))
  assert os.listdir(tmp_path) == []  # Neither the file nor a temporary one.


def test_evaluate_reports_the_critic_on_held_out_images_and_changes_nothing(fitted):
  before = _values(fitted)
  result = fitted.evaluate(_images(32)[16:], batch_size=8, verbose=0, return_dict=True)
  assert set(result) == {"d_loss", "wasserstein"}
  assert all(np.isfinite(v) for v in result.values())
  assert _same(before, fitted)
  with pytest.raises(ValueError, match="uint8 images"):
    fitted.evaluate(((_images(8) + 1) * 127.5).astype(np.uint8), batch_size=8, verbose=0)


def test_backup_and_restore_refuses_another_critic_or_other_settings(tmp_path):
  backup = str(tmp_path / "backup")
  gan = _compiled(penalty="ssim")
  data = tf.data.Dataset.from_tensor_slices(_images(16)).batch(16)

  class Stop(keras.callbacks.Callback):  # Leave a backup behind, as a killed fit would.
    def on_epoch_end(self, epoch, logs=None):
      if epoch == 0:
        raise KeyboardInterrupt
  with pytest.raises(KeyboardInterrupt):
    gan.fit(data, epochs=3, verbose=0,
            callbacks=[keras.callbacks.BackupAndRestore(backup), Stop()])
  assert glob.glob(os.path.join(backup, "*.weights.h5"))
  other = _compiled(penalty="niqe")
  before = _values(other)
  with pytest.raises(ValueError, match="other settings or models .*penalty: 'ssim' there, "
                                       "'niqe' here"):
    other.fit(data, epochs=3, verbose=0, callbacks=[keras.callbacks.BackupAndRestore(backup)])
  assert _same(before, other)
  g, _ = user_models()
  wide = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 4, 2),
                           keras.layers.Flatten(), keras.layers.Dense(1)])
  third = QAGAN(g, wide, LATENT, penalty="ssim", disc_iters=2, ema_decay=0.9)
  third.compile(_adam(), _adam())
  before = _values(third)
  with pytest.raises(ValueError, match="discriminator: .Sequential: 6 weights, 3481 values. "
                                       "there, .Sequential: 4 weights, 1097 values. here"):
    third.fit(data, epochs=3, verbose=0, callbacks=[keras.callbacks.BackupAndRestore(backup)])
  assert _same(before, third)


def test_summary_counts_the_ema_as_the_generators_weights(fitted):
  lines = []
  fitted.summary(print_fn=lines.append)
  text = "\n".join(lines)
  g_params = sum(int(np.prod(v.shape)) for v in fitted.generator.weights)
  ema_line = next(line for line in text.splitlines() if "ema (" in line)
  assert f"{g_params:,}" in ema_line and "unbuilt" not in text


def test_a_keras_file_saved_before_the_terms_were_modules_loads_and_trains_on():
  """tests/gan/qagan_before_terms.keras was saved by commit 07bd2c9 (QAGAN with ssim, R1 every
  2nd update, LeCam and drift; 2 iterations of fit): its settings come back by their flag
  names, its LeCam anchors and step are the saved ones, and it trains on."""
  import os
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "qagan_before_terms.keras")
  gan = keras.models.load_model(path)
  config = gan.get_config()
  assert (config["gp_weight"], config["qa_weight"], config["r1_weight"], config["r1_every"],
          config["lecam_weight"], config["lecam_decay"], config["drift_weight"]) == (
              2.0, 0.3, 0.05, 2, 0.1, 0.95, 1e-3)
  assert gan.objective.gradient_terms() == {"interpolates": ["gp"], "real": ["r1"]}
  assert int(gan.state.step.numpy()) == 2
  anchors = [float(v) for v in gan.state.term_states["lecam"].values()]
  assert anchors == pytest.approx([0.0481734723, 0.000188027654], rel=1e-6)
  history = gan.fit(_images(8), batch_size=4, epochs=1, verbose=0).history
  assert np.isfinite(history["lecam"][0]) and int(gan.state.step.numpy()) == 4


@pytest.mark.slow
def test_a_new_process_loads_a_keras_file_after_importing_qagan_tf_gan_as_documented():
  """docs/library.md: in a new process, load_model needs `import qagan_tf.gan` (issue 45: it
  failed with "Could not locate class 'QAGAN'"); without it, Keras's error names the module."""
  import subprocess
  import sys
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "qagan_before_terms.keras")
  code = ("import sys, keras\n"
          "try:\n  keras.models.load_model(sys.argv[1])\n"
          "except TypeError as e:\n  print('WITHOUT', 'qagan_tf.gan.model' in str(e))\n"
          "import qagan_tf.gan\n"
          "print('WITH', type(keras.models.load_model(sys.argv[1])).__name__)\n")
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  proc = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                        cwd=root, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.split() == ["WITHOUT", "True", "WITH", "QAGAN"], proc.stdout


def test_a_diverging_fit_stops_naming_the_largest_weight_and_an_empty_dataset_is_named():
  """As bin/train stops at a non-finite loss, fit raises at the first one, naming the weights
  in play, largest first (issue 45: it returned normally with d_loss=[nan] and every update
  skipped); an empty dataset is one ValueError, not a bare StopIteration; a tf.data.Dataset is
  not 'shuffled' (Keras warned at every fit that shuffle=True is ignored)."""
  import warnings
  g, d = user_models()
  gan = QAGAN(g, d, LATENT, penalty="ssim", qa_weight=1e30, disc_iters=2)
  gan.compile(_adam(), _adam(), jit_compile=False)
  data = tf.data.Dataset.from_tensor_slices(_images(16)).batch(8, drop_remainder=True)
  with pytest.raises(FloatingPointError, match=r"stopped at step (\d): the critic loss is nan.*"
                     r"largest weights in play: qa_weight=1e\+30, gp_weight=1;") as stopped:
    gan.fit(data, epochs=3, verbose=0)
  step = int(gan.state.step.numpy())
  assert f"stopped at step {step}:" in str(stopped.value) and step < 6  # Not after 3 epochs.
  with pytest.raises(ValueError, match="x is an empty tf.data.Dataset"):
    gan.fit(data.take(0), verbose=0)
  with pytest.raises(ValueError, match=r"x holds no images \(shape \(0, 32, 32, 3\)\)"):
    gan.fit(_images(8)[:0], verbose=0)
  calm = QAGAN(*user_models(), LATENT, penalty="wgan_gp", disc_iters=2)
  calm.compile(_adam(), _adam(), jit_compile=False)
  with warnings.catch_warnings():
    warnings.simplefilter("error", UserWarning)
    calm.fit(data, epochs=1, verbose=0)


@pytest.mark.slow
def test_the_evaluation_callback_logs_any_metric_of_the_table_a_new_one_included(monkeypatch):
  """EvaluationCallback computes metrics of metrics/table.py through bin/evaluate's function
  (`evaluation.evaluate_generator`, `sampling`'s latents), of the EMA generator: FID as one
  computes it by hand from the same samples, KID from the reference activations, and a metric
  added to the table (the recipe's one entry) reaches fit's logs with no other edit.
  FIDCallback is its FID-only alias. Metrics the inputs cannot give are refused before fit."""
  from qagan_tf import sampling
  from qagan_tf.data import sources
  from qagan_tf.gan import EvaluationCallback, FIDCallback
  from qagan_tf.metrics import features
  from qagan_tf.metrics import fid as fid_lib
  from qagan_tf.metrics import table
  from tests import reference
  weights = reference.reference_path("inception", "fid_inception_2015_12_05_pool3.npz")
  extractor = features.InceptionFeatures(weights, with_logits=False)
  stats = extractor.statistics([sources.embedded_images(32, 16, seed=5)], total=16,
                               keep_logits=False, keep_activations=16)
  brightness = table.Metric("brightness", "brightness", 1.0, "eval/brightness", True,
                            lambda x: None if x.samples is None else float(np.mean(x.samples)),
                            needs=("samples",))
  monkeypatch.setattr(table, "METRICS", table.METRICS + (brightness,))
  monkeypatch.setitem(table.BY_KEY, "brightness", brightness)
  table.metric.cache_clear()
  try:
    callback = EvaluationCallback(stats, metrics=("fid", "kid", "brightness"), num_samples=16,
                                  weights=weights, niqe_samples=8)
    fid_only = FIDCallback({"mu": stats["mu"], "sigma": stats["sigma"]}, num_samples=16,
                           weights=weights)
    gan = _compiled(penalty="wgan_gp", disc_iters=1)
    history = gan.fit(tf.data.Dataset.from_tensor_slices(_images(16)).batch(8),
                      epochs=1, steps_per_epoch=1, callbacks=[callback], verbose=0).history
    assert callback.evaluate() == {k: history[k][0] for k in ("fid", "kid", "brightness")}
    fid_only.set_model(gan)
    assert fid_only.evaluate() == {"fid": history["fid"][0]}
    with gan.ema_weights() as g:  # By hand: the latents of `sampling`, one batch of 16.
      samples = images_to_uint8(g(sampling.latents(16, LATENT, 20191209), training=False))
    out = extractor.statistics([samples], total=16, keep_logits=False, keep_activations=16)
    assert history["fid"][0] == pytest.approx(fid_lib.frechet_distance(
        out["mu"], out["sigma"], stats["mu"], stats["sigma"], activations1=out["activations"]),
        rel=1e-6)
    assert history["brightness"][0] == pytest.approx(float(np.mean(samples[:8])))
    assert np.isfinite(history["kid"][0])
    with pytest.raises(ValueError, match="unknown metric 'fdi'.*fid, kid"):
      EvaluationCallback(stats, metrics=("fdi",), weights=weights)
    with pytest.raises(ValueError, match="kid: KID needs the real images' activations"):
      EvaluationCallback({"mu": stats["mu"], "sigma": stats["sigma"]}, metrics=("kid",),
                         weights=weights)
  finally:
    table.metric.cache_clear()


def images_to_uint8(images):
  from qagan_tf.utils import images as images_lib
  return images_lib.to_uint8(images.numpy())
