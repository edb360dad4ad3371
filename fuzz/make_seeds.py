"""Seed corpora for `make fuzz`: small test fixtures made with the ffmpeg CLI (the codecs and containers of
tests/conftest.py's VIDEO_SPECS at 32x24 and a few frames), JPEG frames, TFRecords of them, plus every
input kept under tests/data/fuzz/ (past findings).

    python -m fuzz.make_seeds OUT_DIR     # OUT_DIR/{video,jpeg,tfrecord,pair}/...
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

from cvrl_fast import _C
from fuzz.tfrecord_bytes import sequence_example, tfrecord

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ["-f", "lavfi", "-i", "testsrc2=size=32x24:rate=25:duration=0.32"]
VIDEOS = {
    "h264_bframes.mp4": ["-c:v", "libx264", "-bf", "2", "-g", "4"],
    "h264_open_gop.mkv": ["-c:v", "libx264", "-x264-params", "open-gop=1:keyint=4:min-keyint=4:bframes=2:scenecut=0"],
    "h264.ts": ["-c:v", "libx264", "-g", "4"],
    "hevc.mkv": ["-c:v", "libx265", "-x265-params", "log-level=none", "-g", "4"],
    "vp9.webm": ["-c:v", "libvpx-vp9", "-g", "4", "-deadline", "realtime"],
    "mpeg2.ts": ["-c:v", "mpeg2video", "-bf", "2", "-g", "4"],
    "mpeg4.avi": ["-c:v", "mpeg4", "-g", "4"],
    "mjpeg.avi": ["-c:v", "mjpeg"],
    "pal8.avi": ["-c:v", "rawvideo", "-pix_fmt", "pal8", "-frames:v", "2"],
    "yuyv.avi": ["-c:v", "rawvideo", "-pix_fmt", "yuyv422", "-frames:v", "2"],
    "png.mov": ["-c:v", "png", "-frames:v", "2"],
    "rotated.mp4": ["-c:v", "libx264", "-g", "4", "-metadata:s:v:0", "rotate=90"],
}
JPEG_FORMATS = {"420": "yuvj420p", "422": "yuvj422p", "444": "yuvj444p", "gray": "gray"}


def _ffmpeg(*args) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True, capture_output=True)


def make(out: pathlib.Path) -> None:
    for target in ("video", "jpeg", "tfrecord", "pair"):
        (out / target).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for name, args in VIDEOS.items():
            _ffmpeg(*SRC, *args, tmp / name)
            for target in ("video", "pair"):
                shutil.copy(tmp / name, out / target / name)
        frames = {}
        for tag, fmt in JPEG_FORMATS.items():
            _ffmpeg(*SRC, "-pix_fmt", fmt, "-frames:v", "4", tmp / f"{tag}_%d.jpg")
            frames[tag] = [(tmp / f"{tag}_{i}.jpg").read_bytes() for i in range(1, 5)]
            (out / "jpeg" / f"{tag}.jpg").write_bytes(frames[tag][0])
        crc = _C.tfrecord_masked_crc
        (out / "tfrecord" / "one_25fps.tfrecord").write_bytes(tfrecord([sequence_example(frames["420"], [1], 25.0)], crc))
        (out / "tfrecord" / "two_native.tfrecord").write_bytes(
            tfrecord([sequence_example(frames["444"], [2, 3]), sequence_example(frames["gray"][:2])], crc))
    kept = ROOT / "tests" / "data" / "fuzz"
    for target in ("video", "jpeg", "tfrecord", "pair"):
        for f in sorted((kept / target).glob("*")) if (kept / target).is_dir() else []:
            shutil.copy(f, out / target / ("kept_" + f.name))


if __name__ == "__main__":
    make(pathlib.Path(sys.argv[1]))
    print(f"fuzz seeds in {sys.argv[1]}: " + ", ".join(
        f"{t} {len(os.listdir(os.path.join(sys.argv[1], t)))}" for t in ("video", "jpeg", "tfrecord", "pair")))
