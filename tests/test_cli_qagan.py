"""The headline QAGAN command and bin/fit_niqe_prior end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, cwd, check=True):
  proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                        timeout=900)
  if check and proc.returncode != 0:
    raise AssertionError(f"{args} failed:\n{proc.stderr[-3000:]}")
  return proc


@pytest.mark.slow
def test_headline_command_with_overrides_runs_from_a_fresh_directory(tmp_path):
  # As written in the README, from a directory holding the configs, with the overrides that make
  # it fit this machine: the config's --model_dir (runs/stl10_48_niqe) is relative to it.
  os.symlink(os.path.join(REPO, "configs"), tmp_path / "configs")
  _run([os.path.join(REPO, "bin", "train"), "--flagfile=configs/stl10_48_niqe.cfg",
        "--dataset=embedded", "--max_steps=3", "--batch_size=8"], cwd=tmp_path)
  run_dir = tmp_path / "runs" / "stl10_48_niqe"
  assert (run_dir / "ckpt-3.index").exists()
  with open(run_dir / "config.json") as f:
    config = json.load(f)
  assert (config["penalty"], config["niqe_prior"], config["resolution"]) == ("niqe", "stl_grad",
                                                                             48)


@pytest.mark.slow
def test_fit_niqe_prior_from_a_run_and_from_sobel(tmp_path):
  run_dir = str(tmp_path / "warmup")
  _run([os.path.join(REPO, "bin", "train"), "--flagfile=configs/smoke.cfg",
        f"--model_dir={run_dir}", "--max_steps=2", "--num_examples=64"], cwd=REPO)
  outputs = {}
  # "discriminator" is the older name of d_gradient (signed D gradients).
  for source, recorded in (("d_gradient_magnitude", "d_gradient_magnitude"),
                           ("sobel_magnitude", "sobel_magnitude"),
                           ("discriminator", "d_gradient")):
    out = str(tmp_path / f"{source}.npz")
    args = [os.path.join(REPO, "bin", "fit_niqe_prior"), f"--source={source}",
            "--dataset=embedded", "--num_images=64", f"--output={out}"]
    if source != "sobel_magnitude":
      args.append(f"--model_dir={run_dir}")
    proc = _run(args, cwd=REPO)
    assert "one block" not in proc.stderr and f"Wrote {out}" in proc.stdout
    outputs[source] = out
    with np.load(out) as f:
      cov = f["cov"]
      assert f["mu"].shape == (36,) and np.allclose(cov, cov.T)
      assert np.linalg.eigvalsh(cov).min() > 0
      metadata = json.loads(str(f["metadata"]))
    assert (metadata["source"], metadata["block_size"], metadata["resolution"]) == (
        recorded, 32, 32)
    assert metadata["provenance"]["dataset"] == "embedded"
  # A fitted prior trains.
  _run([os.path.join(REPO, "bin", "train"), "--flagfile=configs/smoke_niqe.cfg",
        f"--model_dir={tmp_path / 'qa'}", "--max_steps=1", "--num_examples=64",
        f"--niqe_prior={outputs['d_gradient_magnitude']}"], cwd=REPO)
  # Its bad inputs are in tests/test_bad_inputs.py.
