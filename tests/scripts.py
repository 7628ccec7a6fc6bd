"""Runs a bin/ script for a test: in this process (the default) or as a real subprocess.

In-process, the script file itself runs as `__main__` (runpy), exactly as `python bin/NAME`
would run it: its flags are defined afresh, `cli.run` parses the argv, and its exit status,
stdout and stderr (Python's and the file descriptors', so TensorFlow's C++ lines too) are
captured. What a script changes in the process is put back afterwards: absl's flags and
logging, the working directory, the environment, signal handlers, op determinism, TF32, the
Keras dtype policy and Keras' layer-name counters. This saves the new interpreter and the
TensorFlow import (4-6 s) of each call. The process boundary itself (signals, SIGKILL, exit
codes as the shell sees them, `--help`) is tested with `subprocess=True`, in a handful of tests.
"""

import contextlib
import gc
import io
import os
import runpy
import signal
import subprocess as subprocess_lib
import sys
import threading
import traceback
from typing import NamedTuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(REPO, "bin")
# bin/'s own modules, imported by the scripts as top-level modules (bin/ is on sys.path as the
# script's directory); they define flags when imported, so each run imports them afresh.
_BIN_MODULES = ("train_flags", "eval_common", "benchmark_flags")
_LOCK = threading.Lock()  # One script at a time: flags, cwd and fds are the process's.
# The tiny run of the shared `tiny_run` fixture (tests/conftest.py) and of the bad-input
# catalogue: the smoke config at width 16 with one D update per iteration (an unrolled D update
# costs seconds of tracing in every run), checkpoints, samples and histograms every 2 steps.
TINY_RUN = ["--flagfile=configs/smoke.cfg", "--num_examples=64", "--width=16", "--disc_iters=1",
            "--save_every=2", "--sample_every=2", "--histogram_every=2", "--log_every=1"]


class Result(NamedTuple):
  """What a script run left: as `subprocess.CompletedProcess` (args, returncode, stdout,
  stderr)."""
  args: list
  returncode: int
  stdout: str
  stderr: str


def run(script, *args, env=None, cwd=REPO, check=False, subprocess=False, timeout=900,
        file_size_limit=0):
  """Runs bin/`script` (or the Python file at the path `script`, e.g. an example) with `args`.

  Args:
    env: variables added to (or, with value None, removed from) this process's environment.
    cwd: the working directory.
    check: raise AssertionError with the stderr's tail when the exit status is not 0.
    subprocess: run it as a new Python process (the process boundary itself under test).
    timeout: for a subprocess (as `subprocess.run`'s).
    file_size_limit: bytes; files the script writes cannot grow beyond (RLIMIT_FSIZE, with
      SIGXFSZ ignored: a write fails with EFBIG, as on a full disk).

  Returns:
    a `Result`.
  """
  path = script if os.sep in script else os.path.join(BIN, script)
  argv = [path, *map(str, args)]
  if subprocess:
    full_env = dict(os.environ)
    for key, value in (env or {}).items():
      if value is None:
        full_env.pop(key, None)
      else:
        full_env[key] = value
    proc = subprocess_lib.run([sys.executable, *argv], cwd=cwd, env=full_env, text=True,
                              capture_output=True, timeout=timeout,
                              preexec_fn=lambda: _limit_file_size(file_size_limit))
    result = Result(argv, proc.returncode, proc.stdout, proc.stderr)
  else:
    result = _in_process(argv, env or {}, cwd, file_size_limit)
  if check and result.returncode != 0:
    raise AssertionError(f"{script} {' '.join(map(str, args))} exited with "
                         f"{result.returncode}:\n{result.stderr[-3000:]}")
  return result


def _limit_file_size(limit):
  """RLIMIT_FSIZE's soft limit at `limit` bytes (0: unchanged), SIGXFSZ ignored; returns what
  to restore."""
  import resource
  if not limit:
    return None
  saved = resource.getrlimit(resource.RLIMIT_FSIZE), signal.signal(signal.SIGXFSZ,
                                                                    signal.SIG_IGN)
  resource.setrlimit(resource.RLIMIT_FSIZE, (limit, saved[0][1]))
  return saved


@contextlib.contextmanager
def _file_size_limit(limit):
  import resource
  saved = _limit_file_size(limit)
  try:
    yield
  finally:
    if saved is not None:
      resource.setrlimit(resource.RLIMIT_FSIZE, saved[0])
      signal.signal(signal.SIGXFSZ, saved[1])


def _in_process(argv, env, cwd, file_size_limit=0):
  with _LOCK, _process_state(env, cwd), _captured() as streams:
    with _file_size_limit(file_size_limit):
      code = _execute(argv)
  return Result(argv, code, *streams.text())


def _execute(argv):
  """Runs the script as __main__; returns its exit status as the shell would see it."""
  saved_argv = sys.argv
  sys.argv = list(argv)
  sys.path.insert(0, os.path.dirname(argv[0]))  # As Python puts a script's directory first.
  try:
    runpy.run_path(argv[0], run_name="__main__")
    return 0
  except SystemExit as e:
    if e.code is None:
      return 0
    if isinstance(e.code, int):
      return e.code
    print(e.code, file=sys.stderr)  # What the interpreter does with sys.exit("message").
    return 1
  except KeyboardInterrupt:
    return 130
  except BaseException:  # An uncaught exception: the traceback, status 1, as Python would.
    traceback.print_exc()
    return 1
  finally:
    sys.argv = saved_argv
    sys.stdout.flush()
    sys.stderr.flush()


class _Pipes:
  """Pipes that stand in for fds 1 and 2; threads drain them (a pipe is not a regular file, so
  a test's RLIMIT_FSIZE does not limit what the script prints)."""

  def __init__(self):
    self.chunks = {1: [], 2: []}
    self.threads = []
    self.ends = {}
    for fd in (1, 2):
      read, write = os.pipe()
      self.ends[fd] = write
      thread = threading.Thread(target=self._drain, args=(read, self.chunks[fd]), daemon=True)
      thread.start()
      self.threads.append(thread)

  @staticmethod
  def _drain(fd, chunks):
    with os.fdopen(fd, "rb") as f:
      for chunk in iter(lambda: f.read1(65536), b""):
        chunks.append(chunk)

  def close(self):
    for fd in self.ends.values():
      os.close(fd)
    for thread in self.threads:
      thread.join()

  def text(self):
    return tuple(b"".join(self.chunks[fd]).decode("utf-8", "replace") for fd in (1, 2))


@contextlib.contextmanager
def _captured():
  """fds 1 and 2 and sys.stdout/sys.stderr into pipes for the block."""
  from absl import logging as absl_logging
  sys.stdout.flush()
  sys.stderr.flush()
  pipes = _Pipes()
  saved_fds = {fd: os.dup(fd) for fd in (1, 2)}
  saved_streams = sys.stdout, sys.stderr
  handler = absl_logging.get_absl_handler().python_handler
  saved_handler_stream = handler.stream
  try:
    for fd, write in pipes.ends.items():
      os.dup2(write, fd)
    sys.stdout, sys.stderr = (io.TextIOWrapper(io.FileIO(fd, "w", closefd=False),
                                               encoding="utf-8", errors="backslashreplace",
                                               line_buffering=True, write_through=True)
                              for fd in (1, 2))
    handler.stream = sys.stderr  # absl logs where a script's stderr goes.
    yield pipes
  finally:
    for stream in (sys.stdout, sys.stderr):
      try:
        stream.flush()
      except ValueError:
        pass
    sys.stdout, sys.stderr = saved_streams
    handler.stream = saved_handler_stream
    for fd, saved in saved_fds.items():
      os.dup2(saved, fd)
      os.close(saved)
    pipes.close()


def custom_gradients():
  """The names in TF's gradient registry now (see `release_memory`)."""
  from tensorflow.python.framework import ops
  return set(ops._gradient_registry._registry)  # pylint: disable=protected-access


def release_memory(registered, full=True):
  """Frees what the functions traced since `registered` (a `custom_gradients()`) left behind.

  Every tf.custom_gradient traced in graph mode registers its gradient function, and with it
  the graph it closes over, in TF's global registry for good: 100-150 MB per tiny training run in
  a test process (measured: a worker ran out of 24 GB). Once those functions are gone, so can
  their gradients be. With `full` (a test module's end), the garbage is collected and glibc
  returns freed memory to the system (its arenas otherwise keep the process's resident size at
  its peak). Without (after each in-process script), only the young generations are collected:
  a full collection walks every object of the process, which grows through a test session (the
  bad-input catalogue's 40 script runs: 35.5 s with a full collection after each, 20.9 s
  without, the same peak memory; 2026-12-06).
  """
  from tensorflow.python.framework import ops
  gradients = ops._gradient_registry._registry  # pylint: disable=protected-access
  for name in set(gradients) - registered:
    if name.startswith("CustomGradient"):
      del gradients[name]
  if not full:
    gc.collect(1)
    return
  gc.collect()
  try:
    import ctypes
    ctypes.CDLL("libc.so.6").malloc_trim(0)
  except (OSError, AttributeError):  # Not glibc: nothing to trim.
    pass


def _absl_flag_state():
  from absl import flags
  d = flags.FLAGS.__dict__
  keys = ("__flags", "__hiddenflags", "__flags_by_module", "__flags_by_module_id",
          "__key_flags_by_module")
  copied = {}
  for key in keys:
    value = d[key]
    if isinstance(value, dict):
      copied[key] = {k: (list(v) if isinstance(v, list) else v) for k, v in value.items()}
    else:
      copied[key] = set(value)
  return copied


def _set_absl_flag_state(state):
  from absl import flags
  flags.FLAGS.__dict__.update(state)


def _absl_only():
  """The flag state with only absl's own flags (--help, --verbosity, ...): what a new process
  has before its script defines any."""
  state = _absl_flag_state()
  by_module = {m: l for m, l in state["__flags_by_module"].items()
               if m.startswith("absl.")}
  keep = {id(f) for flags_ in by_module.values() for f in flags_}
  return {"__flags": {n: f for n, f in state["__flags"].items() if id(f) in keep},
          "__hiddenflags": set(state["__hiddenflags"]),
          "__flags_by_module": by_module,
          "__flags_by_module_id": {m: [f for f in l if id(f) in keep]
                                   for m, l in state["__flags_by_module_id"].items()
                                   if any(id(f) in keep for f in l)},
          "__key_flags_by_module": {m: [f for f in l if id(f) in keep]
                                    for m, l in state["__key_flags_by_module"].items()
                                    if m.startswith("absl.")}}


@contextlib.contextmanager
def _process_state(env, cwd):
  """Everything a script may change in the process, put back after the block."""
  import logging
  import keras
  import tensorflow as tf
  from absl import app, flags
  from absl import logging as absl_logging
  app.define_help_flags()
  saved_flags = _absl_flag_state()
  saved_modules = {name: sys.modules.get(name) for name in _BIN_MODULES}
  saved_env = dict(os.environ)
  saved_cwd = os.getcwd()
  saved_path = list(sys.path)
  saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
  saved_logging = (list(logging.root.handlers), logging.root.level,
                   absl_logging.get_verbosity())
  from tensorflow.python.framework import config as tf_config  # (is_/disable_: not public)
  determinism = tf_config.is_op_determinism_enabled()
  tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
  policy = keras.config.dtype_policy()
  was_parsed = flags.FLAGS.is_parsed()
  registered = custom_gradients()
  rename = app.command_name.make_process_name_useful
  try:
    _set_absl_flag_state(_absl_only())
    flags.FLAGS.unparse_flags()
    app._run_init.done = False  # Each run initialises absl as a new process does,
    app._register_and_parse_flags_with_usage.done = False
    app.command_name.make_process_name_useful = lambda: None  # but keeps pytest's name.
    for name in _BIN_MODULES:
      sys.modules.pop(name, None)
    for key, value in env.items():
      if value is None:
        os.environ.pop(key, None)
      else:
        os.environ[key] = str(value)
    os.chdir(cwd)
    keras.backend.clear_session(free_memory=False)  # Layer names as in a new process.
    yield
  finally:
    app.command_name.make_process_name_useful = rename
    os.chdir(saved_cwd)
    os.environ.clear()
    os.environ.update(saved_env)
    sys.path[:] = saved_path
    for name, module in saved_modules.items():
      if module is None:
        sys.modules.pop(name, None)
      else:
        sys.modules[name] = module
    for s, handler in saved_signals.items():
      signal.signal(s, handler)
    logging.root.handlers[:] = saved_logging[0]
    logging.root.setLevel(saved_logging[1])
    flags.FLAGS.unparse_flags()
    _set_absl_flag_state(saved_flags)
    absl_logging.set_verbosity(saved_logging[2])
    if was_parsed:
      flags.FLAGS.mark_as_parsed()
    if tf_config.is_op_determinism_enabled() != determinism:
      (tf_config.enable_op_determinism if determinism else tf_config.disable_op_determinism)()
    tf.config.experimental.enable_tensor_float_32_execution(tf32)
    keras.config.set_dtype_policy(policy)
    release_memory(registered, full=False)
