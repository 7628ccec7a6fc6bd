"""absl flags of a training configuration, shared by bin/train and bin/benchmark."""

import types

from absl import flags, logging

from qagan_tf.utils import cli

cli.import_tensorflow_quietly()  # Before qagan_tf.models imports it, printing CUDA-stub lines.

from qagan_tf import config as config_lib  # noqa: E402
from qagan_tf import models  # noqa: E402
from qagan_tf.data import sources  # noqa: E402
from qagan_tf.train import losses, penalties  # noqa: E402

_D = types.SimpleNamespace(**config_lib.flat_defaults())  # Defaults by flag name.

# Data.
flags.DEFINE_string("dataset", _D.dataset,
                    f"Training images: {', '.join(sources.dataset_names())}. TFDS datasets are "
                    "read from --data_dir; 'embedded' needs no download.")
flags.DEFINE_string("data_dir", _D.data_dir, "TFDS data directory (default ~/tensorflow_datasets).")
flags.DEFINE_bool("download", _D.download,
                  "Let TFDS download and prepare a missing dataset (--nodownload: fail at once).")
flags.DEFINE_integer("num_examples", _D.num_examples,
                     "Use only the first N training images (0: all; embedded: number of crops, "
                     "default 4096).")
flags.DEFINE_enum("resolution", str(_D.resolution), [str(r) for r in models.SUPPORTED_RESOLUTIONS],
                  "Image size in pixels (cifar10: 32, stl10: 48 or 96, celeb_a: 64).")
# Networks.
flags.DEFINE_integer("width", _D.width, "Channels of every residual block in G and D (paper: 128).")
flags.DEFINE_integer("z_dim", _D.z_dim, "Latent dimension (paper: 128).")
# Optimisation.
flags.DEFINE_integer("batch_size", _D.batch_size, "Global real batch per D update (paper: 64).")
flags.DEFINE_integer("g_batch_multiplier", _D.g_batch_multiplier,
                     "The G update uses this many times --batch_size samples (authors: 2).")
flags.DEFINE_integer("max_steps", _D.max_steps, "Generator iterations (paper: 100000).")
flags.DEFINE_integer("disc_iters", _D.disc_iters, "D updates per G update (paper: 5).")
flags.DEFINE_float("lr", _D.lr, "Adam learning rate (paper: 2e-4; CelebA 1e-4).")
flags.DEFINE_float("beta1", _D.beta1, "Adam beta1 (paper: 0).")
flags.DEFINE_float("beta2", _D.beta2, "Adam beta2 (paper: 0.9).")
flags.DEFINE_enum("lr_decay", _D.lr_decay, ["linear", "constant"],
                  "linear: lr * max(0, 1 - step / max_steps) as the authors; constant: no decay.")
# Losses and penalties.
flags.DEFINE_enum("loss", _D.loss, list(losses.LOSSES),
                  "Adversarial loss: wasserstein (WGAN-GP, the paper), hinge (SNGAN) or "
                  "nonsaturating (the original GAN's, D outputs logits).")
flags.DEFINE_enum("d_norm", _D.d_norm, list(config_lib.D_NORMS),
                  "Normalisation of D's layers: none (the paper) or spectral (SNGAN: every "
                  "kernel divided by its largest singular value, one power iteration per D "
                  "update).")
flags.DEFINE_string("penalty", _D.penalty,
                    f"Quality-aware penalty added to the critic loss: one of "
                    f"{', '.join(penalties.penalty_names())} (wgan_gp and none: no quality "
                    "penalty, the baselines).")
flags.DEFINE_float("gp_weight", _D.gp_weight,
                   "Weight of the 1-GP (QAGAN paper: 1; WGAN-GP baseline: 10; SNGAN: 0, none).")
flags.DEFINE_float("qa_weight", _D.qa_weight, "Weight of the quality-aware penalty (paper: 0.1).")
flags.DEFINE_integer("gp_every", _D.gp_every,
                     "Lazy regularisation (StyleGAN2): the 1-GP on every k-th D update only, its "
                     "weight multiplied by k (1: every update, the paper).")
flags.DEFINE_integer("qa_every", _D.qa_every,
                     "Lazy regularisation: the quality-aware penalty on every k-th D update "
                     "only, its weight multiplied by k (1: every update, the paper).")
flags.DEFINE_enum("ssim_window", _D.ssim_window, ["gaussian", "uniform", "tf_image"],
                  "SSIM penalty: local-statistics window (authors: gaussian 8x8, sigma 1.5; "
                  "tf_image: tf.image.ssim's 11x11).")
flags.DEFINE_integer("ssim_window_size", _D.ssim_window_size,
                     "SSIM penalty: window size (uniform: 2K+1).")
flags.DEFINE_float("ssim_sigma", _D.ssim_sigma, "SSIM penalty: Gaussian window sigma.")
flags.DEFINE_float("ssim_max_val", _D.ssim_max_val,
                   "SSIM penalty: dynamic range L of the images (2 for [-1, 1]).")
flags.DEFINE_bool("ssim_grayscale", _D.ssim_grayscale,
                  "SSIM penalty: compare luma (authors) instead of each RGB channel.")
flags.DEFINE_float("ssim_cs_offset", _D.ssim_cs_offset,
                   "SSIM penalty: added to CS's denominator (0: the paper; 0.01: authors' code).")
flags.DEFINE_string("niqe_prior", _D.niqe_prior,
                    "NIQE penalty: pristine model: cifar_grad, stl_grad (the authors' Sobel-"
                    "magnitude priors for CIFAR-10 32 px and STL-10 48 px), face_grad (their "
                    "raw-D-gradient prior for CelebA 64 px), natural (classic NIQE, 96 px "
                    "blocks of photographs), or a .npz/.mat path (bin/fit_niqe_prior). The prior "
                    "records how it was fitted; the penalty transforms D's gradients the same "
                    "way (the flags below default to the prior's values).")
flags.DEFINE_integer("niqe_block_size", _D.niqe_block_size,
                     "NIQE penalty: block size at scale 1 (0: the prior's).")
flags.DEFINE_integer("niqe_scales", _D.niqe_scales, "NIQE penalty: number of scales (0: the "
                     "prior's).")
flags.DEFINE_enum("niqe_pooling", _D.niqe_pooling, ["group", "batch", "pooled", "image"],
                  "NIQE penalty: the test MVG. group (default): one MVG over the blocks of each "
                  "group of --niqe_group_size images of a replica's batch, each image scored "
                  "with its group's distance (the same at every batch size; no all-reduce); "
                  "batch: one MVG over all blocks of the global batch (the authors' code; it "
                  "falls with the batch size); pooled: per-image mean with the global batch's "
                  "covariance; image: mean and covariance per image (paper eq. 15 literally).")
flags.DEFINE_integer("niqe_group_size", _D.niqe_group_size,
                     "NIQE penalty: images per group of --niqe_pooling=group. A replica batch "
                     "smaller than it is one group; otherwise groups of at least this many, as "
                     "equal as possible.")
flags.DEFINE_bool("niqe_grayscale", _D.niqe_grayscale,
                  "NIQE penalty: gradients to luma first (as every shipped prior's inputs).")
flags.DEFINE_enum("niqe_transform", _D.niqe_transform, ["auto", "magnitude", "signed"],
                  "NIQE penalty: per-pixel magnitude of D's gradient (priors of Sobel or "
                  "gradient magnitudes) or its signed values (auto: the prior's).")
flags.DEFINE_enum("niqe_smoothing", _D.niqe_smoothing, ["auto", "none", "binomial"],
                  "NIQE penalty: smoothing of D's gradient before its magnitude. binomial: the "
                  "[1 2 1] x [1 2 1] / 16 smoothing of the Sobel operator, so that a gradient "
                  "shaped like an image's derivative is scored like that image's Sobel "
                  "magnitude; auto: binomial for Sobel-magnitude priors, else none.")
flags.DEFINE_enum("niqe_normalization", _D.niqe_normalization,
                  ["auto", "none", "contrast", "max"],
                  "NIQE penalty: scaling of D's gradient before NIQE: contrast (mean local "
                  "standard deviation -> --niqe_normalization_scale), max (peak |g| -> scale), "
                  "none (raw); auto: what brings it to the prior's inputs' scale.")
flags.DEFINE_float("niqe_normalization_scale", _D.niqe_normalization_scale,
                   "NIQE penalty: target of --niqe_normalization (0: the prior's).")
flags.DEFINE_enum("niqe_split", _D.niqe_split, ["soft", "hard"],
                  "NIQE penalty: AGGD left/right split. soft: smooth in D's weights; hard: "
                  "MATLAB's counts (the penalty jumps when a value crosses 0).")
flags.DEFINE_float("niqe_split_temperature", _D.niqe_split_temperature,
                   "NIQE penalty: width of the soft split's ramp, relative to the values' RMS.")
flags.DEFINE_float("niqe_covariance_regularization", _D.niqe_covariance_regularization,
                   "NIQE penalty: ridge added to (Sigma_P + Sigma_T) / 2 (0: none needed; the "
                   "solve is whitened by the prior).")
flags.DEFINE_bool("niqe_allow_prior_mismatch", _D.niqe_allow_prior_mismatch,
                  "NIQE penalty: use --niqe_* values that contradict how the prior was fitted "
                  "(logged), instead of refusing them.")
flags.DEFINE_enum("niqe_xla", _D.niqe_xla, ["auto", "on", "off"],
                  "NIQE penalty: compile it with XLA on its own when --jit_compile is off (the "
                  "same function within float32 round-off, fewer kernels). auto: on GPUs, off "
                  "on CPUs (no faster there).")
flags.DEFINE_float("drift_weight", _D.drift_weight,
                   "Weight of the drift term mean(D(x)^2) (authors: 1e-5; 0 disables).")
flags.DEFINE_float("ema_decay", _D.ema_decay, "Decay of the generator's EMA copy (authors: 0.99).")
# Bookkeeping.
flags.DEFINE_integer("seed", _D.seed, "Seed of initialisation, data order, noise and latents.")
flags.DEFINE_bool("deterministic", _D.deterministic,
                  "Enable TF op determinism (bit-identical reruns on the same hardware).")
flags.DEFINE_enum("on_nonfinite", _D.on_nonfinite, ["stop", "skip"],
                  "A step whose loss or gradient is NaN/Inf never updates the weights. stop: "
                  "exit at once, the latest checkpoint stays the last good one; skip: drop that "
                  "update, count it (train/nonfinite_steps) and go on (gives up after 50 such "
                  "steps in a row).")
flags.DEFINE_integer("steps_per_call", _D.steps_per_call,
                     "Training steps per tf.function call (fewer Python round trips; logging, "
                     "checkpoints and signals are handled between calls, never skipped).")
flags.DEFINE_bool("jit_compile", _D.jit_compile,
                  "Compile each D and G loss+gradient computation with XLA (optimizer updates "
                  "stay outside, so it works under every tf.distribute strategy).")
flags.DEFINE_enum("mixed_precision", _D.mixed_precision, ["none", "bfloat16", "float16"],
                  "G and D compute in 16 bits (weights, losses, penalties and IQA statistics "
                  "stay float32); float16 uses dynamic loss scaling.")
flags.DEFINE_bool("allow_tf32", _D.allow_tf32,
                  "Let Ampere and later GPUs run float32 matmuls/convolutions in TensorFloat-32 "
                  "(faster G and D; also perturbs the SSIM/NIQE statistics). Off by default: "
                  "float32 stays float32. In-training FID always runs without TF32. No effect "
                  "on CPUs.")
flags.DEFINE_integer("save_every", _D.save_every, "Checkpoint interval in steps.")
flags.DEFINE_integer("keep_checkpoints", _D.keep_checkpoints, "Checkpoints kept in --model_dir.")
flags.DEFINE_integer("log_every", _D.log_every, "Console/TensorBoard scalar interval in steps.")
flags.DEFINE_integer("sample_every", _D.sample_every, "Sample-grid interval in steps.")
flags.DEFINE_integer("histogram_every", _D.histogram_every, "D weight-histogram interval in steps.")
flags.DEFINE_integer("num_sample_images", _D.num_sample_images, "Images in each sample grid.")
flags.DEFINE_integer("eval_every", _D.eval_every,
                     "In-training evaluation of the EMA generator every N steps: eval/fid, "
                     "eval/is, eval/niqe, and eval/kid, eval/precision, eval/recall when "
                     "--eval_stats keeps activations (0: off; needs --eval_stats).")
flags.DEFINE_integer("eval_num_samples", _D.eval_num_samples,
                     "Samples per in-training evaluation (the final protocol: bin/evaluate).")
flags.DEFINE_string("eval_stats", _D.eval_stats,
                    "Reference statistics for the in-training FID (bin/compute_stats).")
flags.DEFINE_string("inception_weights", _D.inception_weights,
                    "Inception weights for evaluation (default: $QAGAN_INCEPTION_WEIGHTS, then the "
                    "cache filled by bin/fetch_inception).")


def config_from_flags(flag_values=flags.FLAGS, saved=None):
  """The `TrainConfig` the parsed flags describe (validated).

  Args:
    flag_values: the parsed flags.
    saved: optional `TrainConfig` of the run being resumed (its config.json): every setting
      whose flag was given neither on the command line nor in a --flagfile takes the run's
      value instead of the flag's default (logged when it differs from the default), so that a
      run resumes with its own settings even where a default has changed since it started.
  """
  values = {name: getattr(flag_values, name) for name in config_lib.flat_defaults()}
  values["resolution"] = int(values["resolution"])
  inherited = {}
  if saved is not None:
    for name, value in saved.to_dict().items():
      if name in values and not flag_values[name].present and values[name] != value:
        values[name] = inherited[name] = value
  if inherited:
    logging.info("Resuming with the run's own values of flags not given (config.json): %s.",
                 ", ".join(f"{k}={v}" for k, v in sorted(inherited.items())))
  return config_lib.TrainConfig.create(**values).validate()
