"""bin/report's library: run directories read back into the table, CSV and plots."""

import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from qagan_tf import config as config_lib
from qagan_tf import report
from qagan_tf import evaluation


def _make_run(path, penalty="wgan_gp", resolution=32, evaluated=True, fid=(30.0, 20.0)):
  """A run directory as bin/train and bin/evaluate leave it (events written with tf.summary)."""
  os.makedirs(path)
  config = config_lib.TrainConfig.create(dataset="embedded", resolution=resolution, width=4,
                                         z_dim=8, penalty=penalty)
  config_lib.save_config(config, path)
  writer = tf.summary.create_file_writer(path)
  rng = np.random.default_rng(len(path))
  with writer.as_default():
    for step in (1, 2, 3, 4):
      tf.summary.scalar("train/d_loss", -float(step), step=step)
      tf.summary.scalar("train/g_loss", float(step), step=step)
      tf.summary.image("samples/ema", np.zeros((1, 4, 4, 3), np.float32), step=step)
    for step, value in zip((2, 4), fid):
      tf.summary.scalar("eval/fid", value, step=step)
      tf.summary.histogram("discriminator/block1/kernel", rng.normal(size=100) * step, step=step)
      tf.summary.histogram("quality/mscn_spatial_real", rng.normal(size=100), step=step)
  writer.close()
  if evaluated:
    runs = {g: [{"fid": f, "is_mean": 2.0 + f / 100, "kid": 0.01 * f, "precision": 0.5,
                 "recall": 0.25 + f / 1000, "density": 0.8 + f / 100, "coverage": 0.4 + f / 200,
                 "niqe": 9.0 + f} for f in (10.0, 12.0)]
            for g in ("raw", "ema")}
    evaluation.write_report({"model_dir": path, "stats": "s.npz", "step": 4, "num_samples": 30,
                             "repeats": 2, "splits": 10, "weights_sha256": "0" * 64, "runs": runs,
                             "summary": {g: evaluation.summarize(r) for g, r in runs.items()}},
                            os.path.join(path, "eval"))
  return path


def test_the_table_holds_the_evaluations_numbers_and_marks_gaps(tmp_path):
  a = report.load_run(_make_run(str(tmp_path / "a")), label="WGAN-GP")
  b = report.load_run(_make_run(str(tmp_path / "b"), penalty="niqe", evaluated=False))
  c = report.load_run(_make_run(str(tmp_path / "c"), resolution=48))
  assert a.last_step == 4 and a.scalars["eval/fid"] == [(2, 30.0), (4, 20.0)]
  assert a.histograms["discriminator/block1/kernel"][0] == 4
  assert a.wall_hours >= 0.0
  paths = report.write([a, b, c], str(tmp_path / "out"))
  names = sorted(os.path.basename(p) for p in paths)
  assert names == ["curves_embedded_32.png", "curves_embedded_48.png", "d_weights.png",
                   "losses.png", "mscn.png", "table.csv", "table.md"]
  for p in paths:
    assert os.path.getsize(p) > (1000 if p.endswith(".png") else 100)

  with open(a.evaluation["path"]) as f:
    expected = json.load(f)["summary"]
  with open(tmp_path / "out" / "table.csv") as f:
    table = list(csv.DictReader(f))
  assert [(r["run"], r["generator"], r["resolution"]) for r in table] == [
      ("WGAN-GP", "raw", "32"), ("WGAN-GP", "ema", "32"), ("b", "—", "32"), ("c", "raw", "48"),
      ("c", "ema", "48")]
  for row in table[:2]:
    summary = expected[row["generator"]]
    for key, name, scale in report.METRICS:
      assert float(row[f"{name} mean"]) == pytest.approx(summary[key]["mean"] * scale, abs=1e-3)
      assert float(row[f"{name} std"]) == pytest.approx(summary[key]["std"] * scale, abs=1e-3)
  assert table[2]["FID mean"] == "" and table[2]["penalty"] == "niqe"

  md = (tmp_path / "out" / "table.md").read_text()
  assert md.index("## embedded, 32 px") < md.index("| b | niqe | — |") < md.index(
      "## embedded, 48 px")
  fid = expected["ema"]["fid"]
  assert f"| {fid['mean']:.3f} ± {fid['std']:.3f} |" in md


def test_the_latest_evaluation_wins_and_bad_directories_are_named(tmp_path):
  path = _make_run(str(tmp_path / "r"))
  with open(os.path.join(path, "eval", "eval_step_0000004.json")) as f:
    first = json.load(f)
  first["summary"]["ema"]["fid"]["mean"] = 1.5
  evaluation.write_report(first, os.path.join(path, "eval"))  # eval_step_0000004_2.json
  assert report.load_run(path).evaluation["summary"]["ema"]["fid"]["mean"] == 1.5
  with pytest.raises(report.ReportError, match="no such directory"):
    report.load_run(str(tmp_path / "missing"))
  with pytest.raises(report.ReportError, match="is not a run directory.*bin/train"):
    report.load_run(str(tmp_path))
  with open(os.path.join(path, "eval", "eval_step_0000009.json"), "w") as f:
    f.write("{not json")
  with pytest.raises(report.ReportError, match="eval_step_0000009.json: unreadable"):
    report.load_run(path)
