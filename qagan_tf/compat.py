"""Every compatibility shim for run directories written by older versions, in one place.

A run resumes with what it trained with, not with today's defaults. What changed, and how an old
run directory is read:
- config.json of a NIQE run before the gradient smoothing and the groups (no niqe_smoothing):
  no smoothing; before priors carried metadata (no niqe_transform): `LEGACY_NIQE`
  (`upgrade_config`, called by `config.TrainConfig.from_dict`);
- config.json with "auto" for a setting that is now resolved when a run starts
  (--jit_compile: true/false are read as ever; --niqe_xla: resolved on resume and recorded);
- checkpoints written before the float16 loss scales or LeCam's anchors existed
  (`OPTIONAL_CHECKPOINT_PARTS`: restored where present, the Trainer's defaults otherwise);
- config.json written before R1/R2, LeCam, DiffAugment and --qa_points: their defaults (none),
  which is what those runs trained with.
tests/train/test_trainer.py and tests/objectives/test_quality_penalties.py resume such runs.
"""

# Parts of a bin/train checkpoint that older checkpoints lack: the float16 loss scales, LeCam's
# anchors and ADA's p (a run of that time had neither; they start at 0).
OPTIONAL_CHECKPOINT_PARTS = ("loss_scales", "lecam", "ada")

# Stateful terms added since QAGAN files were saved with a training state, newest last, at the
# end of the registry: a file without their weights loads with theirs at 0 (gan/state.py).
TERMS_ADDED_TO_SAVED_STATE = ("ada",)

# What the NIQE penalty did before priors carried metadata (qagan_tf <= 0.1): signed luma
# gradients scaled to a peak of 255 (raw for raw-gradient priors), blocks of resolution / 2, the
# hard AGGD split, a 1e-3 ridge, per-image MVGs, the "natural" prior by default.
LEGACY_NIQE = {"niqe_transform": "signed", "niqe_split": "hard", "niqe_pooling": "image",
               "niqe_scales": 2, "niqe_covariance_regularization": 1e-3,
               "niqe_allow_prior_mismatch": True}
_LEGACY_OVERRIDE = ("niqe_transform", "niqe_split", "niqe_allow_prior_mismatch",
                    "niqe_normalization", "niqe_normalization_scale", "niqe_block_size")


def upgrade_config(values):
  """Flat config.json values written by an older version -> the settings the run trained with.

  Only the run's own penalty is read this way (other penalties' settings do not shape it).
  """
  if values.get("penalty") == "niqe":
    return _upgrade_niqe(values)
  return dict(values)


def _upgrade_niqe(values):
  """A NIQE run's values:
  - before the gradient smoothing and the groups (no niqe_smoothing): no smoothing;
  - before priors carried metadata (no niqe_transform): `LEGACY_NIQE`.
  """
  values = dict(values)
  if "niqe_smoothing" not in values:
    values["niqe_smoothing"] = "none"
  if "niqe_transform" not in values:
    legacy = dict(LEGACY_NIQE)
    legacy["niqe_normalization"] = ("none" if values.get("niqe_normalization") == "none" or (
        values.get("niqe_normalization", "auto") == "auto"
        and values.get("niqe_prior") == "face_grad") else "max")
    legacy["niqe_normalization_scale"] = 255.0 if legacy["niqe_normalization"] == "max" else 0.0
    legacy["niqe_block_size"] = (values.get("niqe_block_size")
                                 or values.get("resolution", 32) // 2)
    legacy.setdefault("niqe_prior", "natural")
    values = {**{k: v for k, v in legacy.items() if k not in values or k in _LEGACY_OVERRIDE},
              **{k: v for k, v in values.items() if k not in _LEGACY_OVERRIDE}}
  return values
