"""Benchmark data: 10 s, 25 fps clips with short side 256, cut from the real camera footage
(`scripts/fetch_clips.py`), encoded with x264 defaults (one to a few keyframes per clip, like real
Kinetics downloads) and with `-g 16`. Generated once into `.cache/bench/` (never committed).

Fixture `bench_clips`: {"default_gop": [paths], "g16": [paths]}.
"""
from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".cache" / "bench"

# (source clip, start second, cut length): 10 s windows. film1906 (60 s) gives several distinct cuts;
# bikes is exactly 10 s; the shorter clips are looped to 10 s.
CUTS = [
    ("film1906.mp4", 0), ("film1906.mp4", 10), ("film1906.mp4", 20), ("film1906.mp4", 30),
    ("film1906.mp4", 40), ("film1906.mp4", 49), ("bikes.mp4", 0), ("cityCC0.mpg", 0),
]
SECONDS = 10
ENCODINGS = {"default_gop": [], "g16": ["-g", "16"]}


def fetch_clip_dir() -> pathlib.Path:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import fetch_clips
    finally:
        sys.path.pop(0)
    return fetch_clips.fetch()


def make_bench_clips(out_dir: pathlib.Path = BENCH_DIR) -> dict[str, list[pathlib.Path]]:
    clip_dir = fetch_clip_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, list[pathlib.Path]] = {name: [] for name in ENCODINGS}
    for source, start in CUTS:
        for name, extra in ENCODINGS.items():
            out = out_dir / f"{pathlib.Path(source).stem}_{start:02d}s_{name}.mp4"
            if not out.exists():
                tmp = out.with_suffix(".tmp.mp4")
                cmd = ["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-ss", str(start), "-i",
                       str(clip_dir / source), "-t", str(SECONDS), "-an", "-vf", "fps=25,scale=-2:256",
                       "-c:v", "libx264", "-pix_fmt", "yuv420p", *extra, str(tmp)]
                subprocess.run(cmd, check=True)
                tmp.rename(out)
            result[name].append(out)
    return result


@pytest.fixture(scope="session")
def bench_clips() -> dict[str, list[pathlib.Path]]:
    return make_bench_clips()
