"""The package's import graph has no cycles (every import counted, those inside functions too:
a lazy import that only hides a cycle is still a cycle) and no import that runs up the layers."""

import os

from tests.graphs import find_cycle, import_graph

QAGAN_TF = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "qagan_tf")

# The layers, bottom up: a module may import its own layer and those below, never one above.
LAYERS = (
    ("qagan_tf.utils", "qagan_tf.iqa", "qagan_tf.data", "qagan_tf.models", "qagan_tf.augment",
     "qagan_tf.ada"),
    # What is minimised; what is measured; one iteration of updates (below both loops).
    ("qagan_tf.objectives", "qagan_tf.metrics", "qagan_tf.update"),
    # The configuration, its shims for older runs; the public penalty functions.
    ("qagan_tf.config", "qagan_tf.compat", "qagan_tf.qa"),
    ("qagan_tf.sampling",),
    ("qagan_tf.evaluation",),
    ("qagan_tf.train", "qagan_tf.gan"),  # The loops: bin/train's and Keras fit's.
    ("qagan_tf.report",),
)


def layer_of(module):
  """The index in LAYERS of the package or module that holds `module` (None for the root)."""
  for index, members in enumerate(LAYERS):
    if any(module == m or module.startswith(m + ".") for m in members):
      return index
  return None


def upward_imports(graph):
  """[(importer, imported)] for every import from a lower layer into a higher one."""
  return sorted((a, b) for a, targets in graph.items() for b in targets
                if layer_of(a) is not None and layer_of(b) is not None
                and layer_of(b) > layer_of(a))


def _without_edges_into_own_package(module, graph):
  """Edges from a package's __init__ to its own submodules are not cycles with the submodules'
  imports of their siblings: Python runs the __init__ first. Dropped before the search."""
  return {t for t in graph[module] if not t.startswith(module + ".")}


def test_qagan_tf_has_no_import_cycle():
  graph = import_graph(QAGAN_TF)
  assert {"qagan_tf.train.trainer", "qagan_tf.objectives.penalties", "qagan_tf.config"} <= set(
      graph)
  assert "qagan_tf.objectives.ssim" in graph["qagan_tf.objectives.penalties"]
  graph = {m: _without_edges_into_own_package(m, graph) for m in graph}
  cycle = find_cycle(graph)
  assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_has_a_layer_and_no_import_runs_up():
  graph = import_graph(QAGAN_TF)
  assert not [m for m in graph if m != "qagan_tf" and layer_of(m) is None], "add it to LAYERS"
  assert not upward_imports(graph), upward_imports(graph)
  assert not any(t.startswith("qagan_tf.train") for t in graph["qagan_tf.config"])
  # The check finds an import that runs up: config importing the loop.
  bad = dict(graph, **{"qagan_tf.config": graph["qagan_tf.config"] | {"qagan_tf.train.step"}})
  assert upward_imports(bad) == [("qagan_tf.config", "qagan_tf.train.step")]


def test_the_walk_finds_a_cycle_hidden_in_a_function(tmp_path):
  pkg = tmp_path / "pkg"
  (pkg / "sub").mkdir(parents=True)
  (pkg / "__init__.py").write_text("")
  (pkg / "sub" / "__init__.py").write_text("")
  (pkg / "a.py").write_text("from pkg.sub import b\n")
  (pkg / "sub" / "b.py").write_text("def f():\n  from .. import c\n")
  (pkg / "c.py").write_text("import pkg.a\n")
  graph = import_graph(str(pkg))
  assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.c"}
  assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
  (pkg / "c.py").write_text("import numpy\n")
  assert find_cycle(import_graph(str(pkg))) is None


def test_the_package_never_imports_the_benchmarks_or_torch():
  """The benchmarks (and their PyTorch peer) live beside the package, in qagan_bench/, so that
  `pip install .` does not carry them; nothing in qagan_tf imports them, or torch."""
  import ast
  from tests.graphs import module_files
  top_level = set()
  for path in module_files(QAGAN_TF).values():
    with open(path) as f:
      for node in ast.walk(ast.parse(f.read(), path)):
        if isinstance(node, ast.Import):
          top_level |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
          top_level.add(node.module.split(".")[0])
  assert {"tensorflow", "keras", "qagan_tf"} <= top_level  # The scan sees imports.
  assert not top_level & {"qagan_bench", "torch"}
  assert not os.path.exists(os.path.join(QAGAN_TF, "benchmarks"))
  with open(os.path.join(os.path.dirname(QAGAN_TF), "setup.cfg")) as f:
    packages = f.read().split("[options.packages.find]")[1].split("[")[0]
  assert "include = qagan_tf, qagan_tf.*" in packages and "qagan_bench" not in packages


def test_importing_the_package_leaves_the_tf_runtime_uninitialised():
  """No module makes a tensor when imported: MultiWorkerMirroredStrategy configures its collective
  ops on a runtime that has not started ("Collective ops must be configured at program startup"),
  and bin/train builds it after its imports. A module-level tf.constant in qagan_tf/ada.py broke
  the two-worker run this way (CI, 2026-12-06)."""
  import subprocess
  import sys
  script = ("import importlib, pkgutil, qagan_tf\n"
            "from tensorflow.python.eager import context\n"
            "names = [m.name for m in pkgutil.walk_packages(qagan_tf.__path__, 'qagan_tf.')]\n"
            "started = []\n"
            "for name in names:\n"
            "  importlib.import_module(name)\n"
            "  if context.context()._context_handle is not None and not started:\n"
            "    started.append(name)\n"
            "print(len(names), started)\n")
  out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                       cwd=os.path.dirname(QAGAN_TF)).stdout.split("\n")[-2]
  count, started = out.split(" ", 1)
  assert int(count) > 80  # The walk found the package's modules.
  assert started == "[]", f"importing {started} started the TF runtime"
