"""One training iteration and its updates, below both front doors: bin/train's Trainer
(qagan_tf/train) and Keras' QAGAN (qagan_tf/gan) import this package, and it imports neither.

- `numerics`: float16 loss scaling and the drop of a non-finite update;
- `critic`: the critic loss with its terms (a loop over the objective's built terms) and the D
  update;
- `generator`: the G update;
- `iteration`: the bundle of what the updates run on (`Parts`), one iteration, the EMA;
- `collector`: the one place where the metrics of an iteration are counted;
- `device`: the device rule for XLA (`--jit_compile=auto`).
"""
