"""Data sets for demos, tests and benchmarks: the neurolab blob demo, scikit-learn's digits
(shipped inside scikit-learn, no download) and MNIST read from IDX files."""
from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path

import numpy as np

# neurolab's competitive-layer demo (example/newc.py): five 3-D centres, 100 points each.
BLOB_CENTRES = np.array([[1, 2, 1], [2, 5, 2], [-3, 3, 0], [5, -1, -1], [-2, -2, -2]], dtype=np.float64)


def make_blobs(seed: int = 0, n_per_blob: int = 100, noise: float = 0.8, centres=BLOB_CENTRES):
    """The neurolab demo's data: ``centre + noise * N(0, 1)`` for each centre, blob after blob.

    Returns ``(points [n_blobs * n_per_blob, D] float64, labels [N] int)``; generated with NumPy's
    ``default_rng(seed)`` so the same seed gives the same points on every machine.
    """
    centres = np.asarray(centres, np.float64)
    rng = np.random.default_rng(seed)
    points = np.concatenate([c + noise * rng.standard_normal((n_per_blob, centres.shape[1])) for c in centres])
    labels = np.repeat(np.arange(len(centres)), n_per_blob)
    return points, labels


def load_digits():
    """scikit-learn's 8x8 digits: ``(images [1797, 64] float64 in 0..16, labels [1797])``."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    return bunch.data, bunch.target


MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_FILES = {
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
}
# Used when the folder has no MD5SUMS file (or it does not list the file); a module-level dict so
# that tests can patch it.
MNIST_MD5 = {
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
}
IDX_MAGIC_LABELS = 2049  # ubyte, 1 dimension
IDX_MAGIC_IMAGES = 2051  # ubyte, 3 dimensions


def read_idx(path: str | os.PathLike, magic: int | None = None) -> np.ndarray:
    """One gzipped IDX file as a uint8 array, checked so that corruption is an error, not bad data.

    IDX: big-endian header ``0, 0, dtype code, ndim``, then ``ndim`` uint32 sizes, then the payload.
    Only dtype code 0x08 (ubyte) is accepted. ``magic`` (2049 labels, 2051 images), if given, must
    match the header's first four bytes. Raises ValueError naming the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:  # not gzip, truncated, corrupt stream
        raise ValueError(f"{path}: not a readable gzip file ({type(err).__name__}: {err})") from None
    if len(raw) < 4:
        raise ValueError(f"{path}: IDX header truncated ({len(raw)} bytes)")
    found = int.from_bytes(raw[:4], "big")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: bad IDX magic number {found} (0x{found:08x}); first two bytes must be 0")
    if raw[2] != 0x08:
        raise ValueError(f"{path}: IDX dtype code 0x{raw[2]:02x} is not 0x08 (unsigned byte)")
    if magic is not None and found != magic:
        raise ValueError(f"{path}: IDX magic number {found} ({raw[3]} dimensions), expected {magic} "
                         f"({magic & 0xFF} dimensions)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: IDX header truncated ({len(raw)} bytes, {ndim} dimensions need {header})")
    shape = tuple(int(n) for n in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != expected:
        raise ValueError(f"{path}: IDX payload has {len(raw) - header} bytes but the header's shape "
                         f"{shape} needs {expected}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _fetch(url: str) -> bytes:
    """The whole body of ``url``; the one network call, so tests monkeypatch it."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _expected_md5(folder: Path, name: str) -> str:
    """The sum for ``name`` from ``folder/MD5SUMS`` (``<md5>  <filename>`` lines) or MNIST_MD5."""
    sums = folder / "MD5SUMS"
    if sums.is_file():
        for number, line in enumerate(sums.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            if len(parts) != 2 or len(parts[0]) != 32:
                raise ValueError(f"{sums}: line {number} is not '<md5>  <filename>': {line!r}")
            if parts[1].strip().lstrip("*") == name:
                return parts[0].lower()
    if name not in MNIST_MD5:
        raise ValueError(f"{folder / name}: no MD5 sum known (not in {sums} nor built in)")
    return MNIST_MD5[name]


def _verify_md5(path: Path, data: bytes | None = None) -> None:
    if not path.is_file() and data is None:
        raise ValueError(f"{path}: file not found")
    expected = _expected_md5(path.parent, path.name)
    actual = _md5(path.read_bytes() if data is None else data)
    if actual != expected:
        raise ValueError(f"{path}: MD5 mismatch, expected {expected} but the file has {actual}")


def _default_cache() -> Path:
    return Path(os.environ.get("COMPCLUST_CACHE") or Path.home() / ".cache" / "compclust" / "mnist")


def _download(folder: Path, names: tuple[str, ...]) -> None:
    """Fetch the files of ``names`` missing from ``folder``; verify each before it lands there."""
    from .io import atomic_write_bytes

    for name in names:
        path = folder / name
        if path.is_file():
            continue
        data = _fetch(MNIST_URL + name)
        _verify_md5(path, data)  # a bad download never enters the cache
        atomic_write_bytes(path, data)


def load_mnist(directory: str | os.PathLike | None = None, *, split: str = "test", download: bool = False,
               cache_dir: str | os.PathLike | None = None, as_float: bool = True):
    """MNIST from its gzipped IDX files: ``(images [N, 784], labels [N] int64)``.

    The folder is ``directory``, else env ``COMPCLUST_MNIST_DIR``; with ``download=True`` and no
    folder (or one missing files of the split) it is ``cache_dir`` (default env ``COMPCLUST_CACHE``
    or ``~/.cache/compclust/mnist``), into which missing files are downloaded. Each file's MD5 is
    checked (against the folder's MD5SUMS, else the built-in sums) before parsing. ``as_float``
    gives float32 in [0, 1], otherwise uint8. Any bad file raises ValueError naming it.
    """
    if split not in MNIST_FILES:
        raise ValueError(f"split must be one of {sorted(MNIST_FILES)}, got {split!r}")
    names = MNIST_FILES[split]
    given = directory if directory is not None else os.environ.get("COMPCLUST_MNIST_DIR") or None
    folder = Path(given) if given is not None else None
    if download and (folder is None or not all((folder / n).is_file() for n in names)):
        folder = Path(cache_dir) if cache_dir is not None else _default_cache()
        _download(folder, names)
    if folder is None:
        raise ValueError("load_mnist needs the folder of MNIST's IDX .gz files: pass directory=... or set "
                         "the environment variable COMPCLUST_MNIST_DIR, or pass download=True to "
                         "download them into cache_dir")
    image_path, label_path = folder / names[0], folder / names[1]
    for path in (image_path, label_path):
        if not path.is_file():
            raise ValueError(f"{path}: file not found (pass download=True to download it)")
        _verify_md5(path)
    images = read_idx(image_path, IDX_MAGIC_IMAGES)
    labels = read_idx(label_path, IDX_MAGIC_LABELS)
    if images.shape[1:] != (28, 28):
        raise ValueError(f"{image_path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
    if len(images) != len(labels):
        raise ValueError(f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{label_path}: label {labels.max()} is not a digit 0..9")
    images = images.reshape(len(images), 28 * 28)
    if as_float:
        images = images.astype(np.float32) / np.float32(255)
    else:
        images = images.copy()  # writable, not a view of the decompressed buffer
    return images, labels.astype(np.int64)
