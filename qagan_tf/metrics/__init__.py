"""Evaluation: the official 2015-12-05 Inception, FID (float64, TTUR), IS, KID, statistics files.

Modules: `inception` (the network), `inception_weights` (finding/verifying/fetching weights),
`features` (batched extraction), `fid`, `inception_score`, `kid` (pure functions of activations
or logits), `stats_io` (statistics files). The protocol that runs them is `qagan_tf.evaluation`.
"""
