"""Differentiable image-quality penalties for any TensorFlow GAN (the public API).

Functions of tensors that return UNWEIGHTED per-example penalties; they read no config and no
flags, and bin/train's step calls the same functions. Images are NHWC in [-1, 1].

  from qagan_tf import qa
  per_example = qa.niqe_penalty(input_gradients)   # D's input gradients (B, R, R, 3) -> (B,)
"""

from qagan_tf.objectives.niqe.penalty import niqe_gradient_penalty as niqe_penalty

__all__ = ["niqe_penalty"]
