"""Generators and discriminators: the architecture registry and its protocol (registry), the
paper's ResNet (resnet), SNGAN's standard CNN (sndcgan), spectral normalisation (spectral)."""

from qagan_tf.models.registry import (ARCHITECTURES, build_discriminator,  # noqa: F401
                                      build_generator, check_resolution, get_architecture,
                                      settings_of)
from qagan_tf.models.resnet import Discriminator, Generator  # noqa: F401
