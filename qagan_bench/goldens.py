"""Fixed-seed goldens of what training computes, to check that a refactor changes nothing.

Each case is a shipped objective at the smallest size (embedded crops, width 8, batch 4, 2 D
updates per iteration, op determinism on) trained for 8 iterations in this process. A golden
holds, per iteration, every metric the trainer reports, and at the end a SHA-256 of every
variable of G, D, the EMA generator and both optimizers. Floats from float32 are exact in JSON,
so `check` compares them bit for bit. Goldens are of one machine: record and check on the same
one (another CPU may round differently).

  python -m qagan_bench.goldens record /tmp/goldens_before.json     # before the change
  python -m qagan_bench.goldens check /tmp/goldens_before.json      # after it
"""

import hashlib
import json
import os
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# name -> (flagfile under configs/, changes): the shipped objectives and the lazy schedules.
CASES = {
    "wgan_gp": ("smoke.cfg", {}),
    "ssim": ("smoke_ssim.cfg", {}),
    "niqe": ("smoke_niqe.cfg", {}),
    "sngan": ("cifar10_sngan.cfg", {}),
    "cifar10_r3": ("cifar10_r3.cfg", {}),
    "cifar10_r3_niqe": ("cifar10_r3_niqe.cfg", {}),
    "lecam": ("smoke.cfg", {"lecam_weight": 0.1}),
    "diffaugment": ("cifar10_wgangp_da.cfg", {}),
    "lazy": ("smoke_niqe.cfg", {"gp_every": 4, "qa_every": 4}),
    "lazy_r1": ("cifar10_r3.cfg", {"r1_every": 4}),
}
SMALL = dict(dataset="embedded", num_examples=64, resolution=32, width=8, g_width=0, d_width=0,
             batch_size=4, disc_iters=2, max_steps=8, deterministic=True, eval_every=0,
             seed=0, jit_compile=False)
ITERATIONS = 8


def read_flagfile(path):
  """{setting: value} of a configs/*.cfg file, typed as the settings' defaults."""
  from qagan_tf import config as config_lib
  defaults = config_lib.flat_defaults()
  values = {}
  with open(path) as f:
    for line in f:
      line = line.strip()
      if not line.startswith("--"):
        continue
      name, _, text = line[2:].partition("=")
      if name not in defaults:
        continue  # model_dir and the like: not settings.
      kind = type(defaults[name])
      values[name] = (text.lower() in ("1", "true") if kind is bool
                      else kind(text) if kind in (int, float) else text)
  return values


def config_of(name):
  from qagan_tf import config as config_lib
  flagfile, changes = CASES[name]
  values = read_flagfile(os.path.join(REPO, "configs", flagfile))
  values.update(SMALL, **changes)
  return config_lib.TrainConfig.create(**values).validate()


def _digest(variable):
  import numpy as np
  value = np.ascontiguousarray(variable.numpy())
  return hashlib.sha256(value.tobytes() + str(value.dtype).encode()).hexdigest()


def golden(name):
  """The golden of one case: {"metrics": [{name: value}] per iteration, "weights": {part:
  [sha256 per variable, in order]}}."""
  from qagan_tf.train import distribution
  from qagan_tf.train import trainer as trainer_lib
  config = config_of(name)
  with tempfile.TemporaryDirectory() as tmp:
    trainer = trainer_lib.Trainer(config, tmp, distribution.make_strategy("default"))
    iterator = iter(trainer.distributed_dataset(0))
    metrics = []
    for _ in range(ITERATIONS):
      trainer.train_iterations(iterator, 1)
      metrics.append({k: float(v) for k, v in sorted(trainer.pop_metric_means().items())})
    weights = {part: [_digest(v) for v in getattr(trainer, part).variables]
               for part in ("generator", "discriminator", "ema_generator", "g_optimizer",
                            "d_optimizer")}
  return {"config": config.to_dict(), "metrics": metrics, "weights": weights}


def record(path, names=None):
  from qagan_bench import quality_bench
  out = {"machine": quality_bench.cpu_model(), "commit": quality_bench.code_commit(),
         "cases": {}}
  for name in names or CASES:
    print(f"goldens: {name}", flush=True)
    out["cases"][name] = golden(name)
  with open(path, "w") as f:
    json.dump(out, f, indent=1, sort_keys=True)
  print(f"Wrote {path}")


def check(path, names=None):
  """Compares this checkout's goldens with a recorded file; returns the differences."""
  with open(path) as f:
    recorded = json.load(f)["cases"]
  problems = []
  for name in names or recorded:
    print(f"goldens: {name}", flush=True)
    mine, theirs = golden(name), recorded[name]
    for i, (a, b) in enumerate(zip(mine["metrics"], theirs["metrics"]), 1):
      if a != b:
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        problems.append(f"{name}: iteration {i} differs in {', '.join(keys)}")
        break
    for part, digests in theirs["weights"].items():
      if mine["weights"].get(part) != digests:
        problems.append(f"{name}: {part} differs")
  for line in problems:
    print(line)
  print("bitwise equal" if not problems else f"{len(problems)} difference(s)")
  return problems


if __name__ == "__main__":
  sys.path.insert(0, REPO)
  import tensorflow as tf  # noqa: F401
  command, file = sys.argv[1], sys.argv[2]
  chosen = sys.argv[3].split(",") if len(sys.argv) > 3 else None
  if command == "record":
    record(file, chosen)
  else:
    sys.exit(1 if check(file, chosen) else 0)
