"""The goldens tool (qagan_bench/goldens.py) that checked the terms refactor bit for bit: a
recorded golden checks equal against a second run of the same code, and names what differs."""

import json

import pytest

from qagan_bench import goldens


@pytest.mark.slow
def test_a_golden_checks_equal_against_a_second_run_and_names_a_difference(tmp_path,
                                                                            monkeypatch):
  """Two training runs of the LeCam case: the recorded one, and the check's second run, which
  must be bit-equal to it. The check against a file then changed in one metric and one weight
  digest names both differences; it compares the second run's golden again rather than training
  a third time."""
  monkeypatch.setattr(goldens, "ITERATIONS", 2)
  path = str(tmp_path / "goldens.json")
  goldens.record(path, ["lecam"])
  with open(path) as f:
    recorded = json.load(f)
  case = recorded["cases"]["lecam"]
  assert len(case["metrics"]) == 2 and "lecam" in case["metrics"][0]
  assert case["config"]["lecam_weight"] == 0.1 and case["config"]["width"] == 8
  assert set(case["weights"]) == {"generator", "discriminator", "ema_generator", "g_optimizer",
                                  "d_optimizer"}
  second = goldens.golden  # The second run is a real one: the same code, the same bits.
  runs = []
  monkeypatch.setattr(goldens, "golden", lambda name: runs.append(second(name)) or runs[-1])
  assert goldens.check(path) == [] and len(runs) == 1
  # The check against a changed file compares that second run's golden again (the comparison
  # is the subject here, not a third training run).
  monkeypatch.setattr(goldens, "golden", lambda name: runs[0])
  case["metrics"][1]["d_loss"] += 1e-7
  case["weights"]["discriminator"][0] = "0" * 64
  with open(path, "w") as f:
    json.dump(recorded, f)
  assert goldens.check(path) == ["lecam: iteration 2 differs in d_loss",
                                 "lecam: discriminator differs"]
