"""The catalogue of bad inputs (docs/resuming.md, "What each error means"): every script answers
each with one clear error line that names the input and the fix, a non-zero exit, no traceback,
no partial output file, and existing checkpoints and reports untouched.

Each case runs the script file itself (`tests.scripts.run`: bin/NAME as __main__, in this
process, which saves a Python start and a TensorFlow import per case) in one module-scoped
fixture; each case is then checked as its own test. The process boundary (a real process's
exit status and stderr) is checked by `test_the_process_boundary_gives_the_same_line`.
"""

import dataclasses
import hashlib
import io
import os
import shutil
import tarfile
from typing import Callable

import numpy as np
import pytest

from qagan_tf.utils import runlock
from tests import reference
from tests import scripts

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_RUN = scripts.TINY_RUN


@dataclasses.dataclass
class Case:
  name: str
  script: str
  args: Callable  # (work dir) -> argv after the script.
  expect: tuple  # Substrings of the error line: the input and the fix.
  setup: Callable = None  # (work dir) -> None; may create the bad input.
  absent: tuple = ()  # Paths (relative to the work dir) that must not exist afterwards.
  file_size_limit: int = 0  # RLIMIT_FSIZE in bytes: a full disk.
  kept: tuple = ()  # Existing files (relative to the work dir) whose bytes must not change.


def _images(n=4, size=32, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _png(path, size=32, seed=0):
  from PIL import Image
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(_images(1, size, seed)[0]).save(path)


def _npz(path, **arrays):
  np.savez(path, **arrays)


def _copy_run(w, name):
  shutil.copytree(os.path.join(w, "run"), os.path.join(w, name))


def _corrupt_checkpoint(w):
  _copy_run(w, "corrupt")
  data = [f for f in os.listdir(os.path.join(w, "corrupt")) if f.startswith("ckpt-4.data")][0]
  with open(os.path.join(w, "corrupt", data), "r+b") as f:
    f.truncate(100)


def _other_architecture(w):
  _copy_run(w, "arch")


def _mixed_folder(w):
  _png(os.path.join(w, "mixed", "a.png"), 32)
  _png(os.path.join(w, "mixed", "b.png"), 48)


def _prior_of_10_features(w):
  import scipy.io
  scipy.io.savemat(f"{w}/p10.mat", {"mu_prisparam": np.zeros((1, 10)),
                                    "cov_prisparam": np.eye(10)})


def _flat_png(w):
  from PIL import Image
  Image.fromarray(np.full((96, 96, 3), 128, np.uint8)).save(f"{w}/flat.png")


def _corrupt_folder(w):
  _png(os.path.join(w, "corruptimg", "a.png"))
  with open(os.path.join(w, "corruptimg", "b.png"), "wb") as f:
    f.write(b"not a png at all")


def _unsafe_archive(w):
  with tarfile.open(os.path.join(w, "evil.tgz"), "w:gz") as tar:
    payload = b"x" * 10
    info = tarfile.TarInfo("../../evil/classify_image_graph_def.pb")
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def _wrong_checksum_weights(w):
  with np.load(reference.reference_path("inception/fid_inception_2015_12_05_pool3.npz")) as f:
    arrays = {k: f[k] for k in f.files}
  name = sorted(k for k in arrays if arrays[k].ndim == 4)[0]
  arrays[name] = arrays[name] * np.float32(1.001)
  np.savez(os.path.join(w, "tampered_weights.npz"), **arrays)


def _non_pd_prior(w):
  _npz(os.path.join(w, "prior_not_pd.npz"), mu=np.zeros(36), cov=-np.eye(36))


def _flagfile(w):
  with open(os.path.join(w, "typo.cfg"), "w") as f:
    f.write("--flagfile=" + os.path.join(REPO, "configs", "smoke.cfg") + "\n--disc_iter=3\n")


def _float_npz(w):
  _npz(f"{w}/float01.npz", images=_images().astype(np.float32) / 255.0)


def _cut_stats(w):
  """A statistics file whose end was cut off (a copy or a write interrupted)."""
  _npz(f"{w}/whole_stats.npz", mu=np.zeros(2048), sigma=np.eye(2048))
  with open(f"{w}/whole_stats.npz", "rb") as f:
    data = f.read()
  with open(f"{w}/cut_stats.npz", "wb") as f:
    f.write(data[:len(data) // 2])


def _nan_npz(w):
  images = _images().astype(np.float32) / 255.0
  images[1, 2, 3, 0] = np.nan
  _npz(f"{w}/nan01.npz", images=images)


def _config_with(w, name, change):
  """A copy of the trained run whose config.json is changed by `change(dict)`."""
  import json
  _copy_run(w, name)
  path = os.path.join(w, name, "config.json")
  with open(path) as f:
    values = json.load(f)
  change(values)
  with open(path, "w") as f:
    json.dump(values, f)


def _existing_outputs(w):
  """Files a careless --output would replace: statistics and an earlier report."""
  _npz(f"{w}/existing_stats.npz", mu=np.zeros(2048), sigma=np.eye(2048))
  os.makedirs(f"{w}/old_report", exist_ok=True)
  with open(f"{w}/old_report/table.md", "w") as f:
    f.write("# Results of an earlier report\n")


BUSY = {}  # The lock this test process holds on w/busy while the catalogue runs.


def _busy_run(w):
  """w/busy locked as a running bin/train locks it (`runlock.acquire`, an flock): a second
  bin/train must refuse it. (That the lock excludes another process, and is released by the
  kernel when its holder is killed, is tests/utils/test_runlock.py's.)"""
  BUSY["lock"] = runlock.acquire(os.path.join(w, "busy"))


def _readonly_dir(w):
  """A directory nobody may create files in: chmod 555, or, for root (who ignores modes),
  sysfs, which refuses new files to everyone."""
  if os.geteuid() != 0:
    path = os.path.join(w, "readonly")
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o555)
    return path
  return "/sys/fs"


CASES = [
    # bin/train
    Case("train_unknown_dataset", "train",
         lambda w: TINY_RUN + [f"--model_dir={w}/t1", "--dataset=imagenet"],
         ("Unknown dataset 'imagenet'", "use one of"), absent=("t1",)),
    Case("train_empty_folder", "train",
         lambda w: TINY_RUN + [f"--model_dir={w}/t2", f"--dataset=folder:{w}/empty"],
         ("empty", "no ", "files found"), setup=lambda w: os.makedirs(f"{w}/empty"),
         absent=("t2",)),
    Case("train_npz_without_images", "train",
         lambda w: TINY_RUN + [f"--model_dir={w}/t3", f"--dataset=npz:{w}/noimages.npz"],
         ("noimages.npz", "has no array 'images'", "np.savez(path, images="),
         setup=lambda w: _npz(f"{w}/noimages.npz", pixels=_images()), absent=("t3",)),
    Case("train_undecodable_image", "train",
         lambda w: TINY_RUN + [f"--model_dir={w}/t4", f"--dataset=folder:{w}/corruptimg"],
         ("b.png", "cannot decode", "remove or replace"), setup=_corrupt_folder,
         absent=("t4",)),
    Case("train_unknown_flag_in_flagfile", "train",
         lambda w: [f"--flagfile={w}/typo.cfg", f"--model_dir={w}/t5"],
         ("disc_iter", "typo.cfg", "--helpfull"), setup=_flagfile, absent=("t5",)),
    Case("train_other_architecture", "train",
         lambda w: TINY_RUN + [f"--model_dir={w}/arch", "--width=8", "--max_steps=6"],
         ("width: 16 -> 8", "--allow_config_change"), setup=_other_architecture),
    Case("train_checkpoint_of_other_architecture", "train",
         lambda w: TINY_RUN + [f"--model_dir={w}/arch", "--width=8", "--max_steps=6",
                               "--allow_config_change"],
         ("arch/ckpt-4", "width 8", "config.json", "new --model_dir"),
         setup=_other_architecture),
    Case("train_corrupt_checkpoint", "train",
         lambda w: TINY_RUN + [f"--model_dir={w}/corrupt", "--max_steps=6"],
         ("corrupt/ckpt-4", "cannot be read", "corrupt", "to an older one (ckpt-2)"),
         setup=_corrupt_checkpoint),
    Case("train_non_pd_niqe_prior", "train",
         lambda w: TINY_RUN + [f"--model_dir={w}/t6", "--penalty=niqe",
                               f"--niqe_prior={w}/prior_not_pd.npz"],
         ("prior_not_pd.npz", "positive definite"), setup=_non_pd_prior, absent=("t6",)),
    Case("train_readonly_model_dir", "train",
         lambda w: TINY_RUN + [f"--model_dir={_readonly_dir(w)}/qagan_run"],
         ("qagan_run", "choose another location")),
    Case("train_disk_full", "train",
         lambda w: TINY_RUN + [f"--model_dir={w}/full", "--max_steps=4"],
         ("cannot write", "full", "free disk space"),
         file_size_limit=200_000),
    Case("train_unknown_penalty", "train",
         lambda w: TINY_RUN + [f"--model_dir={w}/t7", "--penalty=ssmi"],
         ("--penalty=ssmi", "one of <wgan_gp|none|ssim|niqe>"), absent=("t7",)),
    Case("train_missing_npz", "train",
         lambda w: TINY_RUN + [f"--model_dir={w}/t8", "--dataset=npz:/nonexistent.npz"],
         ("npz:/nonexistent.npz: no such file",), absent=("t8",)),
    Case("train_zero_batch", "train",
         lambda w: TINY_RUN + [f"--model_dir={w}/t9", "--batch_size=0"],
         ("batch_size=0 must be a positive integer",), absent=("t9",)),
    Case("train_second_trainer_on_a_busy_run", "train",
         lambda w: TINY_RUN + [f"--model_dir={w}/busy", "--max_steps=100000"],
         ("busy", "in use by another bin/train", f"PID {os.getpid()}",
          "choose another --model_dir"), setup=_busy_run),
    Case("train_float_npz_in_0_1", "train",
         lambda w: TINY_RUN + [f"--model_dir={w}/t10", f"--dataset=npz:{w}/float01.npz"],
         ("float01.npz", "float32", "[0, 1]", "np.round(np.clip(x, 0, 1) * 255)"),
         setup=_float_npz, absent=("t10",)),
    Case("train_missing_flagfile", "train",
         lambda w: [f"--flagfile={w}/nope.cfg", f"--model_dir={w}/t11"],
         ("nope.cfg", "no such file", "configs/"), absent=("t11",)),
    # Round 3 (issue 37): the command line's remaining edges.
    Case("train_batch_beyond_the_machines_memory", "train",
         lambda w: TINY_RUN + [f"--model_dir={w}/t13", "--batch_size=100000"],
         ("--batch_size=100000 needs about", "GiB", "usable here", "use --batch_size="),
         absent=("t13",)),
    Case("train_flagfile_line_without_dashes", "train",
         lambda w: [f"--flagfile={w}/nodash.cfg", f"--model_dir={w}/t14"],
         ("nodash.cfg, line 2", "'batch_size=8' is not a flag", "--batch_size=8"),
         setup=lambda w: open(f"{w}/nodash.cfg", "w").write("--dataset=embedded\nbatch_size=8\n"),
         absent=("t14",)),
    Case("train_npz_that_is_a_text_file", "train",
         lambda w: TINY_RUN + [f"--model_dir={w}/t15", f"--dataset=npz:{w}/text.npz"],
         ("text.npz", "not an .npz file", "np.savez"),
         setup=lambda w: open(f"{w}/text.npz", "w").write("not an archive\n"), absent=("t15",)),
    Case("train_tfds_offline", "train",
         lambda w: TINY_RUN + [f"--model_dir={w}/t16", "--dataset=cifar10",
                               f"--data_dir={w}/no_tfds"],
         ("dataset=cifar10", "cannot be reached", "--data_dir", "--nodownload"),
         absent=("t16",)),
    Case("train_prior_mat_of_10_features", "train",
         lambda w: TINY_RUN + [f"--model_dir={w}/t17", "--penalty=niqe",
                               f"--niqe_prior={w}/p10.mat"],
         ("p10.mat", "has 10 features", "18 per scale", "bin/fit_niqe_prior"),
         setup=_prior_of_10_features, absent=("t17",)),
    # Round 4 (issue 45).
    Case("train_diverges_under_a_huge_weight", "train",
         lambda w: TINY_RUN + [f"--model_dir={w}/t18", "--penalty=ssim", "--qa_weight=1e30",
                               "--max_steps=2", "--disc_iters=2"],  # D update 2 meets the NaN.
         ("Non-finite loss or gradient at step 1", "largest weights in play: --qa_weight=1e+30",
          "lower the largest")),
    Case("train_float_npz_with_a_nan", "train",
         lambda w: TINY_RUN + [f"--model_dir={w}/t19", f"--dataset=npz:{w}/nan01.npz"],
         ("nan01.npz", "1 NaN or Inf", "replace or drop those images"), setup=_nan_npz,
         absent=("t19",)),
    Case("train_folder_that_is_a_file", "train",
         lambda w: TINY_RUN + [f"--model_dir={w}/t12",
                               f"--dataset=folder:{w}/existing_stats.npz"],
         ("existing_stats.npz", "is a file, not a directory", "npz:PATH"),
         setup=_existing_outputs, absent=("t12",)),
    # bin/sample
    Case("sample_over_an_existing_file", "sample",
         lambda w: [f"--model_dir={w}/run", f"--output={w}/existing_stats.npz"],
         ("existing_stats.npz exists", "--overwrite"), setup=_existing_outputs,
         kept=("existing_stats.npz",)),
    Case("sample_checkpoint_of_another_width", "sample",
         lambda w: [f"--model_dir={w}/width8", f"--output={w}/s7.png"],
         ("width8", "does not hold a ema_generator matching", "width 8"),
         setup=lambda w: _config_with(w, "width8", lambda v: v.update(width=8)),
         absent=("s7.png",)),
    Case("sample_config_value_of_wrong_type", "sample",
         lambda w: [f"--model_dir={w}/eight", f"--output={w}/s5.png"],
         ("eight/config.json", "'width'", "'eight'", "int"),
         setup=lambda w: _config_with(w, "eight", lambda v: v.update(width="eight")),
         absent=("s5.png",)),
    Case("sample_config_without_width", "sample",
         lambda w: [f"--model_dir={w}/nowidth", f"--output={w}/s6.png"],
         ("nowidth/config.json", "'width'", "cannot be rebuilt"),
         setup=lambda w: _config_with(w, "nowidth", lambda v: v.pop("width")),
         absent=("s6.png",)),
    Case("sample_not_a_run", "sample",
         lambda w: [f"--model_dir={w}/empty_run", f"--output={w}/s1.png"],
         ("empty_run", "not a qagan_tf run directory"),
         setup=lambda w: os.makedirs(f"{w}/empty_run"), absent=("s1.png",)),
    Case("sample_bad_suffix", "sample",
         lambda w: [f"--model_dir={w}/run", f"--output={w}/s2.jpg"],
         ("s2.jpg", ".png or .npz"), absent=("s2.jpg",)),
    Case("sample_missing_checkpoint", "sample",
         lambda w: [f"--model_dir={w}/run", f"--output={w}/s3.png",
                    f"--checkpoint={w}/run/ckpt-99"],
         ("ckpt-99", "no such checkpoint", "ckpt-2, ckpt-4", "omit --checkpoint"),
         absent=("s3.png",)),
    Case("sample_disk_full", "sample",
         lambda w: [f"--model_dir={w}/run", f"--output={w}/s4.npz", "--num_samples=64"],
         ("s4.npz", "File too large", "free disk space"), absent=("s4.npz",), file_size_limit=50_000),
    # bin/evaluate
    Case("evaluate_stats_without_mu", "evaluate",
         lambda w: [f"--model_dir={w}/run", f"--stats={w}/nomu.npz", "--num_samples=10",
                    "--repeats=1"],
         ("nomu.npz", "mu"), setup=lambda w: _npz(f"{w}/nomu.npz", sigma=np.eye(2048)),
         absent=("run/eval/report_new",)),
    Case("evaluate_stats_wrong_dims", "evaluate",
         lambda w: [f"--model_dir={w}/run", f"--stats={w}/dim64.npz", "--num_samples=10",
                    "--repeats=1"],
         ("dim64.npz", "2048"),
         setup=lambda w: _npz(f"{w}/dim64.npz", mu=np.zeros(64), sigma=np.eye(64))),
    Case("evaluate_unknown_generator", "evaluate",
         lambda w: [f"--model_dir={w}/run", f"--stats={w}/dim64.npz", "--generators=best"],
         ("best", "raw, ema")),
    Case("evaluate_pickled_stats", "evaluate",
         lambda w: [f"--model_dir={w}/run", f"--stats={w}/pickled.npz", "--num_samples=10",
                    "--repeats=1"],
         ("pickled.npz", "cannot be read"),
         setup=lambda w: np.savez(f"{w}/pickled.npz", mu=np.array([{"a": 1}], dtype=object),
                                  sigma=np.eye(2))),
    Case("evaluate_output_dir_is_a_file", "evaluate",
         lambda w: [f"--model_dir={w}/run", f"--stats={w}/existing_stats.npz",
                    f"--output_dir={w}/existing_stats.npz"],
         ("--output_dir=", "is a file", "give a directory"), setup=_existing_outputs,
         kept=("existing_stats.npz",)),
    Case("evaluate_stats_that_is_a_folder", "evaluate",
         lambda w: [f"--model_dir={w}/run", f"--stats={w}/empty"],
         ("empty", "is a folder, not a file", "bin/compute_stats")),
    # bin/fid
    Case("fid_one_argument", "fid", lambda w: [f"{w}/four.npz"],
         ("give exactly two inputs, got 1", "bin/fid A B")),
    Case("fid_one_image", "fid", lambda w: [f"{w}/one.npz", f"{w}/four.npz"],
         ("one.npz", "at least 2"),
         setup=lambda w: (_npz(f"{w}/one.npz", images=_images(1)),
                          _npz(f"{w}/four.npz", images=_images(4)))),
    Case("fid_missing_input", "fid", lambda w: [f"{w}/nothere.npz", f"{w}/four.npz"],
         ("nothere.npz", "no such file")),
    Case("fid_wrong_weights_checksum", "fid",
         lambda w: [f"{w}/four.npz", f"{w}/four.npz",
                    f"--inception_weights={w}/tampered_weights.npz"],
         ("tampered_weights.npz", "checksum", "fetch_inception"), setup=_wrong_checksum_weights),
    Case("fid_truncated_statistics", "fid", lambda w: [f"{w}/cut_stats.npz", f"{w}/four.npz"],
         ("cut_stats.npz", "truncated or damaged", "bin/compute_stats"), setup=_cut_stats),
    # bin/compute_stats
    Case("compute_stats_empty_folder", "compute_stats",
         lambda w: [f"--images={w}/empty", f"--output={w}/c1.npz"],
         ("empty", "files found"), absent=("c1.npz",)),
    Case("compute_stats_corrupt_image", "compute_stats",
         lambda w: [f"--images={w}/corruptimg", f"--output={w}/c2.npz"],
         ("b.png", "cannot decode", "remove or replace"), setup=_corrupt_folder,
         absent=("c2.npz",)),
    Case("compute_stats_mixed_sizes", "compute_stats",
         lambda w: [f"--images={w}/mixed", f"--output={w}/c3.npz"],
         ("mixed", "mixed image sizes"), setup=_mixed_folder, absent=("c3.npz",)),
    Case("compute_stats_readonly_output", "compute_stats",
         lambda w: [f"--images={w}/four.npz", f"--output={_readonly_dir(w)}/c4.npz"],
         ("c4.npz", "not writable", "choose another")),
    Case("compute_stats_bad_suffix", "compute_stats",
         lambda w: [f"--images={w}/four.npz", f"--output={w}/c5.txt"],
         ("c5.txt", ".npz"), absent=("c5.txt",)),
    Case("compute_stats_over_an_existing_file", "compute_stats",
         lambda w: [f"--images={w}/four.npz", f"--output={w}/existing_stats.npz"],
         ("existing_stats.npz exists", "--overwrite"), setup=_existing_outputs,
         kept=("existing_stats.npz",)),
    # bin/fetch_inception
    Case("fetch_inception_unsafe_member", "fetch_inception",
         lambda w: [f"--archive={w}/evil.tgz", f"--output={w}/f1.npz"],
         ("../../evil/classify_image_graph_def.pb", "unsafe path"), setup=_unsafe_archive,
         absent=("f1.npz", "../evil")),
    # bin/niqe
    Case("niqe_image_smaller_than_block", "niqe", lambda w: [f"{w}/small.png"],
         ("small.png", "block"), setup=lambda w: _png(f"{w}/small.png", 32)),
    Case("niqe_non_pd_model", "niqe",
         lambda w: [f"--model={w}/prior_not_pd.npz", f"{w}/small.png", "--block_size=8"],
         ("prior_not_pd.npz", "positive definite")),
    Case("niqe_unreadable_image", "niqe", lambda w: [f"{w}/corruptimg/b.png"],
         ("b.png", "cannot")),
    Case("niqe_folder", "niqe", lambda w: [f"{w}/empty"],
         ("empty", "is a folder, not a file", "image files")),
    Case("niqe_penalty_prior_as_model", "niqe", lambda w: ["--model=cifar_grad", f"{w}/big.png"],
         ("cifar_grad", "prior of the NIQE penalty", "accepted names: natural"),
         setup=lambda w: _png(f"{w}/big.png", 96)),
    Case("niqe_flat_image", "niqe", lambda w: [f"{w}/flat.png"],
         ("flat.png", "flat", "undefined"), setup=_flat_png),
    Case("fit_niqe_prior_without_source", "fit_niqe_prior",
         lambda w: ["--dataset=embedded", f"--output={w}/p4.npz"],
         ("--source is required", "one of sobel_magnitude"), absent=("p4.npz",)),
    # bin/fit_niqe_prior
    Case("fit_niqe_prior_without_model_dir", "fit_niqe_prior",
         lambda w: ["--source=discriminator", "--dataset=embedded", f"--output={w}/p1.npz"],
         ("--model_dir",), absent=("p1.npz",)),
    Case("fit_niqe_prior_unknown_dataset", "fit_niqe_prior",
         lambda w: ["--source=sobel", "--dataset=imagenet", "--resolution=32",
                    f"--output={w}/p2.npz"],
         ("Unknown dataset 'imagenet'",), absent=("p2.npz",)),
    Case("fit_niqe_prior_over_an_existing_file", "fit_niqe_prior",
         lambda w: ["--source=sobel", "--dataset=embedded", "--resolution=32",
                    f"--output={w}/existing_stats.npz"],
         ("existing_stats.npz exists", "--overwrite"), setup=_existing_outputs,
         kept=("existing_stats.npz",)),
    # bin/report
    Case("report_over_an_earlier_report", "report",
         lambda w: [f"{w}/run", f"--output={w}/old_report"],
         ("old_report holds an earlier report", "--overwrite"), setup=_existing_outputs,
         kept=("old_report/table.md",)),
    # bin/benchmark
    Case("benchmark_zero_repeats", "benchmark",
         lambda w: ["--flagfile=configs/smoke.cfg", "--repeats=0", f"--output={w}/b1.json"],
         ("--repeats=0", "at least 1"), absent=("b1.json",)),
    Case("benchmark_quality_inception_batch_zero", "benchmark",
         lambda w: ["--flagfile=configs/quality_cpu.cfg", "--sections=quality",
                    "--quality_inception_batch=0", f"--output={w}/q2.json"],
         ("--quality_inception_batch=0", "at least 1"), absent=("q2.json",)),
    Case("benchmark_quality_beside_an_earlier_table", "benchmark",
         lambda w: ["--flagfile=configs/quality_cpu.cfg", "--sections=quality",
                    f"--output={w}/q1.json"],
         ("q1.md (written beside --output) exists", "--overwrite"),
         setup=lambda w: open(f"{w}/q1.md", "w").write("| an earlier table |\n"),
         kept=("q1.md",), absent=("q1.json",)),
    Case("report_no_runs", "report", lambda w: [f"--output={w}/rp1"],
         ("no run directories", "bin/report RUN_DIR... --output=DIR"), absent=("rp1",)),
    Case("report_not_a_run", "report",
         lambda w: [f"{w}/run", f"{w}/corruptimg", f"--output={w}/rp2"],
         ("corruptimg is not a run directory", "config.json"), absent=("rp2",)),
    Case("fit_niqe_prior_model_dir_not_a_run", "fit_niqe_prior",
         lambda w: ["--source=discriminator", "--dataset=embedded", f"--model_dir={w}/nonerun",
                    f"--output={w}/p3.npz"],
         ("nonerun", "config.json"), absent=("p3.npz",)),
]


def _sha256(path):
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def _snapshot(directory):
  """{relative path: sha256} of every file under directory."""
  result = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        result[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
  return result


def _env(work):
  return {"QAGAN_INCEPTION_WEIGHTS": reference.reference_path(
      "inception/fid_inception_2015_12_05_pool3.npz"), "QAGAN_CACHE_DIR": os.path.join(work, "c"),
          "QAGAN_TFDS_HOST": "offline.invalid:443"}  # A name that never resolves: offline.


def _run(case, work, **kwargs):
  return scripts.run(case.script, *case.args(work), env=_env(work),
                     file_size_limit=case.file_size_limit, **kwargs)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, tiny_run):
  work = str(tmp_path_factory.mktemp("bad_inputs"))
  run_dir = os.path.join(work, "run")
  shutil.copytree(tiny_run, run_dir)
  os.makedirs(os.path.join(run_dir, "eval"))
  with open(os.path.join(run_dir, "eval", "report.json"), "w") as f:
    f.write('{"an": "earlier report"}\n')
  for setup in dict.fromkeys(c.setup for c in CASES if c.setup):  # Each once, in order.
    setup(work)
  runs = [os.path.join(work, d) for d in ("run", "corrupt", "arch")]
  before = [_snapshot(d) for d in runs]
  kept = {p: _sha256(os.path.join(work, p)) for c in CASES for p in c.kept}
  try:
    results = {c.name: _run(c, work) for c in CASES}
  finally:
    BUSY.pop("lock").release()
  kept_after = {p: _sha256(os.path.join(work, p)) for p in kept}
  return work, results, before, [_snapshot(d) for d in runs], kept, kept_after


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_one_clear_error(catalogue, case):
  work, results, before, after, kept, kept_after = catalogue
  proc = results[case.name]
  shown = f"stderr:\n{proc.stderr[-3000:]}"
  assert proc.returncode not in (0, None), shown
  assert "Traceback" not in proc.stderr, shown
  errors = [line for line in proc.stderr.splitlines() if f"bin/{case.script}: error: " in line]
  assert len(errors) == 1, shown
  for text in case.expect:
    assert text in errors[0], f"{text!r} not in {errors[0]!r}"
  for path in case.absent:
    assert not os.path.exists(os.path.join(work, path)), path
  leftovers = [f for f in os.listdir(work) if f.startswith(".tmp") or f.endswith((".tmp",
                                                                                  ".part"))]
  assert not leftovers
  assert after == before  # The runs' checkpoints, config, samples and report are untouched.
  for path in case.kept:  # An existing output is not replaced.
    assert kept_after[path] == kept[path], path
  # Quiet: on a CPU-only machine with the default verbosity the error line is all there is
  # (bin/train also logs its start-up at INFO level; no warning or CUDA/absl line).
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  if case.script == "train":
    others = [line for line in lines if f"bin/{case.script}: error: " not in line]
    assert all(line.startswith("I") and "] " in line for line in others), shown
  else:
    assert len(lines) == 1, shown


@pytest.mark.slow
@pytest.mark.parametrize("name", ["train_unknown_penalty", "sample_bad_suffix",
                                  "compute_stats_bad_suffix", "niqe_folder",
                                  "train_corrupt_checkpoint"])
def test_the_process_boundary_gives_the_same_line(catalogue, name):
  """A few cases again as real processes: the same one error line on the process's stderr,
  the same exit status as the shell sees it, and nothing else on stderr but bin/train's log
  (a corrupt checkpoint: none of TensorFlow's "could not be found" warnings at exit)."""
  work, results = catalogue[:2]
  case = next(c for c in CASES if c.name == name)
  proc = _run(case, work, subprocess=True)
  errors = lambda text: [line for line in text.splitlines()  # noqa: E731
                         if f"bin/{case.script}: error: " in line]
  assert proc.returncode == results[name].returncode == 1, proc.stderr[-2000:]
  assert errors(proc.stderr) == errors(results[name].stderr) and len(errors(proc.stderr)) == 1
  assert "Traceback" not in proc.stderr
  others = [line for line in proc.stderr.splitlines()
            if line.strip() and not errors(line) and not (line.startswith("I") and "] " in line)]
  assert not others, proc.stderr[-3000:]


def test_the_catalogue_is_big_and_covers_every_script():
  assert len(CASES) >= 25
  assert {c.script for c in CASES} >= {"train", "sample", "evaluate", "fid", "compute_stats",
                                       "niqe", "fit_niqe_prior", "report"}
  assert len({c.name for c in CASES}) == len(CASES)


# --- Mistakes that are not errors: the script goes on, says what it did, and loses nothing. ---

def _script(name, *args, env=None):
  return scripts.run(name, *args, env=env)


def _weights_env():
  return {"QAGAN_INCEPTION_WEIGHTS": reference.reference_path(
      "inception/fid_inception_2015_12_05_pool3.npz")}


@pytest.mark.slow
def test_a_run_without_its_checkpoint_index_resumes_from_the_newest_checkpoint(catalogue):
  from tests import events
  work = catalogue[0]
  run_dir = os.path.join(work, "noindex")
  shutil.copytree(os.path.join(work, "run"), run_dir)
  os.remove(os.path.join(run_dir, "checkpoint"))  # ckpt-2 and ckpt-4 are still there.
  before = set(os.listdir(run_dir))
  proc = _script("train", *TINY_RUN, f"--model_dir={run_dir}", "--max_steps=6")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "no index file `checkpoint`" in proc.stderr and "ckpt-4 (step 4)" in proc.stderr
  assert "resuming at step 4" in proc.stderr and "Finished: step 6 of 6" in proc.stderr
  # The last line says where the outputs are.
  last = proc.stderr.strip().splitlines()[-1]
  assert f"samples in {run_dir}/samples" in last and f"{run_dir}/ckpt-6" in last, last
  assert f"tensorboard --logdir={run_dir}" in last, last
  assert "Sharding callback duration" not in proc.stderr  # TF's saver timing, once per save.
  assert "First call done in" in proc.stderr and "rate and ETA from the next line" in proc.stderr
  new_events = [f for f in set(os.listdir(run_dir)) - before if f.startswith("events.")]
  assert new_events
  scratch = os.path.join(work, "noindex_events")
  os.makedirs(scratch)
  for f in new_events:
    shutil.copy(os.path.join(run_dir, f), scratch)
  steps = events.scalar_steps(scratch, "train/d_loss")
  assert steps and min(steps) > 4, steps  # Never a step below the checkpoint's again.

  # A --max_steps at or below the run's step trains nothing and leaves config.json alone.
  config = os.path.join(run_dir, "config.json")
  digest = _sha256(config)
  proc = _script("train", *TINY_RUN, f"--model_dir={run_dir}", "--max_steps=3")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Already at step 6 (--max_steps=3)" in proc.stderr
  assert _sha256(config) == digest

  # bin/sample finds a bare checkpoint name in the run directory.
  out = os.path.join(work, "bare_name.png")
  proc = _script("sample", f"--model_dir={run_dir}", "--checkpoint=ckpt-2", f"--output={out}",
                 "--num_samples=4")
  assert proc.returncode == 0 and os.path.getsize(out) > 100, proc.stderr[-3000:]


def _statistics(path, resolution=None, dataset=None, weights="a" * 64, count=100, shift=0.0):
  rng = np.random.default_rng(len(path))
  x = rng.normal(size=(3000, 2048)) * 0.1
  extra = {k: v for k, v in (("resolution", resolution), ("dataset", dataset)) if v is not None}
  np.savez(path, mu=np.full(2048, shift), sigma=np.cov(x, rowvar=False), count=np.int64(count),
           weights_sha256=weights, source="test", **extra)


@pytest.mark.slow
def test_bin_fid_names_every_mismatch_of_its_inputs(catalogue):
  work = catalogue[0]
  a, b = os.path.join(work, "fid_a.npz"), os.path.join(work, "fid_b.npz")
  _statistics(a, resolution=32, weights="a" * 64, count=100)
  _statistics(b, resolution=48, weights="b" * 64, count=5000, shift=0.5)
  proc = _script("fid", a, b, "--noprogress")
  assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert float(proc.stdout.strip()) > 0
  warnings = [line for line in proc.stderr.splitlines() if "bin/fid: warning: " in line]
  text = "\n".join(warnings)
  assert "aaaaaaaaaaaa" in text and "bbbbbbbbbbbb" in text and "not comparable" in text
  assert "is 32 px" in text and "is 48 px" in text
  assert "fid_a.npz has 100 images, fewer than the 2048" in text
  assert "fid_b.npz has" not in text
  assert len(warnings) == 3, warnings  # Weights, resolution, fid_a's count: one line each.
  assert "LinAlgWarning" not in proc.stderr

  # TTUR-style statistics (no resolution recorded) against a few images, whose activations give
  # the exact trace: the sqrtm route ran above (a second one would add 13 CPU s).
  old, few = os.path.join(work, "fid_old.npz"), os.path.join(work, "fid_few_images.npz")
  np.savez(old, mu=np.zeros(2048), sigma=np.eye(2048))
  np.savez(few, images=np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), np.uint8))
  proc = _script("fid", old, few, "--noprogress", env=_weights_env())
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert float(proc.stdout.strip()) > 0
  assert "fid_old.npz records no resolution" in proc.stderr


@pytest.mark.slow
def test_bin_evaluate_prints_its_numbers_when_the_report_cannot_be_written(catalogue):
  import json
  work = catalogue[0]
  stats = os.path.join(work, "stats_full_disk.npz")
  _statistics(stats, resolution=32, dataset="embedded", count=5000)

  proc = scripts.run(  # A disk on which the report JSON does not fit (400 bytes).
      "evaluate", f"--model_dir={work}/run", f"--stats={stats}", "--num_samples=10",
      "--repeats=1", "--niqe_samples=0", "--generators=ema",
      f"--output_dir={work}/eval_full_disk", "--noprogress", env=_weights_env(),
      file_size_limit=400)
  assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  errors = [line for line in proc.stderr.splitlines() if "bin/evaluate: error: " in line]
  assert len(errors) == 1 and "it is printed above as JSON" in errors[0], proc.stderr[-2000:]
  assert "AutoGraph" not in proc.stderr  # No TF warning noise around the error line.
  printed = json.loads(proc.stdout)  # The numbers are not lost.
  assert printed["summary"]["ema"]["fid"]["mean"] > 0 and printed["stats"] == stats
  out_dir = os.path.join(work, "eval_full_disk")
  leftovers = os.listdir(out_dir) if os.path.isdir(out_dir) else []
  assert not [f for f in leftovers if f.endswith(".json")], leftovers  # No partial report.


@pytest.mark.slow
def test_bin_evaluate_names_a_mismatched_reference_and_records_its_hash(catalogue):
  import json
  work = catalogue[0]
  stats = os.path.join(work, "stats_48px.npz")
  _statistics(stats, resolution=48, dataset="cifar10", weights="c" * 64, count=100)
  out = os.path.join(work, "eval_mismatch")
  proc = _script("evaluate", f"--model_dir={work}/run", f"--stats={stats}", "--num_samples=10",
                 "--repeats=1", "--niqe_samples=0", "--generators=ema", f"--output_dir={out}",
                 "--noprogress", env=_weights_env())
  assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  warnings = [line for line in proc.stderr.splitlines() if "bin/evaluate: warning: " in line]
  text = "\n".join(warnings)
  assert "are 48 px, the run is 32 px" in text
  assert "dataset cifar10, the run is of embedded" in text
  assert "Inception weights cccccccccccc" in text
  assert "are of 100 images, fewer than the 2048" in text
  assert "10 samples per repeat, fewer than the 2048" in text
  assert "LinAlgWarning" not in proc.stderr
  with open(os.path.join(out, "eval_step_0000004.json")) as f:
    report = json.load(f)
  assert report["stats"] == stats and report["stats_sha256"] == _sha256(stats)
  with open(os.path.join(out, "eval_step_0000004.md")) as f:
    table = f.read()
  assert "One repeat: no spread" in table and " ± " not in table.split("| ema |")[1]
