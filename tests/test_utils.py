"""Command-line plumbing and small guarantees: flag order, the run-directory lock, config.json
validation, file modes, the FID clamp and reports that are never replaced silently."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from qagan_tf import config as config_lib
from qagan_tf import evaluation
from qagan_tf.metrics import fid
from qagan_tf.utils import cli, files, runlock
from qagan_tf.utils import images as images_lib


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


def test_the_run_lock_excludes_a_second_holder_and_survives_sigkill(tmp_path):
  run = str(tmp_path / "run")
  with runlock.acquire(run) as lock:
    record = json.loads(open(os.path.join(run, ".lock")).read())
    assert record["pid"] == os.getpid()
    # Another process cannot take it (flock locks belong to open file descriptions).
    code = ("import sys; from qagan_tf.utils import runlock\n"
            "try:\n  runlock.acquire(sys.argv[1])\nexcept runlock.RunDirectoryInUse as e:\n"
            "  print(e); sys.exit(3)\n")
    proc = subprocess.run([sys.executable, "-c", code, run], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    assert f"PID {os.getpid()}" in proc.stdout and "choose another --model_dir" in proc.stdout
    assert lock.path == os.path.join(run, ".lock")
  assert not os.path.exists(os.path.join(run, ".lock"))  # Released and removed.
  # A holder killed with SIGKILL leaves its file behind, but not its lock.
  holder = subprocess.Popen([sys.executable, "-c",
                             "import sys, time; from qagan_tf.utils import runlock\n"
                             "runlock.acquire(sys.argv[1]); print('held', flush=True); "
                             "time.sleep(600)", run], stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == "held"
  with pytest.raises(runlock.RunDirectoryInUse, match=f"PID {holder.pid}"):
    runlock.acquire(run)
  holder.kill()
  holder.wait()
  assert os.path.exists(os.path.join(run, ".lock"))  # Stale.
  runlock.acquire(run).release()


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


def test_output_files_respect_the_umask(tmp_path):
  for umask, mode in ((0o027, 0o640), (0o022, 0o644)):
    previous = os.umask(umask)
    try:
      files.atomic_write_text(str(tmp_path / f"{umask:o}.txt"), "x")
    finally:
      os.umask(previous)
    assert (os.stat(tmp_path / f"{umask:o}.txt").st_mode & 0o777) == mode


def test_fid_of_identical_statistics_is_clamped_at_zero(monkeypatch):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(400, 64))
  mu, sigma = x.mean(0), np.cov(x, rowvar=False)
  value = fid.frechet_distance(mu, sigma, mu, sigma)
  assert 0.0 <= value < 1e-6
  # The square root's rounding overshooting by 5e-5 (as bin/fid's -0.000118 on 2048 features).
  exact = fid.trace_sqrt_product
  monkeypatch.setattr(fid, "trace_sqrt_product", lambda a, b, m: exact(a, b, m) + 5e-5)
  assert fid.frechet_distance(mu, sigma, mu, sigma) == 0.0
  monkeypatch.undo()
  assert fid.frechet_distance(mu, sigma, mu + 1.0, sigma) == pytest.approx(64.0, rel=1e-6)


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
  assert "n/a: IS needs the Inception softmax layer" in text and "--keep_activations" in text
  third, _ = evaluation.write_report(report, str(tmp_path), overwrite=True)
  assert third == first


def test_samples_are_fixed_by_seed_and_batch_size_and_uint8_matches_float():
  import keras
  from qagan_tf import models, sampling
  keras.utils.set_random_seed(0)
  g = models.Generator(32, width=4, z_dim=8)
  g.build_for_inference()
  a = sampling.generate(g, 7, batch_size=3, seed=5)
  assert a.dtype == np.uint8 and a.shape == (7, 32, 32, 3)
  np.testing.assert_array_equal(a, sampling.generate(g, 7, batch_size=3, seed=5))
  by_hand = [g(sampling.latents(n, 8, 5, start), training=False).numpy()
             for start, n in ((0, 3), (3, 3), (6, 1))]
  np.testing.assert_array_equal(a, images_lib.to_uint8(np.concatenate(by_hand)))
  floats = sampling.generate(g, 7, batch_size=3, seed=5, uint8=False)
  np.testing.assert_array_equal(images_lib.to_uint8(floats), a)
  assert not np.array_equal(sampling.generate(g, 7, seed=6), a)
  assert sampling.generate(g, 0).shape == (0, 32, 32, 3)


def test_progress_reports_rate_eta_and_a_bar():
  import io
  from qagan_tf.utils import progress as progress_lib
  p = progress_lib.Progress(100, "step", unit="it", start=10)
  p._last_set -= 2.0  # Two seconds ago.
  assert p.set(30) == pytest.approx(10.0, rel=0.05)
  assert re.fullmatch(r"step 30/100 \(30\.0%\) \d+\.\d\d it/s ETA \d+s", p.describe())
  stream = io.StringIO()
  with progress_lib.Progress(4, "features", stream=stream, interval=0.0) as bar:
    bar.update(2)
    bar.update(2)
  lines = stream.getvalue().splitlines()
  assert lines[0].startswith("features: [############------------] 2/4 img")
  assert lines[-1].startswith("features: [########################] 4/4 img")
  assert " in " in lines[-1]
  silent = io.StringIO()
  with progress_lib.Progress(4, "x", stream=silent, enabled=False) as bar:
    bar.update(4)
  assert silent.getvalue() == ""
