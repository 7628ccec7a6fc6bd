"""The critic's update: its loss (the adversarial loss plus the objective's terms, computed in a
loop over the built terms, none named here), its gradients and one optimizer step.

Losses are per-example vectors averaged over the GLOBAL batch (`tf.nn.compute_average_loss`),
so gradients summed across replicas (what Keras optimizers do under tf.distribute) equal the
single-device gradients of the same global batch.
"""

import tensorflow as tf

from qagan_tf import augment
from qagan_tf.objectives import losses
from qagan_tf.objectives import term_api
from qagan_tf.update import collector
from qagan_tf.update import numerics


def float32(x):
  """Images or scores in float32 (under a mixed-precision policy layers compute in 16 bits)."""
  return tf.cast(x, tf.float32)


def average(per_example, global_batch_size):
  return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)


def _terms(discriminator, images, objective, global_batch_size, d_update, states):
  """The weighted per-example sum of the objective's gradient and free terms, and their metrics.

  D's input gradient is computed once per point set (`Objective.sites`) and shared by the terms
  there; then the terms without points. With a lazy objective each scheduled term counts only
  on the D updates that carry it (`Objective.schedule`), its weight multiplied by its interval;
  a point set none of whose terms is due is not differentiated (tf.cond: no double backward),
  and a term with its own schedule is skipped on its own.

  Args:
    images: (real, fake, x_hat, d_real, d_fake).
    states: {term name: its state values}.

  Returns:
    (per_example, metrics, computed): a term's metrics are 0 where not computed, and `computed`
    holds each lazy metric's flag (1.0 or 0.0) for the collector ({} without a lazy objective).
  """
  real, fake, x_hat, d_real, d_fake = images
  lazy = objective.lazy
  if lazy and d_update is None:
    raise ValueError("a lazy objective (a term with every > 1) needs d_update, the D update's "
                     "number.")
  due = objective.schedule(d_update) if lazy else {}
  zeros = tf.zeros_like(d_real)
  points = {"interpolates": x_hat, "real": real, "fake": fake}
  per_example, metrics, computed = zeros, {}, {}

  def weight(t):
    return tf.where(due[t.name], t.weight * t.every, 0.0) if t.name in due else t.weight

  def values(t, grad):
    """(weighted per-example values, [metric values]); nothing computed when not due."""
    names = t.metric_names

    def compute():
      value, parts = t(term_api.TermInputs(real, fake, x_hat, d_real, d_fake, grad,
                                           states.get(t.name)))
      return weight(t) * value, [average(parts[k], global_batch_size) for k in names]
    if t.term.own_schedule and t.name in due:
      return tf.cond(due[t.name], compute, lambda: (zeros, [tf.constant(0.0)] * len(names)))
    return compute()

  for site, terms in objective.sites:
    names = [n for t in terms for n in t.metric_names]

    def at_site(site=site, terms=terms):
      grad = losses.input_gradients(discriminator, points[site])
      out, found = zeros, []
      for t in terms:
        value, parts = values(t, grad)
        out, found = out + value, found + parts
      return out, found

    site_due = [due[t.name] for t in terms if t.name in due]
    if lazy:  # Differentiated only when one of its terms is due.
      out, found = tf.cond(tf.reduce_any(tf.stack(site_due)), at_site,
                           lambda n=len(names): (zeros, [tf.constant(0.0)] * n))
    else:
      out, found = at_site()
    per_example += out
    for t in terms:
      for name in t.metric_names:
        value = found[names.index(name)]
        if lazy:
          # A term's metrics count on its own due updates (a diagnostic term's: on the updates
          # that differentiated its points).
          flag = due[t.name] if t.name in due else tf.reduce_any(tf.stack(site_due))
          computed[name] = tf.cast(flag, tf.float32)
          value = tf.where(flag, value, 0.0)
        metrics[name] = value
  for t in objective.free_terms:
    value, found = values(t, None)
    per_example += value
    metrics.update(zip(t.metric_names, found))
    if lazy and t.name in due:
      computed.update({k: tf.cast(due[t.name], tf.float32) for k in t.metric_names})
  return per_example, metrics, computed


def critic_gradients(discriminator, real, fake, eps, objective, *, global_batch_size,
                     loss_scale=None, d_update=None, states=None):
  """The critic loss with its terms and its gradients (no update; XLA-compilable).

  Args:
    discriminator: Keras model.
    real, fake: float32 (B, H, W, 3) in [-1, 1]; eps: float32 (B,) in [0, 1].
    objective: `objectives.objective.Objective` (the loss and its terms with their weights,
      each applied here once).
    global_batch_size: batch summed over replicas (B times the number of replicas).
    loss_scale: optional float32 scalar (float16 training): the returned `grads` are of
      loss * loss_scale, so that small float16 gradients do not underflow in the backward pass
      (the second-order ones included).
    d_update: int64 scalar, this D update's number over the run (0-based); needed when the
      objective is lazy (`Objective.lazy`), ignored otherwise.
    states: {term name: state values} of the stateful active terms.

  Returns:
    (loss, grads, metrics, computed): this replica's share of the loss, the gradients for
    discriminator.trainable_variables, a dict of scalar float32 tensors, each this replica's
    share of the global mean (sum them over replicas), named as `objective.metric_names` (all
    but g_loss), and, with a lazy objective, for each metric computed on some D updates only,
    its flag (1.0 when this update computed it, else 0.0 and the metric is 0); {} otherwise.
  """
  states = states or {}
  x_hat = losses.interpolates(real, fake, eps)
  variables = discriminator.trainable_variables
  with tf.GradientTape() as tape:
    scores = losses.critic_scores(discriminator, tf.concat([real, fake], axis=0))
    d_real, d_fake = tf.split(scores, 2)
    images = (real, fake, x_hat, d_real, d_fake)
    # The order in which ops are recorded decides the order in which the backward pass sums
    # the gradients a tensor gets from its readers (d_real's: the drift term, the other terms,
    # the adversarial loss): it is kept, so that the same objective gives the same bits.
    direct = [(t, t(term_api.TermInputs(*images))) for t in objective.direct_terms]
    others, metrics, computed = _terms(discriminator, images, objective, global_batch_size,
                                       d_update, states)
    per_example = objective.loss.discriminator(d_real, d_fake)
    for t, (value, _) in direct:  # Added to the loss itself, before the other terms.
      per_example = per_example + t.weight * value
    per_example = per_example + others
    loss = average(per_example, global_batch_size)
    scaled = loss if loss_scale is None else loss * loss_scale  # Recorded: inside the tape.
  grads = tape.gradient(scaled, variables)
  for name, fn in objective.loss.metrics:
    metrics[name] = average(fn(d_real, d_fake), global_batch_size)
  for t, (_, parts) in direct:
    metrics.update({k: average(parts[k], global_batch_size) for k in t.metric_names})
  metrics.update(d_loss=loss, d_real=average(d_real, global_batch_size),
                 d_fake=average(d_fake, global_batch_size))
  return loss, grads, metrics, computed


def discriminator_gradients(parts, real, z, eps, *, global_batch_size, d_update=None,
                            states=None, uniforms=None):
  """The critic loss with its terms and its gradients for fakes G(z) (no update; see
  `critic_gradients`, which does the work; `parts.d_gradients`, e.g. its XLA-compiled version,
  replaces it). G runs outside it, so that a compiled critic holds no all-reduce of G's
  synchronised batch norm. With `objective.augment`, the real and fake images are augmented
  here (`augment.apply` with `uniforms` = (real's, fake's), each (B, augment.uniforms_of(policy)),
  and the state it reads, `Objective.augmentation_input`: ADA's p): the critic, and every term,
  sees only augmented images. Returns what `critic_gradients` returns."""
  objective = parts.objective
  fake = float32(parts.generator(z, training=True))
  if objective.augment:
    p = objective.augmentation_input(states or {})
    real = augment.apply(real, uniforms[0], objective.augment, p)
    fake = augment.apply(fake, uniforms[1], objective.augment, p)
  scale = None if parts.d_loss_scale is None else parts.d_loss_scale.value()
  return (parts.d_gradients or critic_gradients)(
      parts.discriminator, real, fake, eps, objective, global_batch_size=global_batch_size,
      loss_scale=scale, d_update=d_update if objective.lazy else None, states=states)


def state_values(parts):
  """{term name: its state values} for the objective's active stateful terms.

  Raises:
    ValueError: a stateful term whose state `parts.states` lacks.
  """
  out = {}
  for t in parts.objective.terms:
    if t.term.make_state:
      if t.name not in parts.states:
        raise ValueError(f"the {t.name} term ({t.term.flag} > 0) needs its "
                         f"{t.term.state_name} (made by Objective.make_states).")
      out[t.name] = t.term.state_values(parts.states[t.name], t)
  return out


def discriminator_update(parts, real, z, eps, *, global_batch_size, d_update=None,
                         uniforms=None):
  """One critic update: a power iteration of D's spectral norms (with --d_norm=spectral), then
  the loss with its terms and one optimizer step (dropped whole for a non-finite value), then
  the stateful terms follow the update's global means (LeCam's anchors, ADA's p).

  Args:
    parts: the `iteration.Parts`.
    real: float32 (B, H, W, C); z: (B, z_dim); eps: (B,); d_update, uniforms: as
      `discriminator_gradients`'.

  Returns:
    a `collector.UpdateReport`.
  """
  # The model protocol (models/registry.py); a user's model (qagan_tf.gan.QAGAN) may lack it.
  if getattr(parts.discriminator, "spectral_norm", False):
    parts.discriminator.update_spectral_norm()
  states = state_values(parts)
  loss, grads, metrics, computed = discriminator_gradients(
      parts, real, z, eps, global_batch_size=global_batch_size, d_update=d_update,
      states=states, uniforms=uniforms)
  skipped = numerics.apply_if_finite(parts.d_optimizer, grads,
                                     parts.discriminator.trainable_variables, loss,
                                     parts.d_loss_scale)
  following = [t for t in parts.objective.terms if t.name in states and t.term.after_update]
  if following:  # The global means of D's scores and the terms' metrics (an all-reduce).
    names = ["d_real", "d_fake"] + [n for t in following for n in t.metric_names]
    ctx = tf.distribute.get_replica_context()
    means = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.stack([metrics[n] for n in names]))
    means = dict(zip(names, tf.unstack(means)), images=tf.cast(global_batch_size, tf.float32))
    for t in following:
      t.term.after_update(parts.states[t.name], t, means)
  return collector.UpdateReport(metrics, computed, skipped)
