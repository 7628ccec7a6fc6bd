"""Two checkouts' default training step, timed side by side: `bin/benchmark --sections=commits
--compare_checkout=DIR`.

Each checkout trains in a worker process of its own (its qagan_tf first on the path), built once
and warmed up, then idle. The parent asks the workers in turn, in a new seeded random order each
round, to run a block of iterations; only one runs at a time, so both see the same machine and a
change in its load hits both alike (as the PyTorch race's round-robin). Each block is timed inside
its worker (`Trainer.train_iterations`, as bin/train runs it). The figure is the ratio of the
medians, with the spread of each side's blocks to judge it by.
"""

import json
import os
import subprocess
import sys

import numpy as np

_WORKER = r'''
import json, os, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
from qagan_tf import config as config_lib
from qagan_tf.data import sources
from qagan_tf.train import distribution
from qagan_tf.train import trainer as trainer_lib
values = json.loads(sys.argv[2])
config = config_lib.TrainConfig.create(**values).validate()
images = sources.embedded_images(config.resolution, 512, 0)
with tempfile.TemporaryDirectory() as tmp:
  trainer = trainer_lib.Trainer(config, tmp, distribution.make_strategy("default"),
                                images=images)
  iterator = iter(trainer.distributed_dataset(0))
  for _ in range(2):  # Trace and warm up.
    trainer.train_iterations(iterator, 2)
    trainer.step.numpy()
  print("READY", flush=True)
  for line in sys.stdin:
    count = int(line)
    if count <= 0:
      break
    t0 = time.perf_counter()
    trainer.train_iterations(iterator, count)
    trainer.step.numpy()
    print(json.dumps({"seconds": time.perf_counter() - t0}), flush=True)
'''


def _commit(checkout):
  try:
    return subprocess.run(["git", "-C", checkout, "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True, timeout=30).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None


def _dirty(checkout):
  try:
    return bool(subprocess.run(["git", "-C", checkout, "status", "--porcelain", "--",
                                "qagan_tf"], capture_output=True, text=True, check=True,
                               timeout=30).stdout.strip())
  except (OSError, subprocess.SubprocessError):
    return None


class _Worker:
  def __init__(self, checkout, values):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=checkout)
    self.proc = subprocess.Popen(
        [sys.executable, "-c", _WORKER, checkout, json.dumps(values)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=checkout)

  def wait_ready(self):
    for line in self.proc.stdout:
      if line.strip() == "READY":
        return
    raise ValueError(f"a race worker failed to start:\n{self.proc.stderr.read()[-3000:]}")

  def run(self, count):
    self.proc.stdin.write(f"{count}\n")
    self.proc.stdin.flush()
    line = self.proc.stdout.readline()
    if not line:
      raise ValueError(f"a race worker died:\n{self.proc.stderr.read()[-3000:]}")
    return json.loads(line)["seconds"]

  def close(self):
    try:
      self.proc.stdin.write("0\n")
      self.proc.stdin.flush()
      self.proc.wait(timeout=60)
    except (OSError, subprocess.SubprocessError):
      self.proc.kill()


def run(config, baseline, ours=None, rounds=12, iterations=10, seed=0, log=print):
  """Times the default step (`config` as bin/train runs it) of the checkout `ours` (default:
  this one) against `baseline`'s, interleaved.

  Args:
    config: the `TrainConfig` of both runs (as flat values; each checkout builds its own).
    baseline: a checkout of this project (e.g. `git worktree add /tmp/before <commit>`).
    rounds, iterations: timed blocks per side, iterations per block.

  Returns:
    {"ours", "baseline"}: {checkout, commit, dirty, block_seconds, ms_per_iteration (median),
    spread (max/min of the blocks)}, "baseline_over_ours" (> 1: ours is faster), "rounds",
    "iterations", "load_average".
  """
  here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  sides = {"ours": os.path.abspath(ours or here), "baseline": os.path.abspath(baseline)}
  for name, checkout in sides.items():
    if not os.path.isdir(os.path.join(checkout, "qagan_tf")):
      raise ValueError(f"{checkout} is not a checkout of qagan_tf (no qagan_tf/ folder); e.g. "
                       "git worktree add /tmp/before <commit>.")
  values = {k: v for k, v in config.to_dict().items()
            if k in ("dataset", "resolution", "width", "batch_size", "disc_iters", "penalty",
                     "gp_weight", "qa_weight", "lr", "z_dim", "jit_compile", "seed")}
  workers = {name: _Worker(checkout, values) for name, checkout in sides.items()}
  load_start = os.getloadavg()
  try:
    for worker in workers.values():
      worker.wait_ready()
    rng = np.random.default_rng(seed)
    names = list(workers)
    times = {name: [] for name in names}
    for r in range(rounds):
      for index in rng.permutation(len(names)):
        name = names[index]
        times[name].append(workers[name].run(iterations))
      log(f"commits: round {r + 1}/{rounds}: " + ", ".join(
          f"{n} {1e3 * times[n][-1] / iterations:.0f} ms" for n in names))
  finally:
    for worker in workers.values():
      worker.close()
  out = {"rounds": rounds, "iterations": iterations,
         "load_average": {"start": list(load_start), "end": list(os.getloadavg())}}
  for name, checkout in sides.items():
    blocks = np.array(times[name])
    out[name] = {"checkout": checkout, "commit": _commit(checkout), "dirty": _dirty(checkout),
                 "block_seconds": blocks.tolist(),
                 "ms_per_iteration": float(1e3 * np.median(blocks) / iterations),
                 "spread": float(blocks.max() / blocks.min())}
  out["baseline_over_ours"] = out["baseline"]["ms_per_iteration"] / out["ours"]["ms_per_iteration"]
  log(f"commits: ours {out['ours']['ms_per_iteration']:.1f} ms, baseline "
      f"{out['baseline']['ms_per_iteration']:.1f} ms per iteration: baseline / ours "
      f"{out['baseline_over_ours']:.3f} (block spreads {out['ours']['spread']:.2f}, "
      f"{out['baseline']['spread']:.2f})")
  return out
