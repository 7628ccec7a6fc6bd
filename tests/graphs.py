"""Import graphs of Python packages, and cycles in graphs (tests/test_imports.py, test_build)."""

import ast
import os


def module_files(root):
  """{dotted module name: path} of every .py file under the package directory `root`."""
  package = os.path.basename(root)
  out = {}
  for directory, _, files in os.walk(root):
    for name in files:
      if name.endswith(".py"):
        rel = os.path.relpath(os.path.join(directory, name), os.path.dirname(root))
        dotted = rel[:-3].replace(os.sep, ".")
        out[dotted[:-len(".__init__")] if dotted.endswith(".__init__") else dotted] = (
            os.path.join(directory, name))
  assert package in out, root
  return out


def import_graph(root):
  """{module: set of package modules it imports}."""
  modules = module_files(root)
  graph = {}
  for name, path in modules.items():
    with open(path) as f:
      tree = ast.parse(f.read(), path)
    is_package = path.endswith("__init__.py")
    edges = set()
    for node in ast.walk(tree):
      targets = []
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
          parts = name.split(".")
          parts = parts if is_package else parts[:-1]
          parts = parts[:len(parts) - (node.level - 1)]
          base = ".".join(parts + ([base] if base else []))
        targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                   for a in node.names]
      for target in targets:
        while target and target not in modules:  # `import a.b.c` of a name inside a.b.
          target = target.rpartition(".")[0]
        if target and target != name:
          edges.add(target)
    graph[name] = edges
  return graph


def find_cycle(graph):
  """One import cycle as a list [a, b, ..., a], or None."""
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        found = visit(nxt)
        if found:
          return found
    stack.pop()
    state[node] = "done"
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None
