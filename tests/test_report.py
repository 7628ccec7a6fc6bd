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


def _figure_problems(fig):
  """What a reader would find empty: axes without plotted data, or a figure without axes that
  does not say what was not logged."""
  texts = " ".join(t.get_text() for t in fig.texts)
  if not fig.axes:
    return [] if "not logged" in texts else ["a figure with neither axes nor a 'not logged' text"]
  problems = []
  for ax in fig.axes:
    if not (ax.lines or ax.collections or ax.patches or ax.images):
      problems.append(f"empty axes {ax.get_title()!r}")
    elif "step" not in ax.get_title():
      problems.append(f"no step in the title {ax.get_title()!r}")
    elif ax.get_legend() is None:
      problems.append(f"no legend on {ax.get_title()!r}")
  return problems


def test_every_plot_has_data_or_says_what_was_not_logged(tmp_path, monkeypatch):
  saved = {}
  original = report._save

  def capture(fig, path):
    saved[os.path.basename(path)] = (_figure_problems(fig), [
        (ax.get_title(), [len(line.get_xdata()) for line in ax.lines],
         [line.get_marker() for line in ax.lines]) for ax in fig.axes],
        " ".join(t.get_text() for t in fig.texts))
    return original(fig, path)

  monkeypatch.setattr(report, "_save", capture)
  a = report.load_run(_make_run(str(tmp_path / "a")), label="A")
  bare = str(tmp_path / "bare")  # One logged step, no FID, no histograms: a 48-px run.
  os.makedirs(bare)
  config_lib.save_config(config_lib.TrainConfig.create(
      dataset="embedded", resolution=48, width=4, z_dim=8, penalty="wgan_gp"), bare)
  writer = tf.summary.create_file_writer(bare)
  with writer.as_default():
    tf.summary.scalar("train/d_loss", -3.0, step=1)
  writer.close()
  b = report.load_run(bare)
  report.write([a, b], str(tmp_path / "out"))
  assert set(saved) == {"curves_embedded_32.png", "curves_embedded_48.png", "losses.png",
                        "d_weights.png", "mscn.png"}
  for name, (problems, _, _) in saved.items():
    assert not problems, (name, problems)
  # 32 px: FID only (no run logged IS); 48 px: nothing logged, said in words.
  assert [t for t, _, _ in saved["curves_embedded_32.png"][1]] == ["fid up to step 4"]
  assert not saved["curves_embedded_48.png"][1]
  assert "not logged: eval/fid, eval/is" in saved["curves_embedded_48.png"][2]
  # Losses: d_loss of both runs (the one-point series has a marker), g_loss of A only.
  panels = {t: (n, m) for t, n, m in saved["losses.png"][1]}
  assert panels["d_loss up to step 4"] == ([4, 1], ["o", "o"])
  assert "not logged: train/wasserstein" in saved["losses.png"][2]
  # Histograms: one panel (A's); the bare run is named as not logged.
  assert [t for t, _, _ in saved["d_weights.png"][1]] == ["A: D kernels, step 4"]
  assert "not logged in bare" in saved["d_weights.png"][2]


def test_report_warns_of_duplicates_and_mixed_statistics_and_says_why_cells_are_empty(tmp_path):
  a = report.load_run(_make_run(str(tmp_path / "a")), label="A")
  again = report.load_run(str(tmp_path / "a"), label="A2")
  other = _make_run(str(tmp_path / "o"))
  with open(os.path.join(other, "eval", "eval_step_0000004.json")) as f:
    evaluated = json.load(f)
  evaluated.update(stats="other.npz", stats_sha256="ab" * 32)
  del evaluated["summary"]["ema"]["is_mean"]
  evaluation.write_report(evaluated, os.path.join(other, "eval"), overwrite=True)
  o = report.load_run(other, label="O")
  lines = report.warnings([a, again, o])
  assert any("is given twice (as A and A2)" in line for line in lines), lines
  mixed = [line for line in lines if "mixes statistics" in line]
  assert len(mixed) == 1 and "A, A2 against s.npz" in mixed[0], mixed
  assert "O against other.npz (abababab)" in mixed[0]
  assert report.warnings([a]) == []
  md = report.markdown(report.rows([a, o]))
  assert "| samples | statistics | IS |" in md
  assert "other.npz (abababab)" in md
  assert "—: IS needs the Inception softmax layer" in md
