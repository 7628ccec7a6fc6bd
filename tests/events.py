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
