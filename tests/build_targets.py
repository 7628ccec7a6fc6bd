"""BUILD's test targets, derived from the test files: nothing about a test is written by hand.

  python -m tests.build_targets --write     # after adding, renaming or changing a test file

rewrites everything after `MARKER` in BUILD (the libraries and binaries above it stay as
written); tests/test_build.py fails, naming this command, while BUILD differs from what it
would write. Each test file tests/**/test_*.py gets one `py_test`:
- name: the file's name without .py; size: "large" when it has a test marked slow;
- srcs: the file, plus its folder's __init__.py for the folder's first test file when no
  library holds that __init__.py;
- deps: the target of every module it imports (tests/test_build.py checks this rule for every
  target), the test support library, and the binary of every script or example it runs: the
  first string argument of a call named run, _run, script or _script (`scripts.run("train",
  ...)`), the second of a `Case` (the bad-input catalogue), a path ending in bin/NAME or in an
  example's file name, or os.path.join(..., "bin", NAME);
- data: the files it reads, from its strings: a configs/ flag file (configs/*.cfg, also for a
  test that runs a script or imports tests.scripts or qagan_bench), a top-level folder or file
  it joins to REPO (docs, benchmarks, qagan_tf; BUILD, setup.cfg) or folders it lists together
  (a copy of the package), a file named by its path or by its name next to the test, in docs/
  or in benchmarks/.
"""

import ast
import glob
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(REPO, "BUILD")
MARKER = ("# The test targets, generated from the test files by tests/build_targets.py (run\n"
          "# `python -m tests.build_targets --write` after changing a test file; do not edit).\n")
BIN_SCRIPTS = ("train", "sample", "niqe", "compute_stats", "fid", "evaluate", "fetch_inception",
               "fit_niqe_prior", "benchmark", "report")
FOLDERS = ("docs", "benchmarks", "qagan_tf", "bin")
DATA_SUFFIXES = (".md", ".json", ".keras", ".npz", ".cfg", ".csv")
WIDTH = 100  # BUILD's line length (buildifier's style: a list that does not fit, one per line).


def targets(text=None):
  """{name: {"kind", "srcs", "deps" (without ':'), and the rest of the rule's arguments}} of
  BUILD (or of `text`), read with stand-ins for the rules (Bazel cannot fetch them offline)."""
  found = {}

  def rule(kind):
    def record(name, srcs=(), deps=(), **kwargs):
      found[name] = {"kind": kind, "srcs": list(srcs), "deps": [d.lstrip(":") for d in deps],
                     **kwargs}
    return record

  def build_glob(patterns):
    return sorted(os.path.relpath(p, REPO) for pat in patterns
                  for p in glob.glob(os.path.join(REPO, pat), recursive=True)
                  if os.path.isfile(p))

  namespace = {"py_library": rule("py_library"), "py_binary": rule("py_binary"),
               "py_test": rule("py_test"), "glob": build_glob,
               "package": lambda **kwargs: None}
  if text is None:
    with open(BUILD) as f:
      text = f.read()
  exec(compile(text, "BUILD", "exec"), namespace)  # noqa: S102 - our own BUILD file.
  return found


def module_of(path):
  """qagan_tf/metrics/fid.py -> qagan_tf.metrics.fid; bin/eval_common.py -> eval_common."""
  if path.startswith("bin/"):
    return os.path.splitext(os.path.basename(path))[0]
  module = os.path.splitext(path)[0].replace("/", ".")
  return module[:-len(".__init__")] if module.endswith(".__init__") else module


def _tree(path):
  with open(os.path.join(REPO, path)) as f:
    return ast.parse(f.read())


def imports(path):
  """The modules (and module.name) that the file at `path` imports."""
  names = set()
  for node in ast.walk(_tree(path)):
    if isinstance(node, ast.Import):
      names |= {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      names.add(node.module)
      names |= {f"{node.module}.{a.name}" for a in node.names}
  return names


def _const(node):
  return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _call_name(node):
  f = node.func
  return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None


def _scan(path):
  """(every string constant, the script names it runs, the top-level folders it reads)."""
  strings, scripts, folders = set(), set(), set()
  for node in ast.walk(_tree(path)):
    if _const(node) is not None:
      strings.add(node.value)
    elif isinstance(node, ast.Call):
      args = [_const(a) for a in node.args]
      if _call_name(node) in ("run", "_run", "script", "_script") and args and args[0]:
        scripts.add(args[0])
      if _call_name(node) == "Case" and len(args) > 1 and args[1]:  # The bad-input catalogue.
        scripts.add(args[1])
      if _call_name(node) == "join":
        scripts.update(b for a, b in zip(args, args[1:]) if a == "bin" and b)
        if node.args and isinstance(node.args[0], ast.Name) and node.args[0].id == "REPO":
          folders.update(a for a in args[1:2] if a and a != "bin")  # Scripts: deps, above.
    elif isinstance(node, (ast.Tuple, ast.List)):
      items = {_const(e) for e in node.elts}
      if len(items & set(FOLDERS)) >= 2:  # e.g. for part in ("qagan_tf", "bin", "configs").
        folders.update(items & set(FOLDERS))
  scripts.update(s.rsplit("bin/", 1)[1] for s in strings if "bin/" in s)
  scripts.update(os.path.basename(s) for s in strings if s.endswith(".py"))
  return strings, scripts, folders


def _is_slow(path):
  with open(os.path.join(REPO, path)) as f:
    return "@pytest.mark." + "slow" in f.read()


def _data(path, strings, folders):
  patterns = {f"{f}/**/*" for f in folders if f in FOLDERS}
  if "configs" in folders:
    patterns.add("configs/*.cfg")
  patterns.update(f for f in folders if os.path.isfile(os.path.join(REPO, f)))  # BUILD, ...
  here = os.path.dirname(path)
  for s in strings:
    if "configs/" in s:
      patterns.add("configs/*.cfg")
    if s.endswith(DATA_SUFFIXES) and "{" not in s:
      for candidate in (s, os.path.join(here, s), os.path.join("docs", s),
                        os.path.join("benchmarks", s)):
        if os.path.isfile(os.path.join(REPO, candidate)):
          patterns.add(os.path.normpath(candidate))
          break
  return sorted(patterns)


def _binaries(scripts, rules):
  """Binary targets of the scripts a test runs (`train`, `custom_loop.py`)."""
  out = set()
  for name, rule in rules.items():
    if rule["kind"] == "py_binary":
      main = os.path.basename(rule.get("main", rule["srcs"][0]))
      if {main, os.path.splitext(main)[0]} & scripts:
        out.add(name)
  return out


def _list(key, values, indent="    "):
  one = f'{indent}{key} = [{", ".join(values)}],'
  if len(one) <= WIDTH:
    return [one]
  return [f"{indent}{key} = ["] + [f"{indent}    {v}," for v in values] + [f"{indent}],"]


def generate(rules=None):
  """The text after MARKER: one py_test per test file, in path order."""
  rules = {n: r for n, r in (rules or targets()).items() if r["kind"] != "py_test"}
  owner = {module_of(s): name for name, r in rules.items() for s in r["srcs"]}
  held = {s for r in rules.values() for s in r["srcs"]}
  tests = sorted(glob.glob("tests/**/test_*.py", root_dir=REPO, recursive=True))
  init_taken = set()
  blocks = []
  for path in tests:
    name = os.path.splitext(os.path.basename(path))[0]
    owner[module_of(path)] = name
    srcs = [path]
    init = os.path.join(os.path.dirname(path), "__init__.py")
    if init not in held and init not in init_taken and os.path.exists(os.path.join(REPO, init)):
      srcs.insert(0, init)
      init_taken.add(init)
    strings, scripts, folders = _scan(path)
    deps = {owner[m] for m in imports(path) if m != "qagan_tf" and m in owner}
    deps.discard(name)
    deps |= {"test_support"} | _binaries(scripts, rules)
    lines = ["py_test(", f'    name = "{name}",',
             f'    size = "{"large" if _is_slow(path) else "small"}",']
    lines += _list("srcs", [f'"{s}"' for s in srcs])
    data = _data(path, strings, folders)
    runs_scripts = any(d.endswith("_bin") for d in deps) or any(
        m == "tests.scripts" or m.startswith("qagan_bench") for m in imports(path))
    if runs_scripts and "configs/*.cfg" not in data:  # Their flag files (tests.scripts.TINY_RUN).
      data = sorted(data + ["configs/*.cfg"])
    if data:
      globbed = f'    data = glob([{", ".join(f"{chr(34)}{d}{chr(34)}" for d in data)}]),'
      lines += [globbed] if len(globbed) <= WIDTH else (
          ["    data = glob(["] + [f'        "{d}",' for d in data] + ["    ]),"])
    lines += _list("deps", [f'":{d}"' for d in sorted(deps)])
    blocks.append("\n".join(lines + [")"]))
  return "\n\n".join(blocks) + "\n"


def split_build():
  """(BUILD up to and including MARKER, the generated part after it)."""
  with open(BUILD) as f:
    text = f.read()
  if MARKER not in text:
    raise ValueError(f"BUILD lacks the line that starts its generated part:\n{MARKER}")
  head, tail = text.split(MARKER, 1)
  return head + MARKER, tail.lstrip("\n")


def main(argv):
  head, tail = split_build()
  new = generate(targets(head))
  if "--write" in argv:
    with open(BUILD, "w") as f:
      f.write(head + "\n" + new)
    print(f"Wrote {new.count('py_test(')} test targets to {BUILD}.")
  else:
    print(new, end="")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
