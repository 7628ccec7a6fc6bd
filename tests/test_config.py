"""config.json: values of the wrong type or a missing architecture key are refused on load."""

import json

import pytest

from qagan_tf import config as config_lib


def test_config_json_values_are_checked_on_load(tmp_path):
  config_lib.save_config(config_lib.TrainConfig(), str(tmp_path))
  path = tmp_path / config_lib.CONFIG_FILENAME
  good = json.loads(path.read_text())
  assert config_lib.load_config(str(tmp_path)) == config_lib.TrainConfig()
  for change, match in (({"width": "eight"}, "'width' is 'eight'.*int"),
                        ({"lr": "fast"}, "'lr'.*float"),
                        ({"download": 1}, "'download'.*bool"),
                        ({"batch_size": 0}, "batch_size=0"),
                        ({"width": None}, "'width'")):
    path.write_text(json.dumps({**good, **change}))
    with pytest.raises(ValueError, match=match):
      config_lib.load_config(str(tmp_path))
  del good["width"]
  path.write_text(json.dumps(good))
  with pytest.raises(ValueError, match="has no 'width'.*cannot be rebuilt"):
    config_lib.load_config(str(tmp_path))


def test_a_resumed_run_reports_no_change_in_the_settings_of_a_penalty_it_does_not_use():
  """config.json does not record an unused penalty's settings, so a rerun of the same command
  read them as defaults ("auto") against the new config's resolved ones and logged "Config
  change on resume: niqe_xla 'auto' -> 'off'" (issue 45); a change that is recorded is still
  reported."""
  new = config_lib.TrainConfig.create(penalty="wgan_gp").resolve_auto()
  saved = config_lib.TrainConfig.from_dict(config_lib.recorded(new))
  assert config_lib.check_config_change(saved, new) == []
  assert config_lib.check_config_change(saved, new.replace(lr=1e-3)) == [("lr", 2e-4, 1e-3)]
  niqe = config_lib.TrainConfig.create(penalty="niqe").resolve_auto()
  resumed = config_lib.TrainConfig.from_dict(config_lib.recorded(niqe))
  assert config_lib.check_config_change(resumed, niqe.replace(niqe_xla="on"),
                                        allow_change=True) == [("niqe_xla", "off", "on")]
