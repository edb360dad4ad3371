"""Shared test fixtures: videos made with the ffmpeg CLI, the real camera clips, and the CLI decode oracle.

* `video_files` (session): dict name -> path of small synthetic videos, generated once per test session
  with the ffmpeg CLI (see `VIDEO_SPECS` for what each one is: codecs, containers, GOP lengths, sizes;
  plus "vfr_mkv" and "rotated_{90,180,270}_mp4"), e.g. `video_files["h264_bframes_mp4"]`.
  Other test files import the helpers with `from conftest import ffmpeg_frames, ...`.
* `clip_dir` (session): directory of the real camera clips (`.cache/clips`), fetched by
  `scripts/fetch_clips.py` (pinned, checksummed) if missing.
* `ffmpeg_frames(path, size=None, max_frames=None)`: the oracle. What
  `ffmpeg -noautorotate -i X -fps_mode passthrough -pix_fmt rgb24 -f rawvideo -` yields, as uint8
  [N, H, W, 3]; `size=(h, w)` adds a bilinear `scale` (the one-pass resize cvrl_fast claims to match).
* `ffprobe_frame_times(path)`: best-effort timestamps (seconds) of every decoded frame, per ffprobe.
* `asan_active()` / `tsan_active()`: whether the tests run under AddressSanitizer (`make test-asan`) or
  ThreadSanitizer (`make test-tsan`).
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:  # pragma: no cover - setup error
    raise RuntimeError("the tests need the ffmpeg and ffprobe CLIs (make setup installs them)")


def _run(cmd: list[str]) -> bytes:
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
                           f"{proc.stderr.decode(errors='replace')[-2000:]}")
    return proc.stdout


def probe_size(path) -> tuple[int, int]:
    """(height, width) of the first video stream, per ffprobe."""
    out = _run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
                "-of", "json", str(path)])
    stream = json.loads(out)["streams"][0]
    return int(stream["height"]), int(stream["width"])


def ffmpeg_frames(path, size: tuple[int, int] | None = None, max_frames: int | None = None) -> np.ndarray:
    """The decode oracle: every frame the ffmpeg CLI outputs, in order, as uint8 [N, H, W, 3] RGB.

    No auto-rotation (cvrl_fast returns frames as coded). size=(h, w) scales with swscale's bilinear
    filter in the same pass as the colour conversion. max_frames stops after that many frames.
    """
    cmd = ["ffmpeg", "-v", "error", "-noautorotate", "-i", str(path), "-map", "0:v:0", "-fps_mode", "passthrough"]
    if size is not None:
        h, w = size
        cmd += ["-vf", f"scale={w}:{h}:flags=bilinear"]
    else:
        h, w = probe_size(path)
    if max_frames is not None:
        cmd += ["-frames:v", str(max_frames)]
    cmd += ["-pix_fmt", "rgb24", "-f", "rawvideo", "-"]
    raw = _run(cmd)
    frame_bytes = h * w * 3
    assert len(raw) % frame_bytes == 0, f"ffmpeg output of {path} is not a whole number of {w}x{h} frames"
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


def ffprobe_frame_times(path) -> np.ndarray:
    """Best-effort timestamp (seconds) of every frame ffprobe decodes, in output order."""
    out = _run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                "frame=best_effort_timestamp_time", "-of", "json", str(path)])
    return np.array([float(f["best_effort_timestamp_time"]) for f in json.loads(out)["frames"]])


def lavfi_source(size: str = "96x64", rate: float = 25, seconds: float = 1.6) -> list[str]:
    """ffmpeg input arguments for a moving test pattern (every frame differs from its neighbours)."""
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]


# name -> (file name, ffmpeg arguments after the input). Each is a small, fast-to-make video exercising
# one codec/container/structure the decoder must handle.
ODD = ["-vf", "format=yuv444p,crop=97:61:0:0"]  # 97x61: crop before subsampling so the size stays odd
VIDEO_SPECS: dict[str, tuple[str, list[str], list[str]]] = {
    # name: (file name, input args, output args)
    "h264_bframes_mp4": ("h264_bframes.mp4", lavfi_source(), ["-c:v", "libx264", "-bf", "3", "-g", "12"]),
    "h264_default_gop_mp4": ("h264_default.mp4", lavfi_source(seconds=4), ["-c:v", "libx264"]),
    "h264_intra_mp4": ("h264_intra.mp4", lavfi_source(), ["-c:v", "libx264", "-g", "1"]),
    "h264_mkv": ("h264.mkv", lavfi_source(), ["-c:v", "libx264", "-bf", "2", "-g", "8"]),
    # Open GOP: keyframes are recovery-point I-frames; the B-frames after them in decode order are
    # presented before them and reference the previous GOP.
    "h264_open_gop_mkv": ("h264_open_gop.mkv", lavfi_source(seconds=3),
                          ["-c:v", "libx264", "-x264-params", "open-gop=1:keyint=10:min-keyint=10:bframes=3:scenecut=0"]),
    "h264_ts": ("h264.ts", lavfi_source(), ["-c:v", "libx264", "-bf", "3", "-g", "12"]),
    # Interlaced (MBAFF H.264, interlaced-DCT MPEG-2), top field first.
    "h264_interlaced_ts": ("h264_interlaced.ts", lavfi_source(), ["-c:v", "libx264", "-flags", "+ildct+ilme",
                                                                 "-x264-params", "interlaced=1:tff=1", "-bf", "2",
                                                                 "-g", "12"]),
    "mpeg2_interlaced_ts": ("mpeg2_interlaced.ts", lavfi_source(), ["-c:v", "mpeg2video", "-flags", "+ildct+ilme",
                                                                   "-top", "1", "-bf", "2", "-g", "12"]),
    "h264_yuv444_mkv": ("h264_444.mkv", lavfi_source(), ["-c:v", "libx264", "-pix_fmt", "yuv444p", "-g", "10"]),
    "h264_10bit_mp4": ("h264_10bit.mp4", lavfi_source(), ["-c:v", "libx264", "-pix_fmt", "yuv420p10le", "-g", "10"]),
    "hevc_mp4": ("hevc.mp4", lavfi_source(), ["-c:v", "libx265", "-x265-params", "log-level=none", "-g", "12"]),
    "hevc_mkv": ("hevc.mkv", lavfi_source(), ["-c:v", "libx265", "-x265-params", "log-level=none", "-g", "7"]),
    "av1_mp4": ("av1.mp4", lavfi_source(), ["-c:v", "libsvtav1", "-g", "12"]),
    "vp9_webm": ("vp9.webm", lavfi_source(), ["-c:v", "libvpx-vp9", "-g", "12", "-deadline", "realtime"]),
    "mpeg2_mpg": ("mpeg2.mpg", lavfi_source(), ["-c:v", "mpeg2video", "-bf", "2", "-g", "12"]),
    "mpeg2_ts": ("mpeg2.ts", lavfi_source(), ["-c:v", "mpeg2video", "-bf", "2", "-g", "12"]),
    "mpeg4_avi": ("mpeg4.avi", lavfi_source(), ["-c:v", "mpeg4", "-bf", "2", "-g", "12"]),
    "mjpeg_avi": ("mjpeg.avi", lavfi_source(), ["-c:v", "mjpeg"]),
    # Uncompressed packed 4:2:2 and palette video, PNG in MOV: pixel formats without planar YUV.
    "rawvideo_yuyv422_avi": ("yuyv422.avi", lavfi_source(seconds=0.4), ["-c:v", "rawvideo", "-pix_fmt", "yuyv422"]),
    "rawvideo_pal8_avi": ("pal8.avi", lavfi_source(seconds=0.4), ["-c:v", "rawvideo", "-pix_fmt", "pal8"]),
    "png_mov": ("png.mov", lavfi_source(seconds=0.4), ["-c:v", "png"]),
    "odd_vp9_webm": ("odd_vp9.webm", lavfi_source("98x62"), ODD + ["-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p",
                                                                  "-deadline", "realtime"]),
    "odd_h264_444_mp4": ("odd_444.mp4", lavfi_source("98x62"), ODD + ["-c:v", "libx264", "-pix_fmt", "yuv444p"]),
    "odd_mpeg4_mkv": ("odd_mpeg4.mkv", lavfi_source("98x62"), ODD + ["-c:v", "mpeg4", "-pix_fmt", "yuv420p"]),
    "tiny_16x16_mp4": ("tiny.mp4", lavfi_source("16x16", seconds=1.0), ["-c:v", "libx264", "-bf", "2"]),
    "one_frame_mp4": ("one_frame.mp4", lavfi_source(seconds=0.04), ["-c:v", "libx264"]),
    "bt709_mp4": ("bt709.mp4", lavfi_source(seconds=0.4), ["-c:v", "libx264", "-colorspace", "bt709",
                                                          "-color_primaries", "bt709", "-color_trc", "bt709"]),
    "audio_only_m4a": ("audio.m4a", ["-f", "lavfi", "-i", "sine=duration=0.5"], ["-c:a", "aac"]),
}

# Codecs/containers that must decode frame-exactly (the list in issue 2).
DECODE_CASES = [name for name in VIDEO_SPECS if name != "audio_only_m4a"]


def _make_vfr(directory: pathlib.Path) -> pathlib.Path:
    """25 fps then 10 fps segments concatenated without re-timing: a variable-frame-rate file."""
    a, b = directory / "vfr_a.mkv", directory / "vfr_b.mkv"
    _run(["ffmpeg", "-v", "error", "-y", *lavfi_source(rate=25, seconds=1.0), "-c:v", "libx264", "-bf", "2", str(a)])
    _run(["ffmpeg", "-v", "error", "-y", *lavfi_source(rate=10, seconds=1.5), "-c:v", "libx264", "-bf", "2", str(b)])
    listing = directory / "vfr_list.txt"
    listing.write_text(f"file '{a}'\nfile '{b}'\n")
    out = directory / "vfr.mkv"
    _run(["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(out)])
    return out


@pytest.fixture(scope="session")
def video_files(tmp_path_factory) -> dict[str, pathlib.Path]:
    """Small synthetic videos made with the ffmpeg CLI (see VIDEO_SPECS), plus "vfr_mkv" and
    "rotated_{90,180,270}_mp4" (display-matrix rotation)."""
    directory = tmp_path_factory.mktemp("videos")
    files = {name: directory / file_name for name, (file_name, _, _) in VIDEO_SPECS.items()}

    def make(name):
        _, inputs, outputs = VIDEO_SPECS[name]
        _run(["ffmpeg", "-v", "error", "-y", *inputs, *outputs, str(files[name])])

    # The encoders are single-threaded at these sizes: run them side by side.
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        vfr = pool.submit(_make_vfr, directory)
        for future in [pool.submit(make, name) for name in VIDEO_SPECS]:
            future.result()
        files["vfr_mkv"] = vfr.result()
    # Rotation metadata survives only a stream copy in this ffmpeg: re-mux with a display matrix.
    for degrees in (90, 180, 270):
        rotated = directory / f"rotated_{degrees}.mp4"
        _run(["ffmpeg", "-v", "error", "-y", "-i", str(files["bt709_mp4"]), "-c", "copy", "-metadata:s:v:0",
              f"rotate={degrees}", str(rotated)])
        files[f"rotated_{degrees}_mp4"] = rotated
    return files


@pytest.fixture(scope="session")
def clip_dir() -> pathlib.Path:
    """The real camera clips named in DEVELOPERS.md, fetched (pinned and checksummed) if missing."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import fetch_clips
    finally:
        sys.path.pop(0)
    return fetch_clips.fetch()


def asan_active() -> bool:
    """Whether this process runs under AddressSanitizer (`make test-asan` preloads its runtime). Its
    quarantine keeps freed memory resident, so resident-memory leak checks mean nothing there."""
    with open("/proc/self/maps") as f:
        return "libasan" in f.read()


def tsan_active() -> bool:
    """Whether this process runs under ThreadSanitizer (`make test-tsan`): its shadow memory and
    slow-down make resident-memory and timing checks meaningless."""
    with open("/proc/self/maps") as f:
        return "libtsan" in f.read()


def sanitizer_active() -> bool:
    return asan_active() or tsan_active()


def gil_gap_check(call) -> tuple[float, float]:
    """(longest pause of the main thread while `call` runs in another thread, duration of `call` alone).

    A call that releases the GIL leaves the main thread running Python, so the longest pause stays far
    below the call's own duration; a call holding the GIL freezes it for about that long.
    """
    import threading
    import time

    start = time.perf_counter()
    call()
    call_seconds = time.perf_counter() - start
    done = threading.Event()
    thread = threading.Thread(target=lambda: (call(), done.set()))
    longest_gap, last = 0.0, time.perf_counter()
    thread.start()
    while not done.is_set():
        now = time.perf_counter()
        longest_gap = max(longest_gap, now - last)
        last = now
        time.sleep(0.001)
    thread.join()
    return longest_gap, call_seconds
