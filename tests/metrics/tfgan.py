"""TF-GAN's classifier_metrics module, loaded from the installed files without the package
__init__ (tensorflow-gan 2.1.0 cannot be imported on TF >= 2.16: it needs tf.estimator)."""

import importlib.util
import os
import sys
import types

import pytest


def classifier_metrics():
  cached = sys.modules.get("tensorflow_gan.python.eval.classifier_metrics")
  if cached is not None:
    return cached
  spec = importlib.util.find_spec("tensorflow_gan")  # Finds the package without running it.
  if spec is None or not spec.submodule_search_locations:
    message = "tensorflow-gan 2.1.0 is not installed (pip install -e '.[test]')"
    if os.environ.get("CI", "").lower() == "true":
      pytest.fail(message)
    pytest.skip(message)
  eval_dir = os.path.join(list(spec.submodule_search_locations)[0], "python", "eval")
  modules = {}
  for name in ("eval_utils", "classifier_metrics"):
    full = f"tensorflow_gan.python.eval.{name}"
    if full not in sys.modules:
      for parent in ("tensorflow_gan", "tensorflow_gan.python", "tensorflow_gan.python.eval"):
        sys.modules.setdefault(parent, types.ModuleType(parent))
      module_spec = importlib.util.spec_from_file_location(full, os.path.join(eval_dir,
                                                                              name + ".py"))
      module = importlib.util.module_from_spec(module_spec)
      sys.modules[full] = module
      setattr(sys.modules["tensorflow_gan.python.eval"], name, module)
      module_spec.loader.exec_module(module)
    modules[name] = sys.modules[full]
  return modules["classifier_metrics"]
