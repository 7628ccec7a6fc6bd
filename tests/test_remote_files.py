"""Run directories on a TensorFlow file system (gs://, s3://, ...), tested end to end on the
in-memory ram:// file system within one process: train, resume, sample, evaluate, report."""

import json
import uuid

import numpy as np
import pytest
import tensorflow as tf

from qagan_tf import config as config_lib
from qagan_tf import report, sampling
from qagan_tf import evaluation
from qagan_tf.metrics import features, stats_io
from qagan_tf.train import trainer as trainer_lib
from qagan_tf.utils import files, images as images_lib, runlock
from tests.reference import reference_path


def _config(**overrides):
  values = dict(dataset="embedded", resolution=32, width=4, z_dim=8, batch_size=4,
                disc_iters=1, max_steps=3, save_every=3, log_every=1, sample_every=3,
                histogram_every=3, num_sample_images=4, gp_weight=10.0)
  values.update(overrides)
  return config_lib.TrainConfig.create(**values)


def _images(n=24):
  return np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_atomic_writes_and_reads_through_gfile():
  root = f"ram://files-{uuid.uuid4().hex}"
  path = f"{root}/a/b/config.json"
  assert files.is_remote(path) and not files.is_remote("/tmp/x") and files.absolute(path) == path
  files.atomic_write_text(path, "first")
  files.atomic_write_text(path, "second")  # Replaces it.
  with files.open_file(path) as f:
    assert f.read() == "second"
  assert tf.io.gfile.listdir(f"{root}/a/b") == ["config.json"]  # No staged .tmp-* left.
  with pytest.raises(OSError, match="config2.json.*boom"):
    files.atomic_write(f"{root}/a/b/config2.json", lambda tmp: (_ for _ in ()).throw(
        OSError(5, "boom")))
  assert tf.io.gfile.listdir(f"{root}/a/b") == ["config.json"]
  assert isinstance(runlock.acquire(f"{root}/run"), runlock._NoLock)  # No flock there.


@pytest.mark.slow
def test_a_run_on_ram_trains_resumes_samples_evaluates_and_reports():
  run = f"ram://run-{uuid.uuid4().hex}"
  config = _config()
  config_lib.save_config(config, run)
  assert trainer_lib.Trainer(config, run, images=_images()).train() == 3
  assert config_lib.load_config(run) == config
  resumed = trainer_lib.Trainer(config.replace(max_steps=5), run, images=_images())
  assert resumed.restore() == 3
  assert resumed.train() == 5
  assert tf.io.gfile.exists(f"{run}/samples/step_0000003_ema.png")
  assert tf.train.latest_checkpoint(run).endswith("ckpt-5")

  generator, step = sampling.load_generator(run, ema=True)
  assert step == 5
  images_lib.save_png(f"{run}/grid.png", images_lib.make_grid(
      sampling.generate(generator, 4, 4, 0)))
  with tf.io.gfile.GFile(f"{run}/grid.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"

  extractor = features.InceptionFeatures(
      reference_path("inception/fid_inception_2015_12_05_pool3.npz"), batch_size=8)
  real = extractor.statistics([_images(16)], keep_activations=16)
  stats = f"{run}/stats.npz"
  stats_io.save_statistics(stats, real["mu"], real["sigma"], real["count"],
                           extractor.info["sha256"], activations=real["activations"])
  assert stats_io.is_statistics_file(stats)
  report_dict = evaluation.run_protocol(run, stats, extractor, num_samples=8, repeats=1,
                                        splits=1, generators=("ema",), batch_size=8,
                                        progress=False, log=lambda m: None, niqe_samples=4)
  json_path, md_path = evaluation.write_report(report_dict, f"{run}/eval")
  assert json_path == f"{run}/eval/eval_step_0000005.json"
  with tf.io.gfile.GFile(json_path) as f:
    assert json.load(f)["summary"]["ema"]["fid"]["mean"] > 0
  assert evaluation.write_report(report_dict, f"{run}/eval")[0].endswith("_2.json")

  loaded = report.load_run(run, label="ram")
  assert loaded.last_step == 5 and loaded.evaluation["step"] == 5
  assert [s for s, _ in loaded.scalars["train/d_loss"]] == [1, 2, 3, 4, 5]
  paths = report.write([loaded], f"{run}/report")
  for p in paths:
    assert tf.io.gfile.stat(p).length > 100, p
