"""Quality benchmark: does a penalty change training, and does it move its own target?

Each variant is trained from the same paired seeds: every variant of seed s starts from the same
weights (initialisation is a function of the seed only) and sees the same data order, so the
iteration-0 figures are shared and per-seed differences come from the objective. At every
scored iteration a run records FID/KID of `num_samples` samples against held-out images, the
mean NIQE of the samples, D's weight variance, and what the penalties penalise, observed on a
fixed probe batch (`MechanismProbe`: never added to a loss). At the end it scores the raw
generator on `final_samples` samples (and the EMA copy on `num_samples`). The study's JSON pairs
every variant with its control (`CONTROLS`) on final FID, final KID and the gradient's NIQE, with
95% t-intervals (`paired_stats`). FID on few samples is biased upwards by about the same amount
at the same sample count: compare variants with each other, not with published FIDs.

The study is split by what changes together: `quality_study` (variants, controls, metrics),
`quality_scoring` (one run trained and scored), `quality_runner` (workers, run store, `run`) and
`quality_report` (statistics, Markdown, plot). This module is their front door.
"""

from qagan_bench.quality_report import (  # noqa: F401
    comparisons, exploratory, markdown, plot, summarise)
from qagan_bench.quality_runner import RunStore, run  # noqa: F401
from qagan_bench.quality_scoring import (  # noqa: F401
    MechanismProbe, Scorer, d_weight_variance, reference_of, train_and_score)
from qagan_bench.quality_study import (  # noqa: F401
    CONTROLS, DEFAULT_VARIANTS, DIFFAUGMENT, HELDOUT_SEED, MECHANISM_METRICS, METRICS,
    PRECISION_VARIANTS, R3, R3_GAMMA, REGULARIZER_VARIANTS, VARIANTS, check_variant_names,
    code_commit, cpu_model, split_images)
