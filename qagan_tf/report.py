"""Run directories gathered into the paper's table and curves (bin/report).

Everything is read from what bin/train and bin/evaluate leave in a run directory: config.json,
the TensorBoard event files (eval/*, train/*, the D-weight and MSCN histograms) and the latest
eval/eval_step_*.json. A run that lacks a part still gets its rows, with the gap marked.
"""

import csv
import dataclasses
import io
import json
import os
import re

import numpy as np

from qagan_tf import config as config_lib
from qagan_tf.metrics import table
from qagan_tf.utils import files

MISSING = "—"
# Table columns: (key in an evaluation summary, header, scale), from the one metric table.
METRICS = tuple((m.key, m.label, m.scale) for m in table.COLUMNS)


class ReportError(ValueError):
  """A directory that cannot be reported, with what to do about it."""


@dataclasses.dataclass
class Run:
  label: str
  path: str
  config: config_lib.TrainConfig
  evaluation: dict  # The latest eval/eval_step_*.json, or None.
  scalars: dict  # tag -> [(step, value)] in step order.
  histograms: dict  # tag -> (step, (k, 3) [left, right, count]) of the last step logged.
  wall_hours: float  # Summed over event files (each file: last minus first event).
  last_step: int


def _events(run_dir):
  """(scalars, last histograms, wall hours) from every event file of run_dir, read in order."""
  import tensorflow as tf
  scalars, histograms, hours = {}, {}, 0.0
  for path in sorted(files.glob(os.path.join(run_dir, "events.out.tfevents.*"))):
    first = last = None
    try:
      for record in tf.data.TFRecordDataset(path):
        event = tf.compat.v1.Event.FromString(record.numpy())
        first = event.wall_time if first is None else first
        last = event.wall_time
        for value in event.summary.value:
          if not value.HasField("tensor") or value.tensor.dtype == tf.string.as_datatype_enum:
            continue  # Images (and old-style summaries).
          array = tf.make_ndarray(value.tensor)
          if array.ndim == 0:
            scalars.setdefault(value.tag, {})[event.step] = float(array)  # Resumes overwrite.
          elif array.ndim == 2 and array.shape[1] == 3:
            if value.tag not in histograms or histograms[value.tag][0] <= event.step:
              histograms[value.tag] = (event.step, array.astype(np.float64))
    except tf.errors.DataLossError:
      pass  # A file cut short by a killed run: keep what was read.
    if first is not None:
      hours += (last - first) / 3600.0
  return ({tag: sorted(v.items()) for tag, v in scalars.items()}, histograms, hours)


def _latest_evaluation(run_dir):
  """The eval JSON of the highest step (the newest file among equal steps), or None."""
  found = []
  for path in files.glob(os.path.join(run_dir, "eval", "eval_step_*.json")):
    match = re.search(r"eval_step_(\d+)(?:_(\d+))?\.json$", path)
    if match:
      found.append((int(match.group(1)), int(match.group(2) or 1), path))
  if not found:
    return None
  path = max(found)[2]
  try:
    with files.open_file(path) as f:
      report = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ReportError(f"{path}: unreadable evaluation ({e}); run bin/evaluate again.") from None
  if not isinstance(report, dict) or not isinstance(report.get("summary"), dict):
    raise ReportError(f"{path}: not a bin/evaluate report (no 'summary'); run bin/evaluate "
                      "again.")
  report["path"] = path
  return report


def load_run(run_dir, label=None):
  """Reads one run directory.

  Raises:
    ReportError: when `run_dir` is missing or is not a run directory.
  """
  if not files.isdir(run_dir):
    raise ReportError(f"{run_dir}: no such directory.")
  if not files.isfile(os.path.join(run_dir, config_lib.CONFIG_FILENAME)):
    raise ReportError(f"{run_dir} is not a run directory (no {config_lib.CONFIG_FILENAME}; "
                      "bin/train writes one into every --model_dir).")
  try:
    config = config_lib.load_config(run_dir)
  except (OSError, ValueError) as e:
    raise ReportError(str(e)) from None
  scalars, histograms, hours = _events(run_dir)
  evaluation = _latest_evaluation(run_dir)
  steps = [s for tag, v in scalars.items() if tag.startswith("train/") for s, _ in v]
  last_step = max(steps) if steps else (evaluation or {}).get("step", 0)
  return Run(label or os.path.basename(os.path.normpath(run_dir)), run_dir, config, evaluation,
             scalars, histograms, hours, int(last_step))


def _cell(summary, key, scale):
  if not summary or key not in summary:
    return MISSING
  return f"{summary[key]['mean'] * scale:.3f} ± {summary[key]['std'] * scale:.3f}"


def rows(runs):
  """One row per run and generator (raw, EMA); a run without an evaluation gets one row of gaps."""
  out = []
  for run in runs:
    c, ev = run.config, run.evaluation
    base = {"dataset": c.dataset, "resolution": c.resolution, "run": run.label,
            "penalty": c.penalty, "steps": run.last_step,
            "wall_hours": round(run.wall_hours, 3)}
    if ev is None:
      out.append(dict(base, generator=MISSING, eval_step=MISSING, samples=MISSING,
                      **{name: MISSING for _, name, _ in METRICS}))
      continue
    for generator, summary in ev["summary"].items():
      out.append(dict(base, generator=generator, eval_step=ev.get("step", MISSING),
                      samples=f"{ev.get('num_samples', '?')} x {ev.get('repeats', '?')}",
                      **{name: _cell(summary, key, scale) for key, name, scale in METRICS}))
  return out


COLUMNS = ("run", "penalty", "generator", "steps", "eval_step", "samples") + tuple(
    name for _, name, _ in METRICS) + ("wall_hours",)


def markdown(table_rows):
  """The rows grouped by dataset and resolution, like the paper's Tables 1-4."""
  lines = ["# Results", "",
           "Mean ± std over each evaluation's repeats (bin/evaluate). "
           f"{MISSING} marks what a run lacks (no evaluation, or a metric its statistics or "
           "weights could not give).", ""]
  groups = {}
  for row in table_rows:
    groups.setdefault((row["dataset"], row["resolution"]), []).append(row)
  for (dataset, resolution), group in sorted(groups.items()):
    lines += [f"## {dataset}, {resolution} px", "",
              "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in group:
      lines.append("| " + " | ".join(str(row[k]) for k in COLUMNS) + " |")
    lines.append("")
  return "\n".join(lines)


def csv_text(table_rows):
  """The rows as CSV, means and stds in columns of their own."""
  buffer = io.StringIO()
  fields = ["dataset", "resolution", "run", "penalty", "generator", "steps", "eval_step",
            "samples"]
  for _, name, _ in METRICS:
    fields += [f"{name} mean", f"{name} std"]
  fields.append("wall_hours")
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(fields)
  for row in table_rows:
    values = [row[k] for k in fields[:8]]
    for _, name, _ in METRICS:
      cell = row[name]
      values += cell.split(" ± ") if cell != MISSING else ["", ""]
    values.append(row["wall_hours"])
    writer.writerow(values)
  return buffer.getvalue()


# --- plots ------------------------------------------------------------------------------------

def _save(fig, path):
  import matplotlib.pyplot as plt
  files.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
  plt.close(fig)
  return path


def _safe(name):
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def plot_curves(runs, output_dir):
  """eval/fid and eval/is against step, every run of a dataset and resolution on one figure."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  paths = []
  groups = {}
  for run in runs:
    groups.setdefault((run.config.dataset, run.config.resolution), []).append(run)
  for (dataset, resolution), group in sorted(groups.items()):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, tag, name in ((axes[0], "eval/fid", "FID"), (axes[1], "eval/is", "IS")):
      for run in group:
        points = run.scalars.get(tag, [])
        if points:
          steps, values = zip(*points)
          ax.plot(steps, values, marker="o", markersize=3, label=run.label)
        else:
          ax.plot([], [], label=f"{run.label} (no {tag})")
      ax.set(xlabel="generator step", ylabel=name, title=f"{dataset} {resolution} px: {name} "
             "during training (EMA)")
      ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(_save(fig, os.path.join(output_dir, f"curves_{_safe(dataset)}_{resolution}.png")))
  return paths


def plot_losses(runs, output_dir):
  """The training losses (train/d_loss, train/g_loss, train/wasserstein) of every run."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  tags = ("train/d_loss", "train/g_loss", "train/wasserstein")
  fig, axes = plt.subplots(1, len(tags), figsize=(15, 4))
  for ax, tag in zip(axes, tags):
    for run in runs:
      points = run.scalars.get(tag, [])
      if points:
        steps, values = zip(*points)
        ax.plot(steps, values, label=run.label)
      else:
        ax.plot([], [], label=f"{run.label} (no {tag})")
    ax.set(xlabel="generator step", title=tag, yscale="symlog")
    ax.legend(fontsize=8)
  fig.tight_layout()
  return [_save(fig, os.path.join(output_dir, "losses.png"))]


def _histogram_figure(runs, select, title, path, xlabel):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 3.6), squeeze=False)
  for ax, run in zip(axes[0], runs):
    chosen = {tag: h for tag, h in run.histograms.items() if select(tag)}
    for tag, (step, h) in sorted(chosen.items()):
      centres, widths = (h[:, 0] + h[:, 1]) / 2, np.maximum(h[:, 1] - h[:, 0], 1e-12)
      density = h[:, 2] / max(h[:, 2].sum(), 1.0) / widths
      ax.plot(centres, density, label=f"{tag.split('/', 1)[-1]} (step {step})")
    if not chosen:
      ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    ax.set(title=f"{run.label}: {title}", xlabel=xlabel, ylabel="density")
    if 0 < len(chosen) <= 8:
      ax.legend(fontsize=6)
  fig.tight_layout()
  return _save(fig, path)


def plot_histograms(runs, output_dir):
  """D's weight histograms (supplementary Fig. 5) and the MSCN histograms (Fig. 4) per run, at
  the last step each was logged."""
  return [
      _histogram_figure(runs, lambda t: t.startswith("discriminator/") and "kernel" in t,
                        "D kernels", os.path.join(output_dir, "d_weights.png"), "weight"),
      _histogram_figure(runs, lambda t: t.startswith("quality/mscn"), "MSCN",
                        os.path.join(output_dir, "mscn.png"), "MSCN coefficient")]


def write(runs, output_dir):
  """Writes table.md, table.csv and the PNGs into output_dir; returns their paths."""
  files.makedirs(output_dir)
  table_rows = rows(runs)
  paths = [os.path.join(output_dir, "table.md"), os.path.join(output_dir, "table.csv")]
  files.atomic_write_text(paths[0], markdown(table_rows))
  files.atomic_write_text(paths[1], csv_text(table_rows))
  paths += plot_curves(runs, output_dir)
  paths += plot_losses(runs, output_dir)
  paths += plot_histograms(runs, output_dir)
  return paths
