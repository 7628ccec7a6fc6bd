"""qagan_tf: Quality Aware GANs (QAGAN, NeurIPS 2019) in TensorFlow 2 / Keras 3."""

__version__ = "0.1.0"
