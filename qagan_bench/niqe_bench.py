"""What the NIQE penalty means (bin/benchmark --sections=niqe): its value and per-example force
at every batch size, how often it prefers clean natural derivative maps to blurred or noisy
ones, float32 against float64, the soft split's shift from MATLAB's hard one, scale invariance
and the dead zone; the default beside the pre-group one (batch pooling, no smoothing)."""

import numpy as np
import tensorflow as tf

from qagan_tf import qa
from qagan_bench import natural_maps
from qagan_tf.objectives.niqe import fit as niqe_fit
from qagan_tf.objectives.niqe import priors as niqe_priors
from qagan_tf.objectives.niqe import settings as niqe_settings
from qagan_tf.objectives.niqe import transform as niqe_transform

# The settings compared: today's default and the default before the groups (2026-11-24).
SETTINGS = {"default": {}, "batch_unsmoothed": dict(pooling="batch", smoothing="none")}
BATCHES = (2, 4, 8, 16, 32, 64, 128)


def _mean(maps, settings):
  return float(tf.reduce_mean(qa.niqe_penalty(tf.constant(maps, tf.float32), **settings)))


def _wins(clean, worse, batch, settings, seeds=2):
  out = []
  for seed in range(seeds):
    order = np.random.default_rng([batch, seed]).permutation(len(clean))
    for i in range(0, len(clean) - batch + 1, batch):
      take = order[i:i + batch]
      out.append(_mean(clean[take], settings) < _mean(worse[take], settings))
  return float(np.mean(out))


def _sobel_maps(count):
  """Sobel magnitudes of natural 32 px crops (those of natural_maps, not the priors')."""
  crops = natural_maps.gray_crops(32, count, seed=23)
  rgb = np.repeat(np.clip((crops + 1.0) * 127.5, 0, 255).round().astype(np.uint8)[..., None],
                  3, axis=-1)
  return niqe_fit.fit_inputs(rgb, "sobel_magnitude").numpy()


def _sobel_distance(maps, split):
  """The default penalty's distance of prepared Sobel maps (the prior's inputs), no transform."""
  prior = niqe_priors.load_prior("cifar_grad")
  settings = niqe_settings.resolve_settings(niqe_settings.NiqeConfig(split=split), prior, 32)
  x = niqe_transform.normalize(tf.constant(maps), settings.normalization, settings.scale)
  return niqe_transform.distance(x, prior, settings).numpy()


def run(count=256, log=print):
  """The figures, as a dict for the benchmark's JSON (`count` natural derivative maps, 32 px,
  prior cifar_grad: bin/train's default)."""
  maps = natural_maps.derivative_maps(32, count, seed=11)
  blurred = natural_maps.blurred(maps)
  rng = np.random.default_rng(5)
  noisy = maps + rng.normal(size=maps.shape) * 0.5 * maps.std(axis=(1, 2, 3), keepdims=True)
  out = {"maps": count, "prior": "cifar_grad", "batch_sizes": list(BATCHES), "settings": {}}
  for name, settings in SETTINGS.items():
    rows = {"value": [], "force": [], "blur_wins": [], "noise_wins": []}
    for batch in BATCHES:
      pairs = [natural_maps.value_and_force(maps[i:i + batch], **settings)
               for i in range(0, count - batch + 1, batch)]
      rows["value"].append(float(np.mean([v for v, _ in pairs])))
      rows["force"].append(float(np.mean([f for _, f in pairs])))
      rows["blur_wins"].append(_wins(maps, blurred, batch, settings) if batch >= 16 else None)
      rows["noise_wins"].append(_wins(maps, noisy, batch, settings) if batch >= 16 else None)
    values = [v for v, b in zip(rows["value"], BATCHES) if b >= 16]
    forces = [f for f, b in zip(rows["force"], BATCHES) if b >= 16]
    rows["value_spread_16_128"] = float((max(values) - min(values)) / np.mean(values))
    rows["force_spread_16_128"] = float((max(forces) - min(forces)) / np.mean(forces))
    out["settings"][name] = {"settings": settings, **rows}
    log(f"niqe: {name}: value {', '.join(f'{v:.2f}' for v in rows['value'])} at B "
        f"{', '.join(map(str, BATCHES))}; spread over 16-128 {rows['value_spread_16_128']:.1%}")
  # float32 against float64, without and with a DC offset of 100x the maps' structure.
  sample = maps[:64]
  offset = sample + 100.0 * sample.std(axis=(1, 2, 3), keepdims=True)
  out["float32_vs_float64"] = {}
  for name, m in (("plain", sample), ("dc_offset_100x", offset)):
    v32 = qa.niqe_penalty(tf.constant(m, tf.float32)).numpy()
    v64 = qa.niqe_penalty(tf.constant(m, tf.float64)).numpy()
    out["float32_vs_float64"][name] = float(np.max(np.abs(v32 - v64) / v64))
  # Scale invariance: the same maps at 1e-30 .. 1e20 of their size.
  scales = (1e-30, 1e-10, 1e-5, 1.0, 1e5, 1e20)
  at = [_mean(sample / np.abs(sample).max() * s, {}) for s in scales]
  out["scale_invariance"] = {"scales": list(scales), "values": at,
                             "max_relative_spread": float((max(at) - min(at)) / np.mean(at))}
  # The soft split against MATLAB's hard one (the priors were fitted with the hard split), per
  # group of 16: on derivative maps through the whole penalty, and on Sobel maps of natural
  # crops (the prior's own kind of input) through the distance alone.
  out["soft_split_shift"] = {}
  sobel = _sobel_maps(min(count, 256))
  for name, score in (("derivative_maps", lambda m, split: qa.niqe_penalty(m, split=split)),
                      ("sobel_maps", lambda m, split: _sobel_distance(m, split))):
    data = maps if name == "derivative_maps" else sobel
    shift = []
    for i in range(0, len(data) - 15, 16):
      soft = float(score(data[i:i + 16], "soft")[0])
      hard = float(score(data[i:i + 16], "hard")[0])
      shift.append(abs(soft - hard) / hard)
    out["soft_split_shift"][name] = {"mean": float(np.mean(shift)),
                                     "max": float(np.max(shift))}
  # Levels (groups of 16): what natural, blurred, noisy and dead maps score with the default,
  # natural maps with the old settings, and Sobel maps of natural crops (the prior's own kind
  # of input, through the distance alone).
  out["levels"] = {"natural": _mean(maps[:64], {}), "blurred": _mean(blurred[:64], {}),
                   "noisy": _mean(noisy[:64], {}),
                   "white_noise": _mean(rng.normal(size=(64, 32, 32, 3)), {}),
                   "all_zero": _mean(np.zeros((16, 32, 32, 3)), {}),
                   "natural_unsmoothed": _mean(maps[:64], {"smoothing": "none"}),
                   "sobel_maps": float(np.mean(np.concatenate(
                       [_sobel_distance(sobel[i:i + 16], "soft") for i in range(0, 64, 16)])))}
  log(f"niqe: levels {out['levels']}; float32 vs float64 {out['float32_vs_float64']}; soft "
      f"split shift {out['soft_split_shift']}")
  return out
