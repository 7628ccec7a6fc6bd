"""The training loop: trainer, one D/G update (step), builders, checkpoints, distribution, run
control and summaries. What it minimises lives in qagan_tf.objectives."""
