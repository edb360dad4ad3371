"""The fuzz targets: one function per engine entry point, each taking the fuzzer's bytes as a whole file.

A target may end with a result or with the exceptions the API documents for bad media (DecodeError);
anything else is a finding: a crash or sanitizer report (the process dies), a hang (libFuzzer's -timeout),
or an unexpected Python exception (Finding). The same functions replay the kept findings in the default
test suite (tests/test_reliability.py), without atheris:

    python -m fuzz.harness TARGET FILE      # prints "ok ..." or raises
"""
from __future__ import annotations

import os
import sys
import tempfile

import numpy as np

import cvrl_fast
from cvrl_fast import _C

TARGETS = ("video", "jpeg", "tfrecord", "pair")
# What the targets ask for is always valid, so only bad media may fail: DecodeError.
EXPECTED = (cvrl_fast.DecodeError,)
SMALL = cvrl_fast.AugmentConfig(num_frames=4, frame_stride=2, crop_size=16)
# Frames the video target decodes at native size at most: a corrupt header's frame size must not make the
# harness itself (its NumPy output) the memory hog.
_MAX_PIXELS = 4096 * 4096


class Finding(AssertionError):
    """An exception the API does not document for this input."""


def check(call, target: str):
    try:
        return call()
    except EXPECTED:
        return None
    except Exception as e:  # noqa: BLE001 - every other exception is the finding
        raise Finding(f"{target}: unexpected {type(e).__name__}: {e}") from e


def _video(data: bytes) -> str:
    reader = check(lambda: cvrl_fast.VideoReader(data), "video")
    if reader is None:
        return "rejected"
    n = reader.num_frames
    assert n >= 1 and reader.width >= 1 and reader.height >= 1, (n, reader.width, reader.height)
    assert len(reader.frame_pts_seconds) == n and np.all(np.diff(reader.frame_pts_seconds) >= 0)
    small = reader.width * reader.height <= _MAX_PIXELS
    plans = [([n - 1, 0, n // 2, 0], None, (9, 13))]
    if small:
        plans += [(list(range(min(n, 6))), None, None),
                  ([n // 2, 1 % n], (reader.width // 3, reader.height // 3, max(1, reader.width // 2),
                                     max(1, reader.height // 2)), None)]
    for indices, crop, size in plans:
        out = check(lambda: reader.get_frames(indices, crop=crop, size=size), "video")
        if out is not None:
            h, w = size if size else ((crop[3], crop[2]) if crop else (reader.height, reader.width))
            assert out.shape == (len(indices), h, w, 3), out.shape
    return f"{n} frames"


def _jpeg(data: bytes) -> str:
    results = []
    for size in (None, (9, 13)):
        for dct in ("INTEGER_ACCURATE", "INTEGER_FAST"):
            out = check(lambda: cvrl_fast.decode_jpeg_frames([data, data], size=size, dct_method=dct), "jpeg")
            results.append(None if out is None else out.shape)
    window = check(lambda: _C.jpeg_decode_window(data, 0, 0, 1, 1, 1), "jpeg")
    half = check(lambda: _C.jpeg_decode_window(data, 0, 0, 1, 1, 2), "jpeg")
    # One decoder accepting a frame the other refuses is fine (TurboJPEG and libjpeg's window API differ
    # in what they tolerate); shapes must agree with each other, and a decoded frame has pixels.
    shapes = {r[1:3] for r in results if r is not None and r[1:3] != (9, 13)}
    assert len(shapes) <= 1 and all(h >= 1 and w >= 1 for h, w in shapes), shapes
    return f"{results} {None if window is None else window.shape} {None if half is None else half.shape}"


def _tfrecord(data: bytes) -> str:
    check(lambda: _C.parse_video_record(data), "tfrecord")  # the bytes as one SequenceExample payload
    fd, path = tempfile.mkstemp(suffix=".tfrecord", dir=_tmp_dir())
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        refs = check(lambda: _C.index_tfrecord(path), "tfrecord")
        if refs is None:
            return "rejected"
        # The index lists only whole records: payload and its 4-byte CRC inside the file, in order.
        end = 0
        for offset, length in refs:
            assert offset == end + 12 and length >= 0 and offset + length + 4 <= len(data), (offset, length, len(data))
            end = offset + length + 4
        for number in range(min(len(refs), 3)):
            for cfg in (SMALL, cvrl_fast.AugmentConfig(num_frames=3, crop_size=8, target_fps=None, parity=False,
                                                       jpeg_dct_scaling=True)):
                check(lambda: cvrl_fast.sample_pair((path, number), 0, cfg), "tfrecord")
        return f"{len(refs)} records"
    finally:
        os.unlink(path)


def _pair(data: bytes) -> str:
    out = check(lambda: cvrl_fast.sample_pair(data, 1, SMALL), "pair")
    dev = check(lambda: cvrl_fast.sample_pair(data, 2, SMALL, augment_on="device"), "pair")
    if out is not None:
        assert out[0].shape == out[1].shape == (4, 16, 16, 3)
    return "rejected" if out is None and dev is None else "pair"


def _tmp_dir() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


_FUNCS = {"video": _video, "jpeg": _jpeg, "tfrecord": _tfrecord, "pair": _pair}


def run_one(target: str, data: bytes) -> str:
    return _FUNCS[target](bytes(data))


def main(argv) -> int:
    target, path = argv[1], argv[2]
    with open(path, "rb") as f:
        print("ok", run_one(target, f.read()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
