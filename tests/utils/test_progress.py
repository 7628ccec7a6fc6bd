"""Progress lines with rate, ETA and a bar."""

import re

import pytest


def test_progress_reports_rate_eta_and_a_bar():
  import io
  from qagan_tf.utils import progress as progress_lib
  p = progress_lib.Progress(100, "step", unit="it", start=10)
  p._last_set -= 2.0  # Two seconds ago.
  assert p.set(30) == pytest.approx(10.0, rel=0.05)
  assert re.fullmatch(r"step 30/100 \(30\.0%\) \d+\.\d\d it/s ETA \d+s", p.describe())
  stream = io.StringIO()
  with progress_lib.Progress(4, "features", stream=stream, interval=0.0) as bar:
    bar.update(2)
    bar.update(2)
  lines = stream.getvalue().splitlines()
  assert lines[0].startswith("features: [############------------] 2/4 img")
  assert lines[-1].startswith("features: [########################] 4/4 img")
  assert " in " in lines[-1]
  silent = io.StringIO()
  with progress_lib.Progress(4, "x", stream=silent, enabled=False) as bar:
    bar.update(4)
  assert silent.getvalue() == ""
