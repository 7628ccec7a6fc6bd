"""Adam as one fused TF kernel per variable.

Keras 3's Adam updates each variable with about 20 small ops (casts, powers, the two moment
updates, the step); a D update of the 32-px ResNet runs about 450 of them, a G update about
700, and on a CPU each costs the executor more than its arithmetic. TF's `ResourceApplyAdam`
kernel computes the same update in one op:

  alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
  m += (g - m) * (1 - beta_1);  v += (g^2 - v) * (1 - beta_2)
  var -= alpha * m / (sqrt(v) + epsilon)

which is Keras' `Adam.update_step` term for term (epsilon outside the square root, t the
iteration count plus one). `FusedAdam` is a `keras.optimizers.Adam` (same arguments, slots,
iteration counter and checkpoints) that routes dense float32/float64 updates through it and
everything else (amsgrad, sparse gradients, other dtypes) through Keras' own code.
tests/train/test_optimizers.py checks both against each other.
"""

import keras
import tensorflow as tf


def _tf_variable(variable):
  return variable.value if isinstance(variable, keras.Variable) else variable


class FusedAdam(keras.optimizers.Adam):
  """`keras.optimizers.Adam` whose dense update is TF's fused `ResourceApplyAdam` kernel."""

  def update_step(self, gradient, variable, learning_rate):
    var = _tf_variable(variable)
    if (self.amsgrad or isinstance(gradient, tf.IndexedSlices)
        or var.dtype not in (tf.float32, tf.float64)):
      return super().update_step(gradient, variable, learning_rate)
    index = self._get_variable_index(variable)
    m = _tf_variable(self._momentums[index])
    v = _tf_variable(self._velocities[index])
    dtype = var.dtype
    step = tf.cast(self.iterations + 1, dtype)
    beta_1 = tf.cast(self.beta_1, dtype)
    beta_2 = tf.cast(self.beta_2, dtype)
    return tf.raw_ops.ResourceApplyAdam(
        var=var.handle, m=m.handle, v=v.handle, beta1_power=tf.pow(beta_1, step),
        beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype), beta1=beta_1,
        beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype),
        use_locking=False)
