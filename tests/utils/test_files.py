"""Atomic writes: the output files get the mode the umask gives."""

import os

from qagan_tf.utils import files


def test_output_files_respect_the_umask(tmp_path):
  for umask, mode in ((0o027, 0o640), (0o022, 0o644)):
    previous = os.umask(umask)
    try:
      files.atomic_write_text(str(tmp_path / f"{umask:o}.txt"), "x")
    finally:
      os.umask(previous)
    assert (os.stat(tmp_path / f"{umask:o}.txt").st_mode & 0o777) == mode
