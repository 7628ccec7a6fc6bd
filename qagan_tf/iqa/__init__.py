"""Image quality: SSIM components and the dQ distance, NIQE (metric and differentiable)."""

from qagan_tf.iqa.aggd import fit_aggd
from qagan_tf.iqa.model import ModelError, NiqeModel, load_model, natural_model
from qagan_tf.iqa.naturalness import mscn, niqe, niqe_features, niqe_score
from qagan_tf.iqa.similarity import rgb_to_gray, ssim, ssim_components, ssim_distance
