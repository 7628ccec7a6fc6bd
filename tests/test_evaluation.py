"""Evaluation reports: a second report of the same step is kept beside the first."""

import os

from qagan_tf import evaluation


def test_a_report_of_the_same_step_is_kept(tmp_path):
  report = {"model_dir": "m", "step": 7, "num_samples": 10, "repeats": 1, "stats": "s",
            "weights_sha256": "0" * 64, "splits": 10,
            "summary": {"ema": {"fid": {"mean": 1.0, "std": 0.0, "values": [1.0]}}}}
  first, _ = evaluation.write_report(report, str(tmp_path))
  second, second_md = evaluation.write_report(dict(report, step=7), str(tmp_path))
  assert first.endswith("eval_step_0000007.json")
  assert second.endswith("eval_step_0000007_2.json") and os.path.exists(first)
  # IS and KID absent: the table says why and how to get them.
  text = open(second_md).read()
  assert "—: IS needs the Inception softmax layer" in text and "--keep_activations" in text
  assert "n/a" not in text  # One mark of a missing value, as bin/report's.
  third, _ = evaluation.write_report(report, str(tmp_path), overwrite=True)
  assert third == first
