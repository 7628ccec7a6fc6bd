"""Test setup: quiet TF, two logical CPU devices (for MirroredStrategy tests), the repo on sys.path."""

import os
import sys
import time

# The scripts' own default (qagan_tf/utils/cli.py), inherited by the scripts the tests run: with
# 2, grappler's ERROR lines (e.g. "remapper failed" on AVX-512 CPUs) reach their stderr, which a
# user never sees.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# --jit_compile=auto and QAGAN.compile's "auto" off on every machine (qagan_tf/update/device.py):
# on an AVX2 CPU they would compile every short fit with XLA, on an AVX-512 one not, so the
# suite would test other graphs, and take other times, by machine. The XLA tests compile
# explicitly; tests/test_train_flags.py tests the rule itself without this variable.
os.environ["QAGAN_JIT_COMPILE_AUTO"] = "off"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from qagan_tf.utils import cli  # noqa: E402

# As the scripts do: TF's C++ start-up lines come before absl-cpp's logging is set up, so no log
# level silences them; pytest-xdist's controller would print them after the summary.
cli.import_tensorflow_quietly()
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])


import pytest  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _release_memory_after_each_module():
  """What a test module's traced functions leave in TF's gradient registry is dropped when the
  module ends (tests.scripts.release_memory): a worker runs many modules in one process."""
  from tests import scripts
  registered = scripts.custom_gradients()
  yield
  scripts.release_memory(registered)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
  """A bin/train run made once per test session (scripts.TINY_RUN, 4 steps: ckpt-2 and ckpt-4,
  samples, histograms, config.json). Tests read it; a test that changes a run copies it."""
  from tests import scripts
  run_dir = str(tmp_path_factory.mktemp("tiny_run") / "run")
  scripts.run("train", *scripts.TINY_RUN, f"--model_dir={run_dir}", "--max_steps=4", check=True)
  return run_dir


# The longest test files first, longest first (their summed durations in the suite at 7679018,
# AMD EPYC, 2026-12-06, less the cuts since; docs/testing.md). Every file of over 10 s is named,
# so that the files left for the end are short and both workers finish together.
LONG_FIRST = ("tests/test_benchmark.py", "tests/train/test_trainer.py", "tests/test_cli.py",
              "tests/gan/test_qagan.py", "tests/test_bad_inputs.py",
              "tests/objectives/test_quality_penalties.py", "tests/test_cli_qagan.py",
              "tests/gan/test_qagan_surface.py", "tests/metrics/test_cli_eval.py",
              "tests/test_multi_worker.py", "tests/test_extending.py", "tests/test_examples.py",
              "tests/train/test_step.py", "tests/test_ada.py", "tests/metrics/test_inception.py",
              "tests/objectives/test_regularizers.py", "tests/objectives/test_niqe_semantics.py",
              "tests/test_goldens.py", "tests/test_quality_study.py",
              "tests/objectives/test_niqe_priors.py", "tests/test_remote_files.py")


def pytest_collection_modifyitems(items):
  """The longest files first (`LONG_FIRST`; a stable sort keeps the rest, and every file's own
  order). With -n 2 --dist loadfile the workers take whole files in this order: the long ones
  start at once and the short ones fill in at the end, instead of one worker finishing long
  before the other."""
  rank = {name: i for i, name in enumerate(LONG_FIRST)}
  items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(LONG_FIRST)))


# CPU seconds per test (its setup, call and teardown: this process's threads and the processes
# it waited for). They move far less than a duration with what the other worker runs beside the
# test, so they show where the suite's work is: the 25 largest are listed after every run.
CPU_SECONDS = "cpu_s"
_CPU_START = pytest.StashKey[float]()
_WALL_START = pytest.StashKey[float]()


def _cpu_seconds():
  import resource
  own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                         resource.RUSAGE_CHILDREN))
  return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
  item.stash[_CPU_START] = _cpu_seconds()
  item.stash[_WALL_START] = time.time()
  yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
  outcome = yield
  if call.when == "teardown" and _CPU_START in item.stash:
    spent = _cpu_seconds() - item.stash[_CPU_START]
    outcome.get_result().user_properties.extend([
        (CPU_SECONDS, round(spent, 2)),
        # The timeline (junit): when the test began and ended (Unix seconds), on which worker;
        # docs/testing.md reads the two workers' idle tail from it.
        ("began", round(item.stash[_WALL_START], 2)), ("ended", round(time.time(), 2)),
        ("worker", os.environ.get("PYTEST_XDIST_WORKER", "main"))])


def pytest_terminal_summary(terminalreporter):
  """The 25 tests that used the most CPU, and the total (the workers' reports carry them)."""
  spent = {}
  for reports in terminalreporter.stats.values():
    for report in reports:
      if getattr(report, "when", None) == "teardown":  # A test's last report (not a collection).
        spent.update((report.nodeid, v) for k, v in report.user_properties if k == CPU_SECONDS)
  if not spent:
    return
  terminalreporter.write_sep("=", f"{min(25, len(spent))} largest CPU times")
  for nodeid, seconds in sorted(spent.items(), key=lambda kv: -kv[1])[:25]:
    terminalreporter.write_line(f"{seconds:8.2f}s cpu  {nodeid}")
  terminalreporter.write_line(f"CPU time of all {len(spent)} tests: {sum(spent.values()):.0f} s")
