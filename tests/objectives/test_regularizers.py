"""R1, R2, LeCam and their composition with the QA penalties, against hand-written tapes and
NumPy: the public functions, the critic loss the train step computes, the lazy R1 schedule, the
reuse of R1's gradient by a penalty at the real images, LeCam's anchors, and XLA."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from qagan_tf import config as config_lib
from qagan_tf import models, qa
from qagan_tf.objectives import losses, penalties, regularizers
from qagan_tf.objectives.lecam import Anchors
from qagan_tf.objectives.objective import Objective
from qagan_tf.train import step

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _tiny(seed=0):
  keras.utils.set_random_seed(seed)
  g = models.Generator(32, width=4, z_dim=8)
  d = models.Discriminator(32, width=4)
  g.build_for_inference()
  d.build_for_inference()
  return g, d


def _batch(seed=1, n=4):
  rng = np.random.default_rng(seed)
  real = tf.constant(rng.uniform(-1, 1, (n, 32, 32, 3)).astype(np.float32))
  fake = tf.constant(rng.uniform(-1, 1, (n, 32, 32, 3)).astype(np.float32))
  eps = tf.constant(rng.uniform(size=(n,)).astype(np.float32))
  return real, fake, eps


def _hand_gradient(d, x):
  with tf.GradientTape() as tape:
    tape.watch(x)
    s = tf.reduce_sum(d(x))
  return tape.gradient(s, x).numpy()


def test_r1_and_r2_are_the_squared_input_gradient_norms():
  _, d = _tiny()
  real, fake, _ = _batch()
  for fn, x in ((qa.r1_penalty, real), (qa.r2_penalty, fake)):
    per_example, grads = fn(d, x)
    g = _hand_gradient(d, x)
    np.testing.assert_allclose(grads.numpy(), g, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(per_example.numpy(), (g ** 2).sum(axis=(1, 2, 3)), rtol=1e-5)
  # A linear critic: the gradient is its weights everywhere.
  w = np.random.default_rng(0).normal(size=(1, 32, 32, 3)).astype(np.float32)
  linear = lambda x: tf.reduce_sum(w * x, axis=[1, 2, 3])  # noqa: E731
  np.testing.assert_allclose(qa.r1_penalty(linear, real)[0], np.full(4, (w ** 2).sum()),
                             rtol=1e-5)
  with pytest.raises(ValueError, match=r"real has values in \[0, 255\]|real has values in"):
    qa.r1_penalty(d, real * 127.5 + 127.5)


def test_lecam_matches_its_formula():
  d_real, d_fake = np.array([0.5, -1.0, 2.0]), np.array([0.1, 0.3, -0.2])
  value = qa.lecam_penalty(d_real[:, None], d_fake, 0.25, -0.5).numpy()
  np.testing.assert_allclose(value, (d_real + 0.5) ** 2 + (d_fake - 0.25) ** 2, rtol=1e-6)
  with pytest.raises(ValueError, match="anchor_real must be a scalar"):
    qa.lecam_penalty(d_real, d_fake, [0.1, 0.2], 0.0)


def test_the_r3_critic_loss_is_rpgan_plus_r1_plus_r2_as_written_by_hand():
  """RpGAN + gamma/2 R1 + gamma/2 R2 (+ LeCam with its anchors), 1e-5."""
  _, d = _tiny()
  real, fake, eps = _batch()
  objective = Objective(loss=losses.get_loss("rpgan"), gp_weight=0.0, r1_weight=0.2,
                        r2_weight=0.6, lecam_weight=0.3)
  loss, grads, metrics, _ = step.critic_gradients(d, real, fake, eps, objective,
                                                  global_batch_size=4, anchors=(0.1, -0.2))
  d_real, d_fake = d(real).numpy().ravel(), d(fake).numpy().ravel()
  r1 = (_hand_gradient(d, real) ** 2).sum(axis=(1, 2, 3))
  r2 = (_hand_gradient(d, fake) ** 2).sum(axis=(1, 2, 3))
  lecam = (d_real + 0.2) ** 2 + (d_fake - 0.1) ** 2
  expected = np.mean(np.log1p(np.exp(d_fake - d_real)) + 0.1 * r1 + 0.3 * r2 + 0.3 * lecam)
  assert float(loss) == pytest.approx(expected, rel=1e-5)
  assert float(metrics["r1"]) == pytest.approx(r1.mean(), rel=1e-5)
  assert float(metrics["r2"]) == pytest.approx(r2.mean(), rel=1e-5)
  assert float(metrics["lecam"]) == pytest.approx(lecam.mean(), rel=1e-5)
  assert "gp" not in metrics  # No interpolates: nothing reads them.
  assert all(g is None or np.all(np.isfinite(g.numpy())) for g in grads)
  # The gradients are those of the hand-written loss, second-order terms included.
  with tf.GradientTape() as tape:
    s_real, s_fake = tf.reshape(d(real), [-1]), tf.reshape(d(fake), [-1])
    g_real = losses.input_gradients(d, real)
    g_fake = losses.input_gradients(d, fake)
    hand = tf.reduce_mean(tf.nn.softplus(s_fake - s_real)
                          + 0.1 * tf.reduce_sum(g_real ** 2, [1, 2, 3])
                          + 0.3 * tf.reduce_sum(g_fake ** 2, [1, 2, 3])
                          + 0.3 * ((s_real + 0.2) ** 2 + (s_fake - 0.1) ** 2))
  for ours, theirs in zip(grads, tape.gradient(hand, d.trainable_variables)):
    if theirs is not None:
      np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-6)


def test_a_penalty_at_the_real_images_reuses_r1s_gradient():
  config = config_lib.TrainConfig.create(dataset="embedded", resolution=32, penalty="niqe",
                                         niqe_group_size=4).validate()
  penalty = penalties.build_for_config(config)
  objective = Objective(loss=losses.get_loss("rpgan"), gp_weight=0.0, r1_weight=0.2,
                        qa_weight=0.1, quality_penalty=penalty, qa_points="real")
  assert objective.gradient_terms() == {"real": ["r1", "qa"]}  # One gradient, two terms.
  _, d = _tiny()
  real, fake, eps = _batch()
  _, _, metrics, _ = step.critic_gradients(d, real, fake, eps, objective, global_batch_size=4)
  g = tf.constant(_hand_gradient(d, real))
  assert float(metrics["niqe_penalty"]) == pytest.approx(
      float(tf.reduce_mean(qa.niqe_penalty(g, group_size=4))), rel=1e-4)
  at_interpolates = Objective(gp_weight=1.0, r1_weight=0.2, qa_weight=0.1,
                              quality_penalty=penalty)
  assert at_interpolates.gradient_terms() == {"interpolates": ["gp", "qa"], "real": ["r1"]}


@pytest.mark.parametrize("every", [3])
def test_lazy_r1_and_r2_fall_on_every_kth_d_update_weighted_by_k(every):
  _, d = _tiny()
  real, fake, eps = _batch()
  lazy = Objective(loss=losses.get_loss("rpgan"), gp_weight=0.0, r1_weight=0.2, r2_weight=0.4,
                   r1_every=every)
  assert lazy.lazy
  compiled = tf.function(step.critic_gradients)
  carried = []
  for n in range(7):
    loss, _, metrics, computed = compiled(d, real, fake, eps, lazy, global_batch_size=4,
                                          d_update=tf.constant(n, tf.int64))
    due = bool(computed["r1"])
    assert bool(computed["r2"]) == due
    carried.append(n) if due else None
    reference = Objective(loss=losses.get_loss("rpgan"), gp_weight=0.0,
                          r1_weight=0.2 * every if due else 0.0,
                          r2_weight=0.4 * every if due else 0.0)
    ref_loss, _, _, _ = step.critic_gradients(d, real, fake, eps, reference, global_batch_size=4)
    assert float(loss) == pytest.approx(float(ref_loss), rel=1e-5), n
    if not due:
      assert float(metrics["r1"]) == 0.0
  assert carried == [0, 3, 6]


def test_lecam_anchors_follow_ds_mean_scores_through_the_update():
  g, d = _tiny()
  real, _, eps = _batch()
  z = tf.random.stateless_normal([4, 8], [0, 2])
  opt = keras.optimizers.Adam(1e-3)
  opt.build(d.trainable_variables)
  anchors = Anchors()
  objective = Objective(gp_weight=1.0, lecam_weight=0.1, lecam_decay=0.9)
  s_real, s_fake = d(real).numpy().ravel(), d(g(z, training=True)).numpy().ravel()
  d_real, d_fake = float(s_real.mean()), float(s_fake.mean())
  report = step.discriminator_update(g, d, opt, real, z, eps, objective, global_batch_size=4,
                                     lecam=anchors)
  a_real, a_fake = (float(v) for v in anchors.values())
  assert a_real == pytest.approx(0.1 * d_real, rel=1e-4)
  assert a_fake == pytest.approx(0.1 * d_fake, rel=1e-4)
  # The penalty of this update used the anchors before it: 0.
  assert float(report.values["lecam"]) == pytest.approx(np.mean(s_real ** 2 + s_fake ** 2),
                                                        rel=1e-4)
  with pytest.raises(ValueError, match="needs its anchors"):
    step.discriminator_update(g, d, opt, real, z, eps, objective, global_batch_size=4)


@pytest.mark.slow
def test_r1_r2_and_niqe_compile_with_xla(tmp_path):
  from qagan_tf.data import sources
  from qagan_tf.train import trainer as trainer_lib
  config = config_lib.TrainConfig.create(
      dataset="embedded", resolution=32, width=4, z_dim=8, batch_size=4, disc_iters=1,
      loss="rpgan", gp_weight=0.0, r1_weight=0.1, r2_weight=0.1, penalty="niqe",
      qa_weight=0.1, qa_points="real", niqe_group_size=4, jit_compile=True).validate()
  trainer = trainer_lib.Trainer(config, str(tmp_path), images=sources.embedded_images(32, 16, 0))
  assert trainer.update_options.d_gradients is not None  # The compiled critic computation.
  iterator = iter(trainer.distributed_dataset(0))
  for _ in range(2):
    metrics = trainer.train_step(iterator)
    for key in ("d_loss", "g_loss", "r1", "r2", "niqe_penalty"):
      assert np.isfinite(float(metrics[key])), key


def test_docs_training_lists_every_regulariser_with_its_flag_and_reference():
  with open(os.path.join(REPO, "docs", "training.md")) as f:
    text = f.read()
  section = text[text.index("## Regularisers"):]
  for entry in regularizers.REGULARIZERS.values():
    for word in (entry.flag, entry.formula, entry.reference.split(" (")[0]):
      assert word in section, word
  for word in ("--loss=rpgan", "--augment", "--qa_points"):
    assert word in section, word
