"""Image quality: SSIM components and the dQ distance, NIQE (metric and differentiable)."""

from qagan_tf.iqa.aggd import fit_aggd  # noqa: F401
from qagan_tf.iqa.model import ModelError, NiqeModel, load_model, natural_model  # noqa: F401
from qagan_tf.iqa.naturalness import mscn, niqe_features, niqe_score  # noqa: F401
from qagan_tf.iqa.niqe_metric import niqe, niqe_of_images  # noqa: F401
from qagan_tf.iqa.similarity import rgb_to_gray, ssim, ssim_components, ssim_distance  # noqa: F401
