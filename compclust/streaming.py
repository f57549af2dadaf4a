"""Training on data larger than memory: minibatch training streamed from a ``.npy`` file, a
memory-mapped array or any iterator of ``[n, D]`` arrays, in compiled chunks, with bounded host memory.

The stream is cut into chunks of ``chunk_rows`` rows (a multiple of ``spec.batch_size``); each chunk
is one call of one compiled program (the minibatch family's epoch over the chunk's rows), and the
state carries over from chunk to chunk. All chunks have the same shape except an epoch's last one,
so a whole run compiles at most two programs. Host memory holds about two chunks (the one the device
is working on and the one being read) plus, for an iterator, one of the arrays it yields.

The schedules span the whole run, so their length must be known before the first step: for a file or
an array it is its number of rows; for an iterator give ``n_samples`` (rows per epoch), unless the
spec's schedules do not depend on it (constant rates, K-means' ``1 / count`` rate).

With ``shuffle=False`` (the default) the minibatches are consecutive rows in file order, exactly those
of ``compclust.fit(..., order=np.arange(N))``, so streaming a data set gives the result of ``fit`` on
it (same init weights, same number of epochs). ``shuffle=True`` (files and arrays only) visits the
chunks in a fresh random order each epoch and permutes the rows inside each chunk.
"""
from __future__ import annotations

import functools
import itertools
import mmap
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import validation
from .algorithms import minibatch
from .initializers import INITIALIZERS, initialize
from .loop import initial_state
from .metrics import Evaluation, add_rows, finish, measure_rows, no_totals
from .spec import Hparams, Spec
from .state import State

__all__ = ["StreamResult", "fit_stream", "evaluate_stream", "NpyRows", "DEFAULT_CHUNK_BYTES"]

DEFAULT_CHUNK_BYTES = 32 * 2**20  # default chunk: about 32 MiB of rows in the spec's dtype


class StreamResult(NamedTuple):
    state: State        # the trained state (weights [K, D], counts [K], step: minibatches taken)
    n_samples: int      # rows per epoch
    n_epochs: int       # epochs streamed by this call
    n_chunks: int       # compiled calls made by this call
    chunk_rows: int     # rows per chunk (the last chunk of each epoch may be shorter)
    total_steps: int    # schedule length of the whole run, in minibatches (0: the schedules do not use it)


# ----------------------------------------------------------------------------------------------
# Sources


def _empty(shape, dtype) -> np.ndarray:
    """An uninitialised array in its own anonymous memory map: freed, it goes straight back to the
    system. (From malloc, buffers of a few tens of MiB fragment the heap, and the process's resident
    set drifts upward from chunk to chunk.)"""
    dtype = np.dtype(dtype)
    n_bytes = int(np.prod(shape)) * dtype.itemsize
    if n_bytes < 2**20:
        return np.empty(shape, dtype)
    return np.frombuffer(mmap.mmap(-1, n_bytes), dtype).reshape(shape)


class NpyRows:
    """Rows of a ``.npy`` file read with plain file reads (``seek`` + ``readinto``), never mapped,
    so the process holds only the rows asked for (pages of a memory map count in its resident set).

    ``NpyRows(path)`` has ``shape``, ``dtype`` and ``rows(start, stop) -> np.ndarray``.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"{self.path}: file not found")
        with open(self.path, "rb") as f:
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            except ValueError as err:
                raise ValueError(f"{self.path}: not a .npy file ({err})") from None
            self.offset = f.tell()
        if fortran:
            raise ValueError(f"{self.path}: the array is stored in Fortran order; rows are not contiguous. "
                             "Save it with np.save(path, np.ascontiguousarray(x))")
        if dtype.hasobject or dtype.kind not in "fiu":
            raise ValueError(f"{self.path}: holds dtype {dtype}, not real numbers")
        if len(shape) != 2:
            raise ValueError(f"{self.path}: holds an array of shape {shape}, not [n_samples, n_features]")
        self.shape, self.dtype = tuple(int(n) for n in shape), np.dtype(dtype)
        expected = self.offset + self.shape[0] * self.shape[1] * self.dtype.itemsize
        if self.path.stat().st_size < expected:
            raise ValueError(f"{self.path}: truncated ({self.path.stat().st_size} bytes, the header's shape "
                             f"{self.shape} needs {expected})")

    def rows(self, start: int, stop: int) -> np.ndarray:
        out = _empty((stop - start, self.shape[1]), self.dtype)
        row_bytes = self.shape[1] * self.dtype.itemsize
        with open(self.path, "rb", buffering=0) as f:
            f.seek(self.offset + start * row_bytes)
            view = memoryview(out).cast("B")
            done = 0
            while done < len(view):
                n = f.readinto(view[done:])
                if not n:
                    raise ValueError(f"{self.path}: unexpected end of file at row {start + done // row_bytes}")
                done += n
        return out


def _release_pages(array, start: int, stop: int) -> None:
    """Tell the kernel a memory map's rows ``[start, stop)`` are no longer needed, so the pages
    read leave this process's resident set (best effort; a no-op for arrays that are not maps)."""
    base = array
    while base is not None and not isinstance(getattr(base, "_mmap", None), mmap.mmap):
        base = getattr(base, "base", None)
    if base is None or not hasattr(mmap, "MADV_DONTNEED"):
        return
    try:
        mm = base._mmap
        map_address = np.frombuffer(mm, np.uint8).ctypes.data
        row_bytes = array.strides[0]
        first = array.ctypes.data + start * row_bytes - map_address
        last = array.ctypes.data + stop * row_bytes - map_address
        first -= first % mmap.PAGESIZE
        if 0 <= first < last <= len(mm):
            mm.madvise(mmap.MADV_DONTNEED, first, last - first)
    except (AttributeError, ValueError, OSError, TypeError):
        pass


class _Source:
    """One stream: ``epoch(rng)`` gives an iterator of arrays (each a piece of the epoch, in order)."""

    def __init__(self, source, n_epochs: int):
        self.array = None
        self.factory = None
        self.n_rows = None
        if isinstance(source, (str, os.PathLike)):
            self.array = NpyRows(source)
        elif all(hasattr(source, a) for a in ("shape", "dtype", "__getitem__")):  # NumPy, memmap, h5py, zarr
            self.array = source
        elif callable(source):
            self.factory = source
        elif isinstance(source, Iterator):
            if n_epochs > 1:
                raise ValueError("an iterator can be read once; for several epochs pass a function that returns "
                                 "a fresh iterator (e.g. lambda: my_reader(path)) or a list of arrays")
            self.factory = _once(source)
        elif isinstance(source, Iterable):
            self.factory = lambda: iter(source)
        else:
            raise ValueError(f"source must be a .npy path, an [N, D] array (np.load(path, mmap_mode='r')), an "
                             f"iterable of [n, D] arrays or a function returning one; got {type(source).__name__}")
        if self.array is not None:
            shape = tuple(self.array.shape)
            if len(shape) != 2:
                raise ValueError(f"data must be 2-D [n_samples, n_features], got shape {shape}")
            if shape[0] == 0 or shape[1] == 0:
                raise ValueError(f"data has shape {shape}: no rows or no features")
            kind = np.dtype(self.array.dtype).kind
            if kind not in "fiu":
                raise ValueError(f"data must hold real numbers (float or int), got dtype {self.array.dtype}")
            self.n_rows = shape[0]

    @property
    def indexable(self) -> bool:
        return self.array is not None

    def read(self, start: int, stop: int) -> np.ndarray:
        if isinstance(self.array, NpyRows):
            return self.array.rows(start, stop)
        part = self.array[start:stop]
        rows = _empty(part.shape, part.dtype)
        rows[...] = part  # a copy: the map's pages can go
        _release_pages(self.array, start, stop)
        return rows

    def peek_width(self):
        """The width of the first non-empty array of the first epoch (which is kept for ``pieces``)."""
        pieces = self.pieces()
        seen = []
        for piece in pieces:
            seen.append(piece)
            if np.ndim(piece) != 2 or np.shape(piece)[0] > 0:
                break
        self._peeked = itertools.chain(seen, pieces)
        return np.shape(seen[-1])[1] if seen and np.ndim(seen[-1]) == 2 else None

    def pieces(self):
        peeked, self._peeked = getattr(self, "_peeked", None), None
        if peeked is not None:
            return peeked
        pieces = self.factory()
        try:
            return iter(pieces)
        except TypeError:
            raise ValueError(f"the source function returned {type(pieces).__name__}, not an iterable of "
                             "arrays") from None


def _once(iterator):
    used = []

    def factory():
        if used:
            raise ValueError("the iterator was already read; pass a function that returns a fresh one")
        used.append(True)
        return iterator
    return factory


class _Checker:
    """Validates each array an iterator yields: 2-D, the same width and dtype as the first, finite
    (NaN allowed for a spec with ``missing=True``)."""

    def __init__(self, spec: Spec, what: str = "the source"):
        self.spec, self.what = spec, what
        self.width = None
        self.dtype = None

    def __call__(self, piece, index: int, row: int) -> np.ndarray:
        where = f"{self.what}'s array #{index} (rows from {row})"
        if isinstance(piece, jax.Array):
            piece = np.asarray(piece)
        if not isinstance(piece, np.ndarray):
            try:
                piece = np.asarray(piece)
            except Exception as err:
                raise ValueError(f"{where} could not be read as an array: {err}") from None
        if piece.ndim != 2:
            raise ValueError(f"{where} has shape {piece.shape}; every array must be 2-D [n, n_features]")
        if piece.dtype.kind not in "fiu":
            raise ValueError(f"{where} has dtype {piece.dtype}; the data must be real numbers")
        if self.width is None:
            if piece.shape[1] == 0:
                raise ValueError(f"{where} has zero features")
            self.width, self.dtype = piece.shape[1], piece.dtype
        if piece.shape[1] != self.width:
            raise ValueError(f"{where} has {piece.shape[1]} features but the arrays before it had {self.width}: "
                             "every array of the stream must have the same width")
        if piece.dtype != self.dtype:
            raise ValueError(f"{where} has dtype {piece.dtype} but the arrays before it had {self.dtype}: "
                             "every array of the stream must have the same dtype")
        return piece


def _check_chunk(spec: Spec, rows: np.ndarray, first_row: int, dtype) -> np.ndarray:
    """Finite values (NaN allowed with missing data, within ``max_missing``), in the spec's dtype."""
    if rows.dtype != dtype:
        converted = _empty(rows.shape, dtype)
        converted[...] = rows
        rows = converted
    if np.isfinite(rows.sum(dtype=np.float64)):  # all finite (one pass, no [c, D] mask)
        return rows
    finite = np.isfinite(rows)
    if not finite.all():
        bad = ~finite if not spec.missing else np.isinf(rows)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            hint = "" if spec.missing else " (for missing values use a spec with missing=True)"
            raise ValueError(f"the data contains {int(bad.sum())} non-finite value(s) (NaN or inf) in rows "
                             f"{first_row}..{first_row + len(rows) - 1}: first {rows[r, c]} at row {first_row + r}, "
                             f"column {c}{hint}")
        if spec.missing:
            over = np.flatnonzero(np.mean(~finite, axis=1) > spec.max_missing)
            if over.size:
                rows_named = ", ".join(str(first_row + i) for i in over[:10]) + (" ..." if over.size > 10 else "")
                raise ValueError(f"{over.size} sample(s) have more than max_missing={spec.max_missing} of their "
                                 f"features missing (rows {rows_named}); remove them before streaming")
    return rows


def _concatenate(pieces) -> np.ndarray:
    out = _empty((sum(len(p) for p in pieces), pieces[0].shape[1]), pieces[0].dtype)
    return np.concatenate(pieces, out=out)


def _chunks_of(source: _Source, spec: Spec, chunk_rows: int, dtype, rng=None):
    """The epoch as ``(first_row, rows [c, D])`` chunks of ``chunk_rows`` rows (the last may be shorter).
    ``rng``: visit a file's or an array's chunks in a random order."""
    if source.indexable:
        n = source.n_rows
        starts = list(range(0, n, chunk_rows))
        if rng is not None:
            starts = [starts[i] for i in rng.permutation(len(starts))]
        for start in starts:
            stop = min(start + chunk_rows, n)
            yield start, _check_chunk(spec, source.read(start, stop), start, dtype), stop == n
        return
    checker = _Checker(spec)
    pending, n_pending, row = [], 0, 0
    for index, piece in enumerate(source.pieces()):
        piece = checker(piece, index, row + n_pending)
        if piece.shape[0] == 0:
            continue
        pending.append(piece)
        n_pending += piece.shape[0]
        while n_pending >= chunk_rows:
            joined = pending[0] if len(pending) == 1 else _concatenate(pending)
            rows, rest = joined[:chunk_rows], joined[chunk_rows:]
            pending = [_concatenate([rest])] if len(rest) else []  # a copy: the caller's array can go
            n_pending = len(rest)
            out = [_check_chunk(spec, rows, row, dtype)]
            del joined, rows, rest
            yield row, out.pop(), None  # this frame keeps no reference to the chunk while suspended
            row += chunk_rows
    if n_pending:
        out = [_check_chunk(spec, pending[0] if len(pending) == 1 else _concatenate(pending), row, dtype)]
        pending = []
        yield row, out.pop(), None
        row += n_pending
    if row == 0:
        raise ValueError("the source yielded no rows (an empty iterator, or only empty arrays)")


# ----------------------------------------------------------------------------------------------
# Compiled pieces


@functools.partial(jax.jit, static_argnames=("spec", "total_steps", "shuffle"))
def _train_chunk(state, rows, hparams, order_key, *, spec: Spec, total_steps: int, shuffle: bool):
    """The minibatch family's epoch over one chunk's rows (in order, or permuted by ``order_key``)."""
    n = rows.shape[0]
    order = jax.random.permutation(order_key, n) if shuffle else jnp.arange(n, dtype=jnp.int32)
    state, _ = minibatch.epoch(spec, state, rows, hparams, None, order, total_steps, False)
    return state


@functools.partial(jax.jit, static_argnames=("method", "spec"))
def _init_weights(key, rows, *, method: str, spec: Spec):
    return initialize(method, key, rows, spec).astype(rows.dtype)


@functools.partial(jax.jit, static_argnames=("spec",))
def _evaluate_chunk(totals, weights, rows, valid, *, spec: Spec):
    return add_rows(totals, measure_rows(spec, weights, rows), valid)


def _schedules_need_length(spec: Spec) -> bool:
    lr_needs = not callable(spec.lr_schedule) and spec.lr_schedule not in ("constant", "count")
    sigma_needs = spec.kernel != "delta" and not callable(spec.sigma_schedule) and spec.sigma_schedule != "constant"
    return lr_needs or sigma_needs


def _default_chunk_rows(spec: Spec, n_features: int, dtype) -> int:
    rows = max(1, DEFAULT_CHUNK_BYTES // (n_features * np.dtype(dtype).itemsize))
    return max(spec.batch_size, rows - rows % spec.batch_size)


def _check_chunk_rows(chunk_rows, spec: Spec) -> int:
    if isinstance(chunk_rows, (bool, np.bool_)) or not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    if chunk_rows % spec.batch_size:
        raise ValueError(f"chunk_rows ({chunk_rows}) must be a multiple of spec.batch_size ({spec.batch_size}), so "
                         "that every minibatch lies inside one chunk")
    return int(chunk_rows)


def _positive_or_none(value, what: str):
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------------------------
# Public API


def fit_stream(key, source, spec: Spec, hparams: Hparams, *, n_epochs: int = 1, n_samples: int | None = None,
               chunk_rows: int | None = None, init="random_samples", shuffle: bool = False,
               resume: State | None = None, total_epochs: int | None = None,
               callback: Callable[[dict], None] | None = None) -> StreamResult:
    """Train a minibatch-family spec on data streamed in chunks (see the module docstring).

    key: ``jax.random.key(seed)`` (split into an init key and a shuffling key, as ``fit`` does).
    source: a ``.npy`` path (read with plain file reads: the smallest resident set); an ``[N, D]``
      array, e.g. ``np.load(path, mmap_mode="r")`` (a map's pages are released after each chunk);
      an iterable of ``[n, D]`` arrays (a list, a generator: read once, so ``n_epochs=1``); or a
      function returning a fresh iterable per epoch. Every array must have the same width and dtype.
    spec: ``algorithm="minibatch"`` (``cc.kmeans(K, algorithm="minibatch", batch_size=B)``,
      ``cc.som(..., algorithm="minibatch", ...)``, ``cc.neural_gas(..., algorithm="minibatch", ...)``).
    n_samples: rows per epoch; required for an iterator when the schedules depend on the run's length
      (checked: a stream yielding more or fewer rows is an error). Files and arrays know theirs.
    chunk_rows: rows per compiled call, a multiple of ``batch_size`` (default about 32 MiB of rows).
    init: initial weights ``[K, D]``, or an initializer's name applied to the first chunk read.
    resume, total_epochs: continue an earlier ``fit_stream`` (or ``fit``) state; the schedules then
      span ``total_epochs`` epochs (default ``n_epochs``), as in ``fit``.
    callback: called after each chunk is dispatched with ``{"epoch", "chunk", "rows", "step"}``
      (rows of this epoch and minibatch steps of the run so far): for progress bars.

    Validation errors (ValueError) name the problem: a width or dtype that changes between arrays,
    an empty stream, NaN or inf (with the row), more or fewer rows than ``n_samples``.
    """
    key = validation.check_keys(key, batched=False)
    if spec.algorithm != "minibatch":
        raise ValueError(f"streaming trains the minibatch family (algorithm='minibatch'), got algorithm="
                         f"{spec.algorithm!r}: e.g. cc.kmeans(K, algorithm='minibatch', batch_size=1024)")
    if spec.missing and spec.too_missing == "skip":
        raise ValueError("too_missing='skip' would change the stream's length under its schedule; drop those rows "
                         "before streaming, or use too_missing='error'")
    dtype = validation.dtype_of(spec)
    n_epochs = validation.check_epochs(n_epochs)
    hparams = validation.check_hparams(hparams, spec, dtype, sweepable=False)
    n_samples = _positive_or_none(n_samples, "n_samples")
    if shuffle not in (True, False):
        raise ValueError(f"shuffle must be True or False, got {shuffle!r}")
    stream = _Source(source, n_epochs)
    if stream.indexable:
        if n_samples is not None and n_samples != stream.n_rows:
            raise ValueError(f"n_samples={n_samples} but the data has {stream.n_rows} rows")
        n_samples = stream.n_rows
        width = stream.array.shape[1]
    else:
        if shuffle:
            raise ValueError("shuffle needs random access: pass a .npy path or an array (an iterator is read in order)")
        width = None
    if n_samples is None and _schedules_need_length(spec):
        raise ValueError("the spec's schedules span the whole run, so its length must be known before the first "
                         "step: pass n_samples (rows per epoch) for an iterator, or use constant schedules")
    if n_samples is not None and spec.batch_size > n_samples:
        raise ValueError(f"batch_size {spec.batch_size} is larger than the {n_samples} samples")
    if isinstance(init, str):
        if init not in INITIALIZERS:
            raise ValueError(f"unknown initializer {init!r}; choose from {INITIALIZERS}")
    if resume is not None:
        init = None
    elif not isinstance(init, str):
        init = validation.check_data(init, dtype, what="initial weights")
        if init.shape[0] != spec.n_units or (width is not None and init.shape[1] != width):
            raise ValueError(f"initial weights must have shape ({spec.n_units}, n_features={width}), "
                             f"got {tuple(init.shape)}")
    if chunk_rows is None:  # about DEFAULT_CHUNK_BYTES of rows: the width from the data, or its first array
        n_features = width if width is not None else stream.peek_width()
        chunk_rows = _default_chunk_rows(spec, n_features or 1, dtype)
    chunk_rows = _check_chunk_rows(chunk_rows, spec)

    steps_per_epoch = None if n_samples is None else -(-n_samples // spec.batch_size)
    if total_epochs is None:
        if resume is not None:
            raise ValueError("resume needs total_epochs: the length of the whole run the schedules span")
        total_epochs = n_epochs
    total_epochs = validation.check_epochs(total_epochs)
    start_step = 0 if resume is None else int(np.asarray(resume.step))
    if steps_per_epoch is not None and start_step + n_epochs * steps_per_epoch > total_epochs * steps_per_epoch:
        raise ValueError(f"these epochs would end at step {start_step + n_epochs * steps_per_epoch}, past the end "
                         f"of a {total_epochs}-epoch run ({total_epochs * steps_per_epoch} steps)")
    # A static schedule length; runs whose schedules do not use it share one compiled program.
    total_steps = total_epochs * steps_per_epoch if _schedules_need_length(spec) else 0

    init_key, run_key = jax.random.split(key)
    state = None
    if resume is not None:
        state = validation.check_resume(resume, spec, resume.weights.shape[1], dtype)
        width = width if width is not None else state.weights.shape[1]
        if state.weights.shape[1] != width:
            raise ValueError(f"the resumed weights have {state.weights.shape[1]} features but the data has {width}")
        state = jax.tree_util.tree_map(jnp.asarray, state)
    elif not isinstance(init, str):
        state = initial_state(spec, jnp.asarray(init))

    n_chunks, in_flight, step = 0, None, start_step
    for epoch in range(n_epochs):
        epoch_key = jax.random.fold_in(run_key, epoch)
        rng = None
        if shuffle:
            seed = int(jax.random.bits(jax.random.fold_in(epoch_key, 2**31 - 1), (), jnp.uint32))
            rng = np.random.default_rng(seed)
        rows_done = 0
        for index, (first_row, rows, _) in enumerate(_chunks_of(stream, spec, chunk_rows, dtype, rng)):
            if width is None:
                width = rows.shape[1]
            if rows.shape[1] != width:
                raise ValueError(f"the stream has {rows.shape[1]} features in epoch {epoch} but {width} before")
            if n_samples is not None and rows_done + len(rows) > n_samples:
                raise ValueError(f"the stream yielded more than n_samples={n_samples} rows in epoch {epoch}")
            if state is None:  # an initializer on the first chunk read
                if spec.n_units > len(rows) and init in ("random_samples", "kmeans++", "kmeans++_plain"):
                    raise ValueError(f"init={init!r} draws {spec.n_units} units from the first chunk, which has "
                                     f"{len(rows)} rows: use a larger chunk_rows or pass initial weights")
                state = initial_state(spec, _init_weights(init_key, rows, method=init, spec=spec))
            elif state.weights.shape[1] != width:
                raise ValueError(f"initial weights have {state.weights.shape[1]} features but the data has {width}")
            new_state = _train_chunk(state, rows, hparams, jax.random.fold_in(epoch_key, index), spec=spec,
                                     total_steps=total_steps, shuffle=shuffle)
            if in_flight is not None:  # at most two chunks in flight: bounded host memory
                in_flight.step.block_until_ready()
            in_flight = state = new_state
            n_chunks += 1
            rows_done += len(rows)
            step += -(-len(rows) // spec.batch_size)
            del rows  # the device has its copy; the host holds the next chunk only
            if callback is not None:
                callback({"epoch": epoch, "chunk": index, "rows": rows_done, "step": step})
        if n_samples is None:
            n_samples_seen = rows_done
        elif rows_done != n_samples:
            raise ValueError(f"the stream yielded {rows_done} rows in epoch {epoch} but n_samples={n_samples}")
    state = jax.block_until_ready(state)
    return StreamResult(state=state, n_samples=n_samples if n_samples is not None else n_samples_seen,
                        n_epochs=n_epochs, n_chunks=n_chunks, chunk_rows=chunk_rows, total_steps=total_steps)


def evaluate_stream(spec: Spec, weights, source, *, chunk_rows: int = 8192) -> Evaluation:
    """Quantization error, topographic error, inertia and dead units of ``weights [K, D]`` over a
    stream (the same sources as ``fit_stream``, one pass), in chunks of ``chunk_rows`` rows; the last
    chunk is padded and masked, so one program is compiled."""
    dtype = validation.dtype_of(spec)
    if isinstance(chunk_rows, (bool, np.bool_)) or not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    weights = validation.check_data(weights, dtype, what="weights")
    if weights.shape[0] != spec.n_units:
        raise ValueError(f"weights have {weights.shape[0]} units but the spec has {spec.n_units}")
    stream = _Source(source, 1)
    weights = jnp.asarray(weights)
    totals, n = no_totals(spec.n_units, dtype), 0
    for _, rows, _ in _chunks_of(stream, spec, chunk_rows, dtype):
        validation.check_features(rows, weights.shape[1])
        valid = np.arange(chunk_rows) < len(rows)
        if len(rows) < chunk_rows:
            rows = np.concatenate([rows, np.zeros((chunk_rows - len(rows), rows.shape[1]), dtype)])
        totals = _evaluate_chunk(totals, weights, rows, valid, spec=spec)
        n += int(valid.sum())
    return finish(totals, n)
