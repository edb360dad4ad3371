"""`sample_pair` and `PairLoader`: CVRL training pairs from videos or reference TFRecords.

All decoding and augmentation runs in C++ threads (no GIL); Python only receives finished batches,
as NumPy arrays that view the loader's batch buffers (no copy).

Bad sources: the engine skips a source only when it raises `DecodeError` (bad media), counts it, and
replaces it by a deterministic draw; any other error in a worker stops the loader and reaches the caller
of `next()`. Each skipped source is logged once, as a WARNING on the "cvrl_fast" logger, by the thread
that consumes batches (the engine itself prints nothing).
"""
from __future__ import annotations

import atexit
import csv
import glob
import logging
import os
import threading
import weakref
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _C
from ._augment import AugmentConfig, _resolve, view_params_to_dict
from ._nvtx import annotate

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv")
TFRECORD_EXTENSIONS = (".tfrecord", ".tfrecords", ".tfrec")

PathLike = Union[str, os.PathLike]

logger = logging.getLogger("cvrl_fast")


def _is_tfrecord(path: str) -> bool:
    base = os.path.basename(path).lower()
    return base.endswith(TFRECORD_EXTENSIONS) or ".tfrecord-" in base or ".tfrecords-" in base


LIST_HEADER_NAMES = ("path", "video", "filename", "file")


def read_list_file(path: str) -> List[Tuple[int, str, List[str]]]:
    """Rows of a CSV/TXT source list as (line number, absolute video path, [label fields]).

    One video per line: `path,label[,label...]` or `path label` (whitespace-separated when the line has no
    comma); blank lines and `#` comments are skipped, and so is a header line whose first field is
    path/video/filename/file. Relative paths are relative to the list file. Shared by the pair loader
    and the evaluation tools so both read a list the same way.
    """
    base = os.path.dirname(os.path.abspath(path))
    rows = []
    with open(path, newline="") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = [x.strip() for x in (next(csv.reader([line])) if "," in line else line.split())]
            if not rows and fields[0].lower() in LIST_HEADER_NAMES:
                continue
            p = fields[0]
            rows.append((lineno, p if os.path.isabs(p) else os.path.join(base, p), [x for x in fields[1:] if x]))
    return rows


def _expand(source: PathLike) -> List[Tuple[str, Optional[List[int]]]]:
    """One source spec -> [(path, labels or None)]: a file, a directory, a glob or a CSV/TXT list."""
    s = os.fspath(source)
    if any(c in s for c in "*?["):
        paths = sorted(glob.glob(s, recursive=True))
        if not paths:
            raise FileNotFoundError(f"no files match the pattern {s!r}")
        return [(p, None) for p in paths if os.path.isfile(p)]
    if os.path.isdir(s):
        found = []
        for root, _, files in os.walk(s):
            for f in files:
                if f.lower().endswith(VIDEO_EXTENSIONS) or _is_tfrecord(f):
                    found.append(os.path.join(root, f))
        if not found:
            raise FileNotFoundError(f"directory {s!r} holds no video or TFRecord files")
        return [(p, None) for p in sorted(found)]
    if s.lower().endswith((".csv", ".txt")) and os.path.isfile(s):
        out = []
        for lineno, path, fields in read_list_file(s):
            try:
                out.append((path, [int(x) for x in fields] or None))
            except ValueError:
                raise ValueError(f"source list {s!r}, line {lineno}: labels {fields} must be integers") from None
        if not out:
            raise ValueError(f"source list {s!r} names no videos")
        return out
    if not os.path.exists(s):
        raise FileNotFoundError(f"source {s!r} does not exist")
    return [(s, None)]


def resolve_sources(sources) -> Tuple[List["_C.SourceRef"], List[Optional[List[int]]]]:
    """Sources (a path, directory, glob, CSV/TXT list, TFRecord files, or a list of these) -> one
    SourceRef per video with global ids in a deterministic order, and the labels known from lists."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    refs, labels = [], []
    for spec in sources:
        for path, lab in _expand(spec):
            if _is_tfrecord(path):
                for offset, length in _C.index_tfrecord(path):
                    r = _C.SourceRef()
                    r.path, r.record_offset, r.record_length = path, offset, length
                    refs.append(r)
                    labels.append(lab)
            else:
                r = _C.SourceRef()
                r.path = path
                refs.append(r)
                labels.append(lab)
    if not refs:
        raise ValueError("no video sources found")
    for i, r in enumerate(refs):
        r.id = i
    return refs, labels


def _single_source(source) -> "_C.SourceRef":
    r = _C.SourceRef()
    if isinstance(source, (bytes, bytearray, memoryview)):
        r.path = "<bytes>"
        r.data = bytes(source)
    elif isinstance(source, tuple) and len(source) == 2:  # (tfrecord path, record number)
        path, record = os.fspath(source[0]), int(source[1])
        refs = _C.index_tfrecord(path)
        if not 0 <= record < len(refs):
            raise IndexError(f"record {record} out of range [0, {len(refs)}) in {path}")
        r.path = path
        r.record_offset, r.record_length = refs[record]
    else:
        path = os.fspath(source)
        if _is_tfrecord(path):
            return _single_source((path, 0))
        if not os.path.exists(path):
            raise FileNotFoundError(f"source {path!r} does not exist")
        r.path = path
    return r


def _check_dtype(output_dtype) -> bool:
    dt = np.dtype(output_dtype)
    if dt == np.uint8:
        return False
    if dt == np.float32:
        return True
    raise ValueError(f"output_dtype must be uint8 (round(255 x)) or float32 (x in [0, 1]), got {dt}")


AUGMENT_ON = ("host", "device")


def _settings(config: AugmentConfig, augment_on: str, fp: bool) -> "_C.AugmentSettings":
    """The engine's settings for `config` with the colour stage on the host or left to the device."""
    if augment_on not in AUGMENT_ON:
        raise ValueError(f"augment_on = {augment_on!r} must be 'host' or 'device'")
    if augment_on == "device" and fp:
        raise ValueError("output_dtype=float32 needs augment_on='host': device mode gives uint8 views, and "
                         "cvrl_fast.device_augment makes the float32 views on the accelerator")
    s = config._native()
    s.augment_on = augment_on
    return s


def sample_pair(source, seed: int, config: Optional[AugmentConfig] = None, *, epoch: int = 0, index: int = 0,
                output_dtype=np.uint8, return_params: bool = False, augment_on: str = "host"):
    """Two augmented views of one video: (view1, view2), each [T, S, S, 3].

    source: a video path, the bytes of a video file, a TFRecord path (its first record) or
    (tfrecord_path, record_number). The draw is a pure function of (seed, epoch, index); the loader
    uses the video's id as `index`. With return_params, also returns the parameters used (last).

    augment_on="device": the engine decodes, crops, resizes and flips only, and returns
    (view1, view2, colour1, colour2): uint8 views and each clip's colour parameters, float32
    [len(COLOUR_FIELDS)], from the same draws as host mode; `device_augment` applies them.
    """
    cfg = _resolve(config)
    fp = _check_dtype(output_dtype)
    settings = _settings(cfg, augment_on, fp)
    ref = _single_source(source)
    v1, v2, params, c1, c2 = _C.make_pair(ref, settings, int(seed), int(epoch), int(index), fp)
    out = (v1, v2) if augment_on == "host" else (v1, v2, c1, c2)
    if not return_params:
        return out
    c = params.clips
    info = {"num_frames": c.num_frames, "offset_range": c.offset_range, "interval": c.interval,
            "start_a": c.start_a, "start_b": c.start_b, "swapped": c.swapped}
    for v in range(2):
        d = view_params_to_dict(params.views[v])
        d["indices"] = list(c.indices[v])
        info[f"view{v + 1}"] = d
    return (*out, info)


_LIVE_LOADERS: "weakref.WeakSet[PairLoader]" = weakref.WeakSet()


@atexit.register
def _close_all_loaders():
    # Join the C++ workers before interpreter teardown, and wake any thread blocked in next() (tf.data's
    # generator thread) while the interpreter can still take it back: it gets the end of the data.
    for loader in list(_LIVE_LOADERS):
        loader.close()


class PairLoader:
    """Batches of CVRL pairs from a C++ thread pool.

    Iterating yields {"view1": [B, T, S, S, 3], "view2": ..., "index": int64 [B]} (index = source id
    in the unsharded, resolved source order); with augment_on="device" the views are uint8 without the
    colour stage and the batch also holds "colour1", "colour2": float32 [B, len(COLOUR_FIELDS)], the
    parameters `device_augment` applies on the accelerator (same draws as host mode). Batch k holds sample slots k*B .. k*B+B-1 of the
    endless (or `epochs`-long) sequence of per-epoch shuffled sources; every pixel is a pure function
    of (seed, epoch, source id), whatever the thread count or batch size. A source that fails to decode
    (`DecodeError`) is skipped (counted in `.stats`, logged once as a warning on the "cvrl_fast" logger
    unless log_skips=False) and replaced by a deterministic random draw; any other error in a worker
    stops the loader and is raised by `next()`.

    `close()` (also `with`, and at interpreter exit) may be called from any thread, also while another
    thread waits in `next()`: a closed loader is exhausted, so that `next()` (before or during the
    close) raises StopIteration, as for a closed generator. Batches already returned stay valid after
    close: their arrays own their buffers.
    """

    def __init__(self, sources, *, batch_size: int, seed: int, num_threads: Optional[int] = None,
                 shard_index: int = 0, num_shards: int = 1, shuffle: bool = True, epochs: Optional[int] = None,
                 config: Optional[AugmentConfig] = None, output_dtype=np.uint8, prefetch_batches: int = 2,
                 drop_remainder: bool = True, state: Optional[dict] = None, max_retries: int = 32,
                 log_skips: bool = True, augment_on: str = "host"):
        self._native_loader = None
        self._final_stats = {}
        self._log_skips = bool(log_skips)
        self._skips_reported = 0
        self._skips_lock = threading.Lock()
        self.config = _resolve(config)
        self._fp = _check_dtype(output_dtype)
        self.augment_on = augment_on
        self._settings = _settings(self.config, augment_on, self._fp)
        if not (isinstance(num_shards, int) and num_shards >= 1):
            raise ValueError(f"num_shards = {num_shards!r} must be an integer >= 1")
        if not (isinstance(shard_index, int) and 0 <= shard_index < num_shards):
            raise ValueError(f"shard_index = {shard_index!r} must be in [0, {num_shards})")
        if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
            raise ValueError(f"epochs = {epochs!r} must be None (endless) or an integer >= 1")
        if num_threads is None:
            num_threads = max(1, len(os.sched_getaffinity(0)))
        refs, labels = resolve_sources(sources)
        self._num_total_sources = len(refs)
        refs = refs[shard_index::num_shards]  # disjoint shards
        if not refs:
            raise ValueError(f"shard {shard_index} of {num_shards} is empty ({self._num_total_sources} sources)")
        self._labels = labels
        self.source_names = {r.id: r.name() for r in refs}
        self._identity = {"seed": int(seed), "batch_size": int(batch_size), "num_sources": self._num_total_sources,
                          "shard_index": shard_index, "num_shards": num_shards, "shuffle": bool(shuffle)}
        start_batch = 0
        if state is not None:
            for key, value in self._identity.items():
                if state.get(key) != value:
                    raise ValueError(f"loader state does not match this loader: {key} = {state.get(key)!r} in the "
                                     f"state, {value!r} here")
            start_batch = int(state["next_batch"])
        self._native_loader = _C.PairLoader(
            refs, self._settings, int(batch_size), int(seed), int(num_threads), bool(shuffle),
            -1 if epochs is None else int(epochs), int(prefetch_batches), self._fp, start_batch,
            bool(drop_remainder), int(max_retries))
        _LIVE_LOADERS.add(self)

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        loader = self._native_loader  # read once: close() on another thread may reset it meanwhile
        if loader is None:
            raise StopIteration
        try:
            with annotate("next_batch"):
                out = loader.next()
        finally:  # also before a fatal error propagates: the skips that led to it come first
            self._report_skips(loader)
        if out is None:  # the end of the data, or closed (before or while this call waited)
            raise StopIteration
        view1, view2, index, _epoch, _batch, colour1, colour2 = out
        if colour1 is None:
            return {"view1": view1, "view2": view2, "index": index}
        return {"view1": view1, "view2": view2, "colour1": colour1, "colour2": colour2, "index": index}

    def _report_skips(self, loader) -> None:
        """Log each source skipped since the last report, once (polled after every batch and at close)."""
        with self._skips_lock:
            new = loader.skipped_since(self._skips_reported)
            self._skips_reported += len(new)
        if self._log_skips:
            for source, reason in new:
                logger.warning("skipping %s: %s", source, reason)

    def labels(self, index: Sequence[int]) -> List[Optional[List[int]]]:
        """Labels from a CSV/TXT source list for the given source ids (None where unknown)."""
        return [self._labels[int(i)] for i in index]

    @property
    def stats(self) -> dict:
        """samples, batches, skipped [(source, reason)], failed_attempts, and seconds spent waiting
        (consumer), decoding and augmenting (summed over threads)."""
        if self._native_loader is None:
            return dict(self._final_stats)
        return self._native_loader.stats()

    def state(self) -> dict:
        """The resume point: pass as `state=` to a new loader to continue exactly after the last batch
        that was returned."""
        if self._native_loader is None:
            raise RuntimeError("PairLoader is closed")
        return dict(self._identity, next_batch=self._native_loader.next_batch())

    def close(self) -> None:
        """Stops and joins the worker threads; idempotent and thread-safe. A `next()` waiting in another
        thread then raises StopIteration."""
        # Take the handle first, so a close() that finds one in progress returns at once. That is what
        # tf.data needs at interpreter exit: the atexit close wakes the generator thread, whose
        # `finally: loader.close()` must not wait for the join, so that the thread (and tf.data's
        # finalize call after it) is out of Python before the interpreter starts finalizing.
        loader, self._native_loader = self._native_loader, None
        if loader is not None:
            loader.close()
            self._final_stats = loader.stats()
            self._report_skips(loader)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        # An error here is reported by Python as "Exception ignored in ... __del__", not hidden.
        self.close()
