"""Reading TensorBoard event files in tests."""

import glob
import os


def scalar_steps(model_dir, tag):
  """The steps at which `tag` was logged, over all event files of model_dir, in file order."""
  from tensorboard.backend.event_processing import event_accumulator
  steps = []
  for path in sorted(glob.glob(os.path.join(model_dir, "events.out.tfevents.*"))):
    acc = event_accumulator.EventAccumulator(path, size_guidance={"tensors": 0})
    acc.Reload()
    if tag in acc.Tags()["tensors"]:
      steps += [e.step for e in acc.Tensors(tag)]
  return steps


def scalar_values(model_dir, prefix=""):
  """{tag: [(step, value), ...]} of the scalar summaries whose tag starts with `prefix`, over all
  event files of model_dir in file (= creation) order."""
  import tensorflow as tf
  from tensorboard.backend.event_processing import event_accumulator
  values = {}
  for path in sorted(glob.glob(os.path.join(model_dir, "events.out.tfevents.*"))):
    acc = event_accumulator.EventAccumulator(path, size_guidance={"tensors": 0})
    acc.Reload()
    for tag in acc.Tags()["tensors"]:
      if tag.startswith(prefix):
        values.setdefault(tag, []).extend(
            (e.step, tf.make_ndarray(e.tensor_proto).item()) for e in acc.Tensors(tag))
  return values
