"""docs/extending.md's recipes, each followed to the letter in a copy of the package: a penalty
(one module under objectives/ and one registry line give a penalty that bin/train and QAGAN.fit
both train with, its settings as flags and config.json keys), a regulariser and a loss."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.events import scalar_values

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODULE = '''"""gradient_power: mean |g|^p of D's input gradients (a test penalty)."""

import dataclasses

import tensorflow as tf

from qagan_tf.objectives import penalty_api
from qagan_tf.utils.fields import setting


@dataclasses.dataclass(frozen=True)
class GradientPowerConfig:
  power: float = setting(2.0, "gradient_power penalty: the exponent p.")

  def check_values(self, spell=lambda field: f"gradient_power_{field}"):
    if not self.power > 0:
      raise ValueError(f"{spell('power')}={self.power} must be > 0.")

  def validate(self, config):
    self.check_values()


def build_penalty(settings, resolution, *, xla=False):
  del resolution, xla

  def fn(inputs):
    g = tf.abs(inputs.grad_x_hat) + 1e-12
    return tf.reduce_mean(g ** settings.power, axis=[1, 2, 3]), {}
  return penalty_api.QualityPenalty("gradient_power", "gradient_power_penalty", fn,
                                    needs_input_gradient=True)


ENTRY = penalty_api.PenaltyEntry(build=build_penalty, settings=GradientPowerConfig)
'''

FIT = '''
import sys
sys.path.insert(0, sys.argv[1])
import keras, tensorflow as tf
from qagan_tf.gan import QAGAN
sys.path.insert(0, sys.argv[2])
from tests.gan.models import LATENT, _images, user_models
g, d = user_models()
gan = QAGAN(g, d, LATENT, penalty="gradient_power", penalty_settings={"power": 1.5},
            disc_iters=2)
gan.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3))
history = gan.fit(tf.data.Dataset.from_tensor_slices(_images()).batch(8, drop_remainder=True),
                  epochs=1, steps_per_epoch=2, verbose=0)
print("FIT", float(history.history["gradient_power_penalty"][0]))
'''


def _extending_recipe():
  with open(os.path.join(REPO, "docs", "extending.md")) as f:
    text = f.read()
  return re.search(r"- \*\*a penalty\*\*:(.*?)\n- \*\*", text, flags=re.S).group(1)


def test_the_recipe_names_the_builder():
  recipe = _extending_recipe()
  for word in ("build_penalty(settings, resolution, *, xla)", "PenaltyEntry(build=",
               "PENALTIES", "check_values", "validate(config)"):
    assert word in recipe, word


@pytest.mark.slow
def test_a_penalty_added_by_the_recipe_trains_in_bin_train_and_in_fit(tmp_path):
  copy = tmp_path / "checkout"
  for part in ("qagan_tf", "bin", "configs"):
    shutil.copytree(os.path.join(REPO, part), copy / part,
                    ignore=shutil.ignore_patterns("__pycache__", "benchmarks"))
  (copy / "qagan_tf" / "objectives" / "gradient_power.py").write_text(MODULE)
  registry = copy / "qagan_tf" / "objectives" / "penalties.py"
  text = registry.read_text()
  text = text.replace("from qagan_tf.objectives import ssim\n",
                      "from qagan_tf.objectives import gradient_power, ssim\n")
  text = text.replace('    "niqe": niqe.ENTRY,\n',
                      '    "niqe": niqe.ENTRY,\n    "gradient_power": gradient_power.ENTRY,\n')
  registry.write_text(text)  # The one registry line (and its import).
  run = str(tmp_path / "run")
  env = dict(os.environ, PYTHONPATH=str(copy))
  proc = subprocess.run(
      [sys.executable, str(copy / "bin" / "train"), "--flagfile=configs/smoke.cfg",
       "--penalty=gradient_power", "--gradient_power_power=1.5", "--max_steps=2", "--width=8",
       "--batch_size=4", "--disc_iters=1", "--log_every=1", f"--model_dir={run}"],
      cwd=copy, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(run, "config.json")) as f:
    assert json.load(f)["gradient_power_power"] == 1.5
  values = scalar_values(run, "train/")["train/gradient_power_penalty"]
  assert [s for s, _ in values] == [1, 2] and all(v > 0 for _, v in values)
  proc = subprocess.run([sys.executable, "-c", FIT, str(copy), REPO], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert float(proc.stdout.split("FIT")[-1]) > 0


TERM_MODULE = '''"""fake_l1: mean |grad D(G(z))| at the generated images, zero-centred (a test regulariser)."""

import dataclasses

import tensorflow as tf

from qagan_tf.objectives import term_api
from qagan_tf.utils import fields
from qagan_tf.utils.fields import setting


@dataclasses.dataclass(frozen=True)
class FakeL1Settings(term_api.TermSettings):
  GROUP = "fake_l1"
  weight: float = setting(0.0, "fake_l1: weight of mean |grad D(G(z))| (0: none).",
                          rule=fields.NON_NEGATIVE)


def _fn(inputs, built):
  del built
  value = tf.reduce_mean(tf.abs(inputs.grad), axis=[1, 2, 3])
  return value, {"fake_l1": value}


TERM = term_api.Term(name="fake_l1", settings=FakeL1Settings, fn=_fn,
                     metric_names=lambda built: ("fake_l1",),
                     points=lambda settings, context: "fake")
'''

TERM_FIT = '''
import sys
sys.path.insert(0, sys.argv[1])
import keras, tensorflow as tf
from qagan_tf.gan import QAGAN
sys.path.insert(0, sys.argv[2])
from tests.gan.models import LATENT, _images, user_models
g, d = user_models()
gan = QAGAN(g, d, LATENT, penalty="wgan_gp", fake_l1_weight=0.5, disc_iters=2)
gan.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3))
history = gan.fit(tf.data.Dataset.from_tensor_slices(_images()).batch(8, drop_remainder=True),
                  epochs=1, steps_per_epoch=2, verbose=0)
print("FIT", float(history.history["fake_l1"][0]), gan.get_config()["fake_l1_weight"])
'''


def _regulariser_recipe():
  with open(os.path.join(REPO, "docs", "extending.md")) as f:
    text = f.read()
  return re.search(r"- \*\*a regulariser\*\*:(.*?)\n- \*\*", text, flags=re.S).group(1)


def _changed_files(original, copy):
  """Paths (relative) of files that differ between two trees, or exist in one only."""
  import filecmp
  out = set()

  def walk(cmp, prefix=""):
    out.update(prefix + n for n in cmp.left_only + cmp.right_only + cmp.diff_files)
    for name, sub in cmp.subdirs.items():
      walk(sub, prefix + name + "/")
  walk(filecmp.dircmp(original, copy, ignore=["__pycache__"]))
  return out


@pytest.mark.slow
def test_a_regulariser_added_by_the_recipe_trains_in_bin_train_and_in_fit(tmp_path):
  """docs/extending.md's regulariser recipe, applied to a copy of the package: one module and
  one registry line (with its import), and nothing else, give a term with its flag, its
  config.json key, its metric under bin/train, and a QAGAN keyword that trains under fit."""
  recipe = _regulariser_recipe()
  named = set(re.findall(r"`(qagan_tf/[\w/<>]+\.py)`", recipe))
  assert named == {"qagan_tf/objectives/terms/<name>.py", "qagan_tf/objectives/regularizers.py"}
  copy = tmp_path / "checkout"
  for part in ("qagan_tf", "bin", "configs"):
    shutil.copytree(os.path.join(REPO, part), copy / part,
                    ignore=shutil.ignore_patterns("__pycache__"))
  (copy / "qagan_tf" / "objectives" / "terms" / "fake_l1.py").write_text(TERM_MODULE)
  registry = copy / "qagan_tf" / "objectives" / "regularizers.py"
  text = registry.read_text()
  text = text.replace("import drift, gp, lecam, quality, r1, r2\n",
                      "import drift, fake_l1, gp, lecam, quality, r1, r2\n")
  text = text.replace('    "lecam": lecam.TERM,\n',
                      '    "lecam": lecam.TERM,\n    "fake_l1": fake_l1.TERM,\n')
  registry.write_text(text)  # The one registry line (and its import).
  changed = _changed_files(os.path.join(REPO, "qagan_tf"), copy / "qagan_tf")
  assert {"qagan_tf/" + p for p in changed} == {n.replace("<name>", "fake_l1") for n in named}
  run = str(tmp_path / "run")
  env = dict(os.environ, PYTHONPATH=str(copy))
  proc = subprocess.run(
      [sys.executable, str(copy / "bin" / "train"), "--flagfile=configs/smoke.cfg",
       "--fake_l1_weight=0.5", "--max_steps=2", "--width=8", "--batch_size=4", "--disc_iters=1",
       "--log_every=1",
       f"--model_dir={run}"], cwd=copy, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(run, "config.json")) as f:
    assert json.load(f)["fake_l1_weight"] == 0.5
  values = scalar_values(run, "train/")["train/fake_l1"]
  assert [s for s, _ in values] == [1, 2] and all(v > 0 for _, v in values)
  proc = subprocess.run([sys.executable, "-c", TERM_FIT, str(copy), REPO], cwd=tmp_path,
                        env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  fit_value, keyword = proc.stdout.split("FIT")[-1].split()
  assert float(fit_value) > 0 and float(keyword) == 0.5


LOSS_FUNCTIONS = '''

def least_squares_discriminator_loss(d_real, d_fake):
  """Per-example least-squares loss (D(x) - 1)^2 + D(G(z))^2 (LSGAN; a test loss)."""
  return tf.square(d_real - 1.0) + tf.square(d_fake)


def least_squares_generator_loss(d_real, d_fake):
  """Per-example least-squares generator loss (D(G(z)) - 1)^2."""
  del d_real
  return tf.square(d_fake - 1.0)
'''

LOSS_FIT = '''
import sys
sys.path.insert(0, sys.argv[1])
import keras, tensorflow as tf
from qagan_tf.gan import QAGAN
sys.path.insert(0, sys.argv[2])
from tests.gan.models import LATENT, _images, user_models
g, d = user_models()
gan = QAGAN(g, d, LATENT, loss="least_squares", penalty="wgan_gp", disc_iters=1)
gan.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3))
history = gan.fit(tf.data.Dataset.from_tensor_slices(_images()).batch(8, drop_remainder=True),
                  epochs=1, steps_per_epoch=2, verbose=0)
print("FIT", float(history.history["d_loss"][0]), gan.get_config()["loss"])
'''


def _recipe(kind):
  with open(os.path.join(REPO, "docs", "extending.md")) as f:
    text = f.read()
  return re.search(rf"- \*\*{kind}\*\*:(.*?)\n- \*\*", text, flags=re.S).group(1)


@pytest.mark.slow
def test_a_loss_added_by_the_recipe_trains_in_bin_train_and_in_fit(tmp_path):
  """docs/extending.md's loss recipe, applied to a copy of the package: its two functions and one
  `LOSSES` entry in the file the recipe names, and nothing else, give a `--loss` that bin/train
  trains with (recorded in config.json) and a `QAGAN(loss=...)` that trains under fit."""
  recipe = _recipe("a loss")
  named = set(re.findall(r"`(qagan_tf/[\w/<>]+\.py)`", recipe))
  assert named == {"qagan_tf/objectives/losses.py"}
  copy = tmp_path / "checkout"
  for part in ("qagan_tf", "bin", "configs"):
    shutil.copytree(os.path.join(REPO, part), copy / part,
                    ignore=shutil.ignore_patterns("__pycache__"))
  module = copy / "qagan_tf" / "objectives" / "losses.py"
  text = module.read_text()
  anchor = "\n\n@dataclasses.dataclass(frozen=True)\nclass Loss:"
  assert anchor in text
  text = text.replace(anchor, LOSS_FUNCTIONS + anchor)
  entry = ('    "rpgan": Loss("rpgan", rpgan_discriminator_loss, rpgan_generator_loss,\n'
           '                  generator_needs_real=True),\n')
  assert entry in text
  text = text.replace(entry, entry + '    "least_squares": Loss("least_squares", '
                      'least_squares_discriminator_loss,\n'
                      '                          least_squares_generator_loss),\n')
  module.write_text(text)  # The functions and the one registry entry.
  changed = _changed_files(os.path.join(REPO, "qagan_tf"), copy / "qagan_tf")
  assert {"qagan_tf/" + p for p in changed} == named
  run = str(tmp_path / "run")
  env = dict(os.environ, PYTHONPATH=str(copy))
  proc = subprocess.run(
      [sys.executable, str(copy / "bin" / "train"), "--flagfile=configs/smoke.cfg",
       "--loss=least_squares", "--max_steps=2", "--width=8", "--batch_size=4", "--disc_iters=1",
       "--log_every=1", f"--model_dir={run}"], cwd=copy, env=env, capture_output=True,
      text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(run, "config.json")) as f:
    assert json.load(f)["loss"] == "least_squares"
  values = scalar_values(run, "train/")["train/d_loss"]
  assert [s for s, _ in values] == [1, 2] and all(v > 0 for _, v in values)  # Squares, GP.
  proc = subprocess.run([sys.executable, "-c", LOSS_FIT, str(copy), REPO], cwd=tmp_path,
                        env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  fit_value, name = proc.stdout.split("FIT")[-1].split()
  assert float(fit_value) > 0 and name == "least_squares"
