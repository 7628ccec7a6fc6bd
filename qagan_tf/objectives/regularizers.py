"""The critic's regularisers beside the adversarial loss and the quality-aware penalty: what each
is, its flag, formula, reference and where it is computed. bin/train's flags and docs/
training.md's table follow this registry (a test checks the table lists every entry).

The formulas live where they are computed: the 1-GP and ||grad||^2 in `losses`, LeCam in
`lecam`, the terms' weights, intervals and points in `objective.Objective`.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Regularizer:
  """One regulariser: its metric (train/NAME), weight flag, lazy-interval flag (None: every D
  update), formula, reference and the points where D is differentiated (None: no gradient)."""
  metric: str
  flag: str
  every_flag: str
  formula: str
  reference: str
  points: str


REGULARIZERS = {
    "gp": Regularizer("gp", "--gp_weight", "--gp_every", "(||grad D(x_hat)|| - 1)^2",
                      "Gulrajani et al. 2017 (WGAN-GP)", "interpolates"),
    "r1": Regularizer("r1", "--r1_weight", "--r1_every", "gamma/2 ||grad_x D(x)||^2",
                      "Mescheder et al. 2018", "real images"),
    "r2": Regularizer("r2", "--r2_weight", "--r1_every", "gamma/2 ||grad D(G(z))||^2",
                      "Mescheder et al. 2018; R3GAN (Huang et al. 2024)", "generated images"),
    "lecam": Regularizer("lecam", "--lecam_weight", None,
                         "||D(x) - a_F||^2 + ||D(G(z)) - a_R||^2", "Tseng et al. 2021", None),
    "drift": Regularizer("drift", "--drift_weight", None, "D(x)^2",
                         "Karras et al. 2018 (Progressive GAN)", None),
}
