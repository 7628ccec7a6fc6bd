"""The quality studies' statistics and rendering: per-iteration summaries over seeds
(`summarise`), the paired comparisons with their intervals (`comparisons`), the exploratory looks
(`exploratory`), the Markdown table (`markdown`) and the curves (`plot`)."""

import numpy as np

from qagan_bench import paired_stats
from qagan_bench.quality_scoring import MechanismProbe
from qagan_bench.quality_study import CONTROLS, METRICS


def _sd(values):
  """Sample standard deviation (ddof 1); None for fewer than 2 values."""
  values = np.asarray(values, np.float64)
  return float(values.std(ddof=1)) if len(values) > 1 else None


def summarise(runs):
  """Per-iteration means and sample standard deviations (ddof 1) over seeds, and the final
  values' means with 95% t-intervals."""
  out = {"iterations": runs[0]["iterations"], "seeds": len(runs)}
  for key in ("fid", "kid", "niqe", "d_weight_variance"):
    values = np.array([r[key] for r in runs], np.float64)
    out[f"{key}_mean"] = values.mean(axis=0).tolist()
    out[f"{key}_std"] = [_sd(column) for column in values.T]
  out["d_weight_variance"] = out["d_weight_variance_mean"]
  if all("probe" in r for r in runs):
    for key in MechanismProbe.KEYS:
      if not all(key in r["probe"] for r in runs):  # A run file from before the key.
        continue
      values = np.array([r["probe"][key] for r in runs], np.float64)
      out[f"{key}_mean"] = values.mean(axis=0).tolist()
  losses = np.array([r["d_loss"] for r in runs], np.float64)
  out["loss_iterations"] = runs[0]["loss_iterations"]
  out["d_loss_mean"] = np.nanmean(losses, axis=0).tolist()
  for key in ("ada_p", "ada_rt"):
    if all(key in r for r in runs):
      out[f"{key}_mean"] = np.nanmean(np.array([r[key] for r in runs], np.float64),
                                      axis=0).tolist()
  fid = np.array([r["fid"] for r in runs], np.float64)
  out["final_over_initial_fid"] = float(fid[:, -1].mean() / fid[:, 0].mean())
  finals = {}
  for key in ("final_fid", "final_kid", "ema_fid", "ema_kid") + MechanismProbe.KEYS:
    if all(key in r for r in runs):
      mean, sd, ci = paired_stats.t_interval([r[key] for r in runs])
      finals[key] = {"mean": mean, "std": sd, "ci95": ci}
  out["final"] = finals
  for key in ("final_samples", "ema_samples"):
    if all(key in r for r in runs):
      out[key] = runs[0][key]
  out["minutes_per_run"] = float(np.mean([r["seconds"] for r in runs]) / 60.0)
  out["per_seed"] = runs
  return out


def comparisons(values, controls=None, metrics=METRICS, level=0.95):
  """Paired comparisons of every variant with its control, where both were run.

  Args:
    values: {variant: {seed: per-run result}} (each with the `metrics` keys).
    controls: {variant: control} (default `CONTROLS`).
    level: the intervals' two-sided confidence level.

  Returns:
    a list of `paired_stats.paired_comparison` entries, variant by variant, metric by metric.
  """
  controls = CONTROLS if controls is None else controls
  out = []
  for variant, runs in values.items():
    control = controls.get(variant)
    if control not in values:
      continue
    for metric in metrics:
      mine = {s: r[metric] for s, r in runs.items() if metric in r}
      theirs = {s: r[metric] for s, r in values[control].items() if metric in r}
      if set(mine) & set(theirs):
        out.append(paired_stats.paired_comparison(variant, control, metric, mine, theirs,
                                                  level))
  return out


def exploratory(quality, seeds, controls=None):
  """What a study shows beyond its comparisons, labelled exploratory (no correction for the
  many looks): for every variant with its control in `quality` (a study's "quality" dict, whose
  summaries hold "per_seed", run by run in the order of `seeds`),
  - "by_iteration": the paired FID difference (curve samples) at every scored iteration, with
    its 95% t-interval;
  - "to_threshold": per seed, the first scored iteration at which the run's curve FID is at or
    below the control's median final curve FID (None: never), for both arms;
  - "seconds_per_iteration": per seed, each arm's training seconds per generator iteration, and
    "train_seconds": the training seconds before each scored iteration (when the runs recorded
    them), so that a speed-up can be read net of a penalty's cost per step.
  """
  controls = CONTROLS if controls is None else controls
  out = []
  for variant, q in quality.items():
    control = controls.get(variant)
    if control not in quality or "per_seed" not in q:
      continue
    c = quality[control]
    mine = {s: r for s, r in zip(seeds, q["per_seed"])}
    theirs = {s: r for s, r in zip(seeds, c["per_seed"])}
    iterations = q["iterations"]
    by_iteration = []
    for i, it in enumerate(iterations):
      if it == 0:
        continue  # Both arms start from the same weights: the difference is 0 by design.
      entry = paired_stats.paired_comparison(variant, control, f"fid@{it}",
                                             {s: r["fid"][i] for s, r in mine.items()},
                                             {s: r["fid"][i] for s, r in theirs.items()})
      entry["iteration"] = it
      by_iteration.append(entry)
    threshold = float(np.median([r["fid"][-1] for r in theirs.values()]))

    def first(run):
      return next((it for it, f in zip(iterations, run["fid"]) if f <= threshold), None)
    item = {"variant": variant, "control": control, "seeds": list(seeds),
            "by_iteration": by_iteration, "threshold_fid": threshold,
            "to_threshold": {"variant": [first(r) for r in mine.values()],
                             "control": [first(r) for r in theirs.values()]}}
    item["seconds_per_iteration"] = {
        "variant": [r["train_seconds"] / iterations[-1] for r in mine.values()],
        "control": [r["train_seconds"] / iterations[-1] for r in theirs.values()]}
    if all("train_seconds_at" in r for r in list(mine.values()) + list(theirs.values())):
      item["train_seconds"] = {"variant": [r["train_seconds_at"] for r in mine.values()],
                               "control": [r["train_seconds_at"] for r in theirs.values()]}
    out.append(item)
  return out


def _mean_sd(mean, sd, digits=1, scale=1.0):
  return f"{scale * mean:.{digits}f}" + ("" if sd is None else f" ± {scale * sd:.{digits}f}")


def _interval(entry, digits=1, scale=1.0):
  if entry["ci95"] is None:
    return f"{scale * entry['mean']:.{digits}f} (n = 1)"
  lo, hi = entry["ci95"]
  return f"{scale * entry['mean']:.{digits}f} [{scale * lo:.{digits}f}, {scale * hi:.{digits}f}]"


def markdown(result):
  """The result as Markdown a reader can paste: the FID curves (mean ± sample std over seeds),
  the final scores and observed targets with 95% t-intervals, and the paired comparisons."""
  q_all, s = result["quality"], result["settings"]
  iterations = next(iter(q_all.values()))["iterations"]
  lines = [
      f"Study of commit {str(result.get('measured_commit'))[:12]}: "
      f"{s['iterations']} generator iterations, seeds {', '.join(map(str, s['seeds']))}.", "",
      f"FID of {s['num_samples']} samples against {s['heldout_count']} held-out images over "
      f"training (mean ± sample std over seeds; {s['generator']} generator):", "",
      "| variant | " + " | ".join(f"it {i}" for i in iterations) + " | final / initial |",
      "|---" * (len(iterations) + 2) + "|"]
  for name, q in q_all.items():
    cells = [_mean_sd(m, d) for m, d in zip(q["fid_mean"], q["fid_std"])]
    lines.append(f"| {name} | " + " | ".join(cells) + f" | {q['final_over_initial_fid']:.2f} |")
  ema = f", the EMA's on {s['ema_samples']}" if s.get("ema_samples") else " (EMA not scored)"
  lines += ["", f"At iteration {iterations[-1]}: mean [95% t-interval] over seeds. Final FID and "
                f"KID of the raw generator on {s.get('final_samples')} samples{ema}; the "
                f"observed targets on the fixed probe (held-out images' NIQE "
                f"{result['reference']['heldout_niqe']:.2f}):", "",
            "| variant | final FID | KID ×1e3 | EMA FID | gradient NIQE | SSIM penalty | 1-GP |",
            "|---|---|---|---|---|---|---|"]
  for name, q in q_all.items():
    f = q.get("final", {})
    cell = lambda key, **kw: _interval(f[key], **kw) if key in f else "—"  # noqa: E731
    lines.append(f"| {name} | {cell('final_fid')} | {cell('final_kid', scale=1e3)} | "
                 f"{cell('ema_fid')} | {cell('gradient_niqe', digits=2)} | "
                 f"{cell('ssim_penalty', digits=2)} | {cell('gp', digits=3)} |")
  primary, mechanism = result.get("comparisons", []), result.get("mechanism_comparisons", [])
  for entries, title in ((primary, "Paired differences, variant − control, over the seeds both "
                          "ran (mean, sample std, two-sided t-interval at the level shown)"),
                         (mechanism, "The penalties' observed targets, paired the same way")):
    if entries:
      lines += ["", f"{title}:", "",
                "| variant | control | metric | n | D | std | interval | level | verdict |",
                "|---|---|---|---|---|---|---|---|---|"]
      lines += [_comparison_row(e) for e in entries]
  explored = result.get("exploratory")
  if explored is None and "per_seed" in next(iter(q_all.values())):
    explored = exploratory(q_all, s["seeds"])
  if explored:
    lines += ["", "Exploratory (not a pre-registered test; many looks, no correction): the paired "
                  f"FID difference at every scored iteration ({s['num_samples']} samples), "
                  "variant − control, 95% t-interval:", "",
              "| variant | control | " + " | ".join(f"it {i}" for i in iterations[1:]) + " |",
              "|---|---|" + "---|" * (len(iterations) - 1)]
    for item in explored:
      cells = [_difference(e) for e in item["by_iteration"]]
      lines.append(f"| {item['variant']} | {item['control']} | " + " | ".join(cells) + " |")
    lines += ["", "Exploratory: the first scored iteration at which a run's FID is at or below "
                  "its control's median final FID (— never), seed by seed, and the training "
                  "seconds per generator iteration, mean over seeds (runs shared the machine, so "
                  "these are rough):", "",
              "| variant | control | threshold FID | variant's iterations | control's iterations "
              "| s/iteration, variant / control |", "|---|---|---|---|---|---|"]
    for item in explored:
      reach = {arm: ", ".join("—" if i is None else str(i) for i in item["to_threshold"][arm])
               for arm in ("variant", "control")}
      per = {arm: np.mean(item["seconds_per_iteration"][arm]) for arm in ("variant", "control")}
      pace = f"{per['variant']:.3f} / {per['control']:.3f}"
      lines.append(f"| {item['variant']} | {item['control']} | {item['threshold_fid']:.1f} | "
                   f"{reach['variant']} | {reach['control']} | {pace} |")
  return "\n".join(lines) + "\n"


def _difference(entry, digits=1):
  ci = paired_stats.interval_of(entry)
  if ci is None:
    return f"{entry['mean_difference']:+.{digits}f} (n = 1)"
  return f"{entry['mean_difference']:+.{digits}f} [{ci[0]:+.{digits}f}, {ci[1]:+.{digits}f}]"


def _comparison_row(e):
  """One Markdown row of a comparison entry (KID ×1e3; two decimals for the penalties)."""
  kid = e["metric"].startswith(("final_kid", "kid_at_"))
  scale, digits = (1e3, 1) if kid else (1.0, 2 if e["metric"] in (
      "gradient_niqe", "ssim_penalty", "gp") else 1)
  name = f"{e['metric']} ×1e3" if kid else e["metric"]
  ci = paired_stats.interval_of(e)
  interval = "—" if ci is None else f"[{scale * ci[0]:+.{digits}f}, {scale * ci[1]:+.{digits}f}]"
  sd = "—" if e["std"] is None else f"{scale * e['std']:.{digits}f}"
  return (f"| {e['variant']} | {e['control']} | {name} | {e['n']} | "
          f"{scale * e['mean_difference']:+.{digits}f} | {sd} | {interval} | "
          f"{e.get('level', 0.95)} | {e['verdict']} |")


def plot(result, path):
  """FID and the gradient's NIQE over iterations (mean and spread over seeds) and d_loss, one
  line per variant; FID against training time where the runs recorded it; r_t on the probe
  and ADA's p where a variant recorded them (study files from before lack them)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from qagan_tf.utils import files
  timed = all("train_seconds_at" in r for q in result["quality"].values()
              for r in q.get("per_seed", [{}]))
  overfit = any("real_sign_mean" in q or "ada_p_mean" in q for q in result["quality"].values())
  panels = 3 + timed + overfit
  fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4.2))
  ax_fid, ax_niqe, ax_loss = axes[:3]
  for name, q in result["quality"].items():
    it = np.array(q["iterations"])
    mean = np.array(q["fid_mean"])
    std = np.array([0.0 if v is None else v for v in q["fid_std"]])
    line, = ax_fid.plot(it, mean, marker="o", label=f"{name} (n={q['seeds']})")
    ax_fid.fill_between(it, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    if "gradient_niqe_mean" in q:
      ax_niqe.plot(it, q["gradient_niqe_mean"], marker="o", color=line.get_color(), label=name)
    ax_loss.plot(q["loss_iterations"], q["d_loss_mean"], color=line.get_color(), label=name)
    if timed:  # The same curve against training seconds: a speed-up net of the step's cost.
      seconds = np.mean([r["train_seconds_at"] for r in q["per_seed"]], axis=0)
      axes[3].plot(seconds, mean, marker="o", color=line.get_color(), label=name)
    if overfit:
      if "real_sign_mean" in q:
        axes[-1].plot(it, q["real_sign_mean"], marker="o", color=line.get_color(),
                      label=f"{name}: r_t (probe)")
      if "ada_p_mean" in q:
        axes[-1].plot(q["loss_iterations"], q["ada_p_mean"], linestyle="--",
                      color=line.get_color(), label=f"{name}: p")
  s = result["settings"]
  ax_fid.set(xlabel="generator iteration", ylabel=f"FID ({s['num_samples']} samples vs "
             f"{s['heldout_count']} held-out)", title="FID (mean ± sample std over seeds)")
  ax_niqe.set(xlabel="generator iteration", ylabel="NIQE penalty of D's input gradient",
              title="the NIQE penalty's target (probe, mean over seeds)")
  ax_loss.set(xlabel="generator iteration", ylabel="d_loss (mean over seeds)",
              title="critic loss", yscale="symlog")
  if timed:
    axes[3].set(xlabel="training seconds (mean over seeds; runs shared the machine)",
                ylabel="FID", title="FID against training time")
  if overfit:
    axes[-1].set(xlabel="generator iteration", ylabel="r_t = E[sign D(x)], and p",
                 title="overfitting (r_t on clean training images) and ADA's p",
                 ylim=(-1.05, 1.05))
  for ax in axes:
    ax.legend(fontsize=8)
  fig.tight_layout()
  files.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
  plt.close(fig)
