"""The engine as TensorFlow ops: `_tf_ops.so`, built from csrc/tf_ops.cc when TensorFlow is importable at
build time, loaded on first use (importing this module does not import TensorFlow).

    from cvrl_fast import tf_ops
    out = tf_ops.make_pair("clip.mp4", seed=0)      # {"view1", "view2", "colour1", "colour2", "ok", "error"}

The ops are stateless: the same inputs give the same bytes as `cvrl_fast.sample_pair` (make_pair) and as
`PairLoader` (slot_pair, which `data.pretrain_dataset(..., engine="graph")` maps over its slots), so they
run inside `Dataset.map`, in tf.data iterator checkpoints and on tf.data service workers. A process that
runs such a graph must have loaded the library first (`library()`; `cvrl-fast input-worker` does).
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Optional

import numpy as np

from ._augment import AugmentConfig, _resolve
from ._loader import _check_dtype, _settings

LIBRARY_NAME = "_tf_ops.so"
_library = None


def library_path() -> str:
    """Where `_tf_ops.so` is: beside the compiled extension (an editable install keeps it there, not
    beside this file), else beside this file."""
    from . import _C

    for directory in (os.path.dirname(os.path.abspath(_C.__file__)), os.path.dirname(os.path.abspath(__file__))):
        path = os.path.join(directory, LIBRARY_NAME)
        if os.path.isfile(path):
            return path
    raise ImportError(f"cvrl_fast's TensorFlow op library ({LIBRARY_NAME}) is not installed: it is built only when "
                      "TensorFlow is importable at build time; install TensorFlow, then rebuild (make build, or "
                      "pip install -e . --no-build-isolation)")


def library():
    """The loaded op library (tf.load_op_library, once per process)."""
    global _library
    if _library is None:
        import tensorflow as tf

        _library = tf.load_op_library(library_path())
    return _library


def settings_attr(config: Optional[AugmentConfig] = None) -> str:
    """The ops' `settings` attr for `config`: every field as name=value, doubles exact."""
    return _resolve(config)._native().serialize()


def _op_attrs(config, augment_on: str, output_dtype) -> dict:
    import tensorflow as tf

    fp = _check_dtype(output_dtype)
    settings = _settings(_resolve(config), augment_on, fp)  # a bad augment_on / dtype fails here, in Python
    return {"settings": settings.serialize(), "augment_on": augment_on, "dtype": tf.float32 if fp else tf.uint8}


def make_pair(path, seed, *, config: Optional[AugmentConfig] = None, epoch=0, sample_key=0, record_offset=-1,
              record_length=0, augment_on: str = "host", output_dtype=np.uint8) -> dict:
    """One sample of one source as TF tensors: {"view1", "view2": [T, S, S, 3], "colour1", "colour2":
    float32 [13] (the colour rows in device mode, zeros in host mode), "ok": bool, "error": string}.

    path: a video file (record_offset -1) or a TFRecord file with the record's byte offset and length
    (`cvrl_fast._C.index_tfrecord`). A source that does not decode gives ok=False, the reason in
    "error" and zero views, not an op error; bad arguments raise InvalidArgumentError. seed and
    sample_key are int64 tensors carrying the engine's uint64 bits; sample_pair's `index` is the
    sample_key.
    """
    import tensorflow as tf

    attrs = _op_attrs(config, augment_on, output_dtype)
    v1, v2, c1, c2, ok, error = library().cvrl_make_pair(
        path=tf.convert_to_tensor(path, tf.string), record_offset=tf.cast(record_offset, tf.int64),
        record_length=tf.cast(record_length, tf.int64), seed=_int64_bits(seed), epoch=tf.cast(epoch, tf.int64),
        sample_key=_int64_bits(sample_key), **attrs)
    return {"view1": v1, "view2": v2, "colour1": c1, "colour2": c2, "ok": ok, "error": error}


def slot_pair(table: dict, seed, slot, *, config: Optional[AugmentConfig] = None, augment_on: str = "host",
              output_dtype=np.uint8, shuffle: bool = True, max_retries: int = 32, log_skips: bool = True):
    """The sample of `slot` of PairLoader's sequence over `table` ({"paths", "record_offsets",
    "record_lengths", "source_ids"}: one entry per source of this shard): (view1, view2, colour1,
    colour2, index). Failed sources are replaced as PairLoader replaces them and recorded for
    `skipped_sources()`; when `max_retries` replacements in a row fail the op raises DataLossError."""
    import tensorflow as tf

    attrs = _op_attrs(config, augment_on, output_dtype)
    return library().cvrl_slot_pair(
        paths=table["paths"], record_offsets=table["record_offsets"], record_lengths=table["record_lengths"],
        source_ids=table["source_ids"], seed=_int64_bits(seed), slot=tf.cast(slot, tf.int64), shuffle=bool(shuffle),
        max_retries=int(max_retries), log_skips=bool(log_skips), **attrs)


def skipped_sources() -> tuple[list[tuple[str, str]], int]:
    """([(source, reason)] the graph pipeline skipped in this process, first reason each; failed attempts).
    On tf.data service the workers skip (and log) instead, in their own processes."""
    names, reasons, attempts = library().cvrl_skipped_sources()
    return ([(n.decode(), r.decode()) for n, r in zip(names.numpy().tolist(), reasons.numpy().tolist())],
            int(attempts.numpy()))


_logger = logging.getLogger("cvrl_fast")
_logged_lock = threading.Lock()
_logged: set = set()


def log_new_skips() -> int:
    """Logs each source the graph engine skipped in this process that no earlier call logged, through
    Python logging as PairLoader does (logger "cvrl_fast", WARNING, "skipping SOURCE: REASON"); returns
    how many. The op runs inside TensorFlow with no Python to log through, so whoever runs the graph
    calls this: the trainer after every step, `cvrl-fast input-worker` every second. (A pipeline built
    with log_skips=True also prints each skip from the op on stderr.)"""
    with _logged_lock:
        new = [(name, why) for name, why in skipped_sources()[0] if name not in _logged]
        for name, why in new:
            _logged.add(name)
            _logger.warning("skipping %s: %s", name, why)
    return len(new)


def _int64_bits(value):
    """A seed or key as int64 carrying its uint64 bits (Python ints >= 2**63 wrap, as the engine's
    uint64 does); tensors pass through."""
    import tensorflow as tf

    if isinstance(value, (int, np.integer)):
        v = int(value)
        if not -(1 << 63) <= v < (1 << 64):
            raise ValueError(f"seed/key = {v} must fit in 64 bits")
        return tf.constant(v - (1 << 64) if v >= (1 << 63) else v, tf.int64)
    return tf.cast(value, tf.int64)
