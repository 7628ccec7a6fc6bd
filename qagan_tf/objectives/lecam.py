"""LeCam regularisation (Tseng et al., CVPR 2021): the critic's scores are pulled towards EMA
anchors of its own mean scores on the other kind of data,

  R_LC = ||D(x) - a_F||^2 + ||D(G(z)) - a_R||^2,

where a_R and a_F are exponential moving averages (decay about 0.99) of D's mean score on real
and generated images. Per example and unweighted; the train step adds --lecam_weight x its batch
mean and moves the anchors after every critic update (`Anchors.update`, with the global means).
The anchors are state: bin/train checkpoints them and QAGAN saves them with its weights, so a
run resumes exactly.
"""

import tensorflow as tf

DEFAULT_DECAY = 0.99


def lecam_penalty(d_real, d_fake, anchor_real, anchor_fake):
  """Per-example (D(x_i) - a_F)^2 + (D(G(z_i)) - a_R)^2; float (B,) each, anchors scalars."""
  return tf.square(d_real - anchor_fake) + tf.square(d_fake - anchor_real)


class Anchors:
  """a_R and a_F as float32 scalar variables (tf.Variables by default, or given ones, e.g. Keras
  weights). Create under the strategy's scope; both start at 0. Every replica moves them by
  the same all-reduced means: the first replica's assignment is kept."""

  def __init__(self, real=None, fake=None, name="lecam"):
    def variable(side):
      return tf.Variable(0.0, trainable=False, name=f"{name}_anchor_{side}",
                         aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    self.real = real if real is not None else variable("real")
    self.fake = fake if fake is not None else variable("fake")

  def values(self):
    """(a_R, a_F) as float32 tensors."""
    return tf.convert_to_tensor(self.real, tf.float32), tf.convert_to_tensor(self.fake,
                                                                             tf.float32)

  def update(self, mean_real, mean_fake, decay=DEFAULT_DECAY):
    """a <- decay * a + (1 - decay) * mean, for finite means (a dropped update's NaN leaves the
    anchors as they were)."""
    for anchor, mean in ((self.real, mean_real), (self.fake, mean_fake)):
      current = tf.convert_to_tensor(anchor, tf.float32)
      moved = decay * current + (1.0 - decay) * mean
      anchor.assign(tf.where(tf.math.is_finite(mean), moved, current))
