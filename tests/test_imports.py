"""The package's import graph has no cycles (every import counted, those inside functions too:
a lazy import that only hides a cycle is still a cycle)."""

import os

from tests.graphs import find_cycle, import_graph

QAGAN_TF = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "qagan_tf")


def _without_edges_into_own_package(module, graph):
  """Edges from a package's __init__ to its own submodules are not cycles with the submodules'
  imports of their siblings: Python runs the __init__ first. Dropped before the search."""
  return {t for t in graph[module] if not t.startswith(module + ".")}


def test_qagan_tf_has_no_import_cycle():
  graph = import_graph(QAGAN_TF)
  assert {"qagan_tf.train.trainer", "qagan_tf.train.penalties", "qagan_tf.config"} <= set(graph)
  assert "qagan_tf.train.ssim_penalty" in graph["qagan_tf.train.penalties"]
  graph = {m: _without_edges_into_own_package(m, graph) for m in graph}
  cycle = find_cycle(graph)
  assert cycle is None, "import cycle: " + " -> ".join(cycle)


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
