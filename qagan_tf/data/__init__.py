"""Training data: image sources and the stateless tf.data input pipeline."""

from qagan_tf.data.pipeline import InputSpec, iteration_inputs, iteration_latents, make_dataset
from qagan_tf.data.sources import (DataError, check_dataset_name, dataset_names, embedded_images,
                                   load_images, warn_if_batch_exceeds)
