"""Peak memory of one training iteration per penalty, resolution and precision:
`bin/benchmark --sections=memory`.

Each cell runs in a process of its own (a fresh allocator): it builds bin/train's Trainer at the
paper's configs (width 128, batch 64; 32 px with the CIFAR-10 prior, 48 px with STL-10's, 96 px
with one 96-px block), records the resident set once the models, optimizers
and data are built and resets the kernel's high-water mark to it (Linux), runs two iterations (one
D update each: the peak is the same at every update) and reads the high-water mark. The cell's
figure is the difference: what one iteration adds. A cell the memory model
(`qagan_tf.train.memory`) says would not fit here is not run: it is predicted, and marked so.

The GPU column is a model, not a measurement: the bytes of every tensor the traced D update
produces (forward, backward and the double backward, no buffer reused: an upper bound) plus the
weights and Adam's two slots.
"""

import json
import os
import subprocess
import sys

PENALTIES = ("wgan_gp", "ssim", "niqe")
PRECISIONS = ("float32", "bfloat16")
# name -> (resolution, the paper config's prior and its settings for the NIQE cells).
RESOLUTIONS = {
    "32px": (32, {"niqe_prior": "cifar_grad"}),
    "48px": (48, {"niqe_prior": "stl_grad"}),
    "96px": (96, {"niqe_prior": "stl_grad", "niqe_block_size": 96, "niqe_scales": 2,
                  "niqe_allow_prior_mismatch": True}),
}
WIDTH, BATCH = 128, 64

_CELL = r'''
import json, sys, tempfile
import numpy as np
values = json.loads(sys.argv[1])


def status_bytes(key):
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(key + ":"):
        return int(line.split()[1]) * 1024
  raise ValueError(f"no {key} in /proc/self/status")


import tensorflow as tf
from qagan_tf import config as config_lib
from qagan_tf.data import sources
from qagan_tf.train import distribution, trainer as trainer_lib
config = config_lib.TrainConfig.create(**values).validate()
images = sources.embedded_images(config.resolution, 256, 0)
out = {}
with tempfile.TemporaryDirectory() as tmp:
  trainer = trainer_lib.Trainer(config, tmp, distribution.make_strategy("default"),
                                images=images)
  iterator = iter(trainer.distributed_dataset(0))
  next(iterator)
  # The resident set now, and the kernel's high-water mark reset to it (Linux: writing 5 to
  # clear_refs), so that the peak read after the iterations is theirs, not the build's (the
  # process-lifetime ru_maxrss of the build hid every iteration: 0 MiB in every cell).
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
  built = status_bytes("VmRSS")
  for _ in range(2):
    trainer.train_step(iterator)
  peak = status_bytes("VmHWM")
  out.update(built_bytes=built, peak_bytes=peak, iteration_bytes=peak - built)
  if len(sys.argv) > 2:  # The GPU model's tensor bytes of one traced D update.
    sys.path.insert(0, sys.argv[2])
    from qagan_bench import gpu_model
    from qagan_bench import train_bench
    from qagan_tf.update import critic
    inputs = next(iterator)
    real, z, eps = inputs["real"][0], inputs["z"][0], inputs["eps"][0]
    parts = train_bench.plain_parts(trainer)
    fn = tf.function(lambda: critic.discriminator_update(
        parts, real, z, eps, global_batch_size=config.batch_size).values["d_loss"],
        autograph=False)
    graph = fn.get_concrete_function().graph
    weights = sum(int(np.prod(v.shape)) * tf.as_dtype(v.dtype).size for v in
                  trainer.generator.variables + trainer.discriminator.variables)
    out["gpu_model_bytes"] = gpu_model.output_bytes(graph) + 3 * weights
print(json.dumps(out))
'''


def cells():
  """[(penalty, resolution name, precision)] in table order."""
  return [(p, r, q) for r in RESOLUTIONS for p in PENALTIES for q in PRECISIONS]


def check_penalty_names(names):
  unknown = [n for n in names if n not in PENALTIES]
  if unknown:
    raise ValueError(f"unknown memory penalty {','.join(unknown)}; choose from "
                     f"{','.join(PENALTIES)}.")


def _values(penalty, resolution, precision):
  res, niqe = RESOLUTIONS[resolution]
  values = dict(dataset="embedded", resolution=res, width=WIDTH, batch_size=BATCH,
                disc_iters=1, penalty=penalty, gp_weight=1.0, qa_weight=0.1,
                mixed_precision="none" if precision == "float32" else precision,
                jit_compile=False)
  if penalty == "niqe":
    values.update(niqe)
  return values


def run_cell(values, name, gpu_model=True, timeout=1800):
  """One cell in a process of its own: {"built_bytes", "peak_bytes", "iteration_bytes"} and,
  with gpu_model, "gpu_model_bytes". A failure raises ValueError naming the cell."""
  here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  argv = [sys.executable, "-c", _CELL, json.dumps(values)] + ([here] if gpu_model else [])
  proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=here,
                        env=dict(os.environ, PYTHONPATH=here, TF_CPP_MIN_LOG_LEVEL="2"))
  if proc.returncode:
    raise ValueError(f"memory cell {name} failed:\n{proc.stderr[-2000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def run(penalties=PENALTIES, log=print, timeout=1800, total_bytes=None, gpu_model=True):
  """Every cell of `penalties` x RESOLUTIONS x PRECISIONS, each in its own process.

  Returns:
    {"cells": {"<penalty>/<res>/<precision>": {"measured": bool, "iteration_mib", ...}},
     "ratios": {"<penalty>_over_wgan_gp/<res>/<precision>": ...}, "machine_mib", "method"}.
  """
  check_penalty_names(penalties)
  from qagan_tf import config as config_lib
  from qagan_tf.train import memory
  total = total_bytes or memory.machine_bytes()
  out = {"cells": {}, "ratios": {}, "machine_mib": total / 2**20 if total else None,
         "width": WIDTH, "batch": BATCH, "method": __doc__.split("\n\n")[1].replace("\n", " ")}
  for penalty, resolution, precision in cells():
    if penalty not in penalties:
      continue
    values = _values(penalty, resolution, precision)
    config = config_lib.TrainConfig.create(**values).validate()
    predicted = memory.iteration_bytes(config)
    name = f"{penalty}/{resolution}/{precision}"
    cell = {"predicted_mib": predicted / 2**20}
    if total and predicted > memory.USABLE_FRACTION * total:
      cell.update(measured=False, iteration_mib=cell["predicted_mib"],
                  note="predicted: would not fit in this machine's memory")
    else:
      result = run_cell(values, name, gpu_model, timeout)
      cell.update(measured=True, iteration_mib=result["iteration_bytes"] / 2**20,
                  built_mib=result["built_bytes"] / 2**20,
                  peak_mib=result["peak_bytes"] / 2**20)
      if "gpu_model_bytes" in result:
        cell["gpu_model_mib"] = result["gpu_model_bytes"] / 2**20
    out["cells"][name] = cell
    log(f"memory {name}: {cell['iteration_mib']:.0f} MiB per iteration "
        f"({'measured' if cell['measured'] else 'predicted'}; model {cell['predicted_mib']:.0f})"
        + (f", GPU model {cell['gpu_model_mib']:.0f} MiB" if "gpu_model_mib" in cell else ""))
  for name, cell in out["cells"].items():
    penalty, resolution, precision = name.split("/")
    base = out["cells"].get(f"wgan_gp/{resolution}/{precision}")
    if penalty != "wgan_gp" and base:
      out["ratios"][f"{penalty}_over_wgan_gp/{resolution}/{precision}"] = (
          cell["iteration_mib"] / base["iteration_mib"])
  return out
