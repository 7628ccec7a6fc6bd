"""absl entry point for the scripts: flag errors become one `bin/NAME: error: ...` line."""

import os
import sys


def _parse_flags(argv):
  from absl import flags
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    name = "bin/" + os.path.basename(argv[0])
    flagfiles = [a.split("=", 1)[1] for a in argv[1:] if a.startswith("--flagfile=")]
    where = f" (on the command line or in {', '.join(flagfiles)})" if flagfiles else ""
    sys.exit(f"{name}: error: {str(e).rstrip('.')}{where}. Run {name} --helpfull for the valid "
             "flags.")


def run(main):
  """absl.app.run(main) with flag-parsing errors reported as one line, exit status 1."""
  from absl import app
  app.run(main, flags_parser=_parse_flags)
