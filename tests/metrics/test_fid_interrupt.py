"""Ctrl-C during the FID's matrix square root is answered while it runs, not after."""

import signal
import threading
import time

import numpy as np
import pytest

from qagan_tf.metrics import fid


@pytest.mark.slow
def test_ctrl_c_is_answered_while_the_square_root_still_runs():
  # 8 calls of about 0.3 s each alone (2 idle cores): the interrupt at 0.3 s lands early in the
  # work, and the work still goes on for seconds after it.
  big = np.random.default_rng(0).normal(size=(600, 600))
  finished, finished_at = threading.Event(), []

  def long_lapack_work(_):
    for _ in range(8):  # Seconds of LAPACK, which releases the GIL as sqrtm's Schur step does.
      np.linalg.eigvals(big)
    finished_at.append(time.monotonic())
    finished.set()
    return 0.0

  def interrupt(signum, frame):
    raise KeyboardInterrupt
  previous = signal.signal(signal.SIGALRM, interrupt)
  try:
    signal.setitimer(signal.ITIMER_REAL, 0.3)  # Ctrl-C, early in the work.
    with pytest.raises(KeyboardInterrupt):
      fid._interruptible(long_lapack_work, None)
    interrupted_at = time.monotonic()
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)
  # The interrupt came back while the work went on in its thread. Called directly, the work
  # would have been cut at its first return to Python and never finished.
  assert finished.wait(120)
  assert interrupted_at < finished_at[0]
