"""Linear evaluation, fine-tuning and feature extraction of CVRL backbones (cvrl.md §6).

Reads top to bottom: outputs and media errors, sources and labels, clip input (train clip, 30 test
views), skipped videos, features, the linear head, the 30-view test, fine-tuning, extraction, and the
command-line entry points (`main_linear_eval`, `main_finetune`, `main_extract`).

Choices where the reference is silent (also in the README):
- Test frames are resized to short side 256 in float (bilinear, half-pixel, no antialias) and rounded
  back to uint8 before the crops, to keep 320 frames per video in memory at 1 byte per value.
- Linear evaluation computes backbone features of `train_views` augmented clips per training video and
  trains the head on them; epoch e uses view e mod train_views. The backbone is frozen and its BN is in
  inference mode, so with train_views = epochs (the default config) this is the reference's procedure
  exactly (a new random clip per video and epoch); fewer views trade augmentation variety for time.
- Extracted features are the mean over the 30 test views of the pooled (not normalised) res5 feature.
- One class numbering per run, from the training labels: class names sorted (CSV/TXT label column,
  class sub-directories, TFRecord `clip/label/text`), or the integers as given. Validation labels are
  mapped through it; a validation class absent from training is an error.
- A video that cannot be opened or decoded is skipped and reported (`skipped K of N videos: ...`), like
  the training loader does; missing files are an error before any work starts. Every output file is
  written to a temporary file beside it and renamed, so an interrupted run leaves no partial file.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import dataclasses
import glob
import json
import math
import os
import struct
import tempfile
import time
import weakref
from typing import Callable, Iterable, Sequence

import numpy as np

from . import _C
from . import _eval_views as views
from ._C import fixed_rate_frame_map
from ._loader import VIDEO_EXTENSIONS, _is_tfrecord, read_list_file
from ._progress import Progress
from ._C import DecodeError
from ._video import VideoReader, decode_jpeg_frames


# ================================================================================================
# Outputs and media errors
# ================================================================================================
@contextlib.contextmanager
def atomic_output(path: str, mode: str = "w", **open_kwargs):
    """Open a temporary file in `path`'s directory; on success it replaces `path` (os.replace, atomic on
    POSIX), on any exception (KeyboardInterrupt included) it is removed. Readers never see a partial file."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **open_kwargs) as f:
            yield f


@contextlib.contextmanager
def atomic_path(path: str):
    """A temporary path beside `path` for writers that want a file name (tf.io.TFRecordWriter); renamed onto
    `path` when the block ends normally, removed when it raises."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        # mkstemp creates the file 0600; give the output the permissions a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _check_output_file(path: str, what: str) -> None:
    """Fail before the long work if `path` cannot be written (a directory, or a parent that cannot exist)."""
    if os.path.isdir(path):
        raise ValueError(f"{what} {path}: is a directory; name the output file, e.g. {os.path.join(path, 'out')}")
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{what} {path}: cannot create its directory {parent} ({e.strerror})") from None
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{what} {path}: directory {parent} is not writable")


class MediaError(ValueError):
    """A video or TFRecord record that cannot be opened or decoded (bad data, not a bug).

    The tools skip and report these; any other exception propagates. `path` is the video (or
    `file#record`), `reason` the decoder's message.
    """

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@contextlib.contextmanager
def _media(path: str, errors: tuple = (RuntimeError, ValueError, OSError)):
    """Turn the decoder's exceptions for bad media into MediaError. The C++ decoders raise
    cvrl_fast.DecodeError (a RuntimeError) for a file or record they cannot open or decode, OSError when
    the file vanished; the Python readers raise ValueError for bad records. Each message names the file.
    Only the calls that touch media run inside."""
    try:
        yield
    except MediaError:
        raise
    except errors as e:
        raise MediaError(path, str(e) or type(e).__name__) from e


# ================================================================================================
# Sources and labels
# ================================================================================================
@dataclasses.dataclass
class LabelledSources:
    """Videos of one `--train`/`--val`/`--videos` argument, labelled through one class numbering."""
    spec: str                 # what the user passed, for messages
    paths: list[str]          # video paths, or `file.tfrecord#n` for TFRecord records
    labels: list[int]         # class index per video; -1: unlabelled
    class_names: list[str]    # index -> name; [] when the labels are integers as given
    where: list[str]          # per video, where it came from ("train.csv line 4"), for messages

    @property
    def labelled(self) -> bool:
        return bool(self.labels) and min(self.labels) >= 0

    def label_text(self, label: int) -> str:
        return self.class_names[label] if self.class_names else str(int(label))


@dataclasses.dataclass
class _Item:
    path: str
    label: object  # None, int, or a class name (str)
    where: str


def _check_video_file(path: str, where: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{where}: no such file '{path}'")
    if os.path.isdir(path):
        raise ValueError(f"{where}: '{path}' is a directory, not a video")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{where}: cannot read '{path}' (permission denied)")


def _listdir(d: str) -> list[str]:
    try:
        return sorted(os.listdir(d))
    except OSError as e:
        raise ValueError(f"{d}: cannot read the directory ({e.strerror})") from None


def _is_video_name(name: str) -> bool:
    return name.lower().endswith(VIDEO_EXTENSIONS)


def _videos_below(d: str) -> list[str]:
    """Every video file below `d` (sorted, hidden directories left out)."""
    out = []
    for name in _listdir(d):
        full = os.path.join(d, name)
        if os.path.isdir(full):
            if not name.startswith("."):
                out.extend(_videos_below(full))
        elif _is_video_name(name):
            out.append(full)
    return out


def _dir_items(d: str) -> list[_Item]:
    names = _listdir(d)
    loose = [n for n in names if _is_video_name(n) and not os.path.isdir(os.path.join(d, n))]
    classes = {}
    for n in names:
        full = os.path.join(d, n)
        if os.path.isdir(full) and not n.startswith("."):
            found = _videos_below(full)
            if found:
                classes[n] = found
    if classes and loose:
        raise ValueError(f"{d}: holds both videos ({loose[0]}, ...) and class sub-directories "
                         f"({', '.join(list(classes)[:3])}, ...); put every video in its class directory, or "
                         "list the videos in a CSV file (path,label)")
    items = [_Item(p, name, p) for name, found in classes.items() for p in found]
    items += [_Item(os.path.join(d, n), None, os.path.join(d, n)) for n in loose]
    if not items:
        records = [os.path.join(d, n) for n in names if _is_tfrecord(n) and os.path.isfile(os.path.join(d, n))]
        if records:
            return _tfrecord_items(records)
        raise ValueError(f"{d}: no videos ({', '.join(VIDEO_EXTENSIONS)}) in this directory or its class "
                         "sub-directories")
    for it in items:
        _check_video_file(it.path, d)
    return items


def _list_file_items(path: str) -> list[_Item]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such list file")
    try:
        rows = read_list_file(path)
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read the list ({e})") from None
    if not rows:
        raise ValueError(f"{path}: the list has no videos")
    items, missing = [], []
    for lineno, video, fields in rows:
        # The first label field is the class; further fields (multi-label lists of the loader) are ignored.
        item = _Item(video, fields[0] if fields else None, f"{path} line {lineno}")
        if not os.path.exists(video):
            missing.append(item)
        items.append(item)
    if missing:
        first = missing[0]
        more = f" (and {len(missing) - 1} more missing, e.g. {missing[1].where})" if len(missing) > 1 else ""
        raise FileNotFoundError(f"{first.where}: no such file '{first.path}'{more}; relative paths are relative to "
                                f"the list file's directory {os.path.dirname(os.path.abspath(path))}")
    for it in items:
        _check_video_file(it.path, it.where)
    return items


# TFRecord files are indexed once per (path, size, mtime): items `file#n` open their record directly.
_RECORD_INDEX: dict = {}


def _record_index(path: str) -> list[tuple[int, int]]:
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _RECORD_INDEX:
        _RECORD_INDEX[key] = _C.index_tfrecord(path)  # DecodeError naming the file for broken framing
    return _RECORD_INDEX[key]


def _read_record(path: str, number: int) -> bytes:
    """The payload of record `number`, its CRC checked (the index checks only the length fields)."""
    index = _record_index(path)
    if not 0 <= number < len(index):
        raise ValueError(f"{path}: no record {number} (the file has {len(index)})")
    offset, length = index[number]
    with open(path, "rb") as f:
        f.seek(offset)
        payload = f.read(length)
        crc = f.read(4)
    if len(payload) != length or len(crc) != 4 or struct.unpack("<I", crc)[0] != _C.tfrecord_masked_crc(payload):
        raise ValueError(f"{path}: record {number} at byte {offset} is truncated or corrupt (payload CRC mismatch)")
    return payload


def _parse_sequence_example(payload: bytes, where: str):
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    try:
        return tf.train.SequenceExample.FromString(payload)
    except DecodeError as e:
        raise ValueError(f"{where}: not a tf.train.SequenceExample ({e})") from None


def _tfrecord_items(files: Sequence[str]) -> list[_Item]:
    """One item `file#record` per SequenceExample, labelled by `clip/label/text` (a class name) if the record
    has one, else by its first `clip/label/index` (None if neither)."""
    items = []
    for f in files:
        _check_video_file(f, f)
        for i in range(len(_record_index(f))):
            ctx = _parse_sequence_example(_read_record(f, i), f"{f} record {i}").context.feature
            text = ctx["clip/label/text"].bytes_list.value if "clip/label/text" in ctx else []
            index = ctx["clip/label/index"].int64_list.value if "clip/label/index" in ctx else []
            label = text[0].decode() if len(text) else int(index[0]) if len(index) else None
            items.append(_Item(f"{f}#{i}", label, f"{f} record {i}"))
    if not items:
        raise ValueError(f"{files[0]}: the TFRecord file holds no records")
    return items


def _source_items(spec) -> list[_Item]:
    """Items of a directory, a CSV/TXT list, a TFRecord file, a video, a glob, or a list of video paths.
    Every file is checked to exist and be readable here, before any decoding."""
    if isinstance(spec, (list, tuple)):
        items = [_Item(os.fspath(p), None, os.fspath(p)) for p in spec]
        if not items:
            raise ValueError("no videos given")
        for it in items:
            _check_video_file(it.path, "video list")
        return items
    spec = os.fspath(spec)
    if os.path.isdir(spec):
        return _dir_items(spec)
    if spec.lower().endswith((".csv", ".txt")):
        return _list_file_items(spec)
    if os.path.isfile(spec):
        if _is_tfrecord(spec):
            return _tfrecord_items([spec])
        _check_video_file(spec, spec)
        return [_Item(spec, None, spec)]
    if any(c in spec for c in "*?["):
        paths = sorted(p for p in glob.glob(spec) if os.path.isfile(p))
        if not paths:
            raise FileNotFoundError(f"{spec}: the pattern matches no file")
        if all(_is_tfrecord(p) for p in paths):
            return _tfrecord_items(paths)
        for p in paths:
            _check_video_file(p, spec)
        return [_Item(p, None, p) for p in paths]
    raise FileNotFoundError(f"{spec}: no such file or directory (expected a directory of videos or of class "
                            "sub-directories, a CSV/TXT list, a video, a TFRecord file or a glob)")


def _is_int_text(value) -> bool:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return True
    try:
        int(str(value))
        return True
    except ValueError:
        return False


def _label_kind(items: list[_Item], spec: str) -> str:
    """"none" (no labels), "ints" (class indices as given) or "names" (class names)."""
    if all(it.label is None for it in items):
        return "none"
    unlabelled = next((it for it in items if it.label is None), None)
    if unlabelled is not None:
        raise ValueError(f"{unlabelled.where} has no label while other lines of {spec} have one")
    return "ints" if all(_is_int_text(it.label) for it in items) else "names"


def _sources(spec, items: list[_Item], labels: list[int], names: list[str]) -> LabelledSources:
    return LabelledSources(str(spec), [it.path for it in items], labels, names, [it.where for it in items])


def load_sources(spec, classes: Sequence[str] | None = None) -> LabelledSources:
    """The videos of `spec` (a directory, CSV/TXT list, TFRecord file, video, glob or list of paths), labelled.

    - CSV/TXT: one video per line, `path,label` or `path label`; a header line is skipped; relative paths
      are relative to the list file; every named file must exist (FileNotFoundError naming the line).
    - A directory with class sub-directories: the sub-directory names are the classes.
    - A directory of videos, a video, a glob or a list of paths: unlabelled (label -1).
    - Reference-format TFRecord files: one item `file#n` per record, labelled by `clip/label/text` or else
      by the first `clip/label/index`.
    Integer labels are used as given (class_names []). Class names are numbered in sorted order, or through
    `classes` when given (the training classes), where a name not in `classes` is an error naming it.
    """
    items = _source_items(spec)
    kind = _label_kind(items, str(spec))
    if kind == "none":
        return _sources(spec, items, [-1] * len(items), [])
    if kind == "ints":
        if classes:
            raise ValueError(f"{spec}: labels are integers but the training labels are class names "
                             f"({', '.join(classes[:4])}, ...); label both sets the same way")
        return _sources(spec, items, [int(it.label) for it in items], [])
    names = list(classes) if classes else sorted({str(it.label) for it in items})
    number = {n: i for i, n in enumerate(names)}
    unseen = {}
    for it in items:
        if str(it.label) not in number:
            unseen.setdefault(str(it.label), it)
    if unseen:
        listed = ", ".join(f"'{n}' ({it.where})" for n, it in list(unseen.items())[:5])
        raise ValueError(f"{spec}: class{'es' if len(unseen) > 1 else ''} {listed} not among the training classes "
                         f"({', '.join(names)}); every validation class must occur in training: remove those "
                         "videos or add training videos of the class")
    return _sources(spec, items, [number[str(it.label)] for it in items], names)


def read_labelled_sources(spec, classes: Sequence[str] | None = None) -> tuple[list[str], list[int], list[str]]:
    """(paths, labels, class_names) of `load_sources(spec, classes)`."""
    s = load_sources(spec, classes)
    return s.paths, s.labels, s.class_names


def read_train_val(train, val, num_classes: int = 0) -> tuple[LabelledSources, LabelledSources, int]:
    """(train, val, num_classes) under ONE class numbering, taken from the training labels.

    Names: sorted training class names, applied to validation. Integers: used as given; num_classes is
    `num_classes` if > 0, else 1 + the largest training label. Either way a validation class that no
    training video has is an error naming it, and every video must be labelled.
    """
    tr = load_sources(train)
    _require_labels("train", tr)
    va = load_sources(val, classes=tr.class_names or None)
    _require_labels("val", va)
    if va.class_names and not tr.class_names:
        raise ValueError(f"{val}: labels are class names ({', '.join(va.class_names[:4])}, ...) but the training "
                         f"labels of {train} are integers; label both sets the same way")
    if tr.class_names:
        if num_classes and num_classes != len(tr.class_names):
            raise ValueError(f"eval.num_classes={num_classes} but the training labels of {train} name "
                             f"{len(tr.class_names)} classes ({', '.join(tr.class_names[:6])}); set "
                             "eval.num_classes=0 (count them) or fix the labels")
        return tr, va, len(tr.class_names)
    if min(tr.labels) < 0:
        raise ValueError(f"{tr.where[tr.labels.index(min(tr.labels))]}: label {min(tr.labels)} is negative")
    n = int(num_classes) if num_classes else max(tr.labels) + 1
    if max(tr.labels) >= n:
        i = tr.labels.index(max(tr.labels))
        raise ValueError(f"{tr.where[i]}: label {tr.labels[i]} is not below eval.num_classes={n}")
    seen = set(tr.labels)
    unseen = {}
    for lbl, where in zip(va.labels, va.where):
        if lbl not in seen:
            unseen.setdefault(lbl, where)
    if unseen:
        listed = ", ".join(f"{lbl} ({where})" for lbl, where in list(unseen.items())[:5])
        raise ValueError(f"{val}: class{'es' if len(unseen) > 1 else ''} {listed} not among the training labels of "
                         f"{train} ({_int_ranges(sorted(seen))}); every validation class must occur in training: "
                         "remove those videos or add training videos of the class")
    return tr, va, n


def _int_ranges(values: list[int]) -> str:
    out, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            out.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(out)


def _require_labels(role: str, s: LabelledSources) -> None:
    if not s.labelled:
        raise ValueError(f"--{role} {s.spec}: every video needs a label (a CSV/TXT label column, class "
                         "sub-directories, or TFRecord clip/label/index)")


# ================================================================================================
# Clip input
# ================================================================================================
class IndexedVideo:
    """A video in the fixed-rate index space (cvrl.md §7.2): index i is the frame shown at pts0 + i/fps.

    Raises MediaError when the file cannot be opened or has no decodable frame.
    """

    def __init__(self, path: str, target_fps: float | None = 25.0):
        self.path = path
        with _media(path):
            self.reader = VideoReader(path)
            self.frame_map = np.asarray(
                fixed_rate_frame_map(list(self.reader.frame_pts_seconds), float(target_fps or 0.0)), np.int64)
            self.height, self.width = self.reader.height, self.reader.width
        self.num_frames = len(self.frame_map)
        if self.num_frames == 0:
            raise MediaError(path, "no decodable frames")

    def clip(self, indices: np.ndarray, crop: Sequence[int] | None = None) -> np.ndarray:
        """uint8 [len(indices), H, W, 3]; each decoded frame is decoded and converted once.

        MediaError when a frame cannot be decoded (corrupt or truncated data: the decoder's DecodeError).
        """
        decoded = self.frame_map[np.asarray(indices, np.int64)]
        unique, inverse = np.unique(decoded, return_inverse=True)
        with _media(self.path, (DecodeError,)):
            frames = self.reader.get_frames(unique, crop=crop)
        return frames[inverse]


class IndexedRecord:
    """A reference-format TFRecord video (`file#record`): one JPEG per stored frame, native index space."""

    def __init__(self, item: str):
        path, _, record = item.rpartition("#")
        self.path = item
        with _media(item):
            ex = _parse_sequence_example(_read_record(path, int(record)), item)
        self.jpegs = [f.bytes_list.value[0] for f in ex.feature_lists.feature_list["image/encoded"].feature]
        self.num_frames = len(self.jpegs)
        if self.num_frames == 0:
            raise MediaError(item, "the record has no image/encoded frames")
        with _media(item, (DecodeError,)):
            self.height, self.width = decode_jpeg_frames(self.jpegs[:1]).shape[1:3]

    def clip(self, indices: np.ndarray, crop: Sequence[int] | None = None) -> np.ndarray:
        unique, inverse = np.unique(np.asarray(indices, np.int64), return_inverse=True)
        with _media(self.path, (DecodeError,)):  # decode_jpeg_frames: DecodeError for a bad JPEG
            frames = decode_jpeg_frames([self.jpegs[i] for i in unique], dct_method="INTEGER_FAST")
        if crop is not None:
            x, y, w, h = crop
            frames = frames[:, y:y + h, x:x + w]
        return np.ascontiguousarray(frames[inverse])


def open_source(item: str, target_fps: float | None = 25.0):
    """A video file in the fixed-rate index space, or a TFRecord record (`file#n`) in its stored frames."""
    path = item.rpartition("#")[0]
    if path and _is_tfrecord(path):
        return IndexedRecord(item)
    return IndexedVideo(item, target_fps)


def _resize_bilinear(frames: np.ndarray, height: int, width: int, truncate: bool):
    """TF bilinear resize (half-pixel centres, no antialias) to uint8: truncated (training parity) or rounded."""
    import tensorflow as tf

    if frames.shape[1:3] == (height, width):
        return frames
    out = tf.image.resize(tf.convert_to_tensor(frames, tf.float32), (height, width), "bilinear", antialias=False)
    out = tf.clip_by_value(out if truncate else tf.round(out), 0.0, 255.0)
    return tf.cast(out, tf.uint8).numpy()


def train_clip(video: IndexedVideo | IndexedRecord, cfg, seed: int, epoch: int, index: int) -> np.ndarray:
    """One linear-eval / fine-tune training clip (cvrl.md §6.1): uint8 [T, S, S, 3], a pure function of its seeds.

    Start UniformInt over the valid range, the crop box drawn by TF's own
    `stateless_sample_distorted_bounding_box` (area [0.3, 1], aspect [0.5, 2], 100 attempts, whole-frame
    fallback), only the box decoded, bilinear resize truncated to uint8, horizontal flip with p = 0.5.
    """
    import tensorflow as tf

    rng = np.random.default_rng([seed, epoch, index])
    start = views.train_clip_start(video.num_frames, rng, cfg.clip_frames, cfg.frame_stride)
    indices = views.clip_indices(start, video.num_frames, cfg.clip_frames, cfg.frame_stride)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        image_size=[video.height, video.width, 3],
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=rng.integers(0, 2**31 - 1, size=2),
        min_object_covered=0.1, aspect_ratio_range=tuple(cfg.aspect_ratio_range),
        area_range=tuple(cfg.area_range), max_attempts=100, use_image_if_no_bounding_boxes=True)
    y, x = int(begin[0]), int(begin[1])
    h, w = int(size[0]), int(size[1])
    frames = video.clip(indices, crop=(x, y, w, h))
    frames = _resize_bilinear(frames, cfg.crop_size, cfg.crop_size, truncate=True)
    if rng.random() < 0.5:
        frames = frames[:, :, ::-1]
    return np.ascontiguousarray(frames)


def test_views(video: IndexedVideo | IndexedRecord, cfg) -> np.ndarray:
    """The 30 test views (cvrl.md §6.1): uint8 [num_test_clips * 3, T, C, C, 3], clip-major."""
    starts = views.test_clip_starts(video.num_frames, cfg.num_test_clips, cfg.clip_frames, cfg.frame_stride)
    indices = np.concatenate([views.clip_indices(int(s), video.num_frames, cfg.clip_frames, cfg.frame_stride)
                              for s in starts])
    frames = video.clip(indices)
    h, w = views.short_side_size(video.height, video.width, cfg.test_short_side)
    frames = _resize_bilinear(frames, h, w, truncate=False)
    c = cfg.test_crop_size
    clips = frames.reshape(len(starts), cfg.clip_frames, h, w, 3)
    out = [clips[:, :, y:y + c, x:x + c] for (y, x) in views.three_crop_offsets(h, w, c)]
    return np.ascontiguousarray(np.stack(out, axis=1).reshape(-1, cfg.clip_frames, c, c, 3))


def _parallel_map(fn: Callable, items: Iterable, num_threads: int):
    """Ordered map over a thread pool (decode releases the GIL); at most 2*num_threads items in flight."""
    items = list(items)
    with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
        pending = []
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > 2 * num_threads:
                yield pending.pop(0).result()
        for f in pending:
            yield f.result()


def _or_media_error(fn: Callable) -> Callable:
    """fn, returning (not raising) a MediaError, so one bad video does not end an ordered parallel map."""
    def call(*args):
        try:
            return fn(*args)
        except MediaError as e:
            return e

    return call


# ================================================================================================
# Skipped videos
# ================================================================================================
class Skipped:
    """The videos of one pass that could not be decoded, each recorded once with the decoder's reason.

    `what` names the pass in the report, e.g. "train (train.csv)". A pass with `Skipped` goes on without a
    bad video; without one (skipped=None) the first MediaError propagates.
    """

    def __init__(self, what: str, total: int):
        self.what = what
        self.total = int(total)
        self.reasons: dict[int, tuple[str, str]] = {}  # video index -> (path, reason)

    def add(self, index: int, error: MediaError) -> None:
        self.reasons.setdefault(int(index), (error.path, error.reason))

    def __contains__(self, index) -> bool:
        return int(index) in self.reasons

    def __len__(self) -> int:
        return len(self.reasons)

    def kept(self) -> list[int]:
        return [i for i in range(self.total) if i not in self.reasons]

    def summary(self) -> str:
        """'' when nothing was skipped; else `WHAT: skipped K of N videos: PATH: REASON`, one more line per file."""
        if not self.reasons:
            return ""
        entries = [f"{p}: {r}" for _, (p, r) in sorted(self.reasons.items())]
        return "\n  ".join([f"{self.what}: skipped {len(self)} of {self.total} videos: {entries[0]}"] + entries[1:])

    def check_some_left(self) -> None:
        """Raise (naming the count once, and the first reasons) when every video of the pass failed."""
        if self.total and len(self) == self.total:
            entries = [f"{p}: {r}" for _, (p, r) in sorted(self.reasons.items())]
            more = f"; and {len(entries) - 3} more" if len(entries) > 3 else ""
            raise ValueError(f"{self.what}: none of the {self.total} videos could be decoded ({'; '.join(entries[:3])}"
                             f"{more}); check the files, e.g. with ffprobe")

    def as_list(self) -> list[dict]:
        return [{"path": p, "reason": r} for _, (p, r) in sorted(self.reasons.items())]


def _record_skip(skipped: Skipped | None, index: int, error: MediaError) -> None:
    if skipped is None:
        raise error
    skipped.add(index, error)


def _print_summary(skipped: Skipped, progress: Progress | None = None) -> None:
    text = skipped.summary()
    if text:
        (progress.write if progress is not None else print)(text)


# ================================================================================================
# Features
# ================================================================================================
_POOLED = weakref.WeakKeyDictionary()  # backbone -> its pooled-feature tf.function


def _pool_fn(backbone):
    """The backbone's pooled res5 feature of uint8 clips [B, T, H, W, 3], traced once per backbone: any batch
    and clip shape goes through one graph (every pass and batch size reuses it, no retracing)."""
    import tensorflow as tf

    if backbone not in _POOLED:
        @tf.function(autograph=False, input_signature=[tf.TensorSpec([None, None, None, None, 3], tf.uint8)])
        def pooled(clips_uint8):
            x = tf.cast(clips_uint8, tf.float32) / 255.0
            return tf.cast(tf.reduce_mean(backbone(x, training=False), axis=[1, 2, 3]), tf.float32)

        _POOLED[backbone] = pooled
    return _POOLED[backbone]


def _pooled_features(pooled, clips: np.ndarray, batch_clips: int) -> np.ndarray:
    return np.concatenate([pooled(clips[i:i + batch_clips]).numpy() for i in range(0, len(clips), batch_clips)])


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def train_features(backbone, paths: Sequence[str], cfg, num_views: int, progress: Progress | None = None,
                   skipped: Skipped | None = None) -> np.ndarray:
    """Pooled backbone features of `num_views` augmented training clips per video: float32 [num_views, N, D].

    With `skipped`, a video that fails to decode in any view is recorded there and its rows are NaN in every
    view; without it the MediaError propagates. Raises when every video failed.
    """
    pooled = _pool_fn(backbone)

    def one(job):
        view, i = job
        if skipped is not None and i in skipped:  # failed in an earlier view: do not decode it again
            return None
        return train_clip(open_source(paths[i], cfg.target_fps), cfg, cfg.seed, view, i)

    jobs = [(v, i) for v in range(num_views) for i in range(len(paths))]
    feats = None
    batch, owners = [], []

    def flush():
        nonlocal feats
        out = pooled(np.stack(batch)).numpy()
        if feats is None:
            feats = np.full((num_views, len(paths), out.shape[-1]), np.nan, np.float32)
        for (v, i), f in zip(owners, out):
            feats[v, i] = f
        batch.clear()
        owners.clear()

    for k, (job, clip) in enumerate(zip(jobs, _parallel_map(_or_media_error(one), jobs, cfg.num_threads))):
        if isinstance(clip, MediaError):
            _record_skip(skipped, job[1], clip)
        elif clip is not None:
            batch.append(clip)
            owners.append(job)
            if len(batch) == cfg.batch_clips:
                flush()
        if progress is not None:
            progress.update(k + 1, **({"skipped": len(skipped)} if skipped else {}))
    if batch:
        flush()
    if skipped is not None:
        skipped.check_some_left()
        feats[:, [i for i in skipped.reasons]] = np.nan  # views decoded before a later view failed
    return feats


def test_features(backbone, paths: Sequence[str], cfg, progress: Progress | None = None,
                  skipped: Skipped | None = None, reduce: Callable | None = None) -> np.ndarray:
    """Pooled backbone features of the 30 test views per video: float32 [N, 30, D], or [N, ...] of
    `reduce(features [30, D])` per video (computed as each video finishes, so the views are not all kept).

    With `skipped`, a video that fails to decode is recorded there and its row is NaN; without it the
    MediaError propagates. Raises when every video failed.
    """
    pooled = _pool_fn(backbone)

    def one(p):
        return test_views(open_source(p, cfg.target_fps), cfg)

    rows: list = []
    for k, clips in enumerate(_parallel_map(_or_media_error(one), paths, cfg.num_threads)):
        if isinstance(clips, MediaError):
            _record_skip(skipped, k, clips)
            rows.append(None)
        else:
            f = _pooled_features(pooled, clips, cfg.batch_clips)
            rows.append(reduce(f) if reduce is not None else f)
        if progress is not None:
            progress.update(k + 1, **({"skipped": len(skipped)} if skipped else {}))
    if skipped is not None:
        skipped.check_some_left()
    if not rows:
        raise ValueError("test_features: no videos given")
    shape = next(r.shape for r in rows if r is not None)
    return np.stack([r if r is not None else np.full(shape, np.nan, np.float32) for r in rows])


# ================================================================================================
# Linear head (cvrl.md §3.3, §6.1): L2-normalised feature -> Dense, SGD momentum, warmup + cosine
# ================================================================================================
def _check_eval_config(cfg) -> None:
    """Clear errors for settings no run can use (instead of a crash deep inside a schedule or a reshape)."""
    if not cfg.epochs > 0:
        raise ValueError(f"eval.epochs={cfg.epochs:g}: must be > 0 (a fraction such as 0.5 trains for that share "
                         "of an epoch's steps)")
    if cfg.warmup_epochs < 0:
        raise ValueError(f"eval.warmup_epochs={cfg.warmup_epochs:g}: must be >= 0")
    for key in ("batch_size", "base_batch_size", "batch_clips", "num_threads", "clip_frames", "frame_stride",
                "crop_size", "num_test_clips", "test_short_side", "test_crop_size"):
        if int(cfg[key]) < 1:
            raise ValueError(f"eval.{key}={cfg[key]}: must be >= 1")
    if cfg.test_crop_size > cfg.test_short_side:
        raise ValueError(f"eval.test_crop_size={cfg.test_crop_size} is larger than eval.test_short_side="
                         f"{cfg.test_short_side}: the three test crops must fit in the resized frame")


def _schedule(cfg, n: int) -> tuple[int, int, int]:
    """(batch, steps per epoch, total steps) for n training videos; epochs may be fractional."""
    batch = min(int(cfg.batch_size), n)
    steps_per_epoch = math.ceil(n / batch)
    return batch, steps_per_epoch, max(1, int(round(cfg.epochs * steps_per_epoch)))


def train_linear_head(features: np.ndarray, labels: np.ndarray, num_classes: int, cfg):
    """Train Dense(num_classes) on L2-normalised features [V, N, D]; epoch e uses view e mod V.

    Runs round(epochs * steps per epoch) updates (at least one), so a fractional epoch count stops
    mid-epoch where the schedule ends. Returns (kernel [D, C], bias [C], per-epoch mean loss list).
    """
    import keras
    import tensorflow as tf

    from .schedules import WarmupCosine, scaled_learning_rate, warmup_steps_for

    _check_eval_config(cfg)
    num_views, n, dim = features.shape
    feats = _l2_normalize(features).astype(np.float32)
    labels = np.asarray(labels, np.int64)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]")
    batch, steps_per_epoch, total = _schedule(cfg, n)
    warmup = warmup_steps_for(total, int(round(cfg.warmup_epochs * steps_per_epoch)))
    lr = scaled_learning_rate(cfg.learning_rate, batch, cfg.base_batch_size)
    keras.utils.set_random_seed(cfg.seed)
    dense = keras.layers.Dense(num_classes, name="classifier")
    dense.build((None, dim))
    optimizer = keras.optimizers.SGD(WarmupCosine(lr, total, warmup), momentum=0.9, nesterov=False)

    # One trace for every batch, the last partial one included.
    @tf.function(autograph=False, input_signature=[tf.TensorSpec([None, dim], tf.float32),
                                                   tf.TensorSpec([None], tf.int64)])
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, dense(x)))
        optimizer.apply_gradients(zip(tape.gradient(loss, dense.trainable_variables), dense.trainable_variables))
        return loss

    rng = np.random.default_rng(cfg.seed)
    history, steps = [], 0
    for epoch in range(math.ceil(total / steps_per_epoch)):
        order = rng.permutation(n)
        view = feats[epoch % num_views]
        losses = []
        for i in range(0, n, batch):
            if steps == total:
                break
            losses.append(float(step(view[order[i:i + batch]], labels[order[i:i + batch]])))
            steps += 1
        history.append(float(np.mean(losses)))
    return dense.kernel.numpy(), dense.bias.numpy(), history


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=-1, keepdims=True)
    probs = np.exp(logits)
    return probs / probs.sum(axis=-1, keepdims=True)


def view_probabilities(test_feats: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Softmax probabilities averaged over the views: [N, V, D] -> [N, C]."""
    return _softmax(_l2_normalize(test_feats) @ kernel + bias).mean(axis=1)


def topk_accuracy(probs: np.ndarray, labels: Sequence[int], k: int) -> float:
    topk = np.argsort(-probs, axis=-1)[:, :k]
    return float(np.mean([lbl in row for lbl, row in zip(labels, topk)]))


def _accuracies(probs: np.ndarray, labels: Sequence[int], num_classes: int) -> dict:
    """top1, and top5 only when it can be wrong: with 5 classes or fewer every label is in the top 5."""
    out = {"top1": topk_accuracy(probs, labels, 1)}
    out["top5"] = topk_accuracy(probs, labels, 5) if num_classes > 5 else float("nan")
    return out


def _num_views(cfg) -> int:
    epochs = math.ceil(cfg.epochs)
    return max(1, min(int(cfg.train_views) or epochs, epochs))


def _predictions(paths, labels, probs) -> list[dict]:
    return [{"path": p, "label": int(lbl), "pred": int(np.argmax(pr)), "top5": [int(c) for c in np.argsort(-pr)[:5]]}
            for p, lbl, pr in zip(paths, labels, probs)]


def _progress(verbose: bool, label: str, total: int, unit: str) -> Progress | None:
    return Progress(label, total, unit=unit) if verbose else None


def linear_eval(backbone, train_paths, train_labels, val_paths, val_labels, num_classes: int, cfg,
                *, verbose: bool = False, train_name: str = "train", val_name: str = "val") -> dict:
    """Frozen-backbone linear evaluation; returns metrics and per-video predictions.

    Videos that fail to decode are skipped and listed in result["skipped"] ({"train": [...], "val": [...]});
    metrics count the decoded validation videos. `verbose` shows progress and prints the skip summaries.
    result["top5"] is NaN when num_classes <= 5 (top-5 would be 100% by construction).
    """
    _check_eval_config(cfg)
    t0 = time.time()
    num_views = _num_views(cfg)
    train_skips, val_skips = Skipped(train_name, len(train_paths)), Skipped(val_name, len(val_paths))
    with contextlib.ExitStack() as stack:
        progress = _progress(verbose, f"{train_name}: features", num_views * len(train_paths), "clips")
        if progress:
            stack.enter_context(progress)
        tr = train_features(backbone, train_paths, cfg, num_views, progress, train_skips)
    if verbose:
        _print_summary(train_skips)
    keep = train_skips.kept()
    kernel, bias, history = train_linear_head(tr[:, keep], np.asarray(train_labels)[keep], num_classes, cfg)
    with contextlib.ExitStack() as stack:
        progress = _progress(verbose, f"{val_name}: test views", len(val_paths), "videos")
        if progress:
            stack.enter_context(progress)
        probs = test_features(backbone, val_paths, cfg, progress, val_skips,
                              reduce=lambda f: view_probabilities(f[None], kernel, bias)[0])
    if verbose:
        _print_summary(val_skips)
    kept = val_skips.kept()
    labels = [val_labels[i] for i in kept]
    return {
        **_accuracies(probs[kept], labels, num_classes),
        "num_classes": int(num_classes),
        "num_train_videos": len(keep),
        "num_val_videos": len(kept),
        "train_views": num_views,
        "loss_history": history,
        "predictions": _predictions([val_paths[i] for i in kept], labels, probs[kept]),
        "skipped": {"train": train_skips.as_list(), "val": val_skips.as_list()},
        "seconds": time.time() - t0,
        "head": (kernel, bias),
    }


# ================================================================================================
# Fine-tuning (cvrl.md §6.2): backbone trainable, dropout head, SGD Nesterov, L2 on backbone conv kernels
# ================================================================================================
def finetune(backbone, train_paths, train_labels, val_paths, val_labels, num_classes: int, cfg,
             *, verbose: bool = False, train_name: str = "train", val_name: str = "val") -> dict:
    """Fine-tune `backbone` (in place) with a dropout + Dense head, then the 30-view test.

    Runs round(epochs * steps per epoch) updates (at least one). A training video that fails to decode is
    skipped for the rest of the run (its batch is one clip smaller); failed validation videos are left out
    of the metrics. Returns metrics, predictions, result["skipped"] and result["head"] = (kernel, bias).
    """
    import keras
    import tensorflow as tf

    from .models import kernel_variables
    from .schedules import WarmupCosine, scaled_learning_rate, warmup_steps_for

    _check_eval_config(cfg)
    t0 = time.time()
    keras.utils.set_random_seed(cfg.seed)
    n = len(train_paths)
    batch, steps_per_epoch, total = _schedule(cfg, n)
    warmup = warmup_steps_for(total, int(round(cfg.warmup_epochs * steps_per_epoch)))
    dropout = keras.layers.Dropout(cfg.dropout_rate)
    dense = keras.layers.Dense(num_classes, name="classifier")
    dense.build((None, backbone.output_shape[-1]))
    backbone.trainable = True
    conv_kernels = kernel_variables(backbone)
    optimizer = keras.optimizers.SGD(
        WarmupCosine(scaled_learning_rate(cfg.learning_rate, batch, cfg.base_batch_size), total, warmup),
        momentum=0.9, nesterov=True)
    variables = backbone.trainable_variables + dense.trainable_variables

    @tf.function(autograph=False, input_signature=[tf.TensorSpec([None, None, None, None, 3], tf.uint8),
                                                   tf.TensorSpec([None], tf.int64)])
    def step(x, y):
        with tf.GradientTape() as tape:
            feats = tf.reduce_mean(backbone(tf.cast(x, tf.float32) / 255.0, training=True), axis=[1, 2, 3])
            logits = dense(dropout(feats, training=True))
            ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, tf.cast(logits, tf.float32)))
            l2 = cfg.weight_decay * tf.add_n([tf.nn.l2_loss(k) for k in conv_kernels])
            loss = ce + l2
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return ce

    labels = np.asarray(train_labels, np.int64)
    train_skips, val_skips = Skipped(train_name, n), Skipped(val_name, len(val_paths))
    history, steps = [], 0
    rng = np.random.default_rng(cfg.seed)
    progress = _progress(verbose, f"{train_name}: finetune", total, "steps")
    try:
        for epoch in range(math.ceil(total / steps_per_epoch)):
            order = [int(i) for i in rng.permutation(n) if int(i) not in train_skips]
            load = _or_media_error(lambda i, epoch=epoch: train_clip(open_source(train_paths[i], cfg.target_fps),
                                                                     cfg, cfg.seed, epoch, i))
            losses, clips, ys = [], [], []
            for k, (i, clip) in enumerate(zip(order, _parallel_map(load, order, cfg.num_threads))):
                if isinstance(clip, MediaError):
                    train_skips.add(i, clip)
                else:
                    clips.append(clip)
                    ys.append(labels[i])
                if clips and (len(clips) == batch or k == len(order) - 1):
                    losses.append(float(step(np.stack(clips), np.asarray(ys, np.int64))))
                    clips, ys = [], []
                    steps += 1
                    if progress is not None:
                        progress.update(steps, loss=losses[-1])
                    if steps == total:
                        break
            train_skips.check_some_left()
            if losses:
                history.append(float(np.mean(losses)))
            if steps == total:
                break
    finally:
        backbone.trainable = False
        if progress is not None:
            progress.close()
    if verbose:
        _print_summary(train_skips)
    kernel, bias = dense.kernel.numpy(), dense.bias.numpy()

    def probabilities(f):  # dropout is off at test time; the head sees the unnormalised pooled feature
        return _softmax(f @ kernel + bias).mean(axis=0)

    with contextlib.ExitStack() as stack:
        progress = _progress(verbose, f"{val_name}: test views", len(val_paths), "videos")
        if progress:
            stack.enter_context(progress)
        probs = test_features(backbone, val_paths, cfg, progress, val_skips, reduce=probabilities)
    if verbose:
        _print_summary(val_skips)
    kept = val_skips.kept()
    val_y = [val_labels[i] for i in kept]
    return {
        **_accuracies(probs[kept], val_y, num_classes),
        "num_classes": int(num_classes),
        "num_train_videos": n - len(train_skips),
        "num_val_videos": len(kept),
        "steps": steps,
        "loss_history": history,
        "predictions": _predictions([val_paths[i] for i in kept], val_y, probs[kept]),
        "skipped": {"train": train_skips.as_list(), "val": val_skips.as_list()},
        "seconds": time.time() - t0,
        "head": (kernel, bias),
    }


# ================================================================================================
# Feature extraction for users of the released checkpoints
# ================================================================================================
def extract_features(backbone, paths: Sequence[str], cfg, progress: Progress | None = None,
                     skipped: Skipped | None = None) -> np.ndarray:
    """[N, D]: the mean over the 30 test views of the pooled res5 feature of each video (NaN rows for videos
    recorded in `skipped`)."""
    return test_features(backbone, paths, cfg, progress, skipped, reduce=lambda f: f.mean(axis=0))


# ================================================================================================
# Command-line entry points. Every error a user can cause is a ValueError or FileNotFoundError whose message
# names the file and the problem, raised before the long work where it can be known in advance.
# ================================================================================================
def _load_config(config_path: str, overrides: Sequence[str]):
    from .configs import load_config

    try:
        cfg = load_config(config_path, overrides)
    except KeyError as e:  # an unknown --config.KEY: make it a one-line ValueError like every other mistake
        raise ValueError(e.args[0] if e.args else str(e)) from None
    _check_eval_config(cfg.eval)
    return cfg


def _load_backbone(path: str, cfg):
    """(backbone, ResolvedBackbone): depth and width come from the run; the config's model.depth and
    model.width_multiplier (0 = not set) only have to agree with it."""
    from . import checkpoints

    model = cfg.model if "model" in cfg else None
    depth = model.depth if model is not None and "depth" in model else 0
    width = model.width_multiplier if model is not None and "width_multiplier" in model else 0
    return checkpoints.load_backbone(path, depth=depth or None, width_multiplier=width or None)


def _prepare_workdir(workdir: str) -> None:
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(f"--workdir {workdir}: exists and is not a directory")
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--workdir {workdir}: cannot create it ({e.strerror})") from None
    if not os.access(workdir, os.W_OK):
        raise ValueError(f"--workdir {workdir}: not writable")


def _write_predictions(path: str, predictions: list[dict], class_names: Sequence[str]) -> None:
    """predictions.csv: `path,label,prediction`, class names where the labels have names, else integers."""
    def name(c):
        return class_names[c] if class_names else c

    with atomic_output(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "prediction"])
        for p in predictions:
            w.writerow([p["path"], name(p["label"]), name(p["pred"])])


def _write_json(path: str, data: dict) -> None:
    with atomic_output(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def _accuracy_text(result: dict) -> str:
    top5 = (f"top-5 {100 * result['top5']:.1f}%" if not math.isnan(result["top5"])
            else f"top-5 n/a ({result['num_classes']} classes)")
    return f"top-1 {100 * result['top1']:.1f}% {top5}"


def main_linear_eval(backbone_path: str, train, val, workdir: str, config_path: str = "linear_eval",
                     overrides: Sequence[str] = (), finetuning: bool = False) -> dict:
    """`cvrl-fast linear-eval` (and, with finetuning=True, `cvrl-fast finetune`).

    Writes WORKDIR/predictions.csv (path,label,prediction) and WORKDIR/metrics.json; fine-tuning also writes
    the fine-tuned backbone (WORKDIR/backbone/backbone-N, official layout, with model.json: itself a valid
    --backbone) and the head (WORKDIR/classifier.npz: kernel [D, C], bias [C], class_names).
    """
    kind = "finetune" if finetuning else "linear-eval"
    cfg = _load_config(config_path, overrides)
    tr, va, num_classes = read_train_val(train, val, cfg.eval.num_classes)
    backbone, resolved = _load_backbone(backbone_path, cfg)
    _prepare_workdir(workdir)
    classes = ", ".join(tr.class_names) if tr.class_names else _int_ranges(sorted(set(tr.labels)))
    print(f"{kind}: backbone {resolved.describe()}; {len(tr.paths)} training and {len(va.paths)} validation "
          f"videos, {num_classes} classes ({classes})", flush=True)
    run = finetune if finetuning else linear_eval
    result = run(backbone, tr.paths, tr.labels, va.paths, va.labels, num_classes, cfg.eval, verbose=True,
                 train_name=f"train ({tr.spec})", val_name=f"val ({va.spec})")
    outputs = [os.path.join(workdir, "predictions.csv"), os.path.join(workdir, "metrics.json")]
    if finetuning:
        from . import checkpoints

        kernel, bias = result["head"]
        outputs.append(checkpoints.save_backbone_snapshot(backbone, os.path.join(workdir, "backbone"),
                                                          result["steps"], resolved.config))
        outputs.append(os.path.join(workdir, "classifier.npz"))
        with atomic_output(outputs[-1], "wb") as f:
            np.savez(f, kernel=kernel, bias=bias, class_names=np.asarray(tr.class_names, dtype=str),
                     num_classes=np.int64(num_classes))
    _write_predictions(outputs[0], result["predictions"], tr.class_names)
    summary = {k: v for k, v in result.items() if k not in ("predictions", "head")}
    if math.isnan(summary["top5"]):
        del summary["top5"]  # not measurable with 5 classes or fewer
    summary["class_names"] = list(tr.class_names)
    summary["backbone"] = {"path": str(backbone_path), "checkpoint": resolved.prefix,
                           "depth": resolved.config.depth, "width_multiplier": resolved.config.width_multiplier}
    _write_json(outputs[1], summary)
    skipped = sum(len(v) for v in result["skipped"].values())
    print(f"{kind}: {_accuracy_text(result)} on {result['num_val_videos']} validation videos"
          + (f" ({skipped} unreadable videos skipped)" if skipped else "") + f"; wrote {', '.join(outputs)}",
          flush=True)
    return result


def main_finetune(backbone_path: str, train, val, workdir: str, config_path: str = "finetune",
                  overrides: Sequence[str] = ()) -> dict:
    """`cvrl-fast finetune`: `main_linear_eval(..., finetuning=True)` with the finetune config."""
    return main_linear_eval(backbone_path, train, val, workdir, config_path, overrides, finetuning=True)


def main_extract(backbone_path: str, videos, out: str, config_path: str = "linear_eval",
                 overrides: Sequence[str] = ()) -> np.ndarray:
    """`cvrl-fast extract`: OUT.npz with features [N, D] (mean of the 30 test views' pooled res5 feature),
    paths [N], labels [N] (-1 unlabelled), class_names, and skipped_paths / skipped_reasons of the videos
    that could not be decoded (left out of the N). `.npz` is appended to `out` if missing, as np.savez does."""
    cfg = _load_config(config_path, overrides)
    src = load_sources(videos)
    out = os.fspath(out)
    if not out.endswith(".npz"):
        out += ".npz"
    _check_output_file(out, "--out")
    backbone, resolved = _load_backbone(backbone_path, cfg)
    print(f"extract: backbone {resolved.describe()}; {len(src.paths)} videos", flush=True)
    skipped = Skipped(f"extract ({src.spec})", len(src.paths))
    with Progress("extract", len(src.paths), unit="videos") as progress:
        feats = extract_features(backbone, src.paths, cfg.eval, progress, skipped)
    _print_summary(skipped)
    kept = skipped.kept()
    feats = feats[kept]
    with atomic_output(out, "wb") as f:
        np.savez(f, features=feats, paths=np.asarray([src.paths[i] for i in kept], dtype=str),
                 labels=np.asarray([src.labels[i] for i in kept], np.int64),
                 class_names=np.asarray(src.class_names, dtype=str),
                 skipped_paths=np.asarray([s["path"] for s in skipped.as_list()], dtype=str),
                 skipped_reasons=np.asarray([s["reason"] for s in skipped.as_list()], dtype=str))
    print(f"extract: {feats.shape[0]} videos x {feats.shape[1]} features -> {out}"
          + (f" ({len(skipped)} of {len(src.paths)} unreadable videos skipped)" if len(skipped) else ""), flush=True)
    return feats
