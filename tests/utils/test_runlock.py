"""The run-directory lock: one holder at a time, released by the kernel on every exit."""

import json
import os
import subprocess
import sys

import pytest

from qagan_tf.utils import runlock


def test_the_run_lock_excludes_a_second_holder_and_survives_sigkill(tmp_path):
  run = str(tmp_path / "run")
  with runlock.acquire(run) as lock:
    record = json.loads(open(os.path.join(run, ".lock")).read())
    assert record["pid"] == os.getpid()
    # Another process cannot take it (flock locks belong to open file descriptions).
    code = ("import sys; from qagan_tf.utils import runlock\n"
            "try:\n  runlock.acquire(sys.argv[1])\nexcept runlock.RunDirectoryInUse as e:\n"
            "  print(e); sys.exit(3)\n")
    proc = subprocess.run([sys.executable, "-c", code, run], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    assert f"PID {os.getpid()}" in proc.stdout and "choose another --model_dir" in proc.stdout
    assert lock.path == os.path.join(run, ".lock")
  assert not os.path.exists(os.path.join(run, ".lock"))  # Released and removed.
  # A holder killed with SIGKILL leaves its file behind, but not its lock.
  holder = subprocess.Popen([sys.executable, "-c",
                             "import sys, time; from qagan_tf.utils import runlock\n"
                             "runlock.acquire(sys.argv[1]); print('held', flush=True); "
                             "time.sleep(600)", run], stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == "held"
  with pytest.raises(runlock.RunDirectoryInUse, match=f"PID {holder.pid}"):
    runlock.acquire(run)
  holder.kill()
  holder.wait()
  assert os.path.exists(os.path.join(run, ".lock"))  # Stale.
  runlock.acquire(run).release()
