"""Finding, reading, verifying and fetching the weights of the 2015-12-05 Inception.

Sources, in this order: an explicit path, env QAGAN_INCEPTION_WEIGHTS, the cache directory
(env QAGAN_CACHE_DIR or ~/.cache/qagan_tf, sub-folder inception/). Formats: `.npz` with the graph's
scope names (`<scope>/conv2d_params`, `<scope>/batchnorm/{beta,moving_mean,moving_variance}`,
optionally `softmax/weights`, `softmax/biases`) and the official frozen graph
`classify_image_graph_def.pb`. The pool_3 weights are checked against a content checksum (SHA-256
over the float32 arrays in key order), so an npz export and the frozen graph of the same network
verify alike.
"""

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request

import numpy as np

from qagan_tf.metrics import inception as inception_lib
from qagan_tf.utils import files, npz

URL = "http://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz"
GRAPH_MEMBER = "classify_image_graph_def.pb"
CACHE_NAME = "inception_2015_12_05.npz"
ENV_WEIGHTS = "QAGAN_INCEPTION_WEIGHTS"
ENV_CACHE = "QAGAN_CACHE_DIR"
# Content checksum of the 376 pool_3 arrays of the official graph (float32, sorted keys).
POOL3_SHA256 = "9f6de23c025ec4930feb97af444116483152bac1dff69d3b408543f6729527a0"
LOGIT_KEYS = ("softmax/weights", "softmax/biases")
_SUFFIXES = ("conv2d_params", "batchnorm/beta", "batchnorm/moving_mean",
             "batchnorm/moving_variance")


class WeightsError(ValueError):
  """Inception weights that are missing, unreadable or not the official ones."""


def pool3_keys():
  """The sorted names of the arrays the pool_3 features need."""
  scopes = inception_lib.InceptionV3FID().convs
  return sorted(f"{scope}/{suffix}" for scope in scopes for suffix in _SUFFIXES)


def content_sha256(arrays, keys):
  """SHA-256 over (key, float32 little-endian bytes) of `keys` in order."""
  digest = hashlib.sha256()
  for key in keys:
    digest.update(key.encode())
    digest.update(np.ascontiguousarray(arrays[key], "<f4").tobytes())
  return digest.hexdigest()


def cache_dir():
  return os.path.join(os.environ.get(ENV_CACHE) or os.path.join(
      os.path.expanduser("~"), ".cache", "qagan_tf"), "inception")


def resolve_path(path=None):
  """The weights file to use: `path`, then $QAGAN_INCEPTION_WEIGHTS, then the cache.

  Raises:
    WeightsError: naming where it looked and how to supply the file.
  """
  if path:
    if not os.path.isfile(path):
      raise WeightsError(f"Inception weights {path}: {files.not_a_file(path)}; give the weights "
                         "file (bin/fetch_inception writes it).")
    return path
  env = os.environ.get(ENV_WEIGHTS)
  if env:
    if not os.path.isfile(env):
      raise WeightsError(f"${ENV_WEIGHTS}={env}: {files.not_a_file(env)}; set it to the weights "
                         "file (bin/fetch_inception writes it).")
    return env
  for name in (CACHE_NAME, GRAPH_MEMBER):
    candidate = os.path.join(cache_dir(), name)
    if os.path.isfile(candidate):
      return candidate
  raise WeightsError(
      "No Inception weights found (looked at the explicit path, $QAGAN_INCEPTION_WEIGHTS and "
      f"{cache_dir()}). Run bin/fetch_inception to download the official graph, or set "
      f"${ENV_WEIGHTS} to a converted .npz or to classify_image_graph_def.pb.")


def read_npz(path):
  return npz.read_arrays(path, WeightsError, "Inception weights ")


def read_graph_def(path):
  """The Const arrays of a frozen GraphDef whose names end in a weight suffix (or softmax)."""
  import tensorflow as tf
  graph_def = tf.compat.v1.GraphDef()
  try:
    with open(path, "rb") as f:
      graph_def.ParseFromString(f.read())
  except Exception as e:  # protobuf raises its own DecodeError.
    raise WeightsError(f"Inception weights {path}: not a frozen TensorFlow GraphDef ({e}).") \
        from None
  wanted = _SUFFIXES + ("weights", "biases")
  arrays = {}
  for node in graph_def.node:
    if node.op == "Const" and node.name.endswith(wanted):
      arrays[node.name] = tf.make_ndarray(node.attr["value"].tensor)
  return arrays


def read_arrays(path):
  if path.lower().endswith(".pb"):
    return read_graph_def(path)
  return read_npz(path)


def check_arrays(arrays, path, verify=True):
  """Checks that every pool_3 array is there (and, with verify, that they are the official ones).

  Returns:
    (sha256 of the pool_3 arrays, whether the logits layer is present).
  """
  keys = pool3_keys()
  missing = [k for k in keys if k not in arrays]
  if missing:
    raise WeightsError(f"Inception weights {path}: {len(missing)} of {len(keys)} pool_3 arrays "
                       f"are missing (e.g. {missing[0]}); use the official graph or its .npz "
                       "export (bin/fetch_inception).")
  sha = content_sha256(arrays, keys)
  if verify and sha != POOL3_SHA256:
    raise WeightsError(f"Inception weights {path}: checksum {sha[:16]}... differs from the "
                       f"official graph's {POOL3_SHA256[:16]}...; the file is corrupt or another "
                       "network. Re-fetch it with bin/fetch_inception.")
  return sha, all(k in arrays for k in LOGIT_KEYS)


def load_inception(path=None, with_logits=None, verify=True):
  """Builds the Inception with the official weights.

  Args:
    path: weights file (see the module docstring for the search order when None).
    with_logits: True to require the softmax layer, False to skip it, None to use it when present.
    verify: check the pool_3 content checksum (tests with synthetic weights turn it off).

  Returns:
    (model, info): an `inception.InceptionV3FID` and {"path", "sha256", "logits"}.

  Raises:
    WeightsError: missing, unreadable, incomplete or unverified weights.
  """
  path = resolve_path(path)
  arrays = read_arrays(path)
  sha, has_logits = check_arrays(arrays, path, verify)
  if with_logits and not has_logits:
    raise WeightsError(f"Inception weights {path} hold no softmax layer (softmax/weights, "
                       "softmax/biases), so there are no logits for the Inception Score; use "
                       "the official graph (bin/fetch_inception) for IS.")
  use_logits = has_logits if with_logits is None else bool(with_logits)
  model = inception_lib.InceptionV3FID(with_logits=use_logits)
  model.set_weights_from_arrays(arrays)
  return model, {"path": os.path.abspath(path), "sha256": sha, "logits": use_logits}


def _safe_member(tar, name):
  """The archive member `name` if it is a regular file with a harmless path."""
  for member in tar.getmembers():
    clean = os.path.normpath(member.name)
    if os.path.isabs(member.name) or clean.startswith(".."):
      raise WeightsError(f"Archive member {member.name!r} has an unsafe path; refusing the "
                         "archive.")
    if os.path.basename(clean) == name:
      if not member.isfile():
        raise WeightsError(f"Archive member {member.name!r} is not a regular file (link or "
                           "device); refusing the archive.")
      return member
  raise WeightsError(f"The archive has no {name}; is it inception-2015-12-05.tgz?")


def convert_archive(archive, output, archive_sha256=None, verify=True):
  """Extracts the frozen graph from the official .tgz, verifies it and writes the .npz cache.

  Only the one member is read (never extractall); the output is written atomically.
  """
  if archive_sha256:
    digest = hashlib.sha256()
    with open(archive, "rb") as f:
      for chunk in iter(lambda: f.read(1 << 20), b""):
        digest.update(chunk)
    if digest.hexdigest() != archive_sha256.lower():
      raise WeightsError(f"{archive}: SHA-256 {digest.hexdigest()} differs from the expected "
                         f"{archive_sha256}; delete it and download again.")
  try:
    with tarfile.open(archive, "r:*") as tar:
      member = _safe_member(tar, GRAPH_MEMBER)
      with tempfile.TemporaryDirectory() as tmp:
        graph_path = os.path.join(tmp, GRAPH_MEMBER)
        with tar.extractfile(member) as src, open(graph_path, "wb") as dst:
          shutil.copyfileobj(src, dst)
        arrays = read_graph_def(graph_path)
  except (tarfile.TarError, OSError, EOFError) as e:
    raise WeightsError(f"{archive}: not a readable .tgz archive ({e}).") from None
  sha, _ = check_arrays(arrays, archive, verify)
  keep = {k: np.asarray(arrays[k], np.float32) for k in pool3_keys() + list(LOGIT_KEYS)
          if k in arrays}
  files.atomic_write(output, lambda tmp: np.savez(tmp, **keep))
  return sha


def download(url, destination, progress=None):
  """Downloads `url` to `destination` atomically (a .part file renamed at the end)."""
  part = destination + ".part"
  try:
    with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
      total = int(response.headers.get("Content-Length") or 0)
      done = 0
      for chunk in iter(lambda: response.read(1 << 20), b""):
        out.write(chunk)
        done += len(chunk)
        if progress:
          progress(done, total)
    os.replace(part, destination)
  except (OSError, ValueError) as e:
    if os.path.exists(part):
      os.remove(part)
    raise WeightsError(
        f"Cannot download {url} ({e}). Without network access, download the file elsewhere and "
        "run bin/fetch_inception --archive=PATH/inception-2015-12-05.tgz, or set "
        f"${ENV_WEIGHTS} to classify_image_graph_def.pb or a converted .npz.") from None
