"""The PyTorch peer of bin/benchmark computes our WGAN-GP's function: on tiny shared weights the
critic and generator losses agree to 1e-5 and their gradients to float32 round-off."""

import numpy as np
import pytest
import tensorflow as tf
import torch

from qagan_tf import config as config_lib
from qagan_bench import torch_peer
from qagan_tf.objectives import losses
from qagan_tf.objectives.objective import Objective
from qagan_tf.train import step


def _config(**kw):
  values = dict(dataset="embedded", resolution=32, width=8, z_dim=8, batch_size=4,
                gp_weight=10.0, drift_weight=1e-3, disc_iters=2)
  values.update(kw)
  return config_lib.TrainConfig.create(**values).validate()


def _conv_grad(module):
  return module.weight.grad.numpy().transpose(2, 3, 1, 0)  # OIHW -> Keras HWIO.


def _close(ours, theirs, what):
  scale = max(np.abs(ours).max(), 1e-12)
  np.testing.assert_allclose(theirs / scale, ours / scale, atol=1e-4, err_msg=what)


def test_the_peer_computes_our_losses_and_gradients():
  config = _config()
  g, d = torch_peer.keras_models(config, seed=3)
  tg, td = torch_peer.build(g, d)
  rng = np.random.default_rng(0)
  real = rng.uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
  z = rng.normal(size=(4, 8)).astype(np.float32)
  eps = rng.uniform(size=4).astype(np.float32)
  objective = Objective(loss=losses.get_loss("wasserstein"), gp_weight=10.0, drift_weight=1e-3)
  loss, grads, _, _ = step.discriminator_gradients(g, d, tf.constant(real), tf.constant(z),
                                                   tf.constant(eps), objective,
                                                   global_batch_size=4)
  theirs = torch_peer.discriminator_loss(tg, td, torch_peer.to_nchw(real), torch.from_numpy(z),
                                         torch.from_numpy(eps), 10.0, 1e-3)
  theirs.backward()
  assert abs(theirs.item() - float(loss)) <= 1e-5 * max(1.0, abs(float(loss)))
  by_variable = {id(v): gr.numpy() for v, gr in zip(d.trainable_variables, grads)}
  _close(by_variable[id(d.dense.kernel)], td.dense.weight.grad.numpy().T, "D dense")
  _close(by_variable[id(d.blocks[0].conv1.kernel)], _conv_grad(td.blocks[0].conv1), "D conv")
  _close(by_variable[id(d.blocks[-1].conv2.kernel)], _conv_grad(td.blocks[-1].conv2),
         "D last conv")

  z_gen = rng.normal(size=(8, 8)).astype(np.float32)
  g_loss, g_grads = step.generator_gradients(g, d, tf.constant(z_gen),
                                             losses.get_loss("wasserstein"), global_batch_size=8)
  theirs = torch_peer.generator_loss(tg, td, torch.from_numpy(z_gen))
  theirs.backward()
  assert abs(theirs.item() - float(g_loss)) <= 1e-5 * max(1.0, abs(float(g_loss)))
  by_variable = {id(v): gr.numpy() for v, gr in zip(g.trainable_variables, g_grads)}
  _close(by_variable[id(g.dense.kernel)], tg.dense.weight.grad.numpy().T, "G dense")
  _close(by_variable[id(g.blocks[0].conv1.kernel)], _conv_grad(tg.blocks[0].conv1), "G conv")
  _close(by_variable[id(g.blocks[0].bn1.gamma)], tg.blocks[0].bn1.weight.grad.numpy(), "G BN")


def test_the_peer_trains_and_refuses_what_it_is_not():
  config = _config()
  g, d = torch_peer.keras_models(config)
  trainer = torch_peer.Trainer(g, d, config, "channels_last")
  before = [p.detach().clone() for p in trainer.d.parameters()]
  d_loss, g_loss = trainer.iteration()
  assert np.isfinite(d_loss) and np.isfinite(g_loss)
  assert all(not torch.equal(a, b) for a, b in zip(before, trainer.d.parameters()))
  with pytest.raises(ValueError, match="--loss=hinge --d_norm=spectral"):
    torch_peer.check_architecture(_config(loss="hinge", d_norm="spectral", gp_weight=0.0))
