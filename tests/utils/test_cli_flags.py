"""Flag order and flagfiles: typed flags win over every --flagfile, with a notice; a missing
flagfile is one line."""

import pytest
from absl import flags

from qagan_tf.utils import cli


def _flag_values():
  fv = flags.FlagValues()
  flags.DEFINE_string("model_dir", None, "", flag_values=fv)
  flags.DEFINE_string("dataset", "cifar10", "", flag_values=fv)
  flags.DEFINE_integer("width", 128, "", flag_values=fv)
  flags.DEFINE_bool("download", True, "", flag_values=fv)
  return fv


def test_typed_flags_win_over_a_later_flagfile_and_are_reported(tmp_path):
  cfg = tmp_path / "x.cfg"
  cfg.write_text("--model_dir=runs/x\n--dataset=embedded\n--width=32\n--download\n")
  fv = _flag_values()
  fail = lambda message: pytest.fail(message)
  argv = cli.order_flags(["prog", "--model_dir=mine", "--width=32", f"--flagfile={cfg}",
                          "--nodownload"], fv, fail)
  assert argv[1] == f"--flagfile={cfg}"
  fv(argv)
  assert fv.model_dir == "mine" and fv.dataset == "embedded" and fv.width == 32
  assert not fv.download
  # Only values that differ from the file's are overrides.
  assert [(n, v, old) for n, v, old, _ in cli.OVERRIDES] == [
      ("model_dir", "mine", "runs/x"), ("download", "false", "true")]
  assert "--model_dir=mine (was runs/x in" in cli.describe_overrides()


def test_a_missing_flagfile_is_one_line(tmp_path):
  messages = []

  def fail(message):
    messages.append(message)
    raise SystemExit(1)
  with pytest.raises(SystemExit):
    cli.order_flags(["prog", f"--flagfile={tmp_path}/nope.cfg"], _flag_values(), fail)
  assert len(messages) == 1 and "nope.cfg: no such file" in messages[0]
  assert "\n" not in messages[0]
