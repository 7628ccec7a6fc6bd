"""Tests of the image sources: embedded, npz, folder and the TFDS datasets (mocked, offline)."""

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from qagan_tf import data
from qagan_tf.data import sources


def test_embedded_is_deterministic_natural_and_seeded():
  a = data.load_images("embedded", 48, num_examples=16, seed=0)
  b = data.load_images("embedded", 48, num_examples=16, seed=0)
  c = data.load_images("embedded", 48, num_examples=16, seed=1)
  assert a.shape == (16, 48, 48, 3) and a.dtype == np.uint8
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  # Natural crops: neither constant nor noise (neighbouring pixels are strongly correlated).
  x = a.astype(np.float64)
  corr = np.corrcoef(x[:, :, :-1].ravel(), x[:, :, 1:].ravel())[0, 1]
  assert x.std() > 20 and corr > 0.8


def test_npz_source(tmp_path):
  images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
  path = tmp_path / "x.npz"
  np.savez(path, images=images)
  np.testing.assert_array_equal(data.load_images(f"npz:{path}", 32), images)
  assert data.load_images(f"npz:{path}", 64).shape == (5, 64, 64, 3)
  assert data.load_images(f"npz:{path}", 32, num_examples=2).shape[0] == 2


@pytest.mark.parametrize("content,match", [
    ({"pixels": np.zeros((2, 8, 8, 3), np.uint8)}, "has no array 'images'.*pixels"),
    ({"images": np.zeros((2, 8, 8, 3), np.float32)}, "uint8"),
    ({"images": np.zeros((8, 8, 3), np.uint8)}, r"\(N, H, W, 3\)"),
    ({"images": np.zeros((0, 8, 8, 3), np.uint8)}, "N >= 1"),
])
def test_npz_source_errors(tmp_path, content, match):
  path = tmp_path / "bad.npz"
  np.savez(path, **content)
  with pytest.raises(data.DataError, match=match):
    data.load_images(f"npz:{path}", 32)


def test_npz_missing_or_corrupt(tmp_path):
  with pytest.raises(data.DataError, match="no such file"):
    data.load_images(f"npz:{tmp_path}/none.npz", 32)
  bad = tmp_path / "corrupt.npz"
  bad.write_bytes(b"not a zip file")
  with pytest.raises(data.DataError, match="cannot be read"):
    data.load_images(f"npz:{bad}", 32)


def test_folder_source_recursive_mixed_sizes(tmp_path):
  rng = np.random.default_rng(1)
  (tmp_path / "sub").mkdir()
  Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "a.png")
  Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(tmp_path / "sub/b.jpg")
  Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(tmp_path / "sub/c.PNG")
  (tmp_path / "notes.txt").write_text("ignored")
  images = data.load_images(f"folder:{tmp_path}", 32)
  assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8
  first = np.asarray(Image.open(tmp_path / "a.png"))
  np.testing.assert_array_equal(images[0], first)


def test_folder_errors(tmp_path):
  with pytest.raises(data.DataError, match="no such directory"):
    data.load_images(f"folder:{tmp_path}/missing", 32)
  with pytest.raises(data.DataError, match="no .png"):
    data.load_images(f"folder:{tmp_path}", 32)
  (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
  with pytest.raises(data.DataError, match="broken.png"):
    data.load_images(f"folder:{tmp_path}", 32)


def test_unknown_dataset_lists_valid_names():
  with pytest.raises(data.DataError, match="cifar10, stl10, celeb_a, folder:PATH, npz:PATH, embedded"):
    data.load_images("imagenet", 32)


@pytest.mark.parametrize("name,resolution", [("cifar10", 32), ("stl10", 48), ("stl10", 96),
                                             ("celeb_a", 64)])
def test_tfds_sources_with_mock_data(name, resolution):
  with tfds.testing.mock_data(num_examples=6):
    images = data.load_images(name, resolution)
  assert images.shape == (6, resolution, resolution, 3) and images.dtype == np.uint8
  assert images.std() > 0


def test_celeb_a_centre_crop():
  # An aligned 218x178 image whose centre 108x108 square is white and the rest black.
  image = np.zeros((218, 178, 3), np.uint8)
  image[55:163, 35:143] = 255
  _, fn = sources._tfds_image_fn("celeb_a", 64)
  out = fn(image).numpy()
  assert out.shape == (64, 64, 3)
  assert out.min() >= 250


@pytest.mark.parametrize("name,resolution", [("cifar10", 64), ("stl10", 32), ("celeb_a", 32)])
def test_tfds_wrong_resolution(name, resolution):
  with pytest.raises(data.DataError, match=f"resolution={resolution}"):
    data.load_images(name, resolution)


def test_tfds_missing_dataset_explains_download(tmp_path):
  os.environ.pop("TFDS_DATA_DIR", None)
  with pytest.raises(data.DataError, match="tfds build cifar10"):
    data.load_images("cifar10", 32, data_dir=str(tmp_path), download=False)


def _write_png16(path, array):
  """A 16-bit grayscale or RGB(A) PNG written byte by byte (PIL cannot write 16-bit RGB)."""
  import struct
  import zlib
  a = np.asarray(array, np.uint16)
  color_type, a3 = (0, a[..., None]) if a.ndim == 2 else ({3: 2, 4: 6}[a.shape[2]], a)
  h, w = a3.shape[:2]
  raw = b"".join(b"\x00" + a3[y].astype(">u2").tobytes() for y in range(h))

  def chunk(kind, payload):
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xffffffff))
  with open(path, "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type,
                                                                0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_16_bit_pngs_give_the_same_images_as_their_8_bit_versions(tmp_path):
  """PIL opens 16-bit grayscale PNGs as mode I;16, whose convert("RGB") clipped ~98% of the
  pixels to 255; they are now scaled by /257 (exact for 8-bit values x 257)."""
  rng = np.random.default_rng(3)
  gray = rng.integers(0, 256, (3, 16, 16), dtype=np.uint8)
  rgb = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
  for name, images in (("gray", gray), ("rgb", rgb)):
    for bits, folder in ((8, tmp_path / f"{name}8"), (16, tmp_path / f"{name}16")):
      folder.mkdir()
      for i, im in enumerate(images):
        if bits == 8:
          Image.fromarray(im).save(folder / f"{i}.png")
        else:
          _write_png16(folder / f"{i}.png", im.astype(np.uint16) * 257)
    eight = sources.load_image_set(str(tmp_path / f"{name}8"))
    sixteen = sources.load_image_set(str(tmp_path / f"{name}16"))
    np.testing.assert_array_equal(sixteen, eight)
    if name == "gray":
      assert Image.open(tmp_path / "gray16" / "0.png").mode.startswith("I;16")
      np.testing.assert_array_equal(sixteen[..., 1], gray)
  # Values that are not multiples of 257 round to the nearest 8-bit level.
  _write_png16(tmp_path / "odd.png", np.array([[0, 128, 300, 65535]]))
  np.testing.assert_array_equal(sources.read_image(str(tmp_path / "odd.png"))[0, :, 0],
                                [0, 0, 1, 255])


@pytest.mark.parametrize("scale,offset", [(1.0, 0.0), (2.0, -1.0), (255.0, 0.0)])
def test_float_npz_is_refused_with_a_fix_that_keeps_the_picture(tmp_path, scale, offset):
  images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
  x = (images / 255.0 * scale + offset).astype(np.float32)
  np.savez(tmp_path / "f.npz", images=x)
  with pytest.raises(data.DataError, match="float32") as error:
    data.load_images(f"npz:{tmp_path}/f.npz", 8)
  fix = str(error.value).split("convert with ", 1)[1].rstrip(".")
  converted = eval(fix, {"np": np, "x": x})  # The message's own expression.
  assert converted.dtype == np.uint8
  np.testing.assert_array_equal(converted, images)


def test_large_resizes_and_oversized_batches_are_announced(tmp_path, caplog):
  import logging
  caplog.set_level(logging.WARNING)
  np.savez(tmp_path / "small.npz", images=np.zeros((4, 8, 8, 3), np.uint8))
  data.load_images(f"npz:{tmp_path}/small.npz", 32)
  assert "images are 8x8, resized to 32x32 (4.0x up)" in caplog.text
  caplog.clear()
  data.load_images(f"npz:{tmp_path}/small.npz", 12)  # 1.5x: no warning.
  assert "resized" not in caplog.text
  assert data.warn_if_batch_exceeds(64, 512, "dataset=npz:x")
  assert "dataset=npz:x has 64 image(s) but --batch_size=512" in caplog.text
  assert not data.warn_if_batch_exceeds(64, 64, "x")


def test_huge_images_are_named_in_one_line(tmp_path, caplog, monkeypatch):
  import logging
  caplog.set_level(logging.WARNING)
  path = tmp_path / "big.png"
  Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(path)
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 px: a "bomb" warning, < 2x.
  assert sources.read_image(str(path)).shape == (40, 40, 3)
  assert "big.png is very large" in caplog.text
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # > 2x the limit: PIL refuses.
  with pytest.raises(data.DataError, match="big.png.*downscale it"):
    sources.read_image(str(path))


def test_folders_follow_symlinked_directories_once(tmp_path):
  rng = np.random.default_rng(4)
  real = tmp_path / "elsewhere"
  real.mkdir()
  for i in range(2):
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(real / f"{i}.png")
  top = tmp_path / "top"
  top.mkdir()
  Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(top / "own.png")
  os.symlink(real, top / "linked")
  os.symlink(top, real / "back_to_top")  # A loop: top/linked/back_to_top is top again.
  images = sources.load_image_set(str(top))
  assert len(images) == 3  # own.png and the two linked ones, each once.


@pytest.mark.slow
def test_bin_niqe_scores_16_bit_images_as_their_8_bit_versions(tmp_path):
  import json
  import subprocess
  import sys
  import skimage.data
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  gray = skimage.data.camera()[100:292, 150:342]
  rgb = skimage.data.astronaut()[0:192, 100:292]
  paths = []
  for name, image in (("gray", gray), ("rgb", rgb)):
    Image.fromarray(image).save(tmp_path / f"{name}8.png")
    _write_png16(tmp_path / f"{name}16.png", image.astype(np.uint16) * 257)
    paths += [str(tmp_path / f"{name}8.png"), str(tmp_path / f"{name}16.png")]
  proc = subprocess.run([sys.executable, os.path.join(repo, "bin", "niqe"), "--json", *paths],
                        capture_output=True, text=True, timeout=600, cwd=repo)
  assert proc.returncode == 0, proc.stderr[-2000:]
  scores = [r["niqe"] for r in json.loads(proc.stdout)]
  assert scores[0] == pytest.approx(scores[1], abs=1e-6)  # Grayscale.
  assert scores[2] == pytest.approx(scores[3], abs=1e-6)  # RGB.
  assert 0 < scores[0] < 20 and 0 < scores[2] < 20
  assert scores[0] != pytest.approx(scores[2], abs=1e-3)  # Two pictures, two scores.
