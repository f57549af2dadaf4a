"""Atomic, resumable result storage: a long seed sweep saves each finished chunk as its own file,
so an interrupted run can be rerun and skip what is done, and a crash never leaves a half-written
file that looks finished."""
from __future__ import annotations

import io
import json
import os
import secrets
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part.

    The bytes go to a temporary file in the same directory (same file system, so ``os.replace``
    is atomic), are flushed and fsynced, then renamed over ``path``. On any error the temporary
    file is removed and ``path`` is left as it was. Parent directories are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        # os.open with mode 0o666 so the final file gets the usual umask-based permissions.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _to_json(obj: Any) -> Any:
    """``json.dumps`` hook: NumPy scalars become Python numbers; NumPy and JAX arrays, lists."""
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "__array__"):  # np.ndarray, jax.Array
        return np.asarray(obj).tolist()
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically; NumPy/JAX values are converted to plain ones."""
    text = json.dumps(obj, indent=2, default=_to_json) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))


def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):  # DictKey, GetAttrKey, SequenceKey
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def flatten_tree(tree: Any) -> dict[str, np.ndarray]:
    """A pytree of arrays as ``{"a/b/0": array}``: key paths joined with "/"; None leaves dropped."""
    import jax

    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    flat: dict[str, np.ndarray] = {}
    for path, leaf in leaves:
        name = "/".join(_key_name(k) for k in path) or "value"
        if name in flat:
            raise ValueError(f"two leaves of the tree map to the same name {name!r}")
        array = np.asarray(leaf)
        if array.dtype == object:
            raise ValueError(f"leaf {name!r} is not a numeric array (dtype object)")
        flat[name] = array
    return flat


class ResultStore:
    """A directory of named results, one ``<name>.npz`` per result, each written atomically.

    ``save(name, tree)`` takes a pytree of arrays (dict, NamedTuple, list, nesting of these, or a
    flat dict of name -> array); ``load(name)`` gives it back as a flat dict of NumPy arrays keyed
    by the key paths joined with "/" (``{"w": ..., "metrics/loss": ...}``; a NamedTuple field is
    keyed by its name). Resuming a sweep::

        store = ResultStore("results/sweep")
        for chunk in range(n_chunks):
            if not store.has(f"chunk{chunk}"):
                store.save(f"chunk{chunk}", run_chunk(chunk))
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def path(self, name: str) -> Path:
        if not name or "/" in name or "\\" in name or name.startswith(".") or name.endswith(".npz"):
            raise ValueError(f"result name must be a plain file stem (no '/', no leading '.', "
                             f"no '.npz'), got {name!r}")
        return self.directory / f"{name}.npz"

    def save(self, name: str, tree: Any) -> Path:
        flat = flatten_tree(tree)
        buffer = io.BytesIO()
        np.savez(buffer, **flat)
        return atomic_write_bytes(self.path(name), buffer.getvalue())

    def has(self, name: str) -> bool:
        return self.path(name).is_file()

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.npz") if not p.name.startswith("."))

    def load(self, name: str) -> dict[str, np.ndarray]:
        path = self.path(name)
        if not path.is_file():
            raise FileNotFoundError(f"no result {name!r}: {path} does not exist")
        try:
            archive = np.load(path, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("a bare .npy array, not an .npz archive")
            with archive:
                return {key: archive[key] for key in archive.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            raise ValueError(f"{path}: corrupt or truncated result file ({err}); "
                             f"delete it to recompute") from None
