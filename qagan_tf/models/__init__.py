"""The paper's ResNet generator and discriminator."""

from qagan_tf.models.resnet import (SUPPORTED_RESOLUTIONS, Architecture, Discriminator, Generator,
                                    architecture_for_resolution)
