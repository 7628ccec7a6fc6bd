"""Writing output files atomically: a reader sees the old file or the complete new one, and a
failure (full disk, no permission, interrupt) leaves no partial file behind."""

import os
import tempfile


def _cannot_write(path, error, hint):
  reason = error.strerror or str(error)
  return OSError(f"cannot write {path} ({reason}); {hint}")


def _umask():
  """The process's umask without changing it (Linux: /proc; elsewhere a brief set-and-restore)."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  except (OSError, ValueError):
    pass
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def atomic_write(path, write):
  """Calls `write(tmp_path)` on a temporary file beside `path`, then renames it over `path`.

  Raises:
    OSError: naming `path` and the fix when the directory or the file cannot be written; the
      temporary file is removed first.
  """
  directory = os.path.dirname(os.path.abspath(path))
  try:
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=directory)
    os.close(fd)
  except OSError as e:
    raise _cannot_write(path, e, "choose another location.") from None
  try:
    write(tmp)
    # mkstemp creates 0600; the file gets the mode a plain open() would give (umask applied).
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)
  except BaseException as e:
    if os.path.exists(tmp):
      os.remove(tmp)
    if isinstance(e, OSError):
      raise _cannot_write(path, e, "free disk space or choose another location.") from None
    raise


def atomic_write_text(path, text):
  """Writes `text` to `path` atomically (see `atomic_write`)."""
  def write(tmp):
    with open(tmp, "w") as f:
      f.write(text)
  atomic_write(path, write)


def check_writable_directory(path):
  """Raises OSError naming `path` unless a file can be created in its directory (or, when that
  does not exist yet, in its nearest existing ancestor). A real probe: os.access is wrong for
  root and for read-only file systems."""
  probe = os.path.dirname(os.path.abspath(path))
  while not os.path.exists(probe):
    probe = os.path.dirname(probe)
  try:
    with tempfile.TemporaryFile(dir=probe):
      pass
  except OSError as e:
    raise OSError(f"cannot write {path}: the directory {probe} is not writable "
                  f"({e.strerror or e}); choose another location.") from None
