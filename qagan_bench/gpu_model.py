"""A GPU cost model computed on a CPU: no GPU with TensorFlow is lent to this project.

For one D step of each penalty, with and without XLA: the kernels executed (each a launch on a
GPU), the float operations and the bytes the kernels read and write. The predicted H100 time is

    launches x LAUNCH_S + FLOPs / (H100 rate) + bytes / (H100 memory bandwidth)

with the H100's published dense rates (SXM5: TF32 tensor cores 494.7 TFLOP/s, as TF's default
TF32 in the recorded run, float32 66.9 TFLOP/s, HBM3 3.35 TB/s). LAUNCH_S, the cost of one
executed op (launch plus TF's executor), is the one fitted number: it is solved from the one H100
measurement we have, the WGAN-GP D step of benchmarks/gpu_h100_cifar10.json (17.0 ms), and
checked on the other row of that file, the NIQE D step before the penalty was batched
(57.1 ms, the penalty of bc25ea8). It is a model, not a measurement.

The fit uses the executed ops of the code the H100 ran (MEASURED_CODE_OPS: Keras' own Adam,
~20 ops per variable, and Keras' synchronised batch norm), not today's: since FusedAdam and the
fused batch norm, a D step executes far fewer ops, and fitting 17.0 ms to today's count would
inflate the per-op cost. Today's predictions use today's counts with that fitted cost.
"""

import re
import tempfile

import numpy as np
import tensorflow as tf

H100 = {"tf32_flops_per_s": 494.7e12, "fp32_flops_per_s": 66.9e12, "bytes_per_s": 3.35e12}
# benchmarks/gpu_h100_cifar10.json (TF 2.21.0, TF32 on, CIFAR-10 config: 32 px, width 128,
# batch 64): D step medians.
MEASURED_H100_S = {"wgan_gp": 0.01704407500002958, "niqe_before_batching": 0.05713831650001566}
# Executed ops of the WGAN-GP D step of the code the H100 run measured, counted by this model
# (`d_step_costs`, at H100_CONFIG) at b548460, the last commit before FusedAdam and the fused
# batch norm (benchmarks/smoke_cpu_epyc_2026-12-01.json, gpu_model.d_steps.wgan_gp.ops).
MEASURED_CODE_OPS = {"wgan_gp": 1192}
H100_CONFIG = dict(resolution=32, width=128, batch_size=64, disc_iters=5, gp_weight=10.0)
# Instructions of an optimized HLO module's entry computation that are no kernel.
_NOT_KERNELS = ("parameter", "constant", "tuple", "get-tuple-element", "bitcast", "copy-start",
                "copy-done", "after-all", "partition-id", "replica-id")


def _tensor_bytes(tensor):
  shape = tensor.shape
  if shape.rank is None or not shape.is_fully_defined() or tensor.dtype == tf.resource:
    return 0
  return int(np.prod(shape.as_list())) * tensor.dtype.size


def _ops(graph):
  """Every op of a traced graph that does work (constants and bookkeeping excluded), nested
  function bodies included, each once."""
  seen = set()

  def walk(g):
    for op in g.get_operations():
      if op.type not in ("Const", "NoOp", "Placeholder", "VarHandleOp", "Identity"):
        yield op
    for name, fn in getattr(g, "_functions", {}).items():
      inner = getattr(fn, "graph", None)
      if name not in seen and inner is not None:
        seen.add(name)
        yield from walk(inner)
  return walk(graph)


def graph_bytes(graph):
  """Bytes every op of a traced graph reads and writes (inputs plus outputs with static shapes;
  constants and bookkeeping excluded), nested function bodies included."""
  return sum(sum(_tensor_bytes(t) for t in op.inputs) + sum(_tensor_bytes(t)
                                                            for t in op.outputs)
             for op in _ops(graph))


def output_bytes(graph):
  """Bytes of every tensor the ops of a traced graph produce (static shapes; constants and
  bookkeeping excluded), nested function bodies included: a GPU's peak memory if no buffer were
  ever reused, an upper bound for the memory model."""
  return sum(sum(_tensor_bytes(t) for t in op.outputs) for op in _ops(graph))


def hlo_kernels(hlo_text):
  """Kernels of an optimized HLO module: the instructions of its ENTRY computation that run
  (fusions, convolutions, custom calls, ...), by opcode. XLA's CPU backend fuses differently
  from its GPU backend, so this is an estimate of the GPU's count."""
  entry = hlo_text[hlo_text.index("ENTRY"):]
  entry = entry[:entry.index("\n}") if "\n}" in entry else len(entry)]
  kinds = {}
  for line in entry.splitlines()[1:]:
    match = re.search(r"=\s*[^ ]+(?:\{[^}]*\})?\s+([a-z\-]+)\(", line)
    if match is None:
      match = re.search(r"\s([a-z\-]+)\(", line)
    if match and match.group(1) not in _NOT_KERNELS:
      kinds[match.group(1)] = kinds.get(match.group(1), 0) + 1
  return kinds


def predict_s(launches, flops, bytes_moved, launch_s, flops_per_s=H100["tf32_flops_per_s"]):
  return launches * launch_s + flops / flops_per_s + bytes_moved / H100["bytes_per_s"]


def d_step_costs(config, penalty, log=print):
  """{"ops", "flops", "bytes", "xla_kernels", "xla_flops"} of one D step of `penalty` at
  `config`, measured on this CPU (the kernels executed once, from TF's profiler)."""
  from qagan_bench import op_profile
  from qagan_bench import train_bench
  from qagan_tf.train import distribution
  from qagan_tf.train import trainer as trainer_lib
  from qagan_tf.update import critic
  c = config.replace(penalty=penalty, qa_weight=max(config.qa_weight, 0.1), eval_every=0,
                     jit_compile=False)
  with tempfile.TemporaryDirectory() as tmp:
    trainer = trainer_lib.Trainer(c, tmp, distribution.make_strategy("auto"))
    inputs = next(iter(trainer.distributed_dataset(0)))
    d_step = train_bench._d_step_fn(trainer, c, inputs)
    d_step().numpy()
    concrete = d_step.get_concrete_function()
    ops = op_profile.tf_op_times(lambda: d_step().numpy(), runs=1)["executed_ops"]
    out = {"ops": int(ops), "flops": train_bench._graph_flops(concrete) or 0,
           "bytes": graph_bytes(concrete.graph)}
    real, z, eps = inputs["real"][0], inputs["z"][0], inputs["eps"][0]

    fake = trainer.generator(z, training=True)  # D's step takes G's samples as inputs.

    def gradients(r, f, e):
      return critic.critic_gradients(trainer.discriminator, r, f, e, trainer.objective,
                                     global_batch_size=c.batch_size)
    plain_gradients = tf.function(gradients, autograph=False)
    plain_gradients(real, fake, eps)
    gradient_ops = op_profile.tf_op_times(
        lambda: tf.nest.map_structure(lambda t: t.numpy(), plain_gradients(real, fake, eps)),
        runs=1)["executed_ops"]
    # What --jit_compile leaves outside XLA: the optimizer update and the step's bookkeeping.
    out["update_ops"] = max(int(ops - gradient_ops), 0)
    compiled = tf.function(gradients, jit_compile=True, autograph=False)
    try:
      hlo = compiled.experimental_get_compiler_ir(real, fake, eps)(stage="optimized_hlo")
      kinds = hlo_kernels(hlo)
      # The optimizer update stays outside XLA (--jit_compile compiles the gradients only):
      # its kernels are the plain step's ApplyAdam-family ops.
      out["xla_kernels"] = sum(kinds.values())
      out["xla_kernel_kinds"] = dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:8])
    except Exception as e:  # noqa: BLE001 - the compiler IR API varies between TF versions.
      out["xla_kernels"] = None
      out["xla_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
  log(f"gpu model {penalty}: {out['ops']} executed ops, {out['flops'] / 1e9:.1f} GFLOP, "
      f"{out['bytes'] / 1e9:.2f} GB; XLA {out.get('xla_kernels')} kernels")
  return out


def run(config, old_checkout=None, log=print):
  """The model at the recorded H100 run's config (H100_CONFIG on top of `config`).

  Args:
    old_checkout: a checkout whose NIQE penalty is the one the H100 NIQE row measured (bc25ea8:
      the penalty before batching): its executed ops (value and gradient, counted as the D
      steps are) give the check against that row; None: no check.
  """
  config = config.replace(**H100_CONFIG)
  old_penalty_ops = None
  if old_checkout:
    from qagan_bench import op_count
    old = op_count.measure_checkout(old_checkout, config.resolution, config.batch_size)
    old_penalty_ops = old["profiled_forward_backward"]
    log(f"gpu model: NIQE penalty of {old['commit']}: {old_penalty_ops} executed ops")
  costs = {p: d_step_costs(config, p, log) for p in ("wgan_gp", "ssim", "niqe")}
  w = costs["wgan_gp"]
  compute_s = w["flops"] / H100["tf32_flops_per_s"] + w["bytes"] / H100["bytes_per_s"]
  measured_ops = MEASURED_CODE_OPS["wgan_gp"]
  launch_s = (MEASURED_H100_S["wgan_gp"] - compute_s) / measured_ops
  result = {"h100_rates": H100, "config": H100_CONFIG, "measured_h100_d_step_s": MEASURED_H100_S,
            "measured_code_ops": MEASURED_CODE_OPS, "launch_s_fitted_on_wgan_gp": launch_s,
            "d_steps": costs, "predicted_h100_s": {}}
  for name, cost in costs.items():
    plain = predict_s(cost["ops"], cost["flops"], cost["bytes"], launch_s)
    entry = {"plain": plain}
    if cost.get("xla_kernels"):
      # XLA: the compiled gradients' kernels plus the ops it leaves outside (the update).
      entry["xla"] = predict_s(cost["xla_kernels"] + cost["update_ops"], cost["flops"],
                               cost["bytes"], launch_s)
    result["predicted_h100_s"][name] = entry
  base = result["predicted_h100_s"]["wgan_gp"]["plain"]
  result["predicted_niqe_over_wgan_gp"] = result["predicted_h100_s"]["niqe"]["plain"] / base
  result["predicted_ssim_over_wgan_gp"] = result["predicted_h100_s"]["ssim"]["plain"] / base
  if old_penalty_ops:
    # The measured code's WGAN-GP D step plus the old penalty's ops.
    old = predict_s(measured_ops + old_penalty_ops, costs["niqe"]["flops"],
                    costs["niqe"]["bytes"], launch_s)
    result["old_niqe"] = {"penalty_ops": old_penalty_ops, "checkout": old_checkout,
                          "predicted_s": old,
                          "measured_s": MEASURED_H100_S["niqe_before_batching"],
                          "error": old / MEASURED_H100_S["niqe_before_batching"] - 1.0}
    log(f"gpu model: old NIQE D step predicted {old * 1e3:.1f} ms, measured "
        f"{MEASURED_H100_S['niqe_before_batching'] * 1e3:.1f} ms "
        f"({result['old_niqe']['error']:+.0%})")
  result["predicted_wgan_gp_speedup_over_measured"] = (
      MEASURED_H100_S["wgan_gp"] / result["predicted_h100_s"]["wgan_gp"]["plain"])
  log(f"gpu model: today's WGAN-GP D step {w['ops']} ops (the measured code's "
      f"{measured_ops}): predicted {base * 1e3:.1f} ms against the measured 17.0 ms")
  log(f"gpu model: {launch_s * 1e6:.1f} us per executed op (fitted on the WGAN-GP row); "
      f"predicted NIQE/WGAN-GP D step {result['predicted_niqe_over_wgan_gp']:.2f}, "
      f"SSIM/WGAN-GP {result['predicted_ssim_over_wgan_gp']:.2f}")
  return result
