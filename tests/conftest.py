"""Test setup: quiet TF, two logical CPU devices (for MirroredStrategy tests), the repo on sys.path."""

import os
import sys

# The scripts' own default (qagan_tf/utils/cli.py), inherited by the scripts the tests run: with
# 2, grappler's ERROR lines (e.g. "remapper failed" on AVX-512 CPUs) reach their stderr, which a
# user never sees.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
