"""The quality studies' definition (`quality_bench` is their front door): the variants
(config changes), each variant's control, the metrics the comparisons pair, the seeds of the
held-out images, samples and probe, the training/held-out split, and the code commit and CPU
that every run records."""

import os
import subprocess

DIFFAUGMENT = "color,translation,cutout"
# R3GAN's objective (Huang et al. 2024): the relativistic pairing loss with zero-centred R1 and R2
# on every D update, no 1-GP and no drift. gamma 0.05 is our stated choice for this scale (R3GAN
# trains CIFAR-10 with a small gamma; its exact schedule is not reproduced here).
R3_GAMMA = 0.05
R3 = dict(loss="rpgan", penalty="none", gp_weight=0.0, drift_weight=0.0, qa_weight=0.0,
          r1_weight=R3_GAMMA, r2_weight=R3_GAMMA)
# The ADA paper's objective (StyleGAN2-ADA on CIFAR-10): non-saturating logistic loss, R1 at
# gamma 0.01, no 1-GP, no drift.
NS_R1 = dict(loss="nonsaturating", penalty="none", gp_weight=0.0, drift_weight=0.0,
             qa_weight=0.0, r1_weight=0.01)
# name -> config changes. The 1-GP weight follows the paper: 10 for the WGAN-GP baseline, 1 for
# QAGAN (with the QA penalty at 0.1); wgan_gp_gp1 is the QA runs' control (their 1-GP alone).
VARIANTS = {
    "wgan_gp": dict(penalty="wgan_gp", gp_weight=10.0, qa_weight=0.0),
    "wgan_gp_gp1": dict(penalty="wgan_gp", gp_weight=1.0, qa_weight=0.0),
    "ssim": dict(penalty="ssim", gp_weight=1.0, qa_weight=0.1),
    "niqe": dict(penalty="niqe", gp_weight=1.0, qa_weight=0.1),  # The defaults.
    # Dose points: the penalty at 10x the paper's weight.
    "ssim_w1": dict(penalty="ssim", gp_weight=1.0, qa_weight=1.0),
    "niqe_w1": dict(penalty="niqe", gp_weight=1.0, qa_weight=1.0),
    "niqe_pooled": dict(penalty="niqe", gp_weight=1.0, qa_weight=0.1, niqe_pooling="pooled"),
    # The default before the groups and the gradient smoothing (qagan_tf 0.1, 2026-11-24).
    "niqe_batch": dict(penalty="niqe", gp_weight=1.0, qa_weight=0.1, niqe_pooling="batch",
                       niqe_smoothing="none"),
    "niqe_image": dict(penalty="niqe", gp_weight=1.0, qa_weight=0.1, niqe_pooling="image"),
    # Lazy regularisation (StyleGAN2 §B): the 1-GP and the QA penalty on every 4th D update,
    # weighted by 4.
    "wgan_gp_k4": dict(penalty="wgan_gp", gp_weight=10.0, qa_weight=0.0, gp_every=4),
    "wgan_gp_gp1_k4": dict(penalty="wgan_gp", gp_weight=1.0, qa_weight=0.0, gp_every=4),
    "ssim_k4": dict(penalty="ssim", gp_weight=1.0, qa_weight=0.1, gp_every=4, qa_every=4),
    "niqe_k4": dict(penalty="niqe", gp_weight=1.0, qa_weight=0.1, gp_every=4, qa_every=4),
    # Today's regularisers (docs/training.md "Regularisers"): DiffAugment on the WGAN-GP
    # baseline and on QAGAN-NIQE; R3GAN's objective (RpGAN + R1 + R2, gamma R3_GAMMA) alone, with
    # the NIQE penalty at R1's points (reusing its gradient) and with the SSIM penalty.
    "wgan_gp_da": dict(penalty="wgan_gp", gp_weight=10.0, qa_weight=0.0, augment=DIFFAUGMENT),
    "niqe_da": dict(penalty="niqe", gp_weight=1.0, qa_weight=0.1, augment=DIFFAUGMENT),
    "r3": dict(R3),
    "r3_niqe": dict(R3, penalty="niqe", qa_weight=0.1, qa_points="real"),
    "r3_ssim": dict(R3, penalty="ssim", qa_weight=0.1),
    "wgan_gp_lecam": dict(penalty="wgan_gp", gp_weight=10.0, qa_weight=0.0, lecam_weight=0.1),
    # Adaptive augmentation (ADA, docs/training.md), its defaults: on the WGAN-GP baseline (the
    # regularisers' timing), and the limited-data study's arms on the ADA paper's objective,
    # the non-saturating logistic loss with R1 (its CIFAR-10 gamma, 0.01): r_t = E[sign D(x)]
    # reads logistic scores, where WGAN-GP's critic has no fixed zero.
    "wgan_gp_ada": dict(penalty="wgan_gp", gp_weight=10.0, qa_weight=0.0, augment="ada"),
    "ns_r1": dict(NS_R1),
    "ns_r1_da": dict(NS_R1, augment=DIFFAUGMENT),
    "ns_r1_ada": dict(NS_R1, augment="ada"),
    # QAGAN-NIQE with G and D in bfloat16 (Keras' mixed policy; the penalties, their reductions
    # and the weights stay float32): the precision study (benchmarks/precision_cpu.*).
    "niqe_bf16": dict(penalty="niqe", gp_weight=1.0, qa_weight=0.1, mixed_precision="bfloat16"),
    # Beyond the paper (its §5): SNGAN (hinge loss, spectral norm in D, no GP) with and without
    # the QA penalties (configs/cifar10_sngan*.cfg).
    "sngan": dict(loss="hinge", d_norm="spectral", penalty="none", gp_weight=0.0,
                  drift_weight=0.0, qa_weight=0.0),
    "sngan_ssim": dict(loss="hinge", d_norm="spectral", penalty="ssim", gp_weight=0.0,
                       drift_weight=0.0, qa_weight=0.1),
    "sngan_niqe": dict(loss="hinge", d_norm="spectral", penalty="niqe", gp_weight=0.0,
                       drift_weight=0.0, qa_weight=0.1),
}
# The study of the evidence issue: the paper's baseline, the QA runs' control, both penalties
# at the paper's weight and NIQE's dose point.
DEFAULT_VARIANTS = ("wgan_gp", "wgan_gp_gp1", "ssim", "niqe", "niqe_w1")
# Each variant's control: the variant that differs from it in one thing only (DESIGN §10).
CONTROLS = {
    "wgan_gp_gp1": "wgan_gp",  # The 1-GP's weight, 1 against 10.
    "ssim": "wgan_gp_gp1", "niqe": "wgan_gp_gp1", "ssim_w1": "wgan_gp_gp1",
    "niqe_w1": "wgan_gp_gp1", "niqe_pooled": "wgan_gp_gp1", "niqe_batch": "wgan_gp_gp1",
    "niqe_image": "wgan_gp_gp1",
    "wgan_gp_k4": "wgan_gp", "wgan_gp_gp1_k4": "wgan_gp_gp1",
    "ssim_k4": "wgan_gp_gp1_k4", "niqe_k4": "wgan_gp_gp1_k4",
    "sngan_ssim": "sngan", "sngan_niqe": "sngan",
    "wgan_gp_da": "wgan_gp", "niqe_da": "niqe", "wgan_gp_lecam": "wgan_gp",
    "wgan_gp_ada": "wgan_gp", "ns_r1_da": "ns_r1", "ns_r1_ada": "ns_r1",
    "r3_niqe": "r3", "r3_ssim": "r3", "niqe_bf16": "niqe",
}
# The regularisers study (benchmarks/regularisers_cpu.*): DiffAugment against none, and R3GAN's
# objective against the same with the NIQE penalty.
REGULARIZER_VARIANTS = ("wgan_gp", "wgan_gp_da", "r3", "r3_niqe")
# The limited-data study (benchmarks/ada_cpu.*, configs/ada_cpu.cfg): no augmentation,
# DiffAugment and ADA, on few training images.
ADA_VARIANTS = ("ns_r1", "ns_r1_da", "ns_r1_ada")
# The precision study (benchmarks/precision_cpu.*): QAGAN-NIQE in bfloat16 against float32.
PRECISION_VARIANTS = ("niqe", "niqe_bf16")
# The comparisons' metrics (the `comparisons` list) and the other observed targets (the
# `mechanism_comparisons` list): each is a per-run final value in result[...].
METRICS = ("final_fid", "final_kid", "gradient_niqe")
MECHANISM_METRICS = ("ssim_penalty", "gp")
# Another per-run final value --quality_metrics may compare: r_t on the probe (the limited-data
# study; run files from before it lack the value).
OVERFIT_METRICS = ("real_sign",)
# Seed of the held-out embedded crops (the training crops use the config's seed).
HELDOUT_SEED = 1_000_003
_SAMPLE_SEED = 20191209
_PROBE_SEED = 20191210


def check_variant_names(names):
  """Raises ValueError naming unknown variants and the valid ones."""
  unknown = [n for n in names if n not in VARIANTS]
  if unknown:
    raise ValueError(f"unknown --quality_variants {','.join(unknown)}; choose from "
                     f"{','.join(VARIANTS)}.")


def code_commit(root=None):
  """The git commit of the code that runs (this checkout of qagan_tf), "<sha>-dirty" when its
  training or study code (qagan_tf/, qagan_bench/, bin/, configs/) has uncommitted changes, or
  "unknown" outside git."""
  root = root or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # Beside bin/.
  try:
    sha = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                         text=True, timeout=30, check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "qagan_tf",
                            "qagan_bench", "bin", "configs"], capture_output=True, text=True,
                           timeout=30, check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return "unknown"
  return sha + ("-dirty" if dirty else "") if sha else "unknown"


def cpu_model():
  """The CPU's model name and its widest vector extensions, from /proc/cpuinfo (recorded in
  every run file: a study's wall times are only comparable on one CPU)."""
  import platform
  try:
    with open("/proc/cpuinfo") as f:
      text = f.read()
  except OSError:
    return platform.processor()
  name = next((line.split(":", 1)[1].strip() for line in text.splitlines()
               if line.startswith("model name")), platform.processor())
  flags_line = next((line for line in text.splitlines() if line.startswith("flags")), "")
  simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags_line]
  return f"{name} ({', '.join(simd) or 'no AVX2'})"


def split_images(config, heldout_count):
  """(training images, held-out images), both uint8 NHWC.

  embedded: the training crops as training uses them, and `heldout_count` crops drawn with
  another seed (other positions and sizes in the same photographs; none is a training crop).
  Other datasets: the last `heldout_count` images are held out and not trained on.
  """
  from qagan_tf import data as data_lib
  from qagan_tf.data import sources
  c = config
  if c.dataset == "embedded":
    train = data_lib.load_images(c.dataset, c.resolution, None, c.num_examples, c.seed)
    heldout = sources.embedded_images(c.resolution, heldout_count, HELDOUT_SEED)
    return train, heldout
  images = data_lib.load_images(c.dataset, c.resolution, c.data_dir or None, 0, c.seed,
                                c.download)
  if len(images) < 2 * heldout_count:
    raise ValueError(f"{c.dataset} has {len(images)} images; the quality benchmark holds out "
                     f"{heldout_count} (--quality_heldout) and needs at least as many to train.")
  train = images[:-heldout_count]
  return (train[:c.num_examples] if c.num_examples else train), images[-heldout_count:]
