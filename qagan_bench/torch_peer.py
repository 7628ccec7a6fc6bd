"""The PyTorch peer: the same WGAN-GP ResNet written plainly in PyTorch, as users of PyTorch GAN
libraries run it (n_critic D steps, the 1-GP through autograd.grad(create_graph=True), G updated
on 2 x batch, Adam(beta_1=0, beta_2=0.9)), built from our Keras models' weights.

Only for bin/benchmark's side-by-side training-speed figure (optional: torch is not a dependency
of qagan_tf) and for the test that both compute the same function. Images are NCHW on this side.
"""

import numpy as np

from qagan_tf.models import resnet

# PyTorch settings tried by the benchmark: name -> (channels_last, bfloat16 autocast, compile).
SETTINGS = {
    "eager": (False, False, False),
    "channels_last": (True, False, False),
    "bf16_autocast": (False, True, False),
    "channels_last_bf16_autocast": (True, True, False),
    "compile": (False, False, True),
}


def _torch():
  import torch
  return torch


def build(generator, discriminator):
  """(torch generator, torch discriminator) computing the Keras models' functions with copies of
  their weights (float32, training mode)."""
  torch = _torch()
  nn, F = torch.nn, torch.nn.functional

  def conv(layer):
    kernel = np.asarray(layer.kernel.numpy()).transpose(3, 2, 0, 1)
    module = nn.Conv2d(kernel.shape[1], kernel.shape[0], kernel.shape[2],
                       padding=kernel.shape[2] // 2)
    with torch.no_grad():
      module.weight.copy_(torch.from_numpy(kernel.copy()))
      module.bias.copy_(torch.from_numpy(layer.bias.numpy()))
    return module

  def dense(layer):
    kernel = np.asarray(layer.kernel.numpy())
    module = nn.Linear(*kernel.shape)
    with torch.no_grad():
      module.weight.copy_(torch.from_numpy(kernel.T.copy()))
      module.bias.copy_(torch.from_numpy(layer.bias.numpy()))
    return module

  def batch_norm(layer):
    module = nn.BatchNorm2d(layer.gamma.shape[0], eps=layer.epsilon, momentum=1 - layer.momentum)
    with torch.no_grad():
      module.weight.copy_(torch.from_numpy(layer.gamma.numpy()))
      module.bias.copy_(torch.from_numpy(layer.beta.numpy()))
      module.running_mean.copy_(torch.from_numpy(layer.moving_mean.numpy()))
      module.running_var.copy_(torch.from_numpy(layer.moving_variance.numpy()))
    return module

  def up(x):
    return F.interpolate(x, scale_factor=2, mode="nearest")

  class GBlock(nn.Module):
    def __init__(self, block):
      super().__init__()
      self.bn1, self.conv1 = batch_norm(block.bn1), conv(block.conv1)
      self.bn2, self.conv2 = batch_norm(block.bn2), conv(block.conv2)
      self.shortcut = conv(block.shortcut)

    def forward(self, x):
      h = self.conv1(up(F.relu(self.bn1(x))))
      h = self.conv2(F.relu(self.bn2(h)))
      return self.shortcut(up(x)) + h

  class Generator(nn.Module):
    def __init__(self):
      super().__init__()
      self.start, self.width = generator.layout.start_size, generator.width
      self.dense = dense(generator.dense)
      self.blocks = nn.Sequential(*[GBlock(b) for b in generator.blocks])
      self.bn_out, self.conv_out = batch_norm(generator.bn_out), conv(generator.conv_out)

    def forward(self, z):
      # Keras reshapes the dense output as (s0, s0, width), channels last.
      h = self.dense(z).view(-1, self.start, self.start, self.width).permute(0, 3, 1, 2)
      h = self.blocks(h)
      return torch.tanh(self.conv_out(F.relu(self.bn_out(h))))

  class DBlock(nn.Module):
    def __init__(self, block):
      super().__init__()
      self.downsample, self.optimized = block.downsample, block.optimized
      self.conv1, self.conv2 = conv(block.conv1), conv(block.conv2)
      self.shortcut = conv(block.shortcut) if block.shortcut is not None else None

    def forward(self, x):
      h = x if self.optimized else F.relu(x)
      h = self.conv2(F.relu(self.conv1(h)))
      if self.downsample:
        h = F.avg_pool2d(h, 2)
      if self.optimized:
        skip = self.shortcut(F.avg_pool2d(x, 2))
      elif self.downsample:
        skip = F.avg_pool2d(self.shortcut(x), 2)
      else:
        skip = x
      return skip + h

  class Discriminator(nn.Module):
    def __init__(self):
      super().__init__()
      if discriminator.spectral_norm:
        raise ValueError("the PyTorch peer is the plain WGAN-GP ResNet (no spectral norm).")
      self.blocks = nn.Sequential(*[DBlock(b) for b in discriminator.blocks])
      self.dense = dense(discriminator.dense)

    def forward(self, x):
      h = F.relu(self.blocks(x)).mean(dim=(2, 3))
      return self.dense(h).squeeze(-1)

  return Generator().train(), Discriminator().train()


def to_nchw(images):
  """float (N, H, W, C) numpy -> float32 NCHW torch tensor."""
  return _torch().from_numpy(np.ascontiguousarray(np.asarray(images, np.float32)
                                                  .transpose(0, 3, 1, 2)))


def discriminator_loss(generator, discriminator, real, z, eps, gp_weight=10.0,
                       drift_weight=0.0):
  """WGAN-GP critic loss as PyTorch users write it: mean D(G(z)) - mean D(x) + gp_weight x
  mean (||grad D(x_hat)|| - 1)^2 (+ drift_weight x mean D(x)^2), x_hat = e G(z) + (1 - e) x
  (our convention). real: NCHW; z: (B, z_dim); eps: (B,). Returns the loss tensor."""
  torch = _torch()
  with torch.no_grad():
    fake = generator(z)
  e = eps.view(-1, 1, 1, 1)
  x_hat = (e * fake + (1.0 - e) * real).requires_grad_(True)
  d_hat = discriminator(x_hat)
  grad, = torch.autograd.grad(d_hat.sum(), x_hat, create_graph=True)
  gp = ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()
  d_real, d_fake = discriminator(real), discriminator(fake)
  loss = d_fake.mean() - d_real.mean() + gp_weight * gp
  if drift_weight:
    loss = loss + drift_weight * (d_real ** 2).mean()
  return loss


def generator_loss(generator, discriminator, z):
  """-mean D(G(z))."""
  return -discriminator(generator(z)).mean()


class Trainer:
  """The peer's training iteration: disc_iters critic updates, then one generator update on
  g_batch_multiplier x batch latents; Adam(lr, beta_1=0, beta_2=0.9) on both (as our configs).

  setting: a SETTINGS name. "compile" wraps G and D in torch.compile; it raises where
  torch.compile cannot run the double backward of the 1-GP (the benchmark records that).
  """

  def __init__(self, generator, discriminator, config, setting="eager", seed=0):
    torch = _torch()
    self.channels_last, self.bf16, compiled = SETTINGS[setting]
    self.config = config
    self.g, self.d = build(generator, discriminator)
    if self.channels_last:
      self.g = self.g.to(memory_format=torch.channels_last)
      self.d = self.d.to(memory_format=torch.channels_last)
    adam = dict(lr=config.lr, betas=(config.beta1, config.beta2), eps=1e-7)  # Keras' eps.
    self.g_opt = torch.optim.Adam(self.g.parameters(), **adam)
    self.d_opt = torch.optim.Adam(self.d.parameters(), **adam)
    self.g_call, self.d_call = self.g, self.d
    if compiled:
      self.g_call, self.d_call = torch.compile(self.g), torch.compile(self.d)
    rng = np.random.default_rng(seed)
    c, r = config, config.resolution
    # In-memory inputs (no input pipeline on this side): real images, latents, interpolation.
    self.real = to_nchw(rng.uniform(-1, 1, (c.disc_iters * c.batch_size, r, r, 3)))
    if self.channels_last:
      self.real = self.real.contiguous(memory_format=torch.channels_last)
    self.z = torch.from_numpy(rng.normal(size=(c.disc_iters, c.batch_size, c.z_dim))
                              .astype(np.float32))
    self.eps = torch.from_numpy(rng.uniform(size=(c.disc_iters, c.batch_size))
                                .astype(np.float32))
    self.z_gen = torch.from_numpy(rng.normal(
        size=(c.batch_size * c.g_batch_multiplier, c.z_dim)).astype(np.float32))

  def d_step(self, i=0):
    """Critic update i of an iteration; returns its loss tensor."""
    torch = _torch()
    c = self.config
    real = self.real[i * c.batch_size:(i + 1) * c.batch_size]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
      d_loss = discriminator_loss(self.g_call, self.d_call, real, self.z[i], self.eps[i],
                                  c.gp_weight, c.drift_weight)
    self.d_opt.zero_grad(set_to_none=True)
    d_loss.float().backward()
    self.d_opt.step()
    return d_loss

  def iteration(self):
    """One training iteration; returns (d_loss of the last critic update, g_loss) as floats."""
    for i in range(self.config.disc_iters):
      d_loss = self.d_step(i)
    g_loss = self.g_step()
    return d_loss.item(), g_loss.item()

  def g_step(self):
    """The generator update; returns its loss tensor."""
    torch = _torch()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)
    for p in self.d.parameters():
      p.requires_grad_(False)  # The G step needs no gradients of D's weights.
    with autocast:
      g_loss = generator_loss(self.g_call, self.d_call, self.z_gen)
    self.g_opt.zero_grad(set_to_none=True)
    g_loss.float().backward()
    self.g_opt.step()
    for p in self.d.parameters():
      p.requires_grad_(True)
    return g_loss


def keras_models(config, seed=0):
  """Our Keras generator and discriminator for a config (built, seeded): the shared weights."""
  import keras
  from qagan_tf import models
  keras.utils.set_random_seed(seed)
  g = models.build_generator("resnet", config.resolution, config.generator_width, config.z_dim)
  d = models.build_discriminator("resnet", config.resolution, config.discriminator_width)
  g.build_for_inference()
  d.build_for_inference()
  return g, d


def check_architecture(config):
  """Raises ValueError when the peer cannot mirror the config (it is the WGAN-GP ResNet)."""
  if config.architecture != "resnet":
    raise ValueError(f"the PyTorch peer is the ResNet; this config has --architecture="
                     f"{config.architecture}.")
  resnet.layout_for_resolution(config.resolution)
  if config.d_norm != "none" or config.loss != "wasserstein":
    raise ValueError("the PyTorch peer is WGAN-GP (--loss=wasserstein --d_norm=none); "
                     f"this config has --loss={config.loss} --d_norm={config.d_norm}.")
