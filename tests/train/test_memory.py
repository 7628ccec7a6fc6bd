"""bin/train's memory estimate (qagan_tf/train/memory.py): its factors are the measured cells."""

import json
import os

import pytest

from qagan_tf import config as config_lib
from qagan_tf.train import memory

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_factors_are_the_measured_cells_of_the_benchmark():
  with open(os.path.join(REPO, "benchmarks", "smoke_cpu.json")) as f:
    cells = json.load(f)["memory"]["cells"]
  for (penalty, precision), value in memory.FACTORS.items():
    ratios = [cells[f"{penalty}/{r}px/{precision}"]["iteration_mib"]
              / cells[f"wgan_gp/{r}px/float32"]["iteration_mib"] for r in (32, 48, 96)]
    assert value == pytest.approx(max(ratios), abs=5e-4), (penalty, precision, ratios)


@pytest.mark.parametrize("penalty,precision,expected", [
    ("wgan_gp", "none", 1.0), ("niqe", "none", 1.045), ("ssim", "bfloat16", 0.556),
    ("niqe", "float16", 0.574)])
def test_the_estimate_follows_the_penalty_and_the_precision(penalty, precision, expected):
  base = config_lib.TrainConfig.create(resolution=48, width=64, batch_size=32)
  config = config_lib.TrainConfig.create(resolution=48, width=64, batch_size=32, penalty=penalty,
                                         mixed_precision=precision)
  assert memory.factor(config) == expected
  assert memory.per_image_bytes(config) == pytest.approx(memory.per_image_bytes(base) * expected)
  # A machine where the float32 WGAN-GP batch just fits: bfloat16 leaves room, NIQE does not.
  total = memory.iteration_bytes(base) / memory.USABLE_FRACTION * 1.01
  if expected > 1.01:
    with pytest.raises(ValueError, match=f"--penalty={penalty} and --mixed_precision={precision}"):
      memory.check_fits(config, total=total)
  else:
    memory.check_fits(config, total=total)
