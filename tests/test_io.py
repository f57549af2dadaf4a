"""Atomic writes and the resumable ResultStore."""
from __future__ import annotations

import json
import os
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import pytest

from compclust.io import ResultStore, atomic_write_bytes, atomic_write_json


def test_atomic_write_creates_parents_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a" / "b" / "out.bin"
    atomic_write_bytes(path, b"hello")
    assert path.read_bytes() == b"hello"
    assert os.listdir(path.parent) == ["out.bin"]


def test_atomic_write_overwrites(tmp_path):
    path = tmp_path / "out.bin"
    atomic_write_bytes(path, b"old")
    atomic_write_bytes(path, b"new contents")
    assert path.read_bytes() == b"new contents"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    path = tmp_path / "out.bin"
    atomic_write_bytes(path, b"old")

    def fail(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk on fire"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_write_json_converts_numpy_and_jax(tmp_path):
    path = tmp_path / "r.json"
    atomic_write_json(path, {"n": np.int64(3), "x": np.float32(0.5), "a": np.arange(3),
                             "j": jnp.ones((2, 2)), "plain": [1, "s"]})
    assert json.loads(path.read_text()) == {"n": 3, "x": 0.5, "a": [0, 1, 2], "j": [[1.0, 1.0], [1.0, 1.0]],
                                            "plain": [1, "s"]}
    assert path.read_text().startswith("{\n  ")  # indent=2
    with pytest.raises(TypeError):
        atomic_write_json(path, {"bad": object()})
    assert json.loads(path.read_text())["n"] == 3  # failed dump left the old file


class Chunk(NamedTuple):
    weights: jnp.ndarray
    loss: np.ndarray


def test_result_store_round_trip(tmp_path):
    store = ResultStore(tmp_path / "sweep")
    assert store.names() == [] and not store.has("c0")
    store.save("c0", {"w": np.arange(6.0).reshape(2, 3), "seed": np.int32(7)})
    store.save("c1", {"chunk": Chunk(jnp.ones((2, 2)), np.zeros(4)), "extra": [np.ones(1), np.zeros(2)]})
    assert store.has("c0") and store.has("c1") and not store.has("c2")
    assert store.names() == ["c0", "c1"]
    c0 = store.load("c0")
    np.testing.assert_array_equal(c0["w"], np.arange(6.0).reshape(2, 3))
    assert c0["seed"] == 7 and c0["seed"].dtype == np.int32
    c1 = store.load("c1")
    assert sorted(c1) == ["chunk/loss", "chunk/weights", "extra/0", "extra/1"]
    np.testing.assert_array_equal(c1["chunk/weights"], np.ones((2, 2), np.float32))
    assert sorted(os.listdir(tmp_path / "sweep")) == ["c0.npz", "c1.npz"]


def test_result_store_resume_skips_finished(tmp_path):
    store = ResultStore(tmp_path)
    ran = []
    for _ in range(2):  # second pass is a rerun after "interruption"
        for chunk in range(3):
            if not store.has(f"chunk{chunk}"):
                ran.append(chunk)
                store.save(f"chunk{chunk}", {"x": np.full(2, chunk)})
    assert ran == [0, 1, 2]


def test_result_store_bad_names_and_missing(tmp_path):
    store = ResultStore(tmp_path)
    for name in ["", "a/b", ".hidden", "x.npz"]:
        with pytest.raises(ValueError, match="name"):
            store.save(name, {"x": np.zeros(1)})
    with pytest.raises(FileNotFoundError, match="nope"):
        store.load("nope")
    with pytest.raises(ValueError, match="object"):
        store.save("obj", {"x": np.array([{}, 1], dtype=object)})


@pytest.mark.parametrize("how", ["truncated", "garbage", "npy", "empty"])
def test_result_store_corrupt_file(tmp_path, how):
    store = ResultStore(tmp_path)
    store.save("r", {"x": np.arange(1000.0), "y": np.ones(10)})
    path = tmp_path / "r.npz"
    raw = path.read_bytes()
    if how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "garbage":
        path.write_bytes(b"\x00" * 64)
    elif how == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    else:
        path.write_bytes(b"")
    with pytest.raises(ValueError, match="r.npz"):
        store.load("r")


def test_result_store_corrupt_member(tmp_path):
    store = ResultStore(tmp_path)
    store.save("r", {"x": np.arange(1000.0)})
    path = tmp_path / "r.npz"
    raw = bytearray(path.read_bytes())
    raw[200] ^= 0xFF  # inside x's stored bytes: the zip CRC no longer matches
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="r.npz"):
        store.load("r")

