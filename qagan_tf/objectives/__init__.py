"""What the critic and the generator minimise: adversarial losses, the 1-GP and drift (losses),
the quality-aware penalties (ssim, niqe) and their registry (penalties). Internal: the public
functions are re-exported by qagan_tf.qa."""
