"""The examples run (a few steps each), and the snippets of docs/library.md are their code."""

import os
import re
import textwrap

import pytest

from tests import reference
from tests import scripts

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "examples")


def _run(args):
  """Runs an example as `python examples/NAME.py ARGS` would, in this process (`tests.scripts`)."""
  env = {"QAGAN_INCEPTION_WEIGHTS": reference.reference_path(
      "inception", "fid_inception_2015_12_05_pool3.npz")}
  return scripts.run(args[0], *args[1:], env=env, check=True)


def snippets(path):
  """{name: dedented code} of the regions between `# [name]` and `# [end]` in a file."""
  with open(path) as f:
    text = f.read()
  return {m.group(1): textwrap.dedent(m.group(2)).strip()
          for m in re.finditer(r"^ *# \[([^\]]+)\]\n(.*?)^ *# \[end\]", text, re.M | re.S)}


def test_the_docs_snippets_are_the_examples_code():
  with open(os.path.join(REPO, "docs", "library.md")) as f:
    docs = f.read()
  found = {}
  for name in ("keras_dcgan_qagan.py", "custom_loop.py"):
    found.update(snippets(os.path.join(EXAMPLES, name)))
  assert set(found) == {"fit", "fit under MirroredStrategy", "custom loop", "save and load"}
  for name, code in found.items():
    assert code in docs, f"docs/library.md lacks the example's {name!r} code"


@pytest.mark.slow
def test_the_keras_fit_example_trains_with_fid_samples_and_tensorboard(tmp_path):
  log_dir = tmp_path / "run"
  # One critic update of 8 images per step: the tracing of the paper's 5 unrolled updates of 64
  # took most of this test's time; the example's defaults are the paper's.
  out = _run([os.path.join(EXAMPLES, "keras_dcgan_qagan.py"), "--epochs=1", "--batch_size=8",
              "--disc_iters=1", "--steps_per_epoch=1", "--fid_every=1", "--fid_samples=32",
              "--reference_images=32", f"--log_dir={log_dir}"]).stdout
  lines = out.strip().splitlines()
  history = eval(lines[-1])  # noqa: S307 - our own example's dict.
  for key in ("d_loss", "g_loss", "gp", "niqe_penalty", "fid", "val_d_loss", "val_wasserstein"):
    assert key in history, key
  evaluated = eval(lines[-2])  # noqa: S307 - the reloaded model's evaluate().
  assert set(evaluated) == {"d_loss", "wasserstein"}
  assert (log_dir / "qagan.keras").stat().st_size > 10_000
  assert (log_dir / "samples" / "epoch_0001.png").exists()
  from tests.events import scalar_values
  assert scalar_values(str(log_dir / "train"), "epoch_fid")
  _run([os.path.join(EXAMPLES, "keras_dcgan_qagan.py"), "--mirrored", "--epochs=1",
        "--batch_size=8", "--disc_iters=1", "--steps_per_epoch=1", "--fid_samples=32",
        "--reference_images=32",
        f"--log_dir={tmp_path / 'mirrored'}"])


@pytest.mark.slow
def test_the_custom_loop_example_trains():
  lines = _run([os.path.join(EXAMPLES, "custom_loop.py"), "--steps=2"]).stdout.splitlines()
  assert lines[-1].startswith("step 2: d_loss") and "niqe" in lines[-1]
