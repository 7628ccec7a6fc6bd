"""One training iteration (`iteration`: disc_iters D updates, then one G update), its updates and
the EMA update (replica-context functions). bin/train's Trainer and Keras' QAGAN both run
`iteration`: they differ only in where their inputs, variables and metrics live.

Losses are per-example vectors averaged over the GLOBAL batch (`tf.nn.compute_average_loss`), so
gradients summed across replicas (what Keras optimizers do under tf.distribute) equal the
single-device gradients of the same global batch.
"""

import dataclasses
from typing import Callable, NamedTuple, Optional

import tensorflow as tf

from qagan_tf import augment
from qagan_tf.objectives import lecam as lecam_lib
from qagan_tf.objectives import losses
from qagan_tf.objectives import penalty_api
from qagan_tf.train import collector as collector_lib


def _float32(x):
  """Images or scores in float32 (under a mixed-precision policy layers compute in 16 bits)."""
  return tf.cast(x, tf.float32)


def _average(per_example, global_batch_size):
  return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)


class LossScale:
  """Dynamic loss scaling for float16 (as Keras' LossScaleOptimizer): gradients are computed of
  loss * scale and divided by it; an overflow halves the scale and drops that update, 2000
  finite updates in a row double it. Create under the strategy's scope.

  scale, good_steps: optional variables to keep the state in (e.g. Keras weights, which Keras'
  own saving covers): float32 and int64 scalars; by default tf.Variables (bin/train's
  checkpoint holds them).
  """

  GROWTH_STEPS = 2000

  def __init__(self, initial=2.0**15, name="loss_scale", scale=None, good_steps=None):
    self.scale = scale if scale is not None else tf.Variable(
        initial, dtype=tf.float32, trainable=False, name=name)
    self.good_steps = good_steps if good_steps is not None else tf.Variable(
        0, dtype=tf.int64, trainable=False, name=name + "_good_steps")

  def value(self):
    """The current scale as a float32 tensor."""
    return tf.convert_to_tensor(self.scale, tf.float32)

  def grow(self):
    grown = self.good_steps + 1 >= self.GROWTH_STEPS
    self.scale.assign(tf.where(grown, self.scale * 2.0, self.scale))
    self.good_steps.assign(tf.where(grown, tf.constant(0, tf.int64), self.good_steps + 1))

  def shrink(self):
    self.scale.assign(tf.maximum(self.scale * 0.5, 1.0))
    self.good_steps.assign(0)


def apply_if_finite(optimizer, grads, variables, loss, loss_scale=None):
  """Applies `grads` unless the loss or any gradient is NaN/Inf on any replica.

  A dropped update leaves the variables, the optimizer's slots and its iteration count exactly
  as they were (a zero gradient would not: Adam's momentum would still move the weights).
  Every replica sees the same all-reduced decision, so they never diverge.

  Args:
    optimizer: Keras optimizer built on `variables`.
    grads: gradients, one per variable (this replica's share).
    variables: the variables to update.
    loss: this replica's loss (any shape), unscaled.
    loss_scale: optional `LossScale`; then `grads` are of loss * scale: they are divided by it,
      and non-finite gradients with a finite loss are an overflow: the scale halves, the update
      is dropped, and it counts as skipped only once the scale is down to 1.

  Returns:
    float32 scalar: this replica's share of the skip flag (summed over replicas: 1.0 when the
    update was dropped for a non-finite value, else 0.0).
  """
  ctx = tf.distribute.get_replica_context()
  if loss_scale is not None:
    grads = [None if g is None else g / loss_scale.value() for g in grads]

  def finite_here(tensors):
    return tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(t)) for t in tensors]))
  here = tf.stack([finite_here([loss]), finite_here([g for g in grads if g is not None])])
  # One all-reduce for both flags: how many replicas saw a non-finite loss / gradient.
  bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(here, tf.float32))
  loss_ok, grads_ok = tf.equal(bad[0], 0.0), tf.equal(bad[1], 0.0)

  def cross_replica(strategy, grads, loss_ok, grads_ok):
    # Keras' optimizer update may call merge_call, which a cond in replica context does not
    # allow; the cond therefore runs here, in cross-replica context (as Keras' LossScaleOptimizer
    # does). The flags are the same on every replica: take the first.
    loss_ok = strategy.experimental_local_results(loss_ok)[0]
    ok = tf.logical_and(loss_ok, strategy.experimental_local_results(grads_ok)[0])

    def update():
      strategy.extended.call_for_each_replica(
          lambda g: optimizer.apply_gradients(zip(g, variables)), args=(grads,))
      if loss_scale is not None:
        loss_scale.grow()
      return tf.constant(True)

    def drop():
      if loss_scale is not None:
        loss_scale.shrink()
      return tf.constant(False)

    return tf.cond(ok, update, drop)

  scale_before = None if loss_scale is None else tf.identity(loss_scale.value())
  ctx.merge_call(cross_replica, args=(list(grads), loss_ok, grads_ok))
  dropped = tf.logical_not(tf.logical_and(loss_ok, grads_ok))
  if loss_scale is not None:  # An overflow is routine while the scale is above 1.
    overflow = tf.logical_and(loss_ok, tf.logical_not(grads_ok))
    dropped = tf.logical_and(dropped, tf.logical_not(
        tf.logical_and(overflow, scale_before > 1.0)))
  return tf.cast(dropped, tf.float32) / ctx.num_replicas_in_sync


def _gp_terms(grad_x_hat, global_batch_size):
  """(per-example 1-GP, {gp, grad_norm})."""
  gp = losses.gradient_penalty(grad_x_hat)
  return gp, {"gp": _average(gp, global_batch_size),
              "grad_norm": _average(losses.safe_norm(grad_x_hat, [1, 2, 3]), global_batch_size)}


def _penalty_terms(penalty, inputs, global_batch_size):
  """(per-example QA penalty, {its tag and extras})."""
  qa, extras = penalty.fn(inputs)
  metrics = {penalty.summary_tag: _average(qa, global_batch_size)}
  for key, value in extras.items():
    metrics[key] = _average(tf.stop_gradient(value), global_batch_size)
  return qa, metrics


def _term_metrics(term, penalty):
  """The metric names of a gradient term (`Objective.gradient_terms`)."""
  return {"gp": ("gp", "grad_norm"), "r1": ("r1",), "r2": ("r2",)}.get(
      term, penalty.metric_names if penalty is not None else ())


def _regularizers(discriminator, real, fake, x_hat, d_real, d_fake, objective,
                  global_batch_size, d_update=None, anchors=None):
  """The weighted per-example regularisers of the critic loss and their metrics.

  D's input gradient is computed once per point set that a term reads (`Objective.
  gradient_terms`: the 1-GP at the interpolates, R1 at the real images, R2 at the fakes, a
  gradient penalty at --qa_points) and shared by the terms there; then a penalty without
  gradients (SSIM) and LeCam. With a lazy objective each term counts only on the D updates where
  it is due (`Objective.schedule`), its weight multiplied by its interval, and a point set none
  of whose terms is due is not differentiated (tf.cond: the double backward is skipped).

  Returns:
    (per_example, metrics, computed): metrics of a term not computed are 0, and `computed` holds
    each lazy metric's flag (1.0 or 0.0) for the collector, which averages it over the updates
    that computed it ({} without a lazy objective).
  """
  o = objective
  penalty = o.quality_penalty
  lazy = o.lazy
  if lazy and d_update is None:
    raise ValueError("a lazy objective (gp_every, qa_every or r1_every > 1) needs d_update, the "
                     "D update's number.")
  due = o.schedule(d_update) if lazy else {}
  zeros = tf.zeros_like(d_real)
  points = {"interpolates": x_hat, "real": real, "fake": fake}
  per_example, metrics, computed = zeros, {}, {}

  def weight(term):
    w = o.term_weight(term)
    return tf.where(due[term], w * o.term_every(term), 0.0) if term in due else w

  def penalty_inputs(grad):
    return penalty_api.PenaltyInputs(real=real, fake=fake, x_hat=x_hat, d_real=d_real,
                                     d_fake=d_fake, grad_x_hat=grad)

  def penalty_values(grad):
    """(weighted per-example penalty, [metric values]), nothing computed when not due."""
    names = penalty.metric_names

    def compute():
      qa, qa_metrics = _penalty_terms(penalty, penalty_inputs(grad), global_batch_size)
      return weight("qa") * qa, [qa_metrics[k] for k in names]
    if "qa" not in due:
      return compute()
    return tf.cond(due["qa"], compute, lambda: (zeros, [tf.constant(0.0)] * len(names)))

  for site, terms in o.gradient_terms().items():
    names = [n for t in terms for n in _term_metrics(t, penalty)]

    def at_site(site=site, terms=terms):
      grad = losses.input_gradients(discriminator, points[site])
      out, values = zeros, []
      for term in terms:
        if term == "gp":
          gp, gp_metrics = _gp_terms(grad, global_batch_size)
          out, values = out + weight("gp") * gp, values + [gp_metrics["gp"],
                                                           gp_metrics["grad_norm"]]
        elif term in ("r1", "r2"):
          norm2 = losses.squared_norm(grad)
          out = out + weight(term) * norm2
          values.append(_average(norm2, global_batch_size))
        else:
          qa, qa_values = penalty_values(grad)
          out, values = out + qa, values + qa_values
      return out, values

    site_due = [due[t] for t in terms if t in due]
    if lazy:  # Differentiated only when one of its terms is due.
      out, values = tf.cond(tf.reduce_any(tf.stack(site_due)), at_site,
                            lambda n=len(names): (zeros, [tf.constant(0.0)] * n))
    else:
      out, values = at_site()
    per_example += out
    for term in terms:
      for name in _term_metrics(term, penalty):
        value = values[names.index(name)]
        if lazy:
          # A term's metrics count on its own due updates (the 1-GP's diagnostics without a
          # 1-GP: on the updates that differentiated the interpolates).
          flag = due[term] if term in due else tf.reduce_any(tf.stack(site_due))
          computed[name] = tf.cast(flag, tf.float32)
          value = tf.where(flag, value, 0.0)
        metrics[name] = value
  if penalty is not None and not penalty.needs_input_gradient:
    qa, values = penalty_values(None)
    per_example += qa
    metrics.update(zip(penalty.metric_names, values))
    if lazy:
      computed.update({k: tf.cast(due["qa"], tf.float32) for k in penalty.metric_names})
  if o.lecam_weight > 0:
    if anchors is None:
      raise ValueError("a LeCam objective (lecam_weight > 0) needs its anchors (a_R, a_F).")
    lecam = lecam_lib.lecam_penalty(d_real, d_fake, anchors[0], anchors[1])
    per_example += o.lecam_weight * lecam
    metrics["lecam"] = _average(lecam, global_batch_size)
  return per_example, metrics, computed


def discriminator_gradients(generator, discriminator, real, z, eps, objective, *,
                            global_batch_size, loss_scale=None, d_update=None, critic_fn=None,
                            anchors=None, uniforms=None):
  """The critic loss with its penalties and its gradients for fakes G(z) (no update; see
  `critic_gradients`, which does the work: `critic_fn`, e.g. its XLA-compiled version, replaces
  it). G runs outside it, so that a compiled critic_fn holds no all-reduce of G's synchronised
  batch norm. With `objective.augment`, the real and fake images are augmented here
  (`augment.apply` with `uniforms` = (real's, fake's), each (B, augment.UNIFORMS)): the critic,
  and every penalty, sees only augmented images. Returns what `critic_gradients` returns."""
  fake = _float32(generator(z, training=True))
  if objective.augment:
    real = augment.apply(real, uniforms[0], objective.augment)
    fake = augment.apply(fake, uniforms[1], objective.augment)
  return (critic_fn or critic_gradients)(
      discriminator, real, fake, eps, objective, global_batch_size=global_batch_size,
      loss_scale=loss_scale, d_update=d_update, anchors=anchors)


def critic_gradients(discriminator, real, fake, eps, objective, *, global_batch_size,
                     loss_scale=None, d_update=None, anchors=None):
  """The critic loss with its penalties and its gradients (no update; XLA-compilable).

  Args:
    discriminator: Keras model.
    real, fake: float32 (B, H, W, 3) in [-1, 1]; eps: float32 (B,) in [0, 1].
    objective: `objectives.objective.Objective` (loss, penalties and their weights, each
      applied here once).
    global_batch_size: batch summed over replicas (B times the number of replicas).
    loss_scale: optional float32 scalar (float16 training): the returned `grads` are of
      loss * loss_scale, so that small float16 gradients do not underflow in the backward pass
      (the second-order one through the 1-GP included).
    d_update: int64 scalar, this D update's number over the run (0-based); needed when the
      objective is lazy (`Objective.lazy`), ignored otherwise.
    anchors: (a_R, a_F) float32 scalars, LeCam's anchors (`objective.lecam_weight` > 0).

  Returns:
    (loss, grads, metrics, computed): this replica's share of the loss, the gradients for
    discriminator.trainable_variables, a dict of scalar float32 tensors, each this replica's
    share of the global mean (sum them over replicas), named as `objective.metric_names` (all
    but g_loss), and, with a lazy objective, for each metric computed on some D updates only,
    its flag (1.0 when this update computed it, else 0.0 and the metric is 0); {} otherwise.
  """
  x_hat = losses.interpolates(real, fake, eps)
  variables = discriminator.trainable_variables
  with tf.GradientTape() as tape:
    scores = losses.critic_scores(discriminator, tf.concat([real, fake], axis=0))
    d_real, d_fake = tf.split(scores, 2)
    drift = losses.drift_penalty(d_real)
    regularizers, metrics, computed = _regularizers(
        discriminator, real, fake, x_hat, d_real, d_fake, objective, global_batch_size,
        d_update, anchors)
    per_example = (objective.loss.discriminator(d_real, d_fake)
                   + objective.drift_weight * drift + regularizers)
    loss = _average(per_example, global_batch_size)
    scaled = loss if loss_scale is None else loss * loss_scale  # Recorded: inside the tape.
  grads = tape.gradient(scaled, variables)
  for name, fn in objective.loss.metrics:
    metrics[name] = _average(fn(d_real, d_fake), global_batch_size)
  metrics.update(d_loss=loss, drift=_average(drift, global_batch_size),
                 d_real=_average(d_real, global_batch_size),
                 d_fake=_average(d_fake, global_batch_size))
  return loss, grads, metrics, computed


class UpdateReport(NamedTuple):
  """What one update reports to the collector: `values` ({name: this replica's share of the
  global mean}), `computed` (the lazy metrics' flags, see `critic_gradients`) and `skipped`
  (this replica's share of 1 when the update was dropped for a NaN/Inf, see
  `apply_if_finite`)."""
  values: dict
  computed: dict
  skipped: tf.Tensor


def discriminator_update(generator, discriminator, optimizer, real, z, eps, objective, *,
                         global_batch_size, gradients_fn=None, loss_scale=None, d_update=None,
                         lecam=None, uniforms=None):
  """One critic update: a power iteration of D's spectral norms (with --d_norm=spectral), then
  the loss with its penalties and one optimizer update, then LeCam's anchors follow D's global
  mean outputs.

  Arguments as `discriminator_gradients` (d_update and uniforms included), plus the Keras
  `optimizer` built on discriminator.trainable_variables, an optional `gradients_fn` to use
  instead of `critic_gradients` (e.g. its XLA-compiled version), an optional `LossScale` and
  `lecam`, the `lecam.Anchors` (needed when objective.lecam_weight > 0).

  Returns:
    an `UpdateReport`.
  """
  # The model protocol (models/registry.py); a user's model (qagan_tf.gan.QAGAN) may lack it.
  if getattr(discriminator, "spectral_norm", False):
    discriminator.update_spectral_norm()
  anchors = None
  if objective.lecam_weight > 0:
    if lecam is None:
      raise ValueError("a LeCam objective (lecam_weight > 0) needs its anchors (lecam=...).")
    anchors = lecam.values()
  loss, grads, metrics, computed = discriminator_gradients(
      generator, discriminator, real, z, eps, objective, global_batch_size=global_batch_size,
      loss_scale=None if loss_scale is None else loss_scale.value(),
      d_update=d_update if objective.lazy else None, critic_fn=gradients_fn, anchors=anchors,
      uniforms=uniforms)
  skipped = apply_if_finite(optimizer, grads, discriminator.trainable_variables, loss,
                            loss_scale)
  if anchors is not None:  # The global means of D's scores of this update (an all-reduce).
    ctx = tf.distribute.get_replica_context()
    means = ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                           tf.stack([metrics["d_real"], metrics["d_fake"]]))
    lecam.update(means[0], means[1], objective.lecam_decay)
  return UpdateReport(metrics, computed, skipped)


def generator_gradients(generator, discriminator, z, loss, *, global_batch_size,
                        loss_scale=None, real=None, augment_policy=(), uniforms=None):
  """The generator's `loss` (a `losses.Loss`; this replica's share) and its gradients (of
  loss * loss_scale when given); XLA-compilable. `real`: images paired with the fakes, for a
  loss that scores them too (`Loss.generator_needs_real`); with `augment_policy`, the critic
  sees the fakes (and reals) augmented with `uniforms` = (fakes', reals'), inside the tape, so
  the gradient reaches G through the augmentation."""
  with tf.GradientTape() as tape:
    fake = generator(z, training=True)
    if augment_policy:
      fake = augment.apply(_float32(fake), uniforms[0], augment_policy)
    d_real = None
    if loss.generator_needs_real:
      if real is None:
        raise ValueError(f"the {loss.name} loss scores real images in the generator update too; "
                         "pass real=... (paired with the fakes).")
      if augment_policy:
        real = augment.apply(real, uniforms[1], augment_policy)
      d_real = losses.critic_scores(discriminator, real)
    value = _average(loss.generator(d_real, losses.critic_scores(discriminator, fake)),
                     global_batch_size)
    scaled = value if loss_scale is None else value * loss_scale
  return value, tape.gradient(scaled, generator.trainable_variables)


def generator_update(generator, discriminator, optimizer, z, loss, *, global_batch_size,
                     gradients_fn=None, loss_scale=None, real=None, augment_policy=(),
                     uniforms=None):
  """One generator update on the loss's generator term; z float32 (B', z_dim); `real`,
  `augment_policy`, `uniforms` as `generator_gradients`'.

  Returns:
    an `UpdateReport` with the value g_loss.
  """
  value, grads = (gradients_fn or generator_gradients)(
      generator, discriminator, z, loss, global_batch_size=global_batch_size,
      loss_scale=None if loss_scale is None else loss_scale.value(), real=real,
      augment_policy=augment_policy, uniforms=uniforms)
  return UpdateReport({"g_loss": value}, {}, apply_if_finite(
      optimizer, grads, generator.trainable_variables, value, loss_scale))


@dataclasses.dataclass(frozen=True)
class UpdateOptions:
  """How the updates of an iteration run, and the state they carry besides the models'.

  d_gradients, g_gradients: replacements of `critic_gradients` / `generator_gradients`, e.g.
    their XLA-compiled versions (`make`); None: the plain functions.
  d_loss_scale, g_loss_scale: `LossScale`s (float16 training), or None.
  lecam: the `lecam.Anchors` of a LeCam objective, or None.
  """
  d_gradients: Optional[Callable] = None
  g_gradients: Optional[Callable] = None
  d_loss_scale: Optional[LossScale] = None
  g_loss_scale: Optional[LossScale] = None
  lecam: Optional[lecam_lib.Anchors] = None

  @classmethod
  def make(cls, jit_compile=False, replicas=1, loss_scales=None, lecam=None, log=None):
    """Options for XLA (`jit_compile`: each D and G loss+gradient computation compiled, the
    optimizer updates outside; on several replicas G's stays plain, since its synchronised
    batch norm all-reduces), float16 loss scaling (`loss_scales`: (d, g) `LossScale`s) and
    LeCam's anchors."""
    d_scale, g_scale = loss_scales or (None, None)
    d_fn = g_fn = None
    if jit_compile:
      d_fn = tf.function(critic_gradients, jit_compile=True)
      if replicas == 1:
        g_fn = tf.function(generator_gradients, jit_compile=True)
      elif log is not None:
        log(f"jit_compile on {replicas} replicas: the G update is not compiled (its "
            "synchronised batch norm all-reduces, which a compiled function cannot).")
    return cls(d_fn, g_fn, d_scale, g_scale, lecam)


def generator_reals(real, multiplier, disc_iters):
  """The real images the G update pairs with its multiplier * B fakes (a relativistic loss):
  the iteration's D batches 0, 1, ... in turn (k, B, ...) -> (multiplier * B, ...)."""
  picked = [real[j % disc_iters] for j in range(multiplier)]
  return picked[0] if multiplier == 1 else tf.concat(picked, axis=0)


def iteration(generator, discriminator, d_optimizer, g_optimizer, objective, inputs, *, step,
              disc_iters, global_batch_size, g_global_batch_size, g_batch_multiplier=1,
              options=UpdateOptions()):
  """One training iteration on one replica: disc_iters critic updates, each on its own real
  batch, latents and interpolation weights and with its lazy schedule, then one generator
  update. The D updates are unrolled (optimizer updates call merge_call).

  Args:
    generator, discriminator, d_optimizer, g_optimizer: the models and their Keras optimizers.
    objective: the `Objective`.
    inputs: this replica's {"real": (k, B, H, W, C), "z": (k, B, z_dim), "eps": (k, B),
      "z_gen": (B', z_dim)} (k = disc_iters), as `data.iteration_latents` draws them;
      with `objective.augment` also the augmentations' uniforms "u_real", "u_fake" (k, B, U)
      and "u_gen", "u_gen_real" (B', U).
    step: int64 scalar, the generator iteration (0-based): D update i of it is number
      step * k + i, the lazy schedule's counter.
    disc_iters: k, the D updates of the iteration (a Python int: they are unrolled; the inputs'
      shapes need not be static, as under a multi-worker strategy).
    global_batch_size, g_global_batch_size: the D and G batches summed over replicas.
    g_batch_multiplier: the G batch over the D batch (a relativistic loss pairs its fakes with
      that many of the iteration's real batches, `generator_reals`).
    options: `UpdateOptions`.

  Returns:
    the `collector.Collector` result: {name: (sum, count)}, this replica's shares.
  """
  k = int(disc_iters)
  if objective.augment and "u_real" not in inputs:
    raise ValueError("an augmented objective needs the iteration's augmentation uniforms "
                     "(iteration_latents(..., augment=True)).")
  collector = collector_lib.Collector()
  step = tf.cast(step, tf.int64)
  augmented = bool(objective.augment)
  for i in range(k):
    collector.report(*discriminator_update(
        generator, discriminator, d_optimizer, inputs["real"][i], inputs["z"][i],
        inputs["eps"][i], objective, global_batch_size=global_batch_size,
        gradients_fn=options.d_gradients, loss_scale=options.d_loss_scale,
        d_update=step * k + i, lecam=options.lecam,
        uniforms=(inputs["u_real"][i], inputs["u_fake"][i]) if augmented else None))
  m = g_batch_multiplier if objective.loss.generator_needs_real else 0
  collector.report(*generator_update(
      generator, discriminator, g_optimizer, inputs["z_gen"], objective.loss,
      global_batch_size=g_global_batch_size, gradients_fn=options.g_gradients,
      loss_scale=options.g_loss_scale,
      real=generator_reals(inputs["real"], m, k) if m else None,
      augment_policy=objective.augment,
      uniforms=(inputs["u_gen"], inputs["u_gen_real"]) if augmented else None))
  return collector.result()


def ema_update(ema_variables, variables, decay):
  """ema <- decay * ema + (1 - decay) * value for paired variables (BN moving stats included)."""
  for ema, value in zip(ema_variables, variables):
    ema.assign(decay * ema + (1.0 - decay) * value)
