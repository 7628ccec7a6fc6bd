"""Progress with rate and ETA, for training steps and long evaluation work (stderr, no deps)."""

import sys
import time


def format_duration(seconds):
  """Seconds -> '1h02m03s' / '2m03s' / '3s' ('?' when unknown)."""
  if seconds != seconds or seconds in (float("inf"), float("-inf")):
    return "?"
  seconds = int(round(seconds))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  if h:
    return f"{h}h{m:02d}m{s:02d}s"
  return f"{m}m{s:02d}s" if m else f"{s}s"


class Progress:
  """The one progress reporter: done/total with rate and ETA.

  Evaluation work: `with Progress(total, "features") as bar: bar.update(n)` prints a bar to
  `stream` at most every `interval` s and once at the end (silent when `enabled` is False).
  Training: `progress.set(step)` moves to an absolute position and returns the rate since the
  previous call; `describe()` gives the line the trainer logs.
  """

  def __init__(self, total, label, unit="img", enabled=True, interval=2.0, stream=None, start=0):
    self.total, self.label, self.unit = total, label, unit
    self.enabled, self.interval = enabled, interval
    self.stream = stream or sys.stderr
    self.done = self._start = start
    self._t0 = self._last = self._last_set = time.time()
    self.rate = 0.0  # Over the last set() interval (training) or since the start (update()).

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    if exc[0] is None:
      self._print(final=True)

  def update(self, n):
    self.done += n
    if self.done < self.total and time.time() - self._last >= self.interval:
      self._print()

  def set(self, done):
    now = time.time()
    if done > self.done:
      self.rate = (done - self.done) / max(now - self._last_set, 1e-9)
    self.done, self._last_set = done, now
    return self.rate

  def skip(self, done=None):
    """The time since the last set() was not training (compiling, evaluating): the next rate,
    and so the ETA, is measured from now (at position `done`, when given)."""
    self._last_set = time.time()
    if done is not None:
      self.done = done

  def describe(self):
    frac = self.done / self.total if self.total else 1.0
    head = f"{self.label} {self.done}/{self.total} ({100.0 * frac:.1f}%)"
    if self.rate <= 0:
      return f"{head} rate and ETA from the next line (the first call includes compiling)"
    eta = (self.total - self.done) / self.rate
    return f"{head} {self.rate:.2f} {self.unit}/s ETA {format_duration(eta)}"

  def _print(self, final=False):
    if not self.enabled:
      return
    self._last = time.time()
    elapsed = max(self._last - self._t0, 1e-9)
    rate = (self.done - self._start) / elapsed
    eta = (self.total - self.done) / rate if rate > 0 else float("nan")
    frac = self.done / self.total if self.total else 1.0
    bar = "#" * int(24 * frac) + "-" * (24 - int(24 * frac))
    tail = f"in {format_duration(elapsed)}" if final else f"ETA {format_duration(eta)}"
    self.stream.write(f"{self.label}: [{bar}] {self.done}/{self.total} {self.unit} "
                      f"{rate:.1f} {self.unit}/s {tail}\n")
    self.stream.flush()
