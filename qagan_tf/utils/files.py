"""Writing output files atomically: a reader sees the old file or the complete new one, and a
failure (full disk, no permission, interrupt) leaves no partial file behind.

Paths with a scheme (gs://, s3://, hdfs://, ram://) go through `tf.io.gfile`: the file is written
locally, copied beside its target and renamed over it. Object stores have no atomic rename (GCS
renames by copy and delete), so there a reader may briefly see no file, and a writer killed during
the copy can leave a `.tmp-*` object beside the target; the target itself is never half written.
Where rename is not implemented at all, the file is copied straight to its target.
"""

import os
import tempfile
import uuid


def is_remote(path):
  """True for a path that only `tf.io.gfile` can reach (it has a scheme other than file://)."""
  return "://" in str(path) and not str(path).startswith("file://")


def absolute(path):
  """os.path.abspath for local paths; remote paths are already absolute."""
  return path if is_remote(path) else os.path.abspath(path)


def exists(path):
  if is_remote(path):
    import tensorflow as tf
    return tf.io.gfile.exists(path)
  return os.path.exists(path)


def isdir(path):
  if is_remote(path):
    import tensorflow as tf
    return tf.io.gfile.isdir(path)
  return os.path.isdir(path)


def isfile(path):
  if is_remote(path):
    import tensorflow as tf
    return tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path)
  return os.path.isfile(path)


def not_a_file(path):
  """Why `path` is not a readable file, as the end of an error sentence: "no such file", "is a
  folder, not a file", or "cannot be read"."""
  if isdir(path):
    return "is a folder, not a file"
  if not exists(path):
    return "no such file"
  return "cannot be read"


def glob(pattern):
  if is_remote(pattern):
    import tensorflow as tf
    return tf.io.gfile.glob(pattern)
  import glob as glob_lib
  return glob_lib.glob(pattern)


def open_file(path, mode="r"):
  """A file object for local or remote paths ('r', 'rb', 'w', 'wb')."""
  if is_remote(path):
    import tensorflow as tf
    return tf.io.gfile.GFile(path, mode)
  return open(path, mode)


def makedirs(path):
  if is_remote(path):
    import tensorflow as tf
    tf.io.gfile.makedirs(path)
  else:
    os.makedirs(path, exist_ok=True)


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
  if is_remote(path):
    return _remote_atomic_write(path, write)
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


def _remote_atomic_write(path, write):
  import tensorflow as tf
  suffix = os.path.splitext(path)[1]
  fd, local = tempfile.mkstemp(prefix=".tmp-", suffix=suffix)
  os.close(fd)
  staged = None
  try:
    write(local)
    directory = path.rsplit("/", 1)[0]
    tf.io.gfile.makedirs(directory)
    staged = f"{directory}/.tmp-{uuid.uuid4().hex}{suffix}"
    tf.io.gfile.copy(local, staged, overwrite=True)
    try:
      tf.io.gfile.rename(staged, path, overwrite=True)
    except tf.errors.UnimplementedError:
      tf.io.gfile.copy(local, path, overwrite=True)  # No rename on this file system.
      tf.io.gfile.remove(staged)
    staged = None
  except tf.errors.OpError as e:
    raise OSError(f"cannot write {path} ({e.message}); check the location and its "
                  "permissions.") from None
  except OSError as e:  # Writing the local copy failed.
    raise _cannot_write(path, e, "free local disk space (the file is written to the temporary "
                        "directory first) or choose another location.") from None
  finally:
    os.remove(local)
    if staged is not None:
      try:
        tf.io.gfile.remove(staged)
      except tf.errors.OpError:
        pass


def atomic_write_text(path, text):
  """Writes `text` to `path` atomically (see `atomic_write`)."""
  def write(tmp):
    with open(tmp, "w") as f:
      f.write(text)
  atomic_write(path, write)


def check_writable_directory(path):
  """Raises OSError naming `path` unless a file can be created in its directory (or, when that
  does not exist yet, in its nearest existing ancestor). A real probe: os.access is wrong for
  root and for read-only file systems. Remote paths: the directory is created (the write itself
  reports a lack of permission)."""
  if is_remote(path):
    import tensorflow as tf
    try:
      tf.io.gfile.makedirs(path.rsplit("/", 1)[0])
    except tf.errors.OpError as e:
      raise OSError(f"cannot write {path}: {e.message}; choose another location.") from None
    return
  probe = os.path.dirname(os.path.abspath(path))
  while not os.path.exists(probe):
    probe = os.path.dirname(probe)
  try:
    with tempfile.TemporaryFile(dir=probe):
      pass
  except OSError as e:
    raise OSError(f"cannot write {path}: the directory {probe} is not writable "
                  f"({e.strerror or e}); choose another location.") from None


def checkpoint_step(prefix):
  """N of a checkpoint prefix .../ckpt-N (-1 when it has no number)."""
  tail = os.path.basename(prefix).rsplit("-", 1)[-1]
  return int(tail) if tail.isdigit() else -1


def latest_checkpoint(model_dir, log=None):
  """The run's latest checkpoint prefix (DIR/ckpt-N), or None when it has none.

  The `checkpoint` index file names it. When the index is missing (or names a checkpoint that
  is gone) but ckpt-N files are there, the newest of them is returned and `log` (a function of
  one message, e.g. logging.warning) says so: a run is never restarted at step 0 beside its
  checkpoints."""
  import tensorflow as tf
  latest = tf.train.latest_checkpoint(model_dir)
  if latest:
    return latest
  found = sorted((p[:-len(".index")] for p in tf.io.gfile.glob(
      os.path.join(model_dir, "ckpt-*.index"))), key=checkpoint_step)
  if not found:
    return None
  newest = found[-1]
  if log is not None:
    log(f"{model_dir} has {len(found)} checkpoint(s) but no index file `checkpoint` naming "
        f"them; using the newest, {os.path.basename(newest)} (step "
        f"{checkpoint_step(newest)}).")
  return newest
