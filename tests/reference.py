"""The one way tests read ../shared/reference: env QAGAN_REFERENCE_DIR, default ../shared/reference.

Outside CI a missing file skips the test that needs it; with CI=true it fails.
"""

import os

import pytest

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DIR = os.path.normpath(os.path.join(_REPO, "..", "shared", "reference"))


def reference_dir():
  return os.environ.get("QAGAN_REFERENCE_DIR", DEFAULT_DIR)


def reference_path(*parts):
  """Absolute path of a reference file; fails under CI=true and skips otherwise when missing."""
  path = os.path.join(reference_dir(), *parts)
  if not os.path.exists(path):
    message = (f"reference file {path} is missing (set QAGAN_REFERENCE_DIR to the folder that "
               "holds inception/, niqe/ and iqa_calibration/)")
    if os.environ.get("CI", "").lower() == "true":
      pytest.fail(message)
    pytest.skip(message)
  return path
