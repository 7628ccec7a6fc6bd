"""docs/extending.md's recipes, each followed to the letter in one shared copy of the package: a
loss, a penalty, a regulariser, a metric, an architecture (with a setting of its own) and a
dataset. The `extended` fixture applies them in turn, records the files each one changed, and
runs every door in one process of the copy (one TensorFlow import): bin/compute_stats on the new
dataset, one bin/train run that uses all six (flags, config.json, train/ and eval/ scalars),
bin/evaluate, bin/report, a refused resume, `QAGAN.fit` with the `EvaluationCallback`, and
`qa.penalty`. Each recipe's test then checks its own doors and its own files."""

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests import reference
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

LOSS_FUNCTIONS = '''

def least_squares_discriminator_loss(d_real, d_fake):
  """Per-example least-squares loss (D(x) - 1)^2 + D(G(z))^2 (LSGAN; a test loss)."""
  return tf.square(d_real - 1.0) + tf.square(d_fake)


def least_squares_generator_loss(d_real, d_fake):
  """Per-example least-squares generator loss (D(G(z)) - 1)^2."""
  del d_real
  return tf.square(d_fake - 1.0)
'''


METRIC_MODULE = '''"""activation_mean: the mean over features of the samples' pool_3 mean (a test
metric)."""

import numpy as np


def activation_mean(mu):
  return float(np.mean(mu))
'''

ARCHITECTURE_MODULE = '''"""mlp: a fully connected generator and critic (a test architecture)."""

import dataclasses

import keras
import tensorflow as tf

from qagan_tf.models import spectral
from qagan_tf.utils import fields
from qagan_tf.utils.fields import setting

RESOLUTIONS = (32,)


@dataclasses.dataclass(frozen=True)
class MLPSettings:
  depth: int = setting(1, "mlp architecture: hidden layers of G and of D.", rule=fields.POSITIVE)


class Generator(keras.Model):

  def __init__(self, resolution, width, z_dim, name="generator", settings=MLPSettings()):
    super().__init__(name=name)
    self.resolution, self.z_dim, self.depth = resolution, z_dim, settings.depth
    for i in range(self.depth):
      setattr(self, f"hidden{i}", keras.layers.Dense(width, activation="relu", name=f"hidden{i}"))
    self.pixels = keras.layers.Dense(resolution * resolution * 3, name="pixels")

  def call(self, z, training=False):
    h = z
    for i in range(self.depth):
      h = getattr(self, f"hidden{i}")(h)
    return tf.reshape(tf.tanh(self.pixels(h)), [-1, self.resolution, self.resolution, 3])

  def build_for_inference(self):
    self(tf.zeros([1, self.z_dim]))


class Discriminator(keras.Model):

  def __init__(self, resolution, width, spectral_norm=False, name="discriminator",
               settings=MLPSettings()):
    super().__init__(name=name)
    self.resolution, self.spectral_norm, self.depth = resolution, spectral_norm, settings.depth
    dense = spectral.SNDense if spectral_norm else keras.layers.Dense
    for i in range(self.depth):
      setattr(self, f"hidden{i}", dense(width, name=f"hidden{i}"))
    self.score = dense(1, name="score")

  def update_spectral_norm(self):
    for layer in spectral.spectral_layers(self):
      layer.power_iteration()

  def call(self, x, training=False):
    h = tf.reshape(x, [-1, self.resolution * self.resolution * 3])
    for i in range(self.depth):
      h = tf.nn.relu(getattr(self, f"hidden{i}")(h))
    return tf.squeeze(self.score(h), axis=-1)

  def build_for_inference(self):
    self(tf.zeros([1, self.resolution, self.resolution, 3]))
'''


def _edit(path, old, new):
  text = path.read_text()
  assert text.count(old) == 1, (path, old)
  path.write_text(text.replace(old, new))


def _add_loss(pkg):
  _edit(pkg / "objectives" / "losses.py", "\n\n@dataclasses.dataclass(frozen=True)\nclass Loss:",
        LOSS_FUNCTIONS + "\n\n@dataclasses.dataclass(frozen=True)\nclass Loss:")
  entry = ('    "rpgan": Loss("rpgan", rpgan_discriminator_loss, rpgan_generator_loss,\n'
           '                  generator_needs_real=True),\n')
  _edit(pkg / "objectives" / "losses.py", entry, entry + '    "least_squares": Loss('
        '"least_squares", least_squares_discriminator_loss,\n'
        '                          least_squares_generator_loss),\n')


def _add_penalty(pkg):
  (pkg / "objectives" / "gradient_power.py").write_text(MODULE)
  registry = pkg / "objectives" / "penalties.py"
  _edit(registry, "from qagan_tf.objectives import ssim\n",
        "from qagan_tf.objectives import gradient_power, ssim\n")
  _edit(registry, '    "niqe": niqe.ENTRY,\n',
        '    "niqe": niqe.ENTRY,\n    "gradient_power": gradient_power.ENTRY,\n')


def _add_regulariser(pkg):
  (pkg / "objectives" / "terms" / "fake_l1.py").write_text(TERM_MODULE)
  registry = pkg / "objectives" / "regularizers.py"
  _edit(registry, "import ada, drift, gp, lecam, quality, r1, r2\n",
        "import ada, drift, fake_l1, gp, lecam, quality, r1, r2\n")
  _edit(registry, '    "lecam": lecam.TERM,\n', '    "lecam": lecam.TERM,\n    "fake_l1": fake_l1.TERM,\n')


def _add_metric(pkg):
  (pkg / "metrics" / "activation_mean.py").write_text(METRIC_MODULE)
  registry = pkg / "metrics" / "table.py"
  _edit(registry, "from qagan_tf.metrics import density_coverage as dc_lib\n",
        "from qagan_tf.metrics import activation_mean as am_lib\n"
        "from qagan_tf.metrics import density_coverage as dc_lib\n")
  _edit(registry, "           _stat(_niqe, np.std), column=False, needs=(\"samples\",)),\n)",
        "           _stat(_niqe, np.std), column=False, needs=(\"samples\",)),\n"
        '    Metric("activation_mean", "mean pool_3", 1.0, "eval/activation_mean", True,\n'
        '           lambda x: am_lib.activation_mean(x.generated["mu"])),\n)')


def _add_architecture(pkg):
  (pkg / "models" / "mlp.py").write_text(ARCHITECTURE_MODULE)
  registry = pkg / "models" / "registry.py"
  _edit(registry, "from qagan_tf.models import resnet\n",
        "from qagan_tf.models import mlp\nfrom qagan_tf.models import resnet\n")
  _edit(registry, "\n}\n\n\n# The settings groups", '\n    "mlp": ArchitectureEntry(\n'
        '        lambda r, w, z, name, settings: mlp.Generator(r, w, z, name, settings),\n'
        '        lambda r, w, sn, name, settings: mlp.Discriminator(r, w, sn, name, settings),\n'
        '        mlp.RESOLUTIONS, "a fully connected G and D (a test)", settings=mlp.MLPSettings),\n'
        "}\n\n\n# The settings groups")


def _add_dataset(pkg):
  _edit(pkg / "data" / "sources.py",
        '    "cifar10": Dataset("train", (32,), "as stored (32x32)"),\n',
        '    "cifar10": Dataset("train", (32,), "as stored (32x32)"),\n'
        '    "svhn_cropped": Dataset("train", (32,), "as stored (32x32)"),\n')


# docs/extending.md's bullet -> how this test applies it, in the order applied.
RECIPES = {"a loss": _add_loss, "a penalty": _add_penalty, "a regulariser": _add_regulariser,
           "a metric": _add_metric, "an architecture": _add_architecture,
           "a dataset": _add_dataset}

# Every door, in one process of the copy (argv: the copy, this checkout, the work folder); the
# scripts run in it as tests.scripts runs them (their own flags, exit status and output).
DRIVER = '''
import json, os, sys
copy, repo, work = sys.argv[1:4]
sys.path.insert(0, copy)
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
import qagan_tf
assert qagan_tf.__file__.startswith(copy), qagan_tf.__file__
sys.path.append(repo)
from tests import scripts
out = {}

def run(name, *args):
  proc = scripts.run(os.path.join(copy, "bin", name), *args, cwd=copy)
  out.setdefault("scripts", []).append({
      "argv": [name, *args], "returncode": proc.returncode, "stdout": proc.stdout[-3000:],
      "stderr": proc.stderr[-3000:]})

stats, run_dir = os.path.join(work, "stats.npz"), os.path.join(work, "run")
train = ["--flagfile=configs/smoke.cfg", "--dataset=svhn_cropped", "--architecture=mlp",
         "--mlp_depth=2", "--loss=least_squares", "--penalty=gradient_power",
         "--gradient_power_power=1.5", "--fake_l1_weight=0.5", "--max_steps=2", "--width=8",
         "--batch_size=4", "--disc_iters=1", "--log_every=1", "--eval_every=2",
         f"--eval_stats={stats}", "--eval_num_samples=16", f"--model_dir={run_dir}"]
with tfds.testing.mock_data(num_examples=48):
  run("compute_stats", "--dataset=svhn_cropped", "--keep_activations=0", f"--output={stats}")
  run("train", *train)
  run("train", *train, "--mlp_depth=3", "--max_steps=4")  # Refused: another model.
  from qagan_tf.data import sources
  images = sources.load_images("svhn_cropped", 32)
run("evaluate", f"--model_dir={run_dir}", f"--stats={stats}", "--num_samples=16", "--repeats=1",
    "--generators=ema", "--niqe_samples=0", "--sample_batch_size=16")
run("report", run_dir, f"--output={os.path.join(work, 'report')}")

import keras
from qagan_tf import models, qa
from qagan_tf.gan import EvaluationCallback, QAGAN
keras.utils.set_random_seed(0)
settings = models.get_architecture("mlp").settings(depth=2)
g = models.build_generator("mlp", 32, 8, 16, settings=settings)
d = models.build_discriminator("mlp", 32, 8, settings=settings)
gan = QAGAN(g, d, 16, loss="least_squares", penalty="gradient_power",
            penalty_settings={"power": 1.5}, fake_l1_weight=0.5, disc_iters=1)
gan.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3))
callback = EvaluationCallback(stats, metrics=("fid", "activation_mean"), num_samples=16)
data = tf.data.Dataset.from_tensor_slices(images.astype("float32") / 127.5 - 1.0)
history = gan.fit(data.batch(8, drop_remainder=True), epochs=1, steps_per_epoch=2, verbose=0,
                  callbacks=[callback]).history
out["fit"] = {"history": {k: [float(v) for v in vs] for k, vs in history.items()},
              # Its settings as get_config records them (G and D aside: the test's models,
              # like the shipped architectures, define no get_config).
              "config": {k: v for k, v in gan._settings_config().items()
                         if k in ("loss", "penalty", "fake_l1_weight", "penalty_settings")},
              "variables": [v.path for v in g.variables]}
fn = qa.penalty("gradient_power", power=1.5)
real = tf.random.stateless_uniform([4, 32, 32, 3], [1, 2], -1, 1)
grads = tf.random.stateless_normal([4, 32, 32, 3], [3, 4])
out["qa"] = [float(v) for v in fn(real, real, tf.zeros([4]), tf.zeros([4]), grad_x_hat=grads)]
out["qa_expected"] = [float(v) for v in tf.reduce_mean((tf.abs(grads) + 1e-12) ** 1.5,
                                                        axis=[1, 2, 3])]
with open(os.path.join(work, "doors.json"), "w") as f:
  json.dump(out, f)
'''


def _hashes(root):
  return {os.path.relpath(p, root): hashlib.sha256(open(p, "rb").read()).hexdigest()
          for p in glob.glob(os.path.join(root, "**", "*.py"), recursive=True)
          if "__pycache__" not in p}


@pytest.fixture(scope="session")
def extended(tmp_path_factory):
  """The copy with the six recipes applied, each recipe's changed files (relative to the
  package's parent) and what every door gave (doors.json, the run, the report)."""
  work = tmp_path_factory.mktemp("extended")
  copy = work / "checkout"
  for part in ("qagan_tf", "bin", "configs"):
    shutil.copytree(os.path.join(REPO, part), copy / part,
                    ignore=shutil.ignore_patterns("__pycache__"))
  changed = {}
  for kind, apply in RECIPES.items():
    before = _hashes(copy / "qagan_tf")
    apply(copy / "qagan_tf")
    after = _hashes(copy / "qagan_tf")
    changed[kind] = {"qagan_tf/" + p for p in set(before) | set(after)
                     if before.get(p) != after.get(p)}
  env = dict(os.environ, PYTHONPATH=str(copy), QAGAN_INCEPTION_WEIGHTS=reference.reference_path(
      "inception/fid_inception_2015_12_05_pool3.npz"))
  proc = subprocess.run([sys.executable, "-c", DRIVER, str(copy), REPO, str(work)], cwd=work,
                        env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-5000:]
  with open(work / "doors.json") as f:
    doors = json.load(f)
  return dict(work=work, run=str(work / "run"), changed=changed, doors=doors)


def _recipe(kind):
  with open(os.path.join(REPO, "docs", "extending.md")) as f:
    text = f.read()
  return re.search(rf"- \*\*{kind}\*\*:(.*?)\n(- \*\*|$)", text, flags=re.S).group(1)


def _named_files(kind, name):
  """The package files the recipe names, its placeholder <name> filled."""
  return {n.replace("<name>", name)
          for n in re.findall(r"`(qagan_tf/[\w/<>]+\.py)`", _recipe(kind))}


def _script(extended, name, index=0):
  """The index-th run of bin/`name` in the copy: its argv, returncode, stdout and stderr."""
  return [r for r in extended["doors"]["scripts"] if r["argv"][0] == name][index]


def _trained(extended):
  proc = _script(extended, "train")
  assert proc["returncode"] == 0, proc["stderr"]
  with open(os.path.join(extended["run"], "config.json")) as f:
    return json.load(f)


def test_the_penalty_recipe_names_the_builder():
  recipe = _recipe("a penalty")
  for word in ("build_penalty(settings, resolution, *, xla)", "PenaltyEntry(build=",
               "PENALTIES", "check_values", "validate(config)"):
    assert word in recipe, word


@pytest.mark.slow
def test_a_loss_added_by_the_recipe_reaches_bin_train_and_fit(extended):
  """The loss recipe (two functions and one `LOSSES` entry in the file it names, nothing else):
  `--loss=least_squares` trains with bin/train (config.json, train/d_loss) and
  `QAGAN(loss="least_squares")` under fit."""
  assert extended["changed"]["a loss"] == _named_files("a loss", "least_squares")
  assert _trained(extended)["loss"] == "least_squares"
  values = scalar_values(extended["run"], "train/")["train/d_loss"]
  assert [s for s, _ in values] == [1, 2] and all(np.isfinite(v) for _, v in values)
  fit = extended["doors"]["fit"]
  assert fit["config"]["loss"] == "least_squares" and np.isfinite(fit["history"]["d_loss"][0])


@pytest.mark.slow
def test_a_penalty_added_by_the_recipe_reaches_bin_train_fit_and_qa(extended):
  """The penalty recipe (one module and one `PENALTIES` line with its import): its flag and
  setting (`--penalty=gradient_power --gradient_power_power=1.5`, config.json) and its metric
  under bin/train, `QAGAN(penalty=..., penalty_settings=...)` under fit, and
  `qa.penalty("gradient_power", power=1.5)` computing the module's function."""
  assert extended["changed"]["a penalty"] == _named_files("a penalty", "gradient_power")
  config = _trained(extended)
  assert config["penalty"] == "gradient_power" and config["gradient_power_power"] == 1.5
  values = scalar_values(extended["run"], "train/")["train/gradient_power_penalty"]
  assert [s for s, _ in values] == [1, 2] and all(v > 0 for _, v in values)
  fit = extended["doors"]["fit"]
  assert fit["config"]["penalty"] == "gradient_power"
  assert fit["config"]["penalty_settings"]["power"] == 1.5
  assert fit["history"]["gradient_power_penalty"][0] > 0
  np.testing.assert_allclose(extended["doors"]["qa"], extended["doors"]["qa_expected"],
                             rtol=1e-6)


@pytest.mark.slow
def test_a_regulariser_added_by_the_recipe_reaches_bin_train_and_fit(extended):
  """The regulariser recipe (one module under terms/ and one `TERMS` line with its import): a
  term with its flag and config.json key, its metric under bin/train, and a QAGAN keyword that
  trains under fit."""
  named = _named_files("a regulariser", "fake_l1")
  assert named == {"qagan_tf/objectives/terms/fake_l1.py", "qagan_tf/objectives/regularizers.py"}
  assert extended["changed"]["a regulariser"] == named
  assert _trained(extended)["fake_l1_weight"] == 0.5
  values = scalar_values(extended["run"], "train/")["train/fake_l1"]
  assert [s for s, _ in values] == [1, 2] and all(v > 0 for _, v in values)
  fit = extended["doors"]["fit"]
  assert fit["config"]["fake_l1_weight"] == 0.5 and fit["history"]["fake_l1"][0] > 0


@pytest.mark.slow
def test_a_metric_added_by_the_recipe_reaches_every_evaluation_door(extended):
  """The metric recipe (a pure function in its own module and one `Metric` entry in
  metrics/table.py): the bin/evaluate JSON, the in-training eval/ scalar, bin/report's table
  and the Keras EvaluationCallback's logs all carry it."""
  assert extended["changed"]["a metric"] == _named_files("a metric", "activation_mean")
  proc = _script(extended, "evaluate")
  assert proc["returncode"] == 0, proc["stderr"]
  (path,) = glob.glob(os.path.join(extended["run"], "eval", "eval_step_*.json"))
  with open(path) as f:
    text = f.read()
  assert '"activation_mean"' in text
  values = scalar_values(extended["run"], "eval/")["eval/activation_mean"]
  assert [s for s, _ in values] == [2] and np.isfinite(values[0][1])
  proc = _script(extended, "report")
  assert proc["returncode"] == 0, proc["stderr"]
  with open(extended["work"] / "report" / "table.md") as f:
    assert "mean pool_3" in f.read()
  assert np.isfinite(extended["doors"]["fit"]["history"]["activation_mean"][0])


@pytest.mark.slow
def test_an_architecture_added_by_the_recipe_trains_with_its_own_setting(extended):
  """The architecture recipe (a module of G and D and one `ARCHITECTURES` entry with its
  settings): `--architecture=mlp --mlp_depth=2` trains with bin/train (both recorded in
  config.json), bin/evaluate samples its checkpoint, a resume with another depth is refused
  (the setting builds the model), and QAGAN.fit trains models built from the registry."""
  assert extended["changed"]["an architecture"] == _named_files("an architecture", "mlp")
  config = _trained(extended)
  assert config["architecture"] == "mlp" and config["mlp_depth"] == 2
  assert _script(extended, "evaluate")["returncode"] == 0
  refused = _script(extended, "train", 1)
  assert refused["returncode"] == 1 and "mlp_depth: 2 -> 3" in refused["stderr"]
  fit = extended["doors"]["fit"]
  assert "generator/hidden1/kernel" in fit["variables"]
  assert np.isfinite(fit["history"]["d_loss"][0])


@pytest.mark.slow
def test_a_dataset_added_by_the_recipe_reaches_bin_train_and_compute_stats(extended):
  """The dataset recipe (one `DATASETS` entry): `--dataset=svhn_cropped` (TFDS, here its mock
  data) trains with bin/train (config.json) and bin/compute_stats makes its statistics."""
  assert extended["changed"]["a dataset"] == _named_files("a dataset", "svhn_cropped")
  proc = _script(extended, "compute_stats")
  assert proc["returncode"] == 0, proc["stderr"]
  with np.load(extended["work"] / "stats.npz") as stats:
    assert stats["mu"].shape == (2048,)
  assert _trained(extended)["dataset"] == "svhn_cropped"
