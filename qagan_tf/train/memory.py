"""How much memory one training iteration needs, estimated from the config before anything is
built, so that a batch that cannot fit is refused at once (not killed by the kernel minutes in).

The model is per image of the critic's batch: the ResNet's activations, kept for the backward and
the double backward of a gradient penalty, grow with the channels and the pixels. Fitted on the
peak RSS of one iteration (bin/train's step, 1 D update, this machine, TF 2.21, float32), above
the process after the models are built:

  32 px, width 32: batch 16 166 MiB, batch 64 394 MiB (4.75 MiB per image, 90 MiB fixed);
  32 px, width 128, batch 64: 1300 MiB (wgan_gp), 1246 MiB (niqe) (20 MiB per image).

so about 4.75 MiB x (width / 32) x (resolution / 32)^2 per image, plus 90 MiB, for WGAN-GP in
float32. The penalty and the precision scale it by `FACTORS`: the measured cells of
benchmarks/smoke_cpu.json (`memory.cells`, width 128, batch 64), each cell over the WGAN-GP
float32 cell of its resolution, the largest over 32, 48 and 96 px (tests/train/test_memory.py
recomputes them from the file). float16 takes bfloat16's factor (the same bytes per activation;
not measured), a penalty outside the table WGAN-GP's. It is a model of this CPU's allocator; GPUs
are not checked here.
"""

import os

MIB = 2**20
PER_IMAGE_MIB = 4.75  # 32 px, width 32.
FIXED_MIB = 90.0
USABLE_FRACTION = 0.8  # Of the machine's memory: TF, the data and the OS need the rest.
# (penalty, precision) -> one iteration's memory over WGAN-GP's in float32 (see above).
FACTORS = {
    ("wgan_gp", "float32"): 1.0, ("wgan_gp", "bfloat16"): 0.534,
    ("ssim", "float32"): 1.009, ("ssim", "bfloat16"): 0.556,
    ("niqe", "float32"): 1.045, ("niqe", "bfloat16"): 0.574,
}


def factor(config):
  """`FACTORS` for the config's penalty and precision (mixed_precision none: float32)."""
  precision = "float32" if config.mixed_precision == "none" else "bfloat16"
  penalty = config.penalty if (config.penalty, precision) in FACTORS else "wgan_gp"
  return FACTORS[(penalty, precision)]


def per_image_bytes(config):
  width = max(config.generator_width, config.discriminator_width)
  return (PER_IMAGE_MIB * MIB * (width / 32.0) * (config.resolution / 32.0) ** 2
          * factor(config))


def iteration_bytes(config):
  """Estimated peak memory of one training iteration above the built process, in bytes."""
  return FIXED_MIB * MIB + config.batch_size * per_image_bytes(config)


def machine_bytes():
  """The machine's physical memory in bytes (None where the OS does not say)."""
  try:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (ValueError, OSError, AttributeError):
    return None


def check_fits(config, total=None):
  """Raises ValueError when one iteration of `config` cannot fit in this machine's memory (on a
  CPU-only machine), naming the estimate, the limit and a batch size that fits."""
  import tensorflow as tf
  if tf.config.list_physical_devices("GPU"):
    return
  total = total or machine_bytes()
  if not total:
    return
  need = iteration_bytes(config)
  limit = USABLE_FRACTION * total
  if need <= limit:
    return
  fits = int((limit - FIXED_MIB * MIB) // per_image_bytes(config))
  half = ", or --mixed_precision=bfloat16 (about half)" if config.mixed_precision == "none" else ""
  raise ValueError(
      f"--batch_size={config.batch_size} needs about {need / 2**30:.1f} GiB per iteration at "
      f"{config.resolution} px and width {max(config.generator_width, config.discriminator_width)}"
      f" with --penalty={config.penalty} and --mixed_precision={config.mixed_precision}"
      f" (an estimate, qagan_tf/train/memory.py), more than the {limit / 2**30:.1f} GiB usable "
      f"here ({USABLE_FRACTION:.0%} of {total / 2**30:.1f} GiB): use --batch_size={max(fits, 1)} "
      f"or less, a smaller --width{half}.")
