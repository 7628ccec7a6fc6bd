"""The headline QAGAN command and bin/fit_niqe_prior end to end (the scripts in this process,
`tests.scripts`). Spectral norm's state across a SIGKILL is tested in tests/test_cli.py."""

import json
import os

import numpy as np
import pytest

from tests import scripts

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, cwd, check=True):
  """args: [path of bin/NAME, its arguments...]."""
  return scripts.run(os.path.basename(args[0]), *args[1:], cwd=cwd, check=check)


@pytest.mark.slow
@pytest.mark.parametrize("name,expected", [
    ("stl10_48_niqe", ("niqe", "stl_grad", 48, "wasserstein", "none")),
    ("cifar10_sngan_niqe", ("niqe", "cifar_grad", 32, "hinge", "spectral"))])
def test_headline_command_with_overrides_runs_from_a_fresh_directory(tmp_path, name, expected):
  # As written in the README, from a directory holding the configs, with the overrides that make
  # it fit this machine: the config's --model_dir (runs/NAME) is relative to it. One step: the
  # configs regularise every step, so later steps (7 s each at these widths) run the same graph.
  # One D update: the config's 5 would trace the same D update 5 times (16 s more per config;
  # the smoke run, tests/test_cli.py, trains with the paper's 5 unrolled updates).
  os.symlink(os.path.join(REPO, "configs"), tmp_path / "configs")
  _run([os.path.join(REPO, "bin", "train"), f"--flagfile=configs/{name}.cfg",
        "--dataset=embedded", "--max_steps=1", "--batch_size=8", "--disc_iters=1"], cwd=tmp_path)
  run_dir = tmp_path / "runs" / name
  assert (run_dir / "ckpt-1.index").exists()
  with open(run_dir / "config.json") as f:
    config = json.load(f)
  assert (config["penalty"], config["niqe_prior"], config["resolution"], config["loss"],
          config["d_norm"]) == expected


@pytest.mark.slow
def test_fit_niqe_prior_from_a_run_and_from_sobel(tmp_path, tiny_run):
  run_dir = tiny_run  # A trained run's D (read only).
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
        f"--model_dir={tmp_path / 'qa'}", "--max_steps=1", "--num_examples=64", "--disc_iters=1",
        f"--niqe_prior={outputs['d_gradient_magnitude']}"], cwd=REPO)
  # Its bad inputs are in tests/test_bad_inputs.py.


@pytest.mark.slow
def test_a_run_from_before_the_niqe_groups_resumes_with_its_own_settings(tmp_path):
  """A config.json written before niqe_smoothing and niqe_group_size existed (batch pooling, no
  smoothing: the defaults then) resumes with those settings under the same command, although
  the defaults are now groups and the binomial smoothing."""
  run_dir = tmp_path / "old"
  argv = [os.path.join(REPO, "bin", "train"), "--flagfile=configs/smoke_niqe.cfg",
          f"--model_dir={run_dir}", "--num_examples=32", "--width=8", "--batch_size=8",
          "--disc_iters=1", "--log_every=1", "--save_every=1"]
  _run(argv + ["--max_steps=1", "--niqe_pooling=batch", "--niqe_smoothing=none"], cwd=REPO)
  with open(run_dir / "config.json") as f:
    config = json.load(f)
  for key in ("niqe_smoothing", "niqe_group_size", "gp_every", "qa_every"):
    del config[key]  # What the previous version wrote.
  with open(run_dir / "config.json", "w") as f:
    json.dump(config, f)
  proc = _run(argv + ["--max_steps=2"], cwd=REPO)
  assert "Restored" in proc.stderr and "step 2/2" in proc.stderr
  assert ("Resuming with the run's own values of flags not given (config.json): "
          "niqe_pooling=batch, niqe_smoothing=none.") in proc.stderr
  with open(run_dir / "config.json") as f:
    config = json.load(f)
  assert (config["niqe_pooling"], config["niqe_smoothing"]) == ("batch", "none")
  # A flag typed on the command line still wins, and a changed penalty setting is refused.
  proc = _run(argv + ["--max_steps=3", "--niqe_pooling=group"], cwd=REPO, check=False)
  assert proc.returncode == 1 and "niqe_pooling: 'batch' -> 'group'" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("penalty", ["wgan_gp", "ssim", "niqe"])
def test_the_sndcgan_architecture_trains_with_every_penalty_and_samples(tmp_path, penalty):
  run_dir = tmp_path / "sndcgan"
  _run([os.path.join(REPO, "bin", "train"), "--flagfile=configs/smoke.cfg",
        "--architecture=sndcgan", f"--penalty={penalty}", "--max_steps=3",
        f"--model_dir={run_dir}", "--num_examples=64", "--width=8", "--disc_iters=1"], cwd=REPO)
  with open(run_dir / "config.json") as f:
    assert json.load(f)["architecture"] == "sndcgan"
  if penalty == "niqe":  # bin/sample rebuilds the run's architecture from config.json.
    _run([os.path.join(REPO, "bin", "sample"), f"--model_dir={run_dir}",
          f"--output={tmp_path / 'grid.png'}", "--num_samples=4"], cwd=REPO)
    assert (tmp_path / "grid.png").exists()


@pytest.mark.slow
def test_report_of_a_run_without_evaluation_has_losses_samples_and_the_fid_commands(
    tmp_path, tiny_run):
  """Offline, bin/train alone leads to a report (issue 45): the losses, the sample grid and a
  table of gaps, with one warning that gives the two commands for FID."""
  out = str(tmp_path / "report")
  proc = scripts.run("report", tiny_run, f"--output={out}", cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-2000:]
  warnings = [line for line in proc.stderr.splitlines() if "has no evaluation" in line]
  assert len(warnings) == 1, proc.stderr[-2000:]
  for text in ("bin/report: warning:", "bin/compute_stats --dataset=embedded --resolution=32",
               f"bin/evaluate --model_dir={tiny_run}", "bin/fetch_inception"):
    assert text in warnings[0], warnings[0]
  written = sorted(os.listdir(out))
  assert {"losses.png", "table.md", "samples_run.png", "d_weights.png"} <= set(written), written
  samples = sorted(os.listdir(os.path.join(tiny_run, "samples")))
  newest = [n for n in samples if n.endswith("_ema.png")][-1]
  with open(os.path.join(tiny_run, "samples", newest), "rb") as a, \
      open(os.path.join(out, "samples_run.png"), "rb") as b:
    assert a.read() == b.read()
  with open(os.path.join(out, "table.md")) as f:
    assert "the run has no evaluation" in f.read()
