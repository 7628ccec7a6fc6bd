"""absl flags of bin/benchmark: which sections to run (`qagan_bench.sections.SECTIONS`) and each
section's settings, beside the training flags of `train_flags` (so that --flagfile configs work)."""

import os
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from qagan_bench import sections  # noqa: E402

import train_flags  # noqa: E402,F401  (the training flags)

flags.DEFINE_string("model_dir", None, "Accepted so that training flagfiles work; unused (the "
                    "benchmark writes no checkpoints).")
flags.DEFINE_string("output", None, "JSON file to write.")
flags.DEFINE_list("sections", list(sections.DEFAULT_SECTIONS), sections.help_text())
flags.DEFINE_list("speed_variants", ["all"],
                  "Speed variants of the train section to time (all, or a list with baseline: "
                  "baseline, steps_per_call_10, xla, xla_steps_per_call_10, bfloat16, float16, "
                  "xla_bfloat16, tf32, xla_tf32).")
flags.DEFINE_list("lazy_penalties", ["wgan_gp", "ssim", "niqe"],
                  "Train section: the penalties whose lazy (--gp_every=4 --qa_every=4) "
                  "iteration is timed against every-update regularisation.")
flags.DEFINE_list("regularizer_variants",
                  ["r3", "wgan_gp_lecam", "wgan_gp_da", "wgan_gp_ada", "r3_niqe"],
                  "Train and regularizers sections: the regularisers whose iteration is timed "
                  "against WGAN-GP's (r3_niqe over r3 too, when both are listed).")
flags.DEFINE_integer("repeats", 5, "Timed repeats per measurement (median reported).")
flags.DEFINE_integer("inception_batch", 16, "Batch size of the Inception measurement.")
flags.DEFINE_bool("with_torch", True,
                  "Also time PyTorch (when installed): the same Inception weights, and in the "
                  "train section a plain PyTorch WGAN-GP of the same ResNet (the peer).")
flags.DEFINE_list("peer_settings", ["all"],
                  "PyTorch peer settings to try (all, or: eager, channels_last, bf16_autocast, "
                  "channels_last_bf16_autocast, compile); its fastest is compared.")
flags.DEFINE_list("peer_variants", ["default", "baseline", "steps_per_call_10", "xla",
                                    "xla_steps_per_call_10", "bfloat16", "xla_bfloat16"],
                  "Our speed variants raced against the peer (default: bin/train's defaults, "
                  "--jit_compile=auto resolved); our fastest is compared, and our default.")
flags.DEFINE_string("op_count_baseline", None,
                    "An older checkout of qagan_tf (e.g. git worktree add /tmp/before bc25ea8) "
                    "whose NIQE penalty's executed-op count is recorded beside ours.")
flags.DEFINE_string("compare_checkout", None,
                    "Section commits: another checkout of qagan_tf (e.g. git worktree add "
                    "/tmp/before <commit>) whose default training step is timed against this "
                    "one's, interleaved block by block in two worker processes.")
flags.DEFINE_integer("commit_rounds", 12, "Section commits: timed blocks per checkout.")
flags.DEFINE_list("memory_penalties", ["wgan_gp", "ssim", "niqe"],
                  "Section memory: the penalties whose peak memory per iteration is measured (at "
                  "32, 48 and 96 px, width 128, batch 64, float32 and bfloat16).")
flags.DEFINE_integer("commit_iterations", 10, "Section commits: iterations per block.")
flags.DEFINE_string("bench_inception_weights", None, "Inception weights (default: as bin/fid).")
flags.DEFINE_list("quality_variants", None,
                  "Quality section: variants to train (default: the study's wgan_gp, "
                  "wgan_gp_gp1, ssim, niqe, niqe_w1; also ssim_w1, niqe_pooled, niqe_batch, "
                  "niqe_image, wgan_gp_k4, wgan_gp_gp1_k4, ssim_k4, niqe_k4 (lazy "
                  "regularisation), sngan, sngan_ssim, sngan_niqe, the regularisers' wgan_gp_da, "
                  "niqe_da, r3, r3_niqe, r3_ssim, wgan_gp_lecam, and niqe_bf16 (G and D in "
                  "bfloat16). Each is compared with its "
                  "control (quality_bench.CONTROLS) when both run.")
flags.DEFINE_list("quality_seeds", ["0", "1", "2", "3", "4"],
                  "Quality section: training seeds (paired: seed s gives every variant the same "
                  "initial weights and data order).")
flags.DEFINE_integer("quality_iterations", 800, "Quality section: generator iterations per run.")
flags.DEFINE_integer("quality_eval_every", 200, "Quality section: iterations between scores.")
flags.DEFINE_integer("quality_samples", 256,
                     "Quality section: generated images per score of the curves.")
flags.DEFINE_integer("quality_final_samples", 1024,
                     "Quality section: raw-generator images of the final FID and KID (the "
                     "comparisons' figures; at least --quality_samples).")
flags.DEFINE_integer("quality_ema_samples", 256,
                     "Quality section: EMA-generator images of its final FID and KID (0: none).")
flags.DEFINE_integer("quality_heldout", 1024, "Quality section: held-out real images.")
flags.DEFINE_integer("quality_inception_batch", 64,
                     "Quality section: images per Inception call when scoring (a set is padded "
                     "to a whole number of calls, so a few samples score faster with a smaller "
                     "one).")
flags.DEFINE_integer("quality_workers", 2,
                     "Quality section: runs trained at once, each in its own process.")
flags.DEFINE_enum("quality_generator", "raw", ["raw", "ema"],
                  "Quality section: score the generator being trained or its EMA copy in the "
                  "curves (the final score is the raw generator's).")
flags.DEFINE_list("quality_full_at", [],
                  "Quality section: scored iterations before the last that are also scored on "
                  "--quality_final_samples (each run's fid_at_<i>, kid_at_<i>: an early endpoint "
                  "of a pre-registered study, e.g. 200).")
flags.DEFINE_list("quality_metrics", ["final_fid", "final_kid", "gradient_niqe"],
                  "Quality section: the per-run values that the comparisons pair (final_fid, "
                  "final_kid, gradient_niqe, and fid_at_<i>/kid_at_<i> of --quality_full_at).")
flags.DEFINE_float("quality_level", 0.95,
                   "Quality section: the comparisons' two-sided confidence level (0.975 for two "
                   "primary endpoints, Bonferroni).")
flags.DEFINE_bool("overwrite", False,
                  "Replace an existing --output file (a quality section resuming its own "
                  "finished runs, in OUTPUT.runs/, needs no --overwrite until it writes OUTPUT).")
flags.mark_flag_as_required("output")
