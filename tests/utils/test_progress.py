"""utils/progress.py: the training rate and ETA leave out time that is not training."""

from qagan_tf.utils import progress as progress_lib


def test_the_rate_leaves_out_compiling_and_evaluation(monkeypatch):
  now = [100.0]
  monkeypatch.setattr(progress_lib.time, "time", lambda: now[0])
  p = progress_lib.Progress(100, "step", unit="it")
  now[0] += 40.0  # The first call: 10 steps, mostly compiling.
  p.skip(10)
  assert p.set(10) == 0.0  # No rate from the compile-dominated first call ...
  assert "rate and ETA from the next line" in p.describe()
  now[0] += 5.0  # ... then 10 steps in 5 s: 2 it/s, ETA 40 s for the 80 left.
  assert p.set(20) == 2.0
  assert p.describe().endswith("2.00 it/s ETA 40s")
  now[0] += 30.0  # An evaluation: skipped, so the next rate is of training alone.
  p.skip()
  now[0] += 10.0
  assert p.set(40) == 2.0
