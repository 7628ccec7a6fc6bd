"""The registry of the critic's terms beside the adversarial loss: name -> `term_api.Term`.

Its order is the order in which the terms enter the critic loss, and the order of their
metrics. To add a regulariser: one module under objectives/terms/ (its settings dataclass and
`TERM`) and one line here (docs/extending.md). Its settings become flags, config.json keys and
`QAGAN` keywords <name>_<field>; `objective.Objective` builds it, and the update code
(qagan_tf/update) runs it. docs/training.md's "Regularisers" lists every entry with a formula
(a test checks it).
"""

from qagan_tf.objectives.terms import ada, drift, gp, lecam, quality, r1, r2

TERMS = {
    "drift": drift.TERM,
    "gp": gp.TERM,
    "r1": r1.TERM,
    "r2": r2.TERM,
    "qa": quality.TERM,  # The --penalty (SSIM, NIQE) at its weight, interval and points.
    "lecam": lecam.TERM,
    "ada": ada.TERM,  # No loss: ADA's adaptive p (--augment=ada), as state.
}

# The terms a user adds beside a penalty (the quality penalty's own formula is its penalty's).
REGULARIZERS = {name: term for name, term in TERMS.items() if term.formula}

# Settings groups: TrainConfig.<name> and the flags and config.json keys <name>_<field>.
CONFIG_GROUPS = {name: term.settings for name, term in TERMS.items()}
