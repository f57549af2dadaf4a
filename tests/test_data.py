"""MNIST loading from small IDX files built here (no network), plus the real test split if present."""
from __future__ import annotations

import gzip
import hashlib
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from compclust import data
from compclust.data import load_mnist, read_idx

IMAGES, LABELS = data.MNIST_FILES["test"]
REAL_MNIST_DIR = os.environ.get("COMPCLUST_MNIST_DIR")  # read before the fixture below unsets it


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """Uncompressed IDX bytes for a uint8 array (``magic`` overrides the computed one)."""
    magic = 0x0800 | array.ndim if magic is None else magic
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_sums(folder: Path) -> None:
    lines = [f"{hashlib.md5(p.read_bytes()).hexdigest()}  {p.name}" for p in sorted(folder.glob("*.gz"))]
    (folder / "MD5SUMS").write_text("\n".join(lines) + "\n")


def make_mnist(folder: Path, n: int = 5, images_raw: bytes | None = None, labels_raw: bytes | None = None,
               sums: bool = True):
    """A tiny test split in ``folder``; raw IDX bytes (before gzip) can be swapped in to corrupt it."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    labels = (np.arange(n) % 10).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / IMAGES).write_bytes(gzip.compress(idx_bytes(images) if images_raw is None else images_raw))
    (folder / LABELS).write_bytes(gzip.compress(idx_bytes(labels) if labels_raw is None else labels_raw))
    if sums:
        write_sums(folder)
    return images, labels


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv("COMPCLUST_MNIST_DIR", raising=False)
    monkeypatch.delenv("COMPCLUST_CACHE", raising=False)


def test_round_trip_uint8(tmp_path):
    images, labels = make_mnist(tmp_path)
    x, y = load_mnist(tmp_path, as_float=False)
    assert x.dtype == np.uint8 and x.shape == (5, 784)
    np.testing.assert_array_equal(x, images.reshape(5, 784))
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, labels)


def test_as_float_scales_to_unit_interval(tmp_path):
    images, _ = make_mnist(tmp_path)
    x, _ = load_mnist(tmp_path)
    assert x.dtype == np.float32
    assert x[0, 0] == 0.0 and x[0, 1] == 1.0
    np.testing.assert_allclose(x, images.reshape(5, 784) / 255.0, rtol=1e-6)


def test_read_idx(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "a.gz"
    path.write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(path), array)
    np.testing.assert_array_equal(read_idx(path, data.IDX_MAGIC_IMAGES), array)


def test_env_var_folder(tmp_path, monkeypatch):
    images, _ = make_mnist(tmp_path)
    monkeypatch.setenv("COMPCLUST_MNIST_DIR", str(tmp_path))
    x, _ = load_mnist(as_float=False)
    np.testing.assert_array_equal(x, images.reshape(5, 784))


def test_no_folder_explains_options():
    with pytest.raises(ValueError, match="COMPCLUST_MNIST_DIR") as info:
        load_mnist()
    assert "directory" in str(info.value) and "download" in str(info.value)


def test_unknown_split(tmp_path):
    with pytest.raises(ValueError, match="split"):
        load_mnist(tmp_path, split="validation")


def test_checksum_mismatch_from_md5sums(tmp_path):
    make_mnist(tmp_path)
    good = hashlib.md5((tmp_path / LABELS).read_bytes()).hexdigest()
    sums = (tmp_path / "MD5SUMS").read_text().replace(good, "0" * 32)
    (tmp_path / "MD5SUMS").write_text(sums)
    with pytest.raises(ValueError, match="MD5") as info:
        load_mnist(tmp_path)
    message = str(info.value)
    assert LABELS in message and "0" * 32 in message and good in message


def test_checksum_falls_back_to_builtin_sums(tmp_path, monkeypatch):
    make_mnist(tmp_path, sums=False)
    with pytest.raises(ValueError, match=f"{IMAGES}.*{data.MNIST_MD5[IMAGES]}"):
        load_mnist(tmp_path)  # fake files against the real MNIST sums
    for name in (IMAGES, LABELS):
        monkeypatch.setitem(data.MNIST_MD5, name, hashlib.md5((tmp_path / name).read_bytes()).hexdigest())
    assert load_mnist(tmp_path)[0].shape == (5, 784)


def test_missing_file(tmp_path):
    make_mnist(tmp_path)
    (tmp_path / LABELS).unlink()
    with pytest.raises(ValueError, match=LABELS):
        load_mnist(tmp_path)


LABELS_5 = (np.arange(5) % 10).astype(np.uint8)
IMAGES_5 = np.zeros((5, 28, 28), np.uint8)


@pytest.mark.parametrize("bad, raw, problem", [
    ("images", idx_bytes(IMAGES_5, magic=0x12340803), "magic"),
    ("labels", idx_bytes(LABELS_5, magic=2051)[:8] + LABELS_5.tobytes(), "magic"),   # says 3 dims
    ("images", idx_bytes(IMAGES_5.reshape(5, 784)), "magic"),                        # 2 dims
    ("labels", idx_bytes(LABELS_5, magic=0x0D01), "dtype"),                          # float code
    ("images", idx_bytes(IMAGES_5)[:-1], "payload"),                                 # truncated
    ("labels", idx_bytes(LABELS_5) + b"\0", "payload"),                              # extra byte
    ("labels", b"\0\0\x08", "header"),
    ("labels", idx_bytes(LABELS_5)[:6], "header"),
    ("images", idx_bytes(np.zeros((5, 27, 28), np.uint8)), "28x28"),
    ("labels", idx_bytes(np.arange(4, dtype=np.uint8)), "4 labels"),                 # count differs
    ("labels", idx_bytes(np.full(5, 10, np.uint8)), "not a digit"),
])
def test_corrupt_idx_is_an_error_naming_the_file(tmp_path, bad, raw, problem):
    make_mnist(tmp_path, images_raw=raw if bad == "images" else None, labels_raw=raw if bad == "labels" else None)
    with pytest.raises(ValueError, match=problem) as info:
        load_mnist(tmp_path)
    assert (IMAGES if bad == "images" else LABELS) in str(info.value)


@pytest.mark.parametrize("how", ["not_gzip", "truncated_gzip"])
def test_bad_gzip_is_an_error_naming_the_file(tmp_path, how):
    make_mnist(tmp_path, sums=False)
    path = tmp_path / IMAGES
    raw = path.read_bytes()
    path.write_bytes(idx_bytes(IMAGES_5) if how == "not_gzip" else raw[: len(raw) // 2])
    write_sums(tmp_path)
    with pytest.raises(ValueError, match="gzip") as info:
        load_mnist(tmp_path)
    assert IMAGES in str(info.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(ValueError, match="nothing.gz"):
        read_idx(tmp_path / "nothing.gz")


def fake_server(tmp_path: Path, monkeypatch) -> list[str]:
    """Serve a tiny split through a patched ``_fetch``; the built-in sums are patched to match."""
    source = tmp_path / "server"
    make_mnist(source, sums=False)
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        assert url.startswith(data.MNIST_URL)
        fetched.append(url)
        return (source / url.rsplit("/", 1)[1]).read_bytes()

    monkeypatch.setattr(data, "_fetch", fetch)
    for name in (IMAGES, LABELS):
        monkeypatch.setitem(data.MNIST_MD5, name, hashlib.md5((source / name).read_bytes()).hexdigest())
    return fetched


def test_download_into_cache_dir(tmp_path, monkeypatch):
    fetched = fake_server(tmp_path, monkeypatch)
    cache = tmp_path / "cache" / "mnist"
    x, y = load_mnist(download=True, cache_dir=cache)
    assert x.shape == (5, 784) and y.shape == (5,)
    assert sorted(p.name for p in cache.iterdir()) == sorted([IMAGES, LABELS])  # no temp files left
    assert len(fetched) == 2
    load_mnist(download=True, cache_dir=cache)  # cached: nothing fetched again
    assert len(fetched) == 2


def test_download_default_cache_from_env(tmp_path, monkeypatch):
    fake_server(tmp_path, monkeypatch)
    monkeypatch.setenv("COMPCLUST_CACHE", str(tmp_path / "envcache"))
    load_mnist(download=True)
    assert (tmp_path / "envcache" / IMAGES).is_file()


def test_download_with_bad_bytes_writes_nothing(tmp_path, monkeypatch):
    fake_server(tmp_path, monkeypatch)
    monkeypatch.setattr(data, "_fetch", lambda url: b"not mnist")
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=f"{IMAGES}.*MD5"):
        load_mnist(download=True, cache_dir=cache)
    assert not cache.exists() or not any(cache.iterdir())


def test_real_mnist_test_split():
    if not REAL_MNIST_DIR:
        pytest.skip("COMPCLUST_MNIST_DIR is not set (CI points it at ../shared/data/mnist)")
    x, y = load_mnist(REAL_MNIST_DIR)
    assert x.shape == (10000, 784) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    assert y.shape == (10000,) and y.dtype == np.int64
    assert set(np.unique(y)) == set(range(10))
