"""The quality study's statistics (paired t-intervals, verdicts), its one-commit rule, and the
mechanism probe, which must observe without changing training."""

import math

import numpy as np
import pytest

from qagan_bench import paired_stats
from qagan_bench import quality_bench


def test_t_interval_of_a_known_paired_sample():
  # Differences 1..5: mean 3, sd sqrt(2.5); t_{0.975, 4} = 2.7764451 (printed t tables).
  mean, sd, (lo, hi) = paired_stats.t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
  half = 2.7764451 * math.sqrt(2.5) / math.sqrt(5)
  assert mean == 3.0 and sd == pytest.approx(math.sqrt(2.5), rel=1e-12)
  assert (lo, hi) == (pytest.approx(3.0 - half, abs=1e-6), pytest.approx(3.0 + half, abs=1e-6))
  # n = 2: t_{0.975, 1} = 12.7062047.
  _, sd2, ci2 = paired_stats.t_interval([0.0, 2.0])
  assert ci2 == [pytest.approx(1.0 - 12.7062047 * sd2 / math.sqrt(2), abs=1e-6),
                 pytest.approx(1.0 + 12.7062047 * sd2 / math.sqrt(2), abs=1e-6)]
  assert paired_stats.t_interval([4.0]) == (4.0, None, None)


def test_the_bonferroni_interval_of_a_known_paired_sample():
  """The pre-registered study's 97.5% interval (two endpoints): t_{0.9875, 4} = 3.4954059
  (SciPy; printed tables give 3.495) on the differences 1..5, and the entry that carries it."""
  mean, sd, (lo, hi) = paired_stats.t_interval([1.0, 2.0, 3.0, 4.0, 5.0], 0.975)
  half = 3.4954059 * math.sqrt(2.5) / math.sqrt(5)
  assert (lo, hi) == (pytest.approx(3.0 - half, abs=1e-6), pytest.approx(3.0 + half, abs=1e-6))
  entry = paired_stats.paired_comparison("ssim", "wgan_gp_gp1", "fid_at_200",
                                         {s: float(s) for s in range(1, 6)},
                                         dict.fromkeys(range(1, 6), 0.0), level=0.975)
  assert entry["level"] == 0.975 and entry["ci"] == [pytest.approx(lo), pytest.approx(hi)]
  assert "ci95" not in entry and entry["verdict"] == "higher"  # 3.0 - 2.47 > 0.
  assert paired_stats.interval_of(entry) == entry["ci"]
  wide = paired_stats.paired_comparison("a", "b", "m", {0: 1.0, 1: 3.0, 2: -0.5},
                                        dict.fromkeys(range(3), 0.0), level=0.975)
  narrow = paired_stats.paired_comparison("a", "b", "m", {0: 1.0, 1: 3.0, 2: -0.5},
                                          dict.fromkeys(range(3), 0.0))
  assert narrow["ci95"] == narrow["ci"] and narrow["level"] == 0.95
  assert wide["ci"][0] < narrow["ci"][0] < narrow["ci"][1] < wide["ci"][1]


def test_paired_comparison_pairs_by_seed_and_gives_the_verdict():
  variant = {0: 10.0, 1: 12.0, 2: 11.0, 3: 99.0}  # Seed 3 has no control: left out.
  control = {0: 13.0, 1: 14.5, 2: 14.0, 4: 0.0}
  entry = paired_stats.paired_comparison("niqe", "wgan_gp_gp1", "final_fid", variant, control)
  diffs = np.array([-3.0, -2.5, -3.0])
  assert entry["n"] == 3 and entry["seeds"] == [0, 1, 2]
  assert entry["mean_difference"] == pytest.approx(diffs.mean())
  assert entry["std"] == pytest.approx(diffs.std(ddof=1))
  assert entry["ci95"][1] < 0 and entry["verdict"] == "lower"
  assert paired_stats.verdict([0.5, 2.0]) == "higher"
  assert paired_stats.verdict([-0.5, 2.0]) == "no detectable difference"
  assert paired_stats.verdict(None) == paired_stats.TOO_FEW
  assert "lowers final_fid: D -2.8 [" in paired_stats.sentence(entry)
  with pytest.raises(ValueError, match="share no seed"):
    paired_stats.paired_comparison("a", "b", "final_fid", {0: 1.0}, {1: 1.0})
  with pytest.raises(ValueError, match="not finite for seed"):
    paired_stats.paired_comparison("a", "b", "final_fid", {0: float("nan")}, {0: 1.0})


def test_comparisons_follow_the_controls():
  runs = {"wgan_gp": {0: {"final_fid": 5.0}, 1: {"final_fid": 6.0}},
          "wgan_gp_gp1": {0: {"final_fid": 4.0}, 1: {"final_fid": 4.0}},
          "niqe": {0: {"final_fid": 3.0}, 1: {"final_fid": 5.0}}}
  out = quality_bench.comparisons(runs, metrics=("final_fid",))
  assert [(e["variant"], e["control"]) for e in out] == [("wgan_gp_gp1", "wgan_gp"),
                                                        ("niqe", "wgan_gp_gp1")]
  assert out[0]["mean_difference"] == -1.5 and out[1]["mean_difference"] == 0.0
  # Every variant of the quality and precision studies has a control that is in its study,
  # and differs from it in one setting.
  # (The precision study's first variant, niqe, is its control: only niqe_bf16 is checked.)
  for study, checked in ((quality_bench.DEFAULT_VARIANTS, quality_bench.DEFAULT_VARIANTS),
                         (quality_bench.PRECISION_VARIANTS, quality_bench.PRECISION_VARIANTS[1:])):
    for variant in checked:
      control = quality_bench.CONTROLS.get(variant)
      if control is None:
        continue
      assert control in study
      a, b = quality_bench.VARIANTS[variant], quality_bench.VARIANTS[control]
      differing = {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
      assert len(differing - {"qa_weight"}) <= 1, (variant, control, differing)
  assert quality_bench.CONTROLS["niqe_bf16"] == "niqe"


def test_runs_of_two_commits_are_refused_with_their_names():
  assert paired_stats.check_one_commit({"niqe-seed0": "abc", "wgan_gp-seed0": "abc"}) == "abc"
  with pytest.raises(ValueError) as e:
    paired_stats.check_one_commit({"niqe-seed0": "abc1234567890", "niqe-seed1": "abc1234567890",
                                   "wgan_gp_gp1-seed0": "def4567890123"})
  message = str(e.value)
  assert "2 training-code commits" in message
  assert "abc123456789: niqe-seed0, niqe-seed1" in message
  assert "def456789012: wgan_gp_gp1-seed0" in message and "git worktree add" in message
  with pytest.raises(ValueError, match="unknown: initial"):
    paired_stats.check_one_commit({"initial": None, "niqe-seed0": "abc"})


@pytest.mark.slow
def test_the_mechanism_probe_observes_without_changing_training(tmp_path):
  """Two identical runs, one probed after every iteration: every variable (G's batch-norm
  moving statistics included) ends the same, bit for bit; the probe's values are finite and
  change as D trains."""
  from qagan_tf import config as config_lib
  from qagan_tf.data import sources
  from qagan_tf.train import distribution
  from qagan_tf.train import trainer as trainer_lib
  config = config_lib.TrainConfig.create(
      dataset="embedded", resolution=32, width=8, batch_size=4, disc_iters=2, max_steps=3,
      penalty="wgan_gp", gp_weight=1.0, eval_every=0, seed=3).validate()
  images = sources.embedded_images(32, 64, 3)

  def train(probe):
    trainer = trainer_lib.Trainer(config, str(tmp_path / f"run{probe}"),
                                  distribution.make_strategy("default"), images=images)
    iterator = iter(trainer.distributed_dataset(0))
    observe = quality_bench.MechanismProbe(images, config.z_dim, 4, count=8) if probe else None
    seen = [observe(trainer.generator, trainer.discriminator)] if probe else []
    for _ in range(3):
      trainer.train_iterations(iterator, 1)
      if probe:
        seen.append(observe(trainer.generator, trainer.discriminator))
    return trainer, seen

  plain, _ = train(False)
  probed, seen = train(True)
  for a, b in zip(plain.generator.variables + plain.discriminator.variables,
                  probed.generator.variables + probed.discriminator.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
  assert len(plain.generator.non_trainable_variables) > 0  # The moving statistics are compared.
  for values in seen:
    assert set(values) == set(quality_bench.MechanismProbe.KEYS)
    assert all(np.isfinite(v) for v in values.values()), values
  assert seen[0]["gp"] != seen[-1]["gp"] and seen[0]["gradient_niqe"] != seen[-1][
      "gradient_niqe"]
  # The 1-GP is the mean of (||g|| - 1)^2, so it is at least (mean ||g|| - 1)^2 (Jensen).
  for values in seen:
    assert values["gp"] >= (values["grad_norm"] - 1.0) ** 2 - 1e-9


# Each committed study: (name in benchmarks/, its variants, at least this many seeds each, the
# (variant, control) pairs its comparisons must hold).
STUDIES = {
    "quality_cpu": (("wgan_gp", "wgan_gp_gp1", "ssim", "niqe", "niqe_w1"), 5,
                    (("ssim", "wgan_gp_gp1"), ("niqe", "wgan_gp_gp1"), ("niqe_w1", "wgan_gp_gp1"),
                     ("wgan_gp_gp1", "wgan_gp"))),
    "regularisers_cpu": (("wgan_gp", "wgan_gp_da", "r3", "r3_niqe"), 3,
                         (("wgan_gp_da", "wgan_gp"), ("r3_niqe", "r3"))),
    "precision_cpu": (("niqe", "niqe_bf16"), 3, (("niqe_bf16", "niqe"),)),
    # The pre-registered confirmation (docs/studies/ssim_confirm.md): two primary endpoints at
    # 97.5% (Bonferroni), on ten seeds.
    "ssim_confirm_cpu": (("wgan_gp_gp1", "ssim"), 10, (("ssim", "wgan_gp_gp1"),)),
    # The limited-data study (docs/training.md): no augmentation, DiffAugment and ADA.
    "ada_cpu": (("ns_r1", "ns_r1_da", "ns_r1_ada"), 3,
                (("ns_r1_da", "ns_r1"), ("ns_r1_ada", "ns_r1"))),
}
# The metrics each study's required pairs must be compared on (the quality studies': final FID
# and the gradients' NIQE; the confirmation's: its two primary endpoints).
METRICS = {"ssim_confirm_cpu": ("fid_at_200", "final_fid"),
           "ada_cpu": ("final_fid", "final_kid", "real_sign")}
LEVELS = {"ssim_confirm_cpu": 0.975}  # The level of each study's comparisons (else 95%).


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_the_committed_study_recomputes_from_its_run_files(name):
  """benchmarks/<study>.json's comparisons, recomputed from benchmarks/<study>.runs/ with NumPy
  and SciPy alone (not our helpers), agree to 1e-6; every run is of one commit, and the issue's
  pairs are there."""
  import glob
  import json
  import os
  from scipy import stats
  variants, min_seeds, required = STUDIES[name]
  root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
  with open(os.path.join(root, f"{name}.json")) as f:
    study = json.load(f)
  runs = {}
  for path in glob.glob(os.path.join(root, f"{name}.runs", "*.json")):
    with open(path) as f:
      stored = json.load(f)
    if "variant" in stored:  # The initial-seed files score the untrained generators.
      runs.setdefault(stored["variant"], {})[stored["seed"]] = stored
  commits = {r["commit"] for by_seed in runs.values() for r in by_seed.values()}
  assert commits == {study["measured_commit"]}
  for variant in variants:
    assert len(runs[variant]) >= min_seeds, variant
    assert study["quality"][variant]["final_samples"] >= 1024
  entries = study["comparisons"] + study.get("mechanism_comparisons", [])
  pairs = {(e["variant"], e["control"], e["metric"]) for e in entries}
  for variant, control in required:
    for metric in METRICS.get(name, ("final_fid", "gradient_niqe")):
      assert (variant, control, metric) in pairs
  for e in entries:
    mine, theirs = runs[e["variant"]], runs[e["control"]]
    seeds = sorted(set(mine) & set(theirs))
    d = np.array([mine[s]["result"][e["metric"]] - theirs[s]["result"][e["metric"]]
                  for s in seeds])
    level = e.get("level", 0.95)  # Files recorded before levels were named: 95%, as "ci95".
    if e in study["comparisons"]:
      assert level == LEVELS.get(name, 0.95), e
    half = stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    assert e["n"] == len(d) and e["seeds"] == seeds
    np.testing.assert_allclose(e["mean_difference"], d.mean(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(e["std"], d.std(ddof=1), rtol=0, atol=1e-6)
    np.testing.assert_allclose(e.get("ci", e.get("ci95")), [d.mean() - half, d.mean() + half],
                               rtol=0, atol=1e-6)
    expected = ("lower" if d.mean() + half < 0 else "higher" if d.mean() - half > 0
                else "no detectable difference")
    assert e["verdict"] == expected, e


def test_a_run_records_the_commit_of_the_checkout_it_runs_from():
  """Without a root, the commit is this checkout's (qagan_bench/ sits beside qagan_tf/): a study
  must never record "unknown" from inside git, or its one-commit rule could not hold."""
  import os
  import subprocess
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  assert quality_bench.code_commit() == quality_bench.code_commit(repo)
  inside = subprocess.run(["git", "-C", repo, "rev-parse", "--show-toplevel"],
                          capture_output=True, text=True).returncode == 0
  if inside:
    assert quality_bench.code_commit().split("-")[0] == subprocess.run(
        ["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True,
        check=True).stdout.strip()


def test_the_scorer_passes_the_held_out_images_through_inception_at_its_first_score_only():
  """A rerun whose runs are all finished reports the held-out NIQE without Inception (on a CPU
  the 1024 held-out images take minutes); the first score builds the reference once, with the
  same held-out NIQE, and scores against it."""
  from qagan_bench import quality_scoring
  from qagan_tf.iqa import niqe_metric
  rng = np.random.default_rng(0)
  heldout = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
  calls = []

  def extractor(images):
    calls.append(len(images))
    flat = np.asarray(images, np.float64).reshape(len(images), -1)[:, :2048]
    return {"pool3": flat / 255.0}

  scorer = quality_scoring.Scorer(extractor, 4, heldout=heldout)
  expected = float(np.mean(niqe_metric.niqe_of_images(heldout)))
  assert scorer.heldout_niqe == expected and calls == []
  reference = scorer.reference
  assert calls == [6] and reference["heldout_niqe"] == expected
  np.testing.assert_array_equal(reference["activations"], extractor(heldout)["pool3"])
  assert scorer.reference is reference and calls == [6, 6]  # Built once.
  sent = quality_scoring.Scorer(extractor, 4, reference=reference)  # As a worker gets it.
  assert sent.heldout_niqe == expected and sent.reference is reference and calls == [6, 6]
  with pytest.raises(ValueError, match="held-out images or their reference"):
    quality_scoring.Scorer(extractor, 4)
