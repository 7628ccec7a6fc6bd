"""Evaluation: the official 2015-12-05 Inception, FID (float64, TTUR), IS, KID, statistics files.

Modules: `inception` (the network), `inception_weights` (finding/verifying/fetching weights),
`features` (batched extraction), `fid`, `inception_score`, `kid`, `precision_recall`,
`density_coverage` (pure functions of activations or logits), `table` (the one table of metrics
every report reads), `stats_io` (statistics files). The protocol that runs them is
`qagan_tf.evaluation`.
"""
