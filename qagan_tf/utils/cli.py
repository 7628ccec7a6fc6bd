"""absl entry point for the scripts: flag errors become one `bin/NAME: error: ...` line, flags
typed on the command line win over every --flagfile wherever they stand (with a notice), TF's
C++ start-up chatter is off unless --verbose, and Ctrl-C ends in one line with status 130."""

import os
import re
import sys

# Set before TensorFlow is imported (each script imports this module first): no CUDA/absl
# start-up lines on a machine without a GPU. --verbose (or TF_CPP_MIN_LOG_LEVEL set by the user)
# brings them back.
_VERBOSE = any(a in ("--verbose", "-verbose", "--verbose=true", "--verbose=True")
               for a in sys.argv[1:])
if _VERBOSE:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
else:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
  os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")

# (flag, command-line value, flagfile value, flagfile) of every flag typed on the command line
# that a --flagfile also sets; bin/train logs them at start-up.
OVERRIDES = []


def _script_name(argv):
  return "bin/" + os.path.basename(argv[0])


def fail(message):
  """Ends the script with one line `bin/NAME: error: MESSAGE` on stderr and exit status 1: the
  one way every script reports bad input (no traceback)."""
  sys.exit(f"{_script_name(sys.argv)}: error: {message}")


def warn(message):
  """One line `bin/NAME: warning: MESSAGE` on stderr (the script goes on)."""
  print(f"{_script_name(sys.argv)}: warning: {message}", file=sys.stderr, flush=True)


def refuse_existing(path, overwrite, flag="--output", named=None):
  """Ends the script before any work when `path` exists and --overwrite was not given: no
  script replaces a file silently. `named`: how the message names it (default FLAG=PATH)."""
  from qagan_tf.utils import files
  if not overwrite and files.exists(path):
    fail(f"{named or f'{flag}={path}'} exists; pass --overwrite to replace it, or choose another "
         "path.")


def _flag_name(arg, flag_values):
  """The flag an argument sets ('--nofoo' sets foo), or None for a positional argument."""
  if not arg.startswith("-") or arg in ("-", "--"):
    return None
  name = arg.lstrip("-").split("=", 1)[0]
  if name not in flag_values and name.startswith("no") and name[2:] in flag_values:
    name = name[2:]
  return name


def _value(arg):
  body = arg.lstrip("-")
  if "=" in body:
    return body.split("=", 1)[1]
  return "false" if body.startswith("no") else "true"


def order_flags(argv, flag_values, fail):
  """Moves every --flagfile=PATH to the front, so that flags typed on the command line win
  whatever their position, and records in OVERRIDES which flagfile values they replace."""
  flagfiles, typed = [], []
  for arg in argv[1:]:
    if arg.startswith(("--flagfile=", "-flagfile=")):
      path = arg.split("=", 1)[1]
      if not os.path.isfile(path):
        if os.path.isdir(path):
          fail(f"--flagfile={path} is a folder; give the path of a flag file (.cfg) in it.")
        configs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               os.pardir, "configs")
        hint = ""
        if os.path.isdir(configs):
          names = sorted(n for n in os.listdir(configs) if n.endswith(".cfg"))[:4]
          hint = f" (the shipped ones are configs/*.cfg, e.g. {', '.join(names)})"
        fail(f"--flagfile={path}: no such file; give the path of a flag file{hint}.")
      flagfiles.append(arg)
    else:
      typed.append(arg)
  del OVERRIDES[:]
  for flagfile in flagfiles:
    _check_flagfile_lines(flagfile.split("=", 1)[1], fail)
    try:
      expanded = flag_values.read_flags_from_files([flagfile], force_gnu=False)
    except Exception as e:  # absl raises its own Error types for unreadable/nested files.
      fail(f"{flagfile}: {str(e).strip().rstrip('.')}.")
    from_file = {}
    for arg in expanded:
      name = _flag_name(arg, flag_values)
      if name:
        from_file[name] = _value(arg)
    for arg in typed:
      name = _flag_name(arg, flag_values)
      if name in from_file and name != "verbose" and _value(arg) != from_file[name]:
        OVERRIDES.append((name, _value(arg), from_file[name], flagfile.split("=", 1)[1]))
  return argv[:1] + flagfiles + typed


def _check_flagfile_lines(path, fail):
  """Ends the script naming the file and line of a flagfile line that is not a flag: absl would
  take `batch_size=8` (without --) for a positional argument and print the whole help."""
  try:
    with open(path) as f:
      lines = f.read().splitlines()
  except (OSError, UnicodeDecodeError) as e:
    fail(f"--flagfile={path}: cannot be read ({e}).")
  for number, line in enumerate(lines, 1):
    text = line.strip()
    if text and not text.startswith(("#", "//", "-")):
      fail(f"{path}, line {number}: {text!r} is not a flag; write it as --{text} (every line of "
           "a flag file is --name=value, or a # comment).")


def describe_overrides():
  """One line naming the flagfile values that the command line replaced ('' when none)."""
  if not OVERRIDES:
    return ""
  items = ", ".join(f"--{n}={v} (was {old} in {f})" for n, v, old, f in OVERRIDES)
  return f"Command-line flags override the flag file: {items}."


def _parse_flags(argv):
  from absl import flags
  name = _script_name(argv)
  try:
    return flags.FLAGS(order_flags(argv, flags.FLAGS, fail))
  except flags.Error as e:
    flagfiles = [a.split("=", 1)[1] for a in argv[1:] if a.startswith("--flagfile=")]
    where = f" (on the command line or in {', '.join(flagfiles)})" if flagfiles else ""
    missing = re.search(r"--(\w+) must have a value other than None", str(e))
    if missing and missing.group(1) in flags.FLAGS:
      flag = flags.FLAGS[missing.group(1)]
      values = getattr(flag.parser, "enum_values", None)
      about = re.sub(r"^<[^>]*>: ", "", flag.help).rstrip(".")
      fail(f"--{flag.name} is required" + (f": one of {', '.join(values)}" if values else "")
           + f" ({about}).")
    fail(f"{str(e).strip().rstrip('.')}{where}. Run {name} --helpfull for the valid flags.")


def import_tensorflow_quietly():
  """Imports TensorFlow with the process's stderr (fd 2) sent to /dev/null, unless --verbose:
  the CUDA-stub lines that TF's C++ libraries print while loading come before absl's logging
  is initialised, so no log level silences them (abseil-cpp PR 1957). Python-level errors of the
  import are not hidden: they are raised after stderr is restored."""
  if _VERBOSE or "tensorflow" in sys.modules:
    import tensorflow  # noqa: F401
    return
  sys.stderr.flush()
  saved = os.dup(2)
  try:
    with open(os.devnull, "w") as devnull:
      os.dup2(devnull.fileno(), 2)
      try:
        import tensorflow  # noqa: F401
        import tensorflow as tf
        tf.config.list_physical_devices()  # cuInit's complaint on a CPU-only machine.
      finally:
        os.dup2(saved, 2)
  finally:
    os.close(saved)


def run(main):
  """absl.app.run(main) with flag-parsing errors reported as one line (exit status 1), --help
  answered with exit status 0, and Ctrl-C as one line (exit status 130)."""
  from absl import app, flags
  if "verbose" not in flags.FLAGS:
    flags.DEFINE_bool("verbose", False, "Show TensorFlow's C++ and start-up logs.")
  name = _script_name(sys.argv)

  def quiet_main(argv):
    import_tensorflow_quietly()
    return main(argv)
  helped = any(a.split("=", 1)[0].lstrip("-") in ("help", "helpfull", "helpshort", "helpxml", "?")
               for a in sys.argv[1:])
  try:
    app.run(quiet_main, flags_parser=_parse_flags)
  except SystemExit as e:
    if helped and e.code == 1:  # absl exits 1 after printing the help a user asked for.
      sys.exit(0)
    raise
  except KeyboardInterrupt:
    sys.stderr.write(f"\n{name}: interrupted (Ctrl-C); nothing more was written.\n")
    sys.exit(130)
