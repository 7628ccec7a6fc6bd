"""BUILD covers every module, script and test, and each target's deps match its imports.

Bazel cannot fetch its Python rules offline here, so this reads BUILD with stand-ins for the rules.
"""

import glob
import os

from tests import build_targets

REPO = build_targets.REPO
BIN_SCRIPTS = build_targets.BIN_SCRIPTS
_targets = build_targets.targets
_module_of = build_targets.module_of
_imports = build_targets.imports


def _project_files():
  files = set(glob.glob("qagan_tf/**/*.py", root_dir=REPO, recursive=True))
  files |= set(glob.glob("tests/**/*.py", root_dir=REPO, recursive=True))
  files |= set(glob.glob("bin/*.py", root_dir=REPO))
  files |= {f"bin/{s}" for s in BIN_SCRIPTS}
  return files


def test_the_test_targets_are_what_the_generator_writes():
  """BUILD's test targets are derived from the test files (tests/build_targets.py), never
  written by hand: a new, renamed or changed test file needs `python -m tests.build_targets
  --write`, which this names when BUILD is behind."""
  _, generated = build_targets.split_build()
  assert generated == build_targets.generate(), (
      "BUILD's test targets are out of date: run `python -m tests.build_targets --write`.")


def test_build_covers_every_file_exactly_once():
  targets = _targets()
  listed = [s for t in targets.values() for s in t["srcs"]]
  assert len(listed) == len(set(listed)), "a file is in two targets"
  missing = sorted(_project_files() - set(listed))
  assert not missing, f"not in any BUILD target: {missing}"
  assert all(os.path.exists(os.path.join(REPO, s)) for s in listed)
  slow_tests = [name for name, t in targets.items() if t["kind"] == "py_test" and any(
      "@pytest.mark." + "slow" in open(os.path.join(REPO, s)).read() for s in t["srcs"])]
  assert slow_tests and all(targets[n]["size"] == "large" for n in slow_tests)


def test_each_target_depends_on_what_it_imports_and_nothing_unused():
  targets = _targets()
  owner = {_module_of(s): name for name, t in targets.items() for s in t["srcs"]}
  problems = []
  for name, target in targets.items():
    needed = set()
    for src in target["srcs"]:
      for imported in _imports(src):
        # The root package's __init__ runs for every import; Bazel creates package inits anyway.
        if imported != "qagan_tf" and imported in owner and owner[imported] != name:
          needed.add(owner[imported])
    deps = set(target["deps"])
    if target["kind"] == "py_test":
      deps |= {"test_support"}  # conftest.py is loaded by pytest for every test.
    for missing in sorted(needed - deps):
      problems.append(f"{name} imports {missing} without depending on it")
    for unused in sorted(set(target["deps"]) - needed):
      # Scripts run as data of end-to-end tests are used through subprocesses, not imports.
      if not (target["kind"] == "py_test" and unused.endswith("_bin")) and unused != "test_support":
        problems.append(f"{name} depends on {unused} but does not import it")
  assert not problems, "\n".join(problems)


def test_targets_form_no_cycle():
  from tests.graphs import find_cycle
  graph = {name: set(t["deps"]) for name, t in _targets().items()}
  cycle = find_cycle(graph)
  assert cycle is None, "BUILD dependency cycle: " + " -> ".join(cycle)
