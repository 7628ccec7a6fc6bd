"""Our training iteration raced against the PyTorch peer's (`torch_peer`), each side at each of
its settings, round-robin in one process."""


from qagan_bench.step_timing import VARIANTS, _interleaved_times, _variant_calls
from qagan_tf.utils import precision

# bfloat16 races PyTorch's bf16 autocast: on CPUs with native bf16 (AVX512_BF16) both sides run
# their convolutions in it, and PyTorch's is its fastest setting there.
PEER_VARIANTS = ("default", "baseline", "steps_per_call_10", "xla", "xla_steps_per_call_10",
                 "bfloat16", "xla_bfloat16")


def check_peer_names(variants, settings):
  """Raises ValueError naming unknown --peer_variants (ours) or --peer_settings (PyTorch's)."""
  from qagan_bench import torch_peer as peer_lib
  unknown = [s for s in settings if s not in peer_lib.SETTINGS]
  if unknown:
    raise ValueError(f"unknown --peer_settings {','.join(unknown)}; choose from "
                     f"{','.join(peer_lib.SETTINGS)}.")
  unknown = [v for v in variants if v not in VARIANTS]
  if unknown:
    raise ValueError(f"unknown --peer_variants {','.join(unknown)}; choose from "
                     f"{','.join(VARIANTS)}.")


def torch_peer(config, images, repeats=5, log=print, variants=PEER_VARIANTS, settings=None):
  """Our WGAN-GP training iteration against the PyTorch peer's (`torch_peer`), each side at
  each of its settings, all timed round-robin in this process; each side's best setting decides.

  Args:
    variants: our speed VARIANTS to try.
    settings: the peer's `torch_peer.SETTINGS` to try (default all); a setting that fails on
      its first iteration (torch.compile cannot differentiate the 1-GP twice) is recorded with
      its error and not timed.

  Returns:
    {"ours_iteration_s", "torch_iteration_s", "ours_over_torch_speed" (> 1: we are faster),
     "ours_setting", "torch_setting", "ours": {variant: s}, "torch": {setting: s or error}}.
  """
  import os
  import torch
  from qagan_bench import torch_peer as peer_lib
  settings = list(peer_lib.SETTINGS) if settings is None else list(settings)
  check_peer_names(variants, settings)
  config = config.replace(penalty="wgan_gp", eval_every=0)
  peer_lib.check_architecture(config)
  torch.set_num_threads(os.cpu_count())
  g, d = peer_lib.keras_models(config, seed=config.seed)
  torch_calls, failed = {}, {}
  for setting in settings:
    trainer = peer_lib.Trainer(g, d, config, setting, seed=config.seed)
    try:
      trainer.iteration()
    except Exception as e:  # noqa: BLE001 - e.g. torch.compile and double backward.
      failed[setting] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
      log(f"torch {setting}: not timed ({failed[setting]})")
      continue
    torch_calls[f"torch/{setting}"] = trainer.iteration
  if not torch_calls:
    raise ValueError(f"no PyTorch setting ran: {failed}")
  ours = _variant_calls(config, images, variants)
  timed = _interleaved_times({**{f"ours/{k}": v for k, v in ours.items()}, **torch_calls},
                             repeats * 2)
  precision.set_tensor_float_32(config.allow_tf32)
  ours_s = {v: timed[f"ours/{v}"][0] / VARIANTS[v][1] for v in variants}
  torch_s = {s: timed[f"torch/{s}"][0] for s in settings if s not in failed}
  best_ours, best_torch = min(ours_s, key=ours_s.get), min(torch_s, key=torch_s.get)
  result = {"ours_iteration_s": ours_s[best_ours], "torch_iteration_s": torch_s[best_torch],
            "ours_setting": best_ours, "torch_setting": best_torch,
            "ours": ours_s, "torch": {**torch_s, **{s: {"error": e} for s, e in failed.items()}},
            "torch_version": torch.__version__, "torch_threads": torch.get_num_threads()}
  result["ours_over_torch_speed"] = result["torch_iteration_s"] / result["ours_iteration_s"]
  if "default" in ours_s:  # bin/train's defaults against PyTorch's fastest.
    result["default_over_torch_best"] = result["torch_iteration_s"] / ours_s["default"]
    result["default_jit_compile"] = bool(config.jit_compile)
    log(f"ours (default) over torch ({best_torch}): {result['default_over_torch_best']:.2f}x")
    # The default is float32, as is PyTorch without autocast: the same race at equal precision.
    float32 = {s: t for s, t in torch_s.items() if not peer_lib.SETTINGS[s][1]}
    if float32:
      best32 = min(float32, key=float32.get)
      result["torch_float32_setting"] = best32
      result["default_over_torch_float32_best"] = float32[best32] / ours_s["default"]
      log(f"ours (default) over torch's fastest float32 ({best32}): "
          f"{result['default_over_torch_float32_best']:.2f}x")
  # Equal precision, bfloat16: our fastest bfloat16 variant against PyTorch's fastest bf16
  # setting, where the CPU computes bf16 natively (else null, with the reason).
  result["cpu_flags"] = cpu_precision_flags()
  ours16 = {v: t for v, t in ours_s.items() if VARIANTS[v][0].get("mixed_precision")
            == "bfloat16"}
  torch16 = {s: t for s, t in torch_s.items() if peer_lib.SETTINGS[s][1]}
  if not result["cpu_flags"].get("native_bf16"):
    result["bfloat16_over_torch_bfloat16_best"] = None
    result["bfloat16_note"] = ("no native bf16 on this CPU (no avx512_bf16 or amx_bf16): bf16 is "
                               "emulated on both sides and is no precision to race at")
  elif ours16 and torch16:
    best16, best_t16 = min(ours16, key=ours16.get), min(torch16, key=torch16.get)
    result.update(ours_bfloat16_setting=best16, torch_bfloat16_setting=best_t16,
                  bfloat16_over_torch_bfloat16_best=torch16[best_t16] / ours16[best16])
    log(f"ours bfloat16 ({best16}) over torch's fastest bf16 ({best_t16}): "
        f"{result['bfloat16_over_torch_bfloat16_best']:.2f}x")
  else:
    result["bfloat16_over_torch_bfloat16_best"] = None
    result["bfloat16_note"] = "no bfloat16 variant or setting was raced (see --peer_variants)"
  for name, value in [*(("ours " + k, v) for k, v in ours_s.items()),
                      *(("torch " + k, v) for k, v in torch_s.items())]:
    log(f"peer {name}: {value * 1e3:.1f} ms/iteration")
  log(f"ours ({best_ours}) over torch ({best_torch}): {result['ours_over_torch_speed']:.2f}x "
      "(> 1: we are faster)")
  return result


def cpu_precision_flags():
  """The CPU flags that decide bfloat16's worth here (Linux /proc/cpuinfo): avx512f,
  avx512_bf16, amx_bf16, avx2, and native_bf16 (either bf16 instruction set)."""
  from qagan_tf.update import device
  present = device.cpu_flags()  # The one reader of /proc/cpuinfo's flags.
  out = {f: f in present for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")}
  out["native_bf16"] = out["avx512_bf16"] or out["amx_bf16"]
  return out
