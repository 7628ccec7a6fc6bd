"""BUILD covers every module, script and test, and each target's deps match its imports.

Bazel cannot fetch its Python rules offline here, so this reads BUILD with stand-ins for the rules.
"""

import ast
import glob
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN_SCRIPTS = ("train", "sample", "niqe", "compute_stats", "fid", "evaluate", "fetch_inception",
               "fit_niqe_prior", "benchmark")


def _targets():
  targets = {}

  def rule(kind):
    def record(name, srcs=(), deps=(), **kwargs):
      targets[name] = {"kind": kind, "srcs": list(srcs), "deps": [d.lstrip(":") for d in deps],
                       **kwargs}
    return record

  def build_glob(patterns):
    return sorted(os.path.relpath(p, REPO) for pat in patterns
                  for p in glob.glob(os.path.join(REPO, pat)))

  namespace = {"py_library": rule("py_library"), "py_binary": rule("py_binary"),
               "py_test": rule("py_test"), "glob": build_glob,
               "package": lambda **kwargs: None}
  with open(os.path.join(REPO, "BUILD")) as f:
    exec(compile(f.read(), "BUILD", "exec"), namespace)  # noqa: S102 - our own BUILD file.
  return targets


def _project_files():
  files = set(glob.glob("qagan_tf/**/*.py", root_dir=REPO, recursive=True))
  files |= set(glob.glob("tests/**/*.py", root_dir=REPO, recursive=True))
  files |= set(glob.glob("bin/*.py", root_dir=REPO))
  files |= {f"bin/{s}" for s in BIN_SCRIPTS}
  return files


def _module_of(path):
  """qagan_tf/metrics/fid.py -> qagan_tf.metrics.fid; bin/eval_common.py -> eval_common."""
  if path.startswith("bin/"):
    return os.path.splitext(os.path.basename(path))[0]
  module = os.path.splitext(path)[0].replace("/", ".")
  return module[:-len(".__init__")] if module.endswith(".__init__") else module


def _imports(path):
  with open(os.path.join(REPO, path)) as f:
    tree = ast.parse(f.read())
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names |= {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      names.add(node.module)
      names |= {f"{node.module}.{a.name}" for a in node.names}
  return names


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
