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
