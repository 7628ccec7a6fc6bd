"""SNGAN's standard CNN (Miyato et al. 2018, Table 3) and the architecture registry."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from qagan_tf import models
from qagan_tf.models import spectral


@pytest.mark.parametrize("resolution,start", [(32, 4), (48, 6)])
def test_sndcgan_follows_miyatos_table(resolution, start):
  keras.utils.set_random_seed(0)
  g = models.build_generator("sndcgan", resolution, 64, 128)
  d = models.build_discriminator("sndcgan", resolution, 64)
  g.build_for_inference()
  d.build_for_inference()
  images = g(tf.random.normal([3, 128]), training=False)
  assert images.shape == (3, resolution, resolution, 3) and images.dtype == tf.float32
  assert float(tf.reduce_max(tf.abs(images))) <= 1.0
  assert d(images).shape == (3,)
  # G: dense to s0 x s0 x 512, deconvs 256, 128, 64; D: 64, 64, 128, 128, 256, 256, 512.
  assert g.dense.kernel.shape == (128, start * start * 512)
  assert [getattr(g, f"up{i}").kernel.shape[-2] for i in (1, 2, 3)] == [256, 128, 64]
  assert [getattr(d, f"conv{i}").kernel.shape[-1] for i in range(7)] == [
      64, 64, 128, 128, 256, 256, 512]
  assert [getattr(d, f"conv{i}").kernel.shape[0] for i in range(7)] == [3, 4, 3, 4, 3, 4, 3]
  assert d.dense.kernel.shape == (start * start * 512, 1)
  assert g.resolution == d.resolution == resolution and g.z_dim == 128


def test_spectral_norm_covers_every_layer_of_the_sndcgan_critic():
  keras.utils.set_random_seed(1)
  d = models.build_discriminator("sndcgan", 32, 8, spectral_norm=True)
  d.build_for_inference()
  layers = spectral.spectral_layers(d)
  assert len(layers) == 8 and d.spectral_norm
  for _ in range(100):
    d.update_spectral_norm()
  for layer in layers:
    w = layer.kernel.numpy().reshape(-1, layer.kernel.shape[-1])
    assert float(layer.sigma()) == pytest.approx(np.linalg.svd(w, compute_uv=False)[0],
                                                 rel=1e-3)


def test_the_registry_names_what_it_has():
  assert {"resnet", "sndcgan"} <= set(models.ARCHITECTURES)  # A new one needs no edit here.
  with pytest.raises(ValueError, match="Unknown architecture 'dcgan'.*resnet, sndcgan"):
    models.build_generator("dcgan", 32, 8, 8)
  with pytest.raises(ValueError, match="resolution=64 is not supported by the sndcgan.*32, 48"):
    models.build_discriminator("sndcgan", 64, 8)
  # Every registered architecture follows the protocol the trainer relies on, and its entry
  # has the documented fields (settings: None or a dataclass of settings with defaults).
  for name, entry in models.ARCHITECTURES.items():
    assert callable(entry.generator) and callable(entry.discriminator) and entry.description
    assert entry.resolutions and all(isinstance(r, int) for r in entry.resolutions)
    assert entry.settings is None or dataclasses.is_dataclass(entry.settings()), name
    r = entry.resolutions[0]
    g, d = models.build_generator(name, r, 4, 8), models.build_discriminator(name, r, 4)
    g.build_for_inference()
    d.build_for_inference()
    assert g.resolution == d.resolution == r and g.z_dim == 8 and d.spectral_norm is False
    d.update_spectral_norm()  # A no-op without spectral norm.
