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

MISSING = table.MISSING
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
  samples: str = None  # The newest samples/step_*_{ema,raw}.png bin/train wrote, or None.


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


def _latest_samples(run_dir):
  """The sample grid of the highest step in run_dir/samples (the EMA generator's when both
  were written), or None."""
  found = []
  for path in files.glob(os.path.join(run_dir, "samples", "step_*.png")):
    match = re.search(r"step_(\d+)_(ema|raw)\.png$", path)
    if match:
      found.append((int(match.group(1)), match.group(2) == "ema", path))
  return max(found)[2] if found else None


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
             scalars, histograms, hours, int(last_step), _latest_samples(run_dir))


def missing_evaluation(run):
  """What a run without an evaluation lacks, and the two commands that give its FID."""
  c = run.config
  return (f"{run.path} has no evaluation (eval/eval_step_*.json): its FID, IS, KID, precision/"
          f"recall and NIQE cells are {MISSING}. For FID: the real images' statistics once per "
          f"dataset (bin/compute_stats --dataset={c.dataset} --resolution={c.resolution} "
          f"--output=stats/{_safe(c.dataset)}_{c.resolution}.npz), then bin/evaluate "
          f"--model_dir={run.path} --stats=stats/{_safe(c.dataset)}_{c.resolution}.npz; both "
          "need the Inception weights (bin/fetch_inception).")


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
                      statistics=MISSING, **{name: MISSING for _, name, _ in METRICS}))
      continue
    for generator, summary in ev["summary"].items():
      out.append(dict(base, generator=generator, eval_step=ev.get("step", MISSING),
                      statistics=statistics_name(ev),
                      samples=f"{ev.get('num_samples', '?')} x {ev.get('repeats', '?')}",
                      **{m.label: table.summary_cell(summary, m) for m in table.COLUMNS}))
  return out


def statistics_name(evaluation):
  """The reference statistics of an evaluation: file name and the first 8 hex digits of its
  sha256 (reports older than the hash: the name alone)."""
  name = os.path.basename(str(evaluation.get("stats", "?")))
  digest = evaluation.get("stats_sha256")
  return f"{name} ({digest[:8]})" if digest else name


def warnings(runs):
  """One line for each thing a reader of the table would be misled by: a run directory given
  twice, and a dataset/resolution group whose rows were evaluated against different
  statistics (their FIDs are not comparable)."""
  out, seen, groups = [], {}, {}
  for run in runs:
    real = os.path.realpath(run.path) if not files.is_remote(run.path) else run.path
    if real in seen:
      out.append(f"{run.path} is given twice (as {seen[real]} and {run.label}); its rows are "
                 "duplicated.")
    seen.setdefault(real, run.label)
    if run.evaluation is not None:
      groups.setdefault((run.config.dataset, run.config.resolution), {}).setdefault(
          statistics_name(run.evaluation), []).append(run.label)
  for (dataset, resolution), by_stats in sorted(groups.items()):
    if len(by_stats) > 1:
      parts = "; ".join(f"{', '.join(labels)} against {name}"
                        for name, labels in sorted(by_stats.items()))
      out.append(f"{dataset} {resolution} px mixes statistics ({parts}); their FIDs are not "
                 "comparable: evaluate every run against the same --stats.")
  return out


COLUMNS = ("run", "penalty", "generator", "steps", "eval_step", "samples", "statistics") + tuple(
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
    lines += [f"## {dataset}, {resolution} px", ""]
    lines += table.markdown(COLUMNS, [[row[k] for k in COLUMNS] for row in group])
    lines.append("")
    evaluated = [row for row in group if row["generator"] != MISSING]
    # Why a metric of an evaluated row is missing, once per reason.
    reasons = table.missing_reasons(
        table.COLUMNS, lambda m: any(row[m.label] == MISSING for row in evaluated))
    if any(row["generator"] == MISSING for row in group):
      reasons.append(f"{MISSING} in every column: the run has no evaluation (bin/evaluate "
                     "--model_dir=RUN --stats=STATS.npz).")
    if reasons:
      lines += reasons + [""]
  return "\n".join(lines)


def csv_text(table_rows):
  """The rows as CSV, means and stds in columns of their own."""
  buffer = io.StringIO()
  fields = ["dataset", "resolution", "run", "penalty", "generator", "steps", "eval_step",
            "samples", "statistics"]
  for _, name, _ in METRICS:
    fields += [f"{name} mean", f"{name} std"]
  fields.append("wall_hours")
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(fields)
  for row in table_rows:
    values = [row[k] for k in fields[:9]]
    for _, name, _ in METRICS:
      parts = row[name].split(" ± ") if row[name] != MISSING else []
      values += parts + [""] * (2 - len(parts))  # One repeat: a mean without a std.
    values.append(row["wall_hours"])
    writer.writerow(values)
  return buffer.getvalue()


# --- plots ------------------------------------------------------------------------------------

def _save(fig, path):
  import matplotlib.pyplot as plt
  files.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100,
                                                   bbox_inches="tight"))
  plt.close(fig)
  return path


def _safe(name):
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


# A series with at most this many points is drawn with a marker on each (one point is visible).
MARKER_POINTS = 30


def _not_logged(plt, title, what):
  """A figure with no axes, only the sentence of what was not logged."""
  fig = plt.figure(figsize=(7, 1.6))
  fig.text(0.5, 0.62, title, ha="center", va="center", fontsize=11)
  fig.text(0.5, 0.3, f"not logged: {what}", ha="center", va="center", fontsize=10)
  return fig


def _plot_series(ax, points, label):
  steps, values = zip(*points)
  ax.plot(steps, values, label=label, marker="o" if len(points) <= MARKER_POINTS else None,
          markersize=3)


def _last_step(runs, tags):
  steps = [s for run in runs for tag in tags for s, _ in run.scalars.get(tag, [])]
  return max(steps) if steps else 0


def _series_figure(plt, runs, tags, title, xlabel="generator step"):
  """One panel per tag that some run logged (the rest named in the title); a text-only figure
  when none did."""
  logged = [t for t in tags if any(run.scalars.get(t) for run in runs)]
  missing = [t for t in tags if t not in logged]
  step = _last_step(runs, tags)
  if not logged:
    return _not_logged(plt, title, ", ".join(tags))
  fig, axes = plt.subplots(1, len(logged), figsize=(5.5 * len(logged), 4), squeeze=False)
  for ax, tag in zip(axes[0], logged):
    absent = []
    for run in runs:
      points = run.scalars.get(tag, [])
      if points:
        _plot_series(ax, points, run.label)
      else:
        absent.append(run.label)
    name = tag.split("/", 1)[-1]
    ax.set(xlabel=xlabel, ylabel=name, title=f"{name} up to step {step}")
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    ax.legend(fontsize=8, title=f"not logged: {', '.join(absent)}" if absent else None,
              title_fontsize=7)
  fig.suptitle(title + (f" (not logged: {', '.join(missing)})" if missing else ""), fontsize=10)
  fig.tight_layout()
  return fig


def plot_curves(runs, output_dir):
  """eval/fid and eval/is against step, every run of a dataset and resolution on one figure
  (only the metrics some run logged; a text-only figure when none did)."""
  plt = _pyplot()
  paths = []
  groups = {}
  for run in runs:
    groups.setdefault((run.config.dataset, run.config.resolution), []).append(run)
  for (dataset, resolution), group in sorted(groups.items()):
    fig = _series_figure(plt, group, ("eval/fid", "eval/is"),
                         f"{dataset} {resolution} px: evaluation during training (EMA)")
    paths.append(_save(fig, os.path.join(output_dir, f"curves_{_safe(dataset)}_{resolution}.png")))
  return paths


def plot_losses(runs, output_dir):
  """The training losses (train/d_loss, train/g_loss, train/wasserstein) of every run, on
  linear axes (symlog gave a lone "-10^1" tick), with markers on short series."""
  plt = _pyplot()
  fig = _series_figure(plt, runs, ("train/d_loss", "train/g_loss", "train/wasserstein"),
                       "training losses")
  return [_save(fig, os.path.join(output_dir, "losses.png"))]


def _histogram_figure(runs, select, title, path, xlabel, what):
  """One panel per run that logged the histograms (the others named in the title), every
  histogram labelled; a text-only figure when no run logged them."""
  plt = _pyplot()
  chosen = [(run, {t: h for t, h in run.histograms.items() if select(t)}) for run in runs]
  logged = [(run, hists) for run, hists in chosen if hists]
  missing = [run.label for run, hists in chosen if not hists]
  if not logged:
    fig = _not_logged(plt, title, f"{what} (in {', '.join(missing)})")
    return _save(fig, path)
  fig, axes = plt.subplots(1, len(logged), figsize=(6.5 * len(logged), 4.2), squeeze=False)
  for ax, (run, hists) in zip(axes[0], logged):
    steps = sorted({step for step, _ in hists.values()})
    for tag, (step, h) in sorted(hists.items()):
      centres, widths = (h[:, 0] + h[:, 1]) / 2, np.maximum(h[:, 1] - h[:, 0], 1e-12)
      density = h[:, 2] / max(h[:, 2].sum(), 1.0) / widths
      ax.plot(centres, density, label=tag.split("/", 1)[-1])
    at = f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]}-{steps[-1]}"
    ax.set(title=f"{run.label}: {title}, {at}", xlabel=xlabel, ylabel="density")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
              ncol=1 if len(hists) <= 16 else 2)
  if missing:
    fig.suptitle(f"not logged in {', '.join(missing)}", fontsize=9)
  fig.tight_layout()
  return _save(fig, path)


def plot_histograms(runs, output_dir):
  """D's weight histograms (supplementary Fig. 5) and the MSCN histograms (Fig. 4) per run, at
  the last step each was logged."""
  return [
      _histogram_figure(runs, lambda t: t.startswith("discriminator/") and "kernel" in t,
                        "D kernels", os.path.join(output_dir, "d_weights.png"), "weight",
                        "discriminator/*kernel* histograms"),
      _histogram_figure(runs, lambda t: t.startswith("quality/mscn"), "MSCN",
                        os.path.join(output_dir, "mscn.png"), "MSCN coefficient",
                        "quality/mscn* histograms (NIQE runs log them)")]


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
  paths += copy_samples(runs, output_dir)
  return paths


def copy_samples(runs, output_dir):
  """Each run's newest sample grid, as samples_<label>.png (runs without samples: none)."""
  paths = []
  for run in runs:
    if run.samples is None:
      continue
    with files.open_file(run.samples, "rb") as f:
      data = f.read()
    path = os.path.join(output_dir, f"samples_{_safe(run.label)}.png")
    files.atomic_write(path, lambda tmp, data=data: _write_bytes(tmp, data))
    paths.append(path)
  return paths


def _write_bytes(path, data):
  with files.open_file(path, "wb") as f:
    f.write(data)
