"""The same 2015-12-05 Inception in PyTorch, built from our Keras model's (folded) weights.

Only for bin/benchmark's side-by-side throughput figure (optional: torch is not a dependency).
Inputs are already-preprocessed (N, 3, 299, 299) tensors, so both frameworks time the network.
"""

import numpy as np


def build(keras_model):
  """Returns a function float32 NCHW torch tensor -> pool3 (N, 2048), and the torch module."""
  import torch
  import torch.nn.functional as F

  convs = {}
  for scope, layer in keras_model.convs.items():
    kernel = np.asarray(layer.kernel.numpy()).transpose(3, 2, 0, 1).copy()
    kh, kw = kernel.shape[2:]
    padding = (kh // 2, kw // 2) if layer.padding == "SAME" else (0, 0)
    conv = torch.nn.Conv2d(kernel.shape[1], kernel.shape[0], (kh, kw), layer.strides, padding)
    with torch.no_grad():
      conv.weight.copy_(torch.from_numpy(kernel))
      conv.bias.copy_(torch.from_numpy(layer.bias.numpy()))
    convs[scope] = conv
  module = torch.nn.ModuleDict({k.replace("/", "__"): v for k, v in convs.items()}).eval()

  def c(scope, x):
    return F.relu(convs[scope](x))

  def chain(prefix, names, x):
    for name in names:
      x = c(f"{prefix}/{name}", x)
    return x

  def avg(x):
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)

  def forward(x):
    x = c("conv_2", c("conv_1", c("conv", x)))
    x = F.max_pool2d(x, 3, 2)
    x = F.max_pool2d(c("conv_4", c("conv_3", x)), 3, 2)
    for s in ("mixed", "mixed_1", "mixed_2"):
      x = torch.cat([c(f"{s}/conv", x), chain(f"{s}/tower", ("conv", "conv_1"), x),
                     chain(f"{s}/tower_1", ("conv", "conv_1", "conv_2"), x),
                     c(f"{s}/tower_2/conv", avg(x))], 1)
    s = "mixed_3"
    x = torch.cat([c(f"{s}/conv", x), chain(f"{s}/tower", ("conv", "conv_1", "conv_2"), x),
                   F.max_pool2d(x, 3, 2)], 1)
    for s in ("mixed_4", "mixed_5", "mixed_6", "mixed_7"):
      x = torch.cat([c(f"{s}/conv", x), chain(f"{s}/tower", ("conv", "conv_1", "conv_2"), x),
                     chain(f"{s}/tower_1", ("conv", "conv_1", "conv_2", "conv_3", "conv_4"), x),
                     c(f"{s}/tower_2/conv", avg(x))], 1)
    s = "mixed_8"
    x = torch.cat([chain(f"{s}/tower", ("conv", "conv_1"), x),
                   chain(f"{s}/tower_1", ("conv", "conv_1", "conv_2", "conv_3"), x),
                   F.max_pool2d(x, 3, 2)], 1)
    for s in ("mixed_9", "mixed_10"):
      a = c(f"{s}/tower/conv", x)
      b = chain(f"{s}/tower_1", ("conv", "conv_1"), x)
      pooled = F.max_pool2d(x, 3, 1, 1) if s == "mixed_10" else avg(x)
      x = torch.cat([c(f"{s}/conv", x), c(f"{s}/tower/mixed/conv", a),
                     c(f"{s}/tower/mixed/conv_1", a), c(f"{s}/tower_1/mixed/conv", b),
                     c(f"{s}/tower_1/mixed/conv_1", b), c(f"{s}/tower_2/conv", pooled)], 1)
    return x.mean(dim=(2, 3))

  return forward, module
