"""bin/benchmark end to end on a tiny configuration (the figures themselves are not asserted:
timing belongs in benchmarks/, not in tests). The script runs in this process (`tests.scripts`)."""

import json
import os

import numpy as np
import pytest

from tests import reference
from tests import scripts

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_benchmark_writes_every_figure(tmp_path):
  out = str(tmp_path / "bench.json")
  env = {"QAGAN_INCEPTION_WEIGHTS": reference.reference_path(
      "inception/fid_inception_2015_12_05_pool3.npz")}
  proc = scripts.run(
      "benchmark", "--flagfile=configs/smoke.cfg",
      "--width=8", "--batch_size=4", "--disc_iters=1", "--repeats=1", "--inception_batch=2",
      "--speed_variants=baseline,tf32", "--peer_settings=eager,channels_last",
      "--peer_variants=default", "--sections=train,inception,peer", "--nowith_torch",
      "--lazy_penalties=wgan_gp", "--regularizer_variants=r3,r3_niqe", f"--output={out}", env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(out) as f:
    result = json.load(f)
  train = result["train"]
  assert set(train["penalties"]) == {"wgan_gp", "ssim", "niqe"}
  for entry in train["penalties"].values():
    assert entry["d_step_s"] > 0 and entry["iteration_s"] > 0 and entry["d_step_flops"] > 0
    assert 0 < entry["fraction_of_matmul_peak"] < 2
  base = train["penalties"]["wgan_gp"]["d_step_s"]
  assert result["ssim_over_wgan_gp"] == train["penalties"]["ssim"]["d_step_s"] / base
  assert result["niqe_over_wgan_gp"] == train["penalties"]["niqe"]["d_step_s"] / base
  # As asked (all by default; each is one more trainer to trace: XLA's are tested elsewhere).
  assert set(train["speed_variants"]) == {"baseline", "tf32"}
  assert train["speed_variants"]["baseline"]["speedup_over_baseline"] == 1.0
  assert all(v["step_s"] > 0 for v in train["speed_variants"].values())
  assert train["input_pipeline_iterations_per_s"] > 0 and train["peak_rss_mib"] > 0
  assert result["inception"]["tf_images_per_sec"] > 0
  ops = train["niqe_penalty_ops"]["after"]
  assert 0 < ops["forward"] < ops["forward_backward"]
  # The lazy and regulariser parts time the penalties and regularisers asked for (all by
  # default; each is one more trainer to trace, so this test asks for the fewest that still
  # give every kind of figure).
  lazy = train["lazy"]  # Iteration-time ratios of --gp_every=4 --qa_every=4 over 1.
  assert lazy["cycle_iterations"] == 4  # Timed over whole cycles: 4 x 1 D update.
  assert lazy["wgan_gp_k4_over_k1"] == (lazy["wgan_gp_k4_iteration_s"]
                                        / lazy["wgan_gp_k1_iteration_s"]) > 0
  assert not [k for k in lazy if k.startswith(("niqe", "ssim"))]
  regs = result["regularizers"]  # Iteration time of each regulariser over WGAN-GP's.
  for name in ("r3", "r3_niqe"):
    assert regs[f"{name}_over_wgan_gp"] == (regs[f"{name}_iteration_s"]
                                            / regs["wgan_gp_iteration_s"]) > 0
  assert regs["r3_niqe_over_r3"] == regs["r3_niqe_iteration_s"] / regs["r3_iteration_s"]
  assert not [k for k in regs if "lecam" in k or "_da" in k]
  # The peer section (torch is a test dependency): the race alone, with the load averages.
  peer = result["peer"]
  assert set(peer["torch"]) == {"eager", "channels_last"}
  assert set(peer["ours"]) == {"default"}
  assert peer["ours_over_torch_speed"] == peer["torch_iteration_s"] / peer["ours_iteration_s"]
  assert peer["default_over_torch_best"] == peer["torch_iteration_s"] / peer["ours"]["default"]
  assert peer["torch_iteration_s"] == min(peer["torch"].values()) > 0
  # Equal precision: no bf16 setting was raced here, so no bf16 figure, with the reason.
  assert set(peer["cpu_flags"]) >= {"avx512_bf16", "amx_bf16", "native_bf16"}
  assert peer["bfloat16_over_torch_bfloat16_best"] is None and peer["bfloat16_note"]
  assert peer["ours_iteration_s"] == min(peer["ours"].values())
  assert len(peer["load_average"]["start"]) == 3 and len(peer["load_average"]["end"]) == 3
  profile = peer["op_profile"]  # Per-op tables of both sides' D and G steps.
  for side in ("ours", "torch_eager"):
    for step in ("d_step", "g_step"):
      table = profile[side][step]
      assert table["executed_ops"] > 10 and table["op_ms"] > 0 and table["ops"], (side, step)
      assert sum(row["ms"] for row in table["ops"].values()) == pytest.approx(table["op_ms"])
  assert any("Conv2D" in op for op in profile["ours"]["d_step"]["ops"])
  assert any("convolution" in op for op in profile["torch_eager"]["d_step"]["ops"])
  assert "D step ratios" in proc.stdout and f"Wrote {out}" in proc.stdout
  # The sections shared their Trainers within the run only (a later run in this process, as the
  # suite's, builds its own).
  from qagan_bench import step_timing
  assert not step_timing._SHARED  # pylint: disable=protected-access


def test_round_robin_changes_the_order_every_round():
  """No contender always follows the same one (the one after PyTorch's last setting measured
  slower than the identical step elsewhere); each is timed `repeats` times."""
  from qagan_bench import train_bench
  order = []
  fns = {name: (lambda name=name: order.append(name)) for name in ("a", ("b", 4), "c", "d")}
  timed = train_bench._interleaved_times(fns, repeats=12, warmup=0)
  assert all(len(timed[name][1]) == 12 for name in fns) and len(order) == 48
  rounds = [tuple(map(str, order[i:i + 4])) for i in range(0, 48, 4)]
  assert all(sorted(r) == sorted(map(str, fns)) for r in rounds)
  assert len(set(rounds)) > 3  # Many different orders, not one repeated.
  predecessors = {order[i - 1] for i in range(1, 48) if order[i] == "a"}
  assert {"c", "d", ("b", 4)} <= predecessors  # (and "a" itself, across a round boundary)


def test_lazy_timings_cover_whole_schedule_cycles():
  from qagan_bench import train_bench
  # k = 4 with 5 D updates per iteration repeats after 4 iterations (20 updates, 5 regularised).
  assert [train_bench.lazy_cycle(4, n) for n in (5, 1, 2, 4, 6, 8)] == [4, 4, 2, 1, 2, 1]
  assert train_bench.lazy_cycle(1, 5) == 1


@pytest.mark.parametrize("flag, named", [("--speed_variants=baseline,nope", "--speed_variants"),
                                         ("--peer_variants=default,nope", "--peer_variants"),
                                         ("--peer_settings=eager,nope", "--peer_settings")])
def test_a_misspelt_variant_stops_the_benchmark_before_the_race(tmp_path, flag, named):
  """The race runs first, so every name is checked before it: a typo costs no race."""
  out = str(tmp_path / "bench.json")
  proc = scripts.run("benchmark", "--flagfile=configs/smoke.cfg", "--sections=train,peer", flag,
                     f"--output={out}")
  assert proc.returncode != 0
  lines = [line for line in proc.stderr.splitlines() if "error" in line]
  assert len(lines) == 1 and f"unknown {named} nope" in lines[0], proc.stderr[-2000:]
  assert "load average" not in proc.stdout and not os.path.exists(out)


def test_missing_inception_weights_stop_the_benchmark_before_anything_is_timed(tmp_path):
  out = str(tmp_path / "bench.json")
  proc = scripts.run("benchmark", "--flagfile=configs/smoke.cfg", f"--output={out}",
                     env={"QAGAN_INCEPTION_WEIGHTS": str(tmp_path / "missing.npz")})
  assert proc.returncode != 0
  errors = [line for line in proc.stderr.splitlines() if "bin/benchmark: error: " in line]
  assert len(errors) == 1, proc.stderr[-2000:]
  assert "missing.npz: no such file" in errors[0] and "bin/fetch_inception" in errors[0]
  assert "(or leave the inception section out: --sections=train)" in errors[0]
  assert "matmul peak" not in proc.stdout and not os.path.exists(out)


def test_speed_variant_names_are_checked_before_anything_is_timed():
  from qagan_bench import train_bench
  from qagan_tf import config as config_lib
  # Every variant is config changes a TrainConfig accepts and a positive steps-per-call count.
  fields = set(config_lib.TrainConfig.__dataclass_fields__)
  for name, (changes, count) in train_bench.VARIANTS.items():
    assert set(changes) <= fields and isinstance(count, int) and count >= 1, name
  assert train_bench.VARIANTS["baseline"] == ({"jit_compile": False}, 1)  # The reference.
  train_bench.check_variant_names(list(train_bench.VARIANTS))
  with pytest.raises(ValueError, match="unknown --speed_variants xal.*choose from baseline"):
    train_bench.run(None, variants=["baseline", "xal"])  # No config needed: fails first.
  with pytest.raises(ValueError, match="must include baseline"):
    train_bench.check_variant_names(["xla"])


@pytest.mark.slow
def test_a_tiny_quality_benchmark_shows_fid_falling(tmp_path):
  out = str(tmp_path / "quality.json")
  runs_dir = out[:-len(".json")] + ".runs"
  env = {"QAGAN_INCEPTION_WEIGHTS": reference.reference_path(
      "inception/fid_inception_2015_12_05_pool3.npz")}
  argv = ["--flagfile=configs/quality_cpu.cfg", "--sections=quality",
          "--quality_variants=wgan_gp_gp1,niqe", "--quality_seeds=0", "--quality_iterations=20",
          "--quality_eval_every=10", "--quality_samples=16", "--quality_final_samples=32",
          "--quality_ema_samples=16", "--quality_heldout=32", "--quality_workers=1",
          # Each set of images a whole number of Inception calls (64 would pad each to 64).
          "--quality_inception_batch=16",
          "--width=16", "--disc_iters=2",  # Half the time of width 32, 5 D steps (2026-12-05).
          f"--output={out}"]
  proc = scripts.run("benchmark", *argv, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(out) as f:
    result = json.load(f)
  # Every finished run was written at once; a rerun reuses them (none is trained again) and
  # gives the same figures. An existing output is replaced only with --overwrite.
  assert sorted(os.listdir(runs_dir)) == [
      "initial-seed0.json", "niqe-seed0.json", "wgan_gp_gp1-seed0.json"]
  proc = scripts.run("benchmark", *argv, env=env)
  assert proc.returncode == 1 and "exists; pass --overwrite" in proc.stderr
  proc = scripts.run("benchmark", *argv, "--overwrite", env=env)
  assert proc.returncode == 0 and "2 finished run(s) reused" in proc.stdout, proc.stdout[-2000:]
  assert "iteration 10" not in proc.stdout  # Nothing trained or scored again.
  with open(out) as f:
    assert json.load(f)["quality"] == result["quality"]
  runs = {}
  for name in ("wgan_gp_gp1", "niqe"):
    q = result["quality"][name]
    assert q["iterations"] == [0, 10, 20]
    for key in ("fid_mean", "kid_mean", "niqe_mean", "d_weight_variance_mean",
                "gradient_niqe_mean", "ssim_penalty_mean", "gp_mean"):
      assert len(q[key]) == 3 and all(np.isfinite(q[key])), (name, key)
    assert q["fid_mean"][-1] < q["fid_mean"][0], (name, q["fid_mean"])  # Learning shows.
    assert q["fid_std"] == [None, None, None]  # One seed: no sample std.
    assert q["final_samples"] == 32 and q["ema_samples"] == 16
    with open(os.path.join(runs_dir, f"{name}-seed0.json")) as f:
      stored = json.load(f)
    assert stored["variant"] == name and stored["seed"] == 0
    assert stored["commit"] == result["measured_commit"] and stored["commit"]
    assert isinstance(stored["result"]["final_fid"], float)
    assert stored["result"]["final_fid"] == q["final"]["final_fid"]["mean"]
    runs[name] = stored["result"]
  # Both variants start from the same weights: the same iteration-0 scores.
  assert (result["quality"]["wgan_gp_gp1"]["fid_mean"][0]
          == result["quality"]["niqe"]["fid_mean"][0])
  # The comparisons, recomputed from the run files alone.
  assert [(e["variant"], e["control"], e["metric"]) for e in result["comparisons"]] == [
      ("niqe", "wgan_gp_gp1", m) for m in ("final_fid", "final_kid", "gradient_niqe")]
  for entry in result["comparisons"]:
    m = entry["metric"]
    assert entry["mean_difference"] == pytest.approx(runs["niqe"][m] - runs["wgan_gp_gp1"][m],
                                                     abs=1e-6)
    assert entry["n"] == 1 and entry["ci95"] is None and entry["verdict"].startswith("too few")
  assert os.path.getsize(out[:-len(".json")] + ".png") > 10_000
  with open(out[:-len(".json")] + ".md") as f:
    table = f.read()
  fid = result["quality"]["niqe"]["fid_mean"]
  assert f"| niqe | {fid[0]:.1f} | {fid[1]:.1f} | {fid[2]:.1f} |" in table
  assert "| niqe | wgan_gp_gp1 | final_fid | 1 |" in table
  # A run of another commit in the runs folder: refused before any training, naming both.
  path = os.path.join(runs_dir, "niqe-seed0.json")
  with open(path) as f:
    stored = json.load(f)
  stored["commit"] = "0" * 40
  with open(path, "w") as f:
    json.dump(stored, f)
  proc = scripts.run("benchmark", *argv, "--overwrite", env=env)
  assert proc.returncode == 1, proc.stdout[-2000:]
  assert "2 training-code commits" in proc.stderr and "000000000000: niqe-seed0" in proc.stderr
  assert "wgan_gp_gp1-seed0" in proc.stderr
  with open(out) as f:  # The earlier output is kept.
    assert json.load(f)["quality"] == result["quality"]


def test_quality_variant_names_are_checked():
  from qagan_bench import quality_bench
  quality_bench.check_variant_names(list(quality_bench.VARIANTS))
  with pytest.raises(ValueError, match="unknown --quality_variants nique.*choose from wgan_gp"):
    quality_bench.check_variant_names(["wgan_gp", "nique"])


def test_the_commit_race_needs_a_checkout(tmp_path):
  out = str(tmp_path / "c.json")
  proc = scripts.run("benchmark", "--flagfile=configs/smoke.cfg", "--sections=commits",
                     f"--compare_checkout={tmp_path}", f"--output={out}")
  assert proc.returncode == 1 and "needs --compare_checkout=DIR, a checkout of qagan_tf" in (
      proc.stderr)
  assert not os.path.exists(out)


@pytest.mark.slow
def test_the_commit_race_times_both_checkouts_block_by_block(tmp_path):
  """This checkout against itself (a copy of its package): both sides time every block, and
  the ratio is of the two medians."""
  import shutil
  other = tmp_path / "other"
  shutil.copytree(os.path.join(REPO, "qagan_tf"), other / "qagan_tf",
                  ignore=shutil.ignore_patterns("__pycache__"))
  out = str(tmp_path / "c.json")
  proc = scripts.run("benchmark", "--flagfile=configs/smoke.cfg", "--width=8", "--batch_size=4",
                     "--disc_iters=1", "--sections=commits", f"--compare_checkout={other}",
                     "--commit_rounds=3", "--commit_iterations=2", f"--output={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(out) as f:
    race = json.load(f)["commits"]
  for side in ("ours", "baseline"):
    assert len(race[side]["block_seconds"]) == 3 and min(race[side]["block_seconds"]) > 0
    assert race[side]["ms_per_iteration"] == pytest.approx(
        1e3 * np.median(race[side]["block_seconds"]) / 2)
  assert race["baseline"]["checkout"] == str(other) and race["ours"]["checkout"] == REPO
  assert race["baseline_over_ours"] == pytest.approx(
      race["baseline"]["ms_per_iteration"] / race["ours"]["ms_per_iteration"])


def test_the_lazy_and_regularizer_selections_refuse_unknown_names_before_timing(tmp_path):
  """Both lists are checked before anything is built; the error names the choices."""
  out = str(tmp_path / "r.json")
  for flag, sections, choices in (
      ("--lazy_penalties=wgan_gp,nique", "train", "wgan_gp,ssim,niqe"),
      ("--regularizer_variants=r3,r4", "regularizers",
       "r3,wgan_gp_lecam,wgan_gp_da,wgan_gp_ada,r3_niqe")):
    proc = scripts.run("benchmark", f"--sections={sections}", flag, f"--output={out}")
    name = flag.split("=")[0]
    assert proc.returncode == 1 and f"unknown {name}" in proc.stderr, proc.stderr[-1500:]
    assert f"choose from {choices}" in proc.stderr and not os.path.exists(out)
    assert "Traceback" not in proc.stderr


def test_the_memory_section_refuses_an_unknown_penalty(tmp_path):
  out = str(tmp_path / "m.json")
  proc = scripts.run("benchmark", "--sections=memory", "--memory_penalties=wgan_gp,nique",
                     f"--output={out}")
  assert proc.returncode == 1 and "unknown memory penalty nique" in proc.stderr
  assert "choose from wgan_gp,ssim,niqe" in proc.stderr and not os.path.exists(out)


def test_the_memory_section_has_every_cell_measured_or_predicted(monkeypatch):
  """Every penalty x resolution x precision cell is in the JSON, measured where the memory
  model says it fits and predicted (and marked) where not; each penalty's ratio to wgan_gp.
  Here the machine is made small so that the 96 px cells are predicted, and the measured cells
  are a stand-in process (the real ones take minutes: bin/benchmark --sections=memory)."""
  from qagan_bench import memory_bench
  calls = []

  class Done:
    returncode, stderr = 0, ""

    def __init__(self, mib):
      self.stdout = json.dumps({"built_bytes": 700 * 2**20, "peak_bytes": (700 + mib) * 2**20,
                                "iteration_bytes": mib * 2**20}) + "\n"

  def fake_run(argv, **kwargs):
    values = json.loads(argv[3])
    calls.append(values)
    return Done(100.0 * (2.0 if values["penalty"] == "niqe" else 1.0))
  monkeypatch.setattr(memory_bench.subprocess, "run", fake_run)
  from qagan_tf import config as config_lib
  from qagan_tf.train import memory
  predicted = {c: memory.iteration_bytes(config_lib.TrainConfig.create(
      **memory_bench._values(*c)).validate()) for c in memory_bench.cells()}
  # A machine between the largest 48 px cell and the smallest 96 px one (bfloat16's factor
  # makes a fixed 8 GiB hold a 96 px cell).
  small, large = (max(b for c, b in predicted.items() if c[1] != "96px"),
                  min(b for c, b in predicted.items() if c[1] == "96px"))
  assert small < large
  total = (small + large) / 2 / memory.USABLE_FRACTION
  result = memory_bench.run(total_bytes=total, log=lambda m: None, gpu_model=False)
  assert len(result["cells"]) == 3 * 3 * 2
  for name, cell in result["cells"].items():
    measured = not name.split("/")[1] == "96px"
    assert cell["measured"] is measured, name
    assert cell["iteration_mib"] > 0 and cell["predicted_mib"] > 0
  assert len(calls) == 3 * 2 * 2 and all(c["batch_size"] == 64 and c["width"] == 128
                                         for c in calls)
  assert result["ratios"]["niqe_over_wgan_gp/32px/float32"] == 2.0
  assert len(result["ratios"]) == 2 * 3 * 2


@pytest.mark.slow
def test_one_real_memory_cell_runs_with_its_gpu_model():
  """The cell's own process, not a stand-in (the section's other test fakes it): a small NIQE
  cell in bfloat16 measures its iteration and models its GPU bytes (a Keras 3 variable's dtype
  is a name, which the model once took for a TF dtype and every cell failed)."""
  from qagan_bench import memory_bench
  values = dict(memory_bench._values("niqe", "32px", "bfloat16"), width=8, batch_size=4)
  out = memory_bench.run_cell(values, "niqe/32px/bfloat16 (small)", gpu_model=True, timeout=600)
  assert out["peak_bytes"] > out["built_bytes"] > 0  # An iteration adds memory (was 0).
  assert out["iteration_bytes"] == out["peak_bytes"] - out["built_bytes"]
  assert out["gpu_model_bytes"] > 0


def test_the_sections_are_one_registry_that_the_script_checks_and_lists(tmp_path):
  """bin/benchmark loops over qagan_bench.sections.SECTIONS: every entry has a check, a run and
  a help line, --help lists them all, and an unknown name is refused naming every one."""
  from qagan_bench import sections
  for name, section in sections.SECTIONS.items():
    assert callable(section.check) and callable(section.run) and section.help, name
  assert set(sections.DEFAULT_SECTIONS) <= set(sections.SECTIONS)
  out = str(tmp_path / "bench.json")
  proc = scripts.run("benchmark", "--sections=train,bogus", f"--output={out}")
  assert proc.returncode != 0 and not os.path.exists(out)
  errors = [line for line in proc.stderr.splitlines() if "bin/benchmark: error: " in line]
  assert len(errors) == 1 and "unknown --sections bogus" in errors[0], proc.stderr[-2000:]
  assert all(name in errors[0] for name in sections.SECTIONS)
  proc = scripts.run("benchmark", "--help")
  assert proc.returncode == 0
  assert all(f"{name}: {section.help}"[:40] in " ".join(proc.stdout.split())
             for name, section in sections.SECTIONS.items())


def _finite(value):  # As bin/benchmark writes a JSON: NaN and Inf as null.
  if isinstance(value, float):
    return value if np.isfinite(value) else None
  if isinstance(value, dict):
    return {k: _finite(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_finite(v) for v in value]
  return value


@pytest.mark.parametrize("study", ["quality_cpu", "regularisers_cpu", "precision_cpu",
                                   "ssim_confirm_cpu", "ada_cpu"])
def test_a_study_json_recomputes_from_its_run_files(study):
  """The report code gives a study's summaries, comparisons and exploratory looks again from its
  run files alone, equal to the file (every field the file has: those written before the
  comparisons carried "ci" and "level" lack them), and its Markdown table again from the JSON."""
  from qagan_bench import quality_report
  from qagan_bench import quality_study
  base = os.path.join(REPO, "benchmarks", study)
  with open(base + ".json") as f:
    stored = json.load(f)
  settings = stored["settings"]
  variants, seeds = list(settings["variants"]), settings["seeds"]
  runs = {}
  for name in variants:
    runs[name] = {}
    for seed in seeds:
      with open(os.path.join(base + ".runs", f"{name}-seed{seed}.json")) as f:
        runs[name][seed] = json.load(f)["result"]
  quality = {name: quality_report.summarise([runs[name][s] for s in seeds]) for name in variants}
  recomputed = {
      "quality": quality,
      "comparisons": quality_report.comparisons(
          runs, metrics=tuple(settings.get("metrics", quality_study.METRICS)),
          level=settings.get("level", 0.95)),
      "mechanism_comparisons": quality_report.comparisons(
          runs, metrics=quality_study.MECHANISM_METRICS),
      "exploratory": quality_report.exploratory(quality, seeds)}
  assert {"quality", "comparisons", "mechanism_comparisons"} <= set(stored)
  for key, value in recomputed.items():
    if key not in stored:  # (The exploratory looks came with the SSIM confirmation.)
      continue
    value = json.loads(json.dumps(_finite(value)))
    if key.endswith("comparisons"):  # Files from before the "ci" and "level" fields lack them.
      assert [set(e) <= set(v) for e, v in zip(stored[key], value)] == [True] * len(value)
      value = [{k: v[k] for k in e} for e, v in zip(stored[key], value)]
    assert value == stored[key], key
  with open(base + ".md") as f:
    assert quality_report.markdown(stored) == f.read()
