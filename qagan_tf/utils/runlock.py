"""One trainer per run directory: an advisory lock file, `<model_dir>/.lock`.

The lock is an flock(2) on that file, so the kernel releases it on every exit path, SIGKILL
included; the file itself only records who holds it (PID, host, start time) for the error of a
second trainer. A file left by a killed process is stale: its flock is gone, and the next trainer
takes it over. The holder removes the file when it releases it; a trainer that opened the file
just before it was removed notices (the path no longer names the file it locked) and retries.
"""

import fcntl
import json
import os
import socket
import time

LOCK_FILENAME = ".lock"


class RunDirectoryInUse(OSError):
  """Another process holds the run directory's lock; the message names it and the fix."""


class _NoLock:
  """What `acquire` returns for a remote run directory (no flock there)."""

  model_dir = path = None

  def release(self):
    pass


class RunLock:
  """Holds the lock of one run directory until `release()` (or the process ends)."""

  def __init__(self, model_dir, fd, path):
    self.model_dir, self._fd, self.path = model_dir, fd, path

  def release(self):
    """Removes the lock file and releases the lock (idempotent)."""
    if self._fd is None:
      return
    try:
      os.remove(self.path)
    except OSError:
      pass
    fcntl.flock(self._fd, fcntl.LOCK_UN)
    os.close(self._fd)
    self._fd = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.release()


def _holder(path):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}


def acquire(model_dir, what="bin/train"):
  """Takes the lock of `model_dir` (created if needed) at once or raises.

  Raises:
    RunDirectoryInUse: another live process holds it (naming its PID, host and start time).
    OSError: the directory cannot be written.
  """
  from qagan_tf.utils import files
  if files.is_remote(model_dir):
    # gs://, s3://, ram://: no flock on object stores; one trainer per directory is then up to
    # the user (the README says so).
    from absl import logging
    logging.warning(
        "%s is not on a local file system: it cannot be locked, so nothing stops a second "
        "trainer from writing into it.", model_dir)
    return _NoLock()
  os.makedirs(model_dir, exist_ok=True)
  path = os.path.join(model_dir, LOCK_FILENAME)
  for _ in range(100):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      os.close(fd)
      holder = _holder(path)
      who = (f"PID {holder.get('pid', '?')} on {holder.get('host', '?')}, running since "
             f"{holder.get('started', '?')}" if holder else "another process")
      raise RunDirectoryInUse(
          f"--model_dir={model_dir} is in use by another {what} ({who}); wait for it to end, "
          f"stop it, or choose another --model_dir.") from None
    try:
      same = os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
      same = False
    if not same:  # Removed by its previous holder after we opened it: try the new file.
      fcntl.flock(fd, fcntl.LOCK_UN)
      os.close(fd)
      continue
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                         "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, record + b"\n", 0)
    return RunLock(model_dir, fd, path)
  raise RunDirectoryInUse(f"--model_dir={model_dir}: could not take its lock file {path}.")
