"""bin/compute_stats, bin/fid, bin/evaluate, bin/fetch_inception and in-training FID end to end
(the scripts in this process: `tests.scripts`)."""

import json
import os

import numpy as np
import pytest

from qagan_tf.metrics import fid, stats_io
from tests import scripts
from tests.events import scalar_steps
from tests.reference import reference_path


def run(script, *args, env=None, check=True):
  return scripts.run(script, *args, env=env, check=check)


@pytest.fixture(scope="module")
def weights_env():
  return {"QAGAN_INCEPTION_WEIGHTS": reference_path("inception",
                                                    "fid_inception_2015_12_05_pool3.npz")}


@pytest.mark.slow
def test_compute_stats_and_fid_agree_with_the_golden_route(tmp_path, weights_env):
  with np.load(reference_path("inception", "golden_pool3.npz")) as g:
    images_a, feats_a = g["images_32"], g["pool3_32"]
    images_b, feats_b = g["images_64"], g["pool3_64"]
  a, b = str(tmp_path / "a.npz"), str(tmp_path / "b.npz")
  np.savez(a, images=images_a)
  folder = tmp_path / "b_folder"
  folder.mkdir()
  from PIL import Image
  for i, im in enumerate(images_b):
    Image.fromarray(im).save(folder / f"{i:02d}.png")
  np.savez(b, images=images_b)
  # FID of so few samples (below 2048) is dominated by rank-deficient covariances; the golden
  # route still pins it down to the accuracy of the features. The golden FID is the exact trace
  # from the activations ("gram": no 2048 x 2048 sqrtm, 13 s of LAPACK here), which
  # tests/metrics/test_scores.py checks against TTUR's sqrtm.
  golden = fid.fid_from_activations(feats_a, feats_b, method="gram")

  stats = str(tmp_path / "stats" / "a_stats.npz")
  run("compute_stats", f"--images={a}", f"--output={stats}", "--keep_activations=5",
      env=weights_env)
  saved = stats_io.load_statistics(stats, dim=2048)
  assert saved["count"] == len(images_a) and saved["activations"].shape == (5, 2048)
  mu, sigma = fid.activation_statistics(feats_a)
  np.testing.assert_allclose(saved["mu"], mu, atol=1e-4)

  proc = run("fid", stats, str(folder), "--json", env=weights_env)
  result = json.loads(proc.stdout)
  assert [i["kind"] for i in result["inputs"]] == ["statistics", "images"]
  assert result["fid"] == pytest.approx(golden, rel=1e-3)
  plain = run("fid", a, b, env=weights_env).stdout.strip()
  assert float(plain) == pytest.approx(result["fid"], rel=1e-6)


@pytest.mark.slow
def test_fid_and_compute_stats_errors(tmp_path, weights_env):
  np.savez(tmp_path / "one.npz", images=np.zeros((1, 32, 32, 3), np.uint8))
  np.savez(tmp_path / "noimages.npz", pixels=np.zeros((4, 32, 32, 3), np.uint8))
  np.savez(tmp_path / "small_stats.npz", mu=np.zeros(64), sigma=np.eye(64))
  np.savez(tmp_path / "float.npz", images=np.zeros((4, 32, 32, 3), np.float32))
  cases = [
      ("fid", [str(tmp_path / "one.npz"), str(tmp_path / "small_stats.npz")], "at least 2"),
      ("fid", [str(tmp_path / "noimages.npz"), str(tmp_path / "one.npz")], "no array 'images'"),
      ("fid", [str(tmp_path / "small_stats.npz"), str(tmp_path / "small_stats.npz")],
       "expected 2048"),
      ("fid", [str(tmp_path / "float.npz"), str(tmp_path / "float.npz")], "uint8"),
      ("fid", [str(tmp_path / "missing"), str(tmp_path / "one.npz")], "no such file"),
      ("compute_stats", [f"--images={tmp_path / 'one.npz'}", f"--output={tmp_path / 'o.npz'}"],
       "at least 2"),
      ("compute_stats", [f"--images={tmp_path / 'noimages.npz'}", f"--output={tmp_path / 'o.txt'}"],
       "must end in .npz"),
      ("compute_stats", [f"--output={tmp_path / 'o.npz'}"], "exactly one of"),
  ]
  for script, args, message in cases:
    proc = run(script, *args, env=weights_env, check=False)
    assert proc.returncode != 0 and message in proc.stderr, (script, args, proc.stderr[-800:])
    assert "Traceback" not in proc.stderr
  np.savez(tmp_path / "two.npz", images=np.zeros((2, 32, 32, 3), np.uint8))
  proc = run("compute_stats", f"--images={tmp_path / 'two.npz'}",
             f"--output={tmp_path / 'o.npz'}", env={"QAGAN_INCEPTION_WEIGHTS": "",
                                                    "QAGAN_CACHE_DIR": str(tmp_path / "c")},
             check=False)
  assert proc.returncode != 0 and "bin/fetch_inception" in proc.stderr
  assert not os.path.exists(tmp_path / "o.npz")


@pytest.mark.slow
def test_fetch_inception_offline_says_how_to_supply_the_file(tmp_path):
  proc = run("fetch_inception", "--url=http://127.0.0.1:9/inception-2015-12-05.tgz",
             f"--output={tmp_path / 'w.npz'}", check=False)
  assert proc.returncode != 0 and "--archive=" in proc.stderr and "Traceback" not in proc.stderr
  assert not os.listdir(tmp_path)


@pytest.mark.slow
def test_in_training_fid_and_the_evaluation_protocol(tmp_path, weights_env):
  from qagan_tf.data import sources
  real = str(tmp_path / "real.npz")
  np.savez(real, images=sources.embedded_images(32, 40, seed=5))
  stats = str(tmp_path / "real_stats.npz")
  run("compute_stats", f"--images={real}", f"--output={stats}", "--keep_activations=40",
      env=weights_env)
  model_dir = str(tmp_path / "run")
  run("train", "--flagfile=configs/smoke.cfg", f"--model_dir={model_dir}", "--max_steps=2",
      "--num_examples=64", "--disc_iters=1", "--eval_every=1", "--eval_num_samples=20",
      f"--eval_stats={stats}", env=weights_env)
  for tag in ("eval/fid", "eval/kid", "eval/precision", "eval/recall", "eval/niqe"):
    assert scalar_steps(model_dir, tag) == [1, 2], tag

  run("evaluate", f"--model_dir={model_dir}", f"--stats={stats}", "--num_samples=30",
      "--repeats=2", env=weights_env)
  with open(os.path.join(model_dir, "eval", "eval_step_0000002.json")) as f:
    report = json.load(f)
  for name in ("raw", "ema"):
    summary = report["summary"][name]
    assert len(summary["fid"]["values"]) == 2 and summary["fid"]["mean"] > 0
    assert "kid" in summary
    for key in ("precision", "recall", "coverage"):
      assert all(0.0 <= v <= 1.0 for v in summary[key]["values"]), (name, key)
    assert all(v >= 0.0 for v in summary["density"]["values"]), name
    assert len(summary["niqe"]["values"]) == 2 and summary["niqe"]["mean"] > 0
    for run_result in report["runs"][name]:
      assert {"precision", "recall", "niqe", "niqe_std"} <= set(run_result)
  assert report["niqe_samples"] == 30
  with open(os.path.join(model_dir, "eval", "eval_step_0000002.md")) as f:
    table = f.read()
  ema = report["summary"]["ema"]
  assert "| ema |" in table
  assert "| precision | recall | density | coverage | NIQE |" in table
  cells = " | ".join(f"{ema[k]['mean']:.3f} ± {ema[k]['std']:.3f}"
                     for k in ("precision", "recall", "density", "coverage", "niqe"))
  assert f"| {cells} |" in table

  proc = run("evaluate", f"--model_dir={model_dir}", f"--stats={tmp_path / 'none.npz'}",
             env=weights_env, check=False)
  assert proc.returncode != 0 and "no such file" in proc.stderr and "Traceback" not in proc.stderr
  proc = run("train", "--flagfile=configs/smoke.cfg", f"--model_dir={tmp_path / 'r2'}",
             "--eval_every=10", check=False)
  assert proc.returncode != 0 and "eval_stats" in proc.stderr
  assert not os.path.exists(tmp_path / "r2" / "config.json")
