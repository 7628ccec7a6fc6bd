"""The frozen training configuration shared by the library, the scripts and model_dir/config.json.

Every setting is a field with its help text, choices and value rule (`utils.fields.setting`):
bin/train's flags, the config.json keys and the validation are derived from them. Each term of
the critic's objective (objectives/regularizers.py: config.gp, config.r1, config.qa, ...; flat
keys gp_weight, r1_every, qa_points, ...) and each penalty (config.ssim, config.niqe; flat keys
ssim_window, niqe_prior, ...) brings its settings as a group named after it, so a new term or
penalty brings its settings without touching this file.
"""

import dataclasses
import json
import os

from qagan_tf import augment as augment_lib
from qagan_tf import compat
from qagan_tf import models
from qagan_tf.data import sources
from qagan_tf.objectives import losses
from qagan_tf.objectives import penalties
from qagan_tf.objectives import regularizers
from qagan_tf.utils import fields
from qagan_tf.utils.fields import COUNT, FRACTION, NON_NEGATIVE, POSITIVE, check_choices, setting

CONFIG_FILENAME = "config.json"
D_NORMS = ("none", "spectral")
LR_DECAYS = ("linear", "constant")
PRECISIONS = ("none", "bfloat16", "float16")
NONFINITE_POLICIES = ("stop", "skip")


def _groups():
  """Every settings group: the critic's terms, the penalties, then the architectures with
  settings (flat keys <group>_<field>). A name in two registries would give two groups one key."""
  out = {}
  for registry in (regularizers.CONFIG_GROUPS, penalties.CONFIG_GROUPS,
                   models.registry.CONFIG_GROUPS):
    clash = sorted(set(out) & set(registry))
    if clash:
      raise ValueError(f"settings group name(s) {', '.join(clash)} used twice (a term, a "
                       "penalty or an architecture): rename one.")
    out.update(registry)
  return out


GROUPS = _groups()


def check_setting(name, value, spell=lambda name: name):
  """Raises ValueError when `value` breaks the rule of the setting `name` (a flat flag name:
  "gp_weight=-1.0 must be >= 0."; the name as `spell` writes it): the same rule and words for
  bin/train's config and Keras' QAGAN."""
  rule = fields.rule_of(setting_fields()[name])
  if rule is not None:
    fields.check_rule(spell(name), value, rule)


def _default_groups():
  return {name: settings() for name, settings in GROUPS.items()}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Every hyperparameter of a run. Defaults follow the paper (QAGAN on CIFAR-10). Each penalty's
  settings group is an attribute (config.niqe.prior) and flat keys (niqe_prior)."""
  # Data.
  dataset: str = setting("cifar10", f"Training images: {', '.join(sources.dataset_names())}. "
                         "TFDS datasets are read from --data_dir; 'embedded' needs no download.")
  data_dir: str = setting("", "TFDS data directory (default ~/tensorflow_datasets).")
  num_examples: int = setting(0, "Use only the first N training images (0: all; embedded: "
                              "number of crops, default 4096).", rule=COUNT)
  download: bool = setting(True, "Let TFDS download and prepare a missing dataset "
                           "(--nodownload: fail at once).")
  resolution: int = setting(32, "Image size in pixels (cifar10: 32, stl10: 48 or 96, celeb_a: "
                            "64; the architecture lists what it supports).")
  # Networks.
  architecture: str = setting("resnet", "Generator and discriminator: " + "; ".join(
      f"{name}: {entry.description}" for name, entry in models.ARCHITECTURES.items()) + ".",
                              choices=tuple(models.ARCHITECTURES))
  width: int = setting(128, "Channels of G and D (resnet: every residual block, paper 128; "
                       "sndcgan: D's first layer, Miyato 64).", rule=POSITIVE)
  g_width: int = setting(0, "G's width when it differs from D's (0: --width; SNGAN's ResNet: "
                         "G 256, D 128).", rule=COUNT)
  d_width: int = setting(0, "D's width when it differs from G's (0: --width).", rule=COUNT)
  z_dim: int = setting(128, "Latent dimension (paper: 128).", rule=POSITIVE)
  # Optimisation.
  batch_size: int = setting(64, "Global real batch per D update (paper: 64).", rule=POSITIVE)
  g_batch_multiplier: int = setting(2, "The G update uses this many times --batch_size samples "
                                    "(authors: 2).", rule=POSITIVE)
  max_steps: int = setting(100_000, "Generator iterations (paper: 100000).", rule=POSITIVE)
  disc_iters: int = setting(5, "D updates per G update (paper: 5).", rule=POSITIVE)
  lr: float = setting(2e-4, "Adam learning rate (paper: 2e-4; CelebA 1e-4).", rule=NON_NEGATIVE)
  beta1: float = setting(0.0, "Adam beta1 (paper: 0).", rule=FRACTION)
  beta2: float = setting(0.9, "Adam beta2 (paper: 0.9).", rule=FRACTION)
  lr_decay: str = setting("linear", "linear: lr * max(0, 1 - step / max_steps) as the authors; "
                          "constant: no decay.", choices=LR_DECAYS)
  # Losses, penalties and D's normalisation.
  loss: str = setting("wasserstein", "Adversarial loss: wasserstein (WGAN-GP, the paper), hinge "
                      "(SNGAN), nonsaturating (the original GAN's, D outputs logits) or rpgan "
                      "(the relativistic pairing loss of R3GAN; its G update scores real images "
                      "too).",
                      choices=tuple(losses.LOSSES))
  d_norm: str = setting("none", "Normalisation of D's layers: none (the paper) or spectral "
                        "(SNGAN: every kernel divided by its largest singular value, one power "
                        "iteration per D update).", choices=D_NORMS)
  penalty: str = setting("wgan_gp", "Quality-aware penalty added to the critic loss (wgan_gp "
                         "and none: no quality penalty, the baselines).",
                         choices=lambda: tuple(penalties.PENALTIES))  # The live registry.
  augment: str = setting("none", "Augmentation of every input of D, real and fake, in the D and "
                         "G updates: none; ada (adaptive, Karras et al. 2020: the bgc pipeline "
                         "with an adaptive p, --ada_*); or DiffAugment (Zhao et al. 2020), a "
                         f"comma-separated list of {', '.join(augment_lib.POLICIES)} (e.g. "
                         "color,translation,cutout).")
  # The settings groups of the critic's terms and of the penalties (GROUPS), flags
  # <group>_<field>: gp_weight, gp_every, r1_weight, r1_every, r2_weight, qa_weight, qa_every,
  # qa_points, lecam_weight, lecam_decay, drift_weight, niqe_prior, ssim_window, ...
  groups: dict = dataclasses.field(default_factory=_default_groups, repr=False)
  # Generator EMA.
  ema_decay: float = setting(0.99, "Decay of the generator's EMA copy (authors: 0.99).",
                             rule=FRACTION)
  # Bookkeeping.
  seed: int = setting(0, "Seed of initialisation, data order, noise and latents.")
  deterministic: bool = setting(False, "Enable TF op determinism (bit-identical reruns on the "
                                "same hardware).")
  on_nonfinite: str = setting(
      "stop", "A step whose loss or gradient is NaN/Inf never updates the weights. stop: exit "
      "at once, the latest checkpoint stays the last good one; skip: drop that update, count it "
      "(train/nonfinite_steps) and go on (gives up after 50 such steps in a row).",
      choices=NONFINITE_POLICIES)
  # Speed (none of these changes the experiment).
  steps_per_call: int = setting(1, "Training steps per tf.function call (fewer Python round "
                                "trips; logging, checkpoints and signals are handled between "
                                "calls, never skipped).", rule=POSITIVE)
  jit_compile: bool = setting(False, "Compile each D and G loss+gradient computation with XLA "
                              "(optimizer updates stay outside; on several replicas G's update "
                              "stays uncompiled).")
  mixed_precision: str = setting("none", "G and D compute in 16 bits (weights, losses, "
                                 "penalties and IQA statistics stay float32); float16 uses "
                                 "dynamic loss scaling.", choices=PRECISIONS)
  allow_tf32: bool = setting(False, "Let Ampere and later GPUs run float32 matmuls/convolutions "
                             "in TensorFloat-32 (faster G and D; also perturbs the SSIM/NIQE "
                             "statistics). Off by default: float32 stays float32. In-training "
                             "FID always runs without TF32. No effect on CPUs.")
  save_every: int = setting(1000, "Checkpoint interval in steps.", rule=POSITIVE)
  keep_checkpoints: int = setting(3, "Checkpoints kept in --model_dir.", rule=POSITIVE)
  log_every: int = setting(100, "Console/TensorBoard scalar interval in steps.", rule=POSITIVE)
  sample_every: int = setting(1000, "Sample-grid interval in steps.", rule=POSITIVE)
  histogram_every: int = setting(1000, "D weight-histogram interval in steps.", rule=POSITIVE)
  num_sample_images: int = setting(64, "Images in each sample grid.", rule=POSITIVE)
  # In-training evaluation (FID of the EMA generator; 0 = off).
  eval_every: int = setting(0, "In-training evaluation of the EMA generator every N steps: "
                            "eval/fid, eval/is, eval/niqe, and eval/kid, eval/precision, "
                            "eval/recall, eval/density, eval/coverage when --eval_stats keeps "
                            "activations (0: off; needs --eval_stats).")
  eval_num_samples: int = setting(5000, "Samples per in-training evaluation (the final "
                                  "protocol: bin/evaluate).")
  eval_stats: str = setting("", "Reference statistics for the in-training FID "
                            "(bin/compute_stats).")
  inception_weights: str = setting("", "Inception weights for evaluation (default: "
                                   "$QAGAN_INCEPTION_WEIGHTS, then the cache filled by "
                                   "bin/fetch_inception).")

  def __getattr__(self, name):
    """A settings group (config.gp, config.niqe), or one of its settings by its flat name
    (config.gp_weight, config.niqe_prior)."""
    groups = self.__dict__.get("groups")
    if groups is not None:
      if name in groups:
        return groups[name]
      for group, settings in groups.items():
        field = name[len(group) + 1:]
        if name.startswith(group + "_") and field in settings.__dataclass_fields__:
          return getattr(settings, field)
    raise AttributeError(f"TrainConfig has no setting or settings group {name!r}.")

  @property
  def lazy(self):
    """Whether some active term of the objective is computed on every k-th D update only
    (`objective.is_lazy`, the one rule: a term at weight 0 makes nothing lazy)."""
    from qagan_tf.objectives import objective as objective_lib
    return objective_lib.is_lazy(objective_lib.settings_of(self), objective_lib.has_penalty(
        penalties.get_entry(self.penalty)))

  @property
  def generator_width(self):
    return self.g_width or self.width

  @property
  def discriminator_width(self):
    return self.d_width or self.width

  def validate(self):
    """Checks choices and value ranges.

    Raises:
      ValueError: naming the offending field and the fix.
    """
    check_choices(self)
    for name, field in _plain_fields().items():
      if fields.rule_of(field) is not None:
        fields.check_rule(name, getattr(self, name), fields.rule_of(field))
    try:
      augment_lib.parse_policy(self.augment)
    except ValueError as e:
      raise ValueError(f"--augment: {e}") from None
    try:
      sources.check_dataset_name(self.dataset)
    except sources.DataError as e:
      raise ValueError(str(e)) from None
    models.check_resolution(self.architecture, self.resolution)
    penalties.get_entry(self.penalty)  # An entry without a builder is refused here too.
    for group in GROUPS:
      check = getattr(getattr(self, group), "validate", None)  # Optional for an architecture's.
      if check is not None:
        check(self)
    if self.eval_every < 0:
      raise ValueError(f"eval_every={self.eval_every} must be >= 0 (0: no in-training FID).")
    if self.eval_every and not self.eval_stats:
      raise ValueError("eval_every > 0 needs eval_stats: reference statistics from "
                       "bin/compute_stats (e.g. --eval_stats=stats/cifar10_train.npz).")
    if self.eval_num_samples < 10:
      raise ValueError(f"eval_num_samples={self.eval_num_samples} must be >= 10 (IS uses 10 "
                       "splits).")
    return self

  def resolve_auto(self):
    """This config with every penalty setting that means "decide when the run starts" (auto)
    resolved for this run (each settings group's `resolve_auto`), so that config.json records
    the choice and a resumed run keeps it."""
    groups = {name: (settings.resolve_auto(self) if hasattr(settings, "resolve_auto")
                     else settings) for name, settings in self.groups.items()}
    return dataclasses.replace(self, groups=groups)

  def replace(self, **changes):
    """A copy with `changes`, given by flag name (e.g. niqe_pooling="image") or as groups."""
    values = self.to_dict()
    for key, value in changes.items():
      if key in GROUPS:
        values.update(_flatten_group(key, value))
      else:
        values[key] = value
    return TrainConfig.create(**values)

  def to_dict(self):
    """Flat {flag name: value}: what config.json, HParams and the flags hold."""
    values = {}
    for field in dataclasses.fields(self):
      if field.name == "groups":
        for group, settings in self.groups.items():
          values.update(_flatten_group(group, settings))
      else:
        values[field.name] = getattr(self, field.name)
    return values

  @classmethod
  def create(cls, **values):
    """Builds a config from flat flag-named values (ssim_window=..., niqe_prior=...).

    Raises:
      TypeError: for an unknown name.
    """
    unknown = sorted(set(values) - set(flat_defaults()))
    if unknown:
      raise TypeError(f"Unknown TrainConfig settings: {', '.join(unknown)}.")
    return cls._from_flat(values)

  @classmethod
  def _from_flat(cls, values):
    plain = {k: v for k, v in values.items() if k in _plain_fields()}
    groups = {}
    for group, settings_cls in GROUPS.items():
      prefix = group + "_"
      groups[group] = settings_cls(**{k[len(prefix):]: v for k, v in values.items()
                                      if k.startswith(prefix)
                                      and k[len(prefix):] in settings_cls.__dataclass_fields__})
    return cls(**plain, groups=groups)

  @classmethod
  def from_dict(cls, values):
    """Builds a config from a flat dict (config.json), ignoring unknown keys (from newer
    versions) and filling defaults. Values written by an older version are read as what the run
    then trained with (`compat.upgrade_config`), so that an old run resumes with its own
    penalty."""
    values = compat.upgrade_config(values)
    known = flat_defaults()
    return cls._from_flat({k: v for k, v in values.items() if k in known})


def _plain_fields():
  return {f.name: f for f in dataclasses.fields(TrainConfig) if f.name != "groups"}


def _flatten_group(group, settings):
  return {f"{group}_{k}": v for k, v in dataclasses.asdict(settings).items()}


def setting_fields():
  """{flag name: dataclasses.Field} of every setting (the groups' fields as GROUP_FIELD): the
  flags' names, types, defaults, help and choices."""
  out = dict(_plain_fields())
  for group, settings_cls in GROUPS.items():
    out.update({f"{group}_{f.name}": f for f in dataclasses.fields(settings_cls)})
  return out


def flat_defaults():
  """{flag name: default} of every setting."""
  return {name: field.default for name, field in setting_fields().items()}


# A resume that changes one of these would load weights into a different model or continue a
# different experiment; bin/train refuses it unless --allow_config_change.
INCOMPATIBLE_KEYS = ("dataset", "resolution", "architecture", "width", "g_width", "d_width",
                     "z_dim", "loss", "d_norm", "penalty", "seed", "g_batch_multiplier",
                     "disc_iters", "batch_size", "gp_every", "qa_every", "r1_every",
                     "augment")


def check_config_change(old, new, allow_change=False):
  """Compares a saved run config with the requested one.

  Returns:
    list of (key, old, new) for every differing key (flag names).

  Raises:
    ValueError: naming the differing incompatible keys (those of INCOMPATIBLE_KEYS and the
      fields that define the active penalty, its group's RUN_DEFINING), unless allow_change.
  """
  # What config.json records: the settings of a penalty the run does not use are neither
  # recorded nor compared (their defaults' "auto", resolved for the new config, is no change).
  old_d, new_d = recorded(old), recorded(new)
  changes = [(k, old_d.get(k), new_d[k]) for k in sorted(new_d) if old_d.get(k) != new_d[k]]
  defining = set(INCOMPATIBLE_KEYS)
  if new.architecture in models.registry.CONFIG_GROUPS:  # They build the model.
    defining.update(f"{new.architecture}_{k}" for k in dataclasses.asdict(
        getattr(new, new.architecture)))
  if new.penalty in penalties.CONFIG_GROUPS:
    group = penalties.CONFIG_GROUPS[new.penalty]
    defining.update(f"{new.penalty}_{k}" for k in getattr(group, "RUN_DEFINING", ()))
  bad = [c for c in changes if c[0] in defining]
  if bad and not allow_change:
    listed = ", ".join(f"{k}: {o!r} -> {n!r}" for k, o, n in bad)
    raise ValueError(f"The run in this model_dir was started with a different configuration "
                     f"({listed}). Use a new --model_dir, restore the original values, or pass "
                     "--allow_config_change if the change is deliberate.")
  return changes


def recorded(config):
  """What config.json records of `config`: every setting but those of penalties and
  architectures the run does not use (they shape nothing; a resumed run reads their
  defaults)."""
  unused = [g + "_" for g in penalties.CONFIG_GROUPS if g != config.penalty]
  unused += [g + "_" for g in models.registry.CONFIG_GROUPS if g != config.architecture]
  return {k: v for k, v in config.to_dict().items() if not k.startswith(tuple(unused))}


def save_config(config, model_dir):
  """Writes model_dir/config.json atomically (write to a temporary file, then rename)."""
  from qagan_tf.utils import files
  path = os.path.join(model_dir, CONFIG_FILENAME)
  files.atomic_write_text(path, json.dumps(recorded(config), indent=2, sort_keys=True) + "\n")
  return path


def saved_config(model_dir):
  """The config of the run in `model_dir` (`load_config`), or None when it holds no run."""
  from qagan_tf.utils import files
  if not files.exists(os.path.join(model_dir, CONFIG_FILENAME)):
    return None
  return load_config(model_dir)


def load_config(model_dir):
  """Reads model_dir/config.json.

  Raises:
    FileNotFoundError: with a message that names the directory when it holds no run.
    ValueError: when the file is not valid JSON.
  """
  from qagan_tf.utils import files
  path = os.path.join(model_dir, CONFIG_FILENAME)
  if not files.isfile(path):
    raise FileNotFoundError(f"{path} not found: --model_dir={model_dir} is not a qagan_tf run "
                            "directory (bin/train writes config.json there).")
  try:
    with files.open_file(path) as f:
      values = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path} is not valid JSON ({e}).") from None
  check_config_values(values, path)
  config = TrainConfig.from_dict(values)
  try:
    return config.validate()
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from None


# Keys without which a run's checkpoints cannot be rebuilt: a default would silently build
# another network (and TF would then print a warning per unmatched variable).
REQUIRED_KEYS = ("dataset", "resolution", "width", "z_dim", "penalty")


def check_config_values(values, path):
  """Raises ValueError naming the key when config.json lacks an architecture key or holds a
  value of the wrong type (e.g. "width": "eight")."""
  if not isinstance(values, dict):
    raise ValueError(f"{path}: expected a JSON object of settings, got {type(values).__name__}.")
  missing = [k for k in REQUIRED_KEYS if k not in values]
  if missing:
    raise ValueError(f"{path} has no {', '.join(repr(k) for k in missing)}: this run cannot be "
                     "rebuilt without it; restore the file or add the key with the value the run "
                     "was trained with.")
  for name, default in flat_defaults().items():
    if name not in values:
      continue
    value, kind = values[name], type(default)
    if kind is float:
      ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is int:
      ok = isinstance(value, int) and not isinstance(value, bool)
    else:
      ok = isinstance(value, kind)
    if not ok:
      raise ValueError(f"{path}: key {name!r} is {value!r} ({type(value).__name__}); it "
                       f"must be of type {kind.__name__} (default {default!r}). Fix the file "
                       "or restore it from a backup.")
