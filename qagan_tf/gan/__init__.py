"""A Keras model that trains anyone's generator and discriminator with the QAGAN objective
(`QAGAN`: compile, fit, BackupAndRestore), and its callbacks (`EvaluationCallback`, its alias
`FIDCallback`, `SampleGrid`)."""

from qagan_tf.gan.callbacks import EvaluationCallback, FIDCallback, SampleGrid  # noqa: F401
from qagan_tf.gan.model import QAGAN  # noqa: F401
