"""The Keras Inception against the golden pool_3 features, the official preprocessing, the weight
readers (npz and frozen GraphDef), the weight search order, verification and archive safety."""

import io
import os
import tarfile

import numpy as np
import pytest
import tensorflow as tf

from qagan_tf.metrics import features as features_lib
from qagan_tf.metrics import inception, inception_weights
from tests.reference import reference_path

SIZES = (32, 48, 64, 96, 299)


@pytest.fixture(scope="module")
def weights_path():
  return reference_path("inception", "fid_inception_2015_12_05_pool3.npz")


@pytest.fixture(scope="module")
def extractor(weights_path):
  return features_lib.InceptionFeatures(weights_path, batch_size=10)


@pytest.fixture(scope="module")
def golden():
  with np.load(reference_path("inception", "golden_pool3.npz")) as g:
    return {k: g[k] for k in g.files}


@pytest.mark.parametrize("size", SIZES)
def test_pool3_matches_the_golden_features(extractor, golden, size):
  out = extractor(golden[f"images_{size}"])
  diff = np.abs(out["pool3"] - golden[f"pool3_{size}"]).max()
  print(f"{size} px: max |pool3 - golden| = {diff:.2e}")
  # docs/evaluation.md states this bound; the largest difference measured on an AMD EPYC with
  # AVX-512 (2026-12-04) was 6.0e-5, at 32 px.
  assert diff <= 2e-4
  assert "logits" not in out  # The reference weights have no softmax layer.


def test_the_features_do_not_depend_on_the_batch_size(extractor, golden):
  """So a set smaller than the batch is scored in calls of its own size, not padded to 64
  (`features.batch_size_for`: the in-training evaluation, the evaluation callback, bin/evaluate
  and bin/compute_stats)."""
  images = golden["images_32"]  # 18 images: calls of 10 (the fixture's) against calls of 5.
  small = features_lib.InceptionFeatures(model=extractor.model, info=extractor.info,
                                         batch_size=features_lib.batch_size_for(5, 64))
  assert small.batch_size == 5
  np.testing.assert_allclose(small(images)["pool3"], extractor(images)["pool3"], rtol=0,
                             atol=1e-5)
  assert [features_lib.batch_size_for(n) for n in (1, 20, 64, 5000)] == [1, 20, 64, 64]
  assert features_lib.batch_size_for(30, 16) == 16


def _legacy_bilinear(image, size):
  """NumPy TF1 bilinear (align_corners=False, half_pixel_centers=False): src = dst * in / out."""
  h, w = image.shape[:2]
  ys, xs = np.arange(size) * h / size, np.arange(size) * w / size
  y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
  y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
  fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
  img = image.astype(np.float64)
  top = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx
  bottom = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx
  return top * (1 - fy) + bottom * fy


def test_preprocessing_is_the_legacy_bilinear_resize_then_scaling():
  image = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
  ours = inception.InceptionV3FID.preprocess(tf.constant(image)).numpy()[0]
  expected = (_legacy_bilinear(image[0], 299) - 128.0) / 128.0
  np.testing.assert_allclose(ours, expected, atol=1e-5)
  # TF2's default (half-pixel centres) is measurably different: the test can tell them apart.
  modern = (tf.image.resize(image.astype(np.float32), [299, 299]).numpy()[0] - 128) / 128
  assert np.abs(modern - expected).max() > 0.05
  full = np.random.default_rng(1).integers(0, 256, (1, 299, 299, 3), dtype=np.uint8)
  np.testing.assert_allclose(inception.InceptionV3FID.preprocess(full).numpy()[0],
                             (full[0] - 128.0) / 128.0, atol=1e-7)


def test_uint8_and_float_inputs_agree_and_bad_images_are_refused(extractor, golden):
  images = golden["images_32"][:3]
  a = extractor(images)["pool3"]
  b = extractor(images.astype(np.float32))["pool3"]
  np.testing.assert_allclose(a, b, atol=1e-6)
  for bad, message in [(images[0], "expected"), (np.zeros((0, 8, 8, 3), np.uint8), "no images"),
                       (images.astype(np.float32) / 127.5 - 1, "outside"),
                       (np.full((2, 8, 8, 3), np.nan, np.float32), "NaN"),
                       (images.astype(np.int32), "dtype")]:
    with pytest.raises(features_lib.ImageInputError, match=message):
      extractor(bad)


def _write_graph_def(path, arrays, softmax=None):
  """A frozen GraphDef holding `arrays` as Const nodes named like the official graph's."""
  graph = tf.Graph()
  with graph.as_default():
    for name, value in arrays.items():
      tf.constant(value, name=name)
    if softmax is not None:
      tf.constant(softmax[0], name="softmax/weights")
      tf.constant(softmax[1], name="softmax/biases")
    # Distractors the reader must ignore.
    tf.constant(np.zeros(3, np.float32), name="some/other_const")
    tf.identity(tf.constant(1.0), name="pool_3/_reshape")
  with open(path, "wb") as f:
    f.write(graph.as_graph_def().SerializeToString())


@pytest.mark.slow
def test_frozen_graph_reader_gives_the_same_network_with_logits(tmp_path, weights_path, golden,
                                                                extractor):
  arrays = inception_weights.read_npz(weights_path)
  rng = np.random.default_rng(0)
  softmax = (rng.normal(size=(2048, 1008)).astype(np.float32) * 0.01,
             rng.normal(size=1008).astype(np.float32))
  pb = str(tmp_path / inception_weights.GRAPH_MEMBER)
  _write_graph_def(pb, arrays, softmax)
  read = inception_weights.read_graph_def(pb)
  assert "some/other_const" not in read and "softmax/weights" in read
  model, info = inception_weights.load_inception(pb)
  assert info["sha256"] == inception_weights.POOL3_SHA256 and info["logits"]
  images = golden["images_48"][:4]
  out = model(tf.constant(images))
  np.testing.assert_allclose(out["pool3"].numpy(), extractor(images)["pool3"], atol=1e-5)
  np.testing.assert_allclose(out["logits"].numpy(),
                             out["pool3"].numpy() @ softmax[0] + softmax[1], rtol=1e-4, atol=1e-4)

  # The official archive route: only the graph is read, verified and cached as .npz.
  tgz = str(tmp_path / "inception-2015-12-05.tgz")
  with tarfile.open(tgz, "w:gz") as tar:
    tar.add(pb, arcname="classify_image_graph_def.pb")
  out_npz = str(tmp_path / "cache" / inception_weights.CACHE_NAME)
  sha = inception_weights.convert_archive(tgz, out_npz)
  assert sha == inception_weights.POOL3_SHA256
  with np.load(out_npz) as cached:
    assert "softmax/weights" in cached.files and len(cached.files) == 378


def test_weights_search_order_and_errors(tmp_path, weights_path, monkeypatch):
  monkeypatch.setenv(inception_weights.ENV_CACHE, str(tmp_path / "cache"))
  monkeypatch.delenv(inception_weights.ENV_WEIGHTS, raising=False)
  with pytest.raises(inception_weights.WeightsError, match="bin/fetch_inception"):
    inception_weights.resolve_path()
  cached = tmp_path / "cache" / "inception" / inception_weights.CACHE_NAME
  cached.parent.mkdir(parents=True)
  cached.write_bytes(b"x")
  assert inception_weights.resolve_path() == str(cached)
  monkeypatch.setenv(inception_weights.ENV_WEIGHTS, weights_path)
  assert inception_weights.resolve_path() == weights_path
  assert inception_weights.resolve_path(str(cached)) == str(cached)
  with pytest.raises(inception_weights.WeightsError, match="no such file"):
    inception_weights.resolve_path(str(tmp_path / "nope.npz"))
  monkeypatch.setenv(inception_weights.ENV_WEIGHTS, str(tmp_path / "gone.npz"))
  with pytest.raises(inception_weights.WeightsError, match="QAGAN_INCEPTION_WEIGHTS"):
    inception_weights.resolve_path()


def test_incomplete_corrupt_or_altered_weights_are_refused(tmp_path, weights_path):
  arrays = inception_weights.read_npz(weights_path)
  altered = dict(arrays)
  altered["mixed_4/conv/batchnorm/beta"] = altered["mixed_4/conv/batchnorm/beta"] + 1e-3
  np.savez(tmp_path / "altered.npz", **altered)
  with pytest.raises(inception_weights.WeightsError, match="checksum"):
    inception_weights.load_inception(str(tmp_path / "altered.npz"))
  del altered["conv/conv2d_params"]
  np.savez(tmp_path / "partial.npz", **altered)
  with pytest.raises(inception_weights.WeightsError, match="missing"):
    inception_weights.load_inception(str(tmp_path / "partial.npz"))
  (tmp_path / "junk.npz").write_bytes(b"junk")
  with pytest.raises(inception_weights.WeightsError, match="cannot be read"):
    inception_weights.load_inception(str(tmp_path / "junk.npz"))
  (tmp_path / "junk.pb").write_bytes(b"\xff\xfe junk")
  with pytest.raises(inception_weights.WeightsError, match="GraphDef"):
    inception_weights.load_inception(str(tmp_path / "junk.pb"))
  with pytest.raises(inception_weights.WeightsError, match="no softmax layer"):
    inception_weights.load_inception(weights_path, with_logits=True)


def _tgz_with(tmp_path, member_name, kind=tarfile.REGTYPE):
  path = str(tmp_path / f"evil_{abs(hash(member_name))}.tgz")
  with tarfile.open(path, "w:gz") as tar:
    info = tarfile.TarInfo(member_name)
    info.type = kind
    data = b"graph"
    if kind == tarfile.SYMTYPE:
      info.linkname = "/etc/passwd"
      tar.addfile(info)
    else:
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return path


def test_unsafe_or_wrong_archives_are_refused(tmp_path):
  out = str(tmp_path / "out.npz")
  cases = [(_tgz_with(tmp_path, "../classify_image_graph_def.pb"), "unsafe path"),
           (_tgz_with(tmp_path, "/tmp/classify_image_graph_def.pb"), "unsafe path"),
           (_tgz_with(tmp_path, "classify_image_graph_def.pb", tarfile.SYMTYPE), "not a regular"),
           (_tgz_with(tmp_path, "readme.txt"), "has no classify_image_graph_def.pb")]
  for archive, message in cases:
    with pytest.raises(inception_weights.WeightsError, match=message):
      inception_weights.convert_archive(archive, out)
  with pytest.raises(inception_weights.WeightsError, match="SHA-256"):
    inception_weights.convert_archive(cases[0][0], out, archive_sha256="0" * 64)
  not_tar = tmp_path / "plain.tgz"
  not_tar.write_bytes(b"not an archive")
  with pytest.raises(inception_weights.WeightsError, match="not a readable"):
    inception_weights.convert_archive(str(not_tar), out)
  assert not os.path.exists(out)
  assert not [p for p in os.listdir(tmp_path) if p.endswith(".npz")]


def test_download_without_network_explains_how_to_supply_the_file(tmp_path):
  dest = str(tmp_path / "x.tgz")
  with pytest.raises(inception_weights.WeightsError, match="--archive="):
    inception_weights.download("http://127.0.0.1:9/inception-2015-12-05.tgz", dest)
  assert not os.listdir(tmp_path)


def test_features_are_computed_without_tf32_and_the_setting_is_restored():
  from qagan_tf.utils import precision

  class Probe:  # Records the TF32 setting each time the network runs (not only when traced).
    with_logits = False

    def __init__(self):
      self.seen = []

    def _record(self):
      self.seen.append(precision.tensor_float_32_enabled())
      return np.float32(0)

    def __call__(self, x):
      flag = tf.py_function(self._record, [], tf.float32)
      return {"pool3": tf.zeros([tf.shape(x)[0], 2048]) + flag}

  before = precision.tensor_float_32_enabled()
  precision.set_tensor_float_32(True)  # TensorFlow's own default.
  try:
    probe = Probe()
    extractor = features_lib.InceptionFeatures(model=probe, info={}, batch_size=2)
    out = extractor(np.zeros((3, 32, 32, 3), np.uint8))
    assert out["pool3"].shape == (3, 2048)
    assert probe.seen == [False, False]
    assert precision.tensor_float_32_enabled()
    with pytest.raises(RuntimeError):  # Restored when the body raises, too.
      with precision.tensor_float_32(False):
        raise RuntimeError
    assert precision.tensor_float_32_enabled()
  finally:
    precision.set_tensor_float_32(before)
