"""DALI input vs the C++ loader, pairs/s of full-size CVRL pairs in device mode (2 x 16 x 224 x 224 x 3 uint8
plus colour rows; the colour stage is the accelerator's in both).

    python benchmarks/bench_dali.py              # this machine: DALI's CPU decoder vs PairLoader on VP9 clips
    python benchmarks/bench_dali.py --gpu        # a GPU machine: NVDEC on default-GOP and -g 16 H.264

Needs: TensorFlow, NVIDIA DALI and its TensorFlow plugin (`make setup-dali`), the ffmpeg CLI with libx264 and
libvpx (to cut the benchmark clips from the real footage of scripts/fetch_clips.py, once, into .cache/); for
--gpu also an NVIDIA GPU visible to TensorFlow. The script checks each of these first and says which is missing.
Both contenders run in the same process, interleaved (C++, DALI, C++, DALI, ...), 2 threads each; the table
gives the median round. Numbers go in benchmarks/README.md, "DALI".
"""
from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
VP9_DIR = ROOT / ".cache" / "bench_dali"


def _missing(gpu: bool) -> list[str]:
    missing = []
    if shutil.which("ffmpeg") is None:
        missing.append("the ffmpeg CLI (apt install ffmpeg)")
    try:
        import tensorflow as tf
    except ImportError:
        return missing + ["TensorFlow (pip install 'cvrl_fast[tf]')"]
    from cvrl_fast import dali
    if not dali.available():
        missing.append("NVIDIA DALI and its TensorFlow plugin (make setup-dali)")
    if gpu and not tf.config.list_physical_devices("GPU"):
        missing.append("a GPU visible to TensorFlow (--gpu times NVDEC)")
    return missing


def vp9_clips() -> list[str]:
    """The loader benchmark's 10 s cuts (benchmarks/conftest.py), re-encoded as VP9 (DALI's CPU decoder)."""
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from conftest import make_bench_clips

    VP9_DIR.mkdir(parents=True, exist_ok=True)
    out = []
    for src in make_bench_clips()["g16"]:
        dst = VP9_DIR / (src.stem.replace("_g16", "") + "_vp9.webm")
        if not dst.exists():
            tmp = dst.with_suffix(".tmp.webm")
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-c:v", "libvpx-vp9", "-deadline", "realtime",
                            "-cpu-used", "8", "-b:v", "1500k", "-g", "16", str(tmp)], check=True)
            tmp.rename(dst)
        out.append(str(dst))
    return out


def h264_clips() -> dict[str, list[str]]:
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from conftest import make_bench_clips

    return {k: [str(p) for p in v] for k, v in make_bench_clips().items()}


def measure(sources, device: str, pairs: int, rounds: int, batch: int = 8) -> dict:
    import cvrl_fast
    from cvrl_fast import dali

    ds = dali.pretrain_dataset(sources, batch_size=batch, seed=0, device=device, num_threads=2)
    dali_it = iter(ds)
    next(dali_it)
    cpp = cvrl_fast.PairLoader(sources, batch_size=batch, seed=0, num_threads=2, augment_on="device")
    next(cpp)

    def rate(take):
        t = time.perf_counter()
        done = 0
        while done < pairs:
            take()
            done += batch
        return done / (time.perf_counter() - t)

    runs = {"cpp": [], "dali": []}
    try:
        for _ in range(rounds):
            runs["cpp"].append(rate(lambda: next(cpp)))
            runs["dali"].append(rate(lambda: next(dali_it)["view1"].numpy()))
    finally:
        cpp.close()
    return {k: statistics.median(v) for k, v in runs.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", action="store_true", help="NVDEC on H.264 (default-GOP and -g 16)")
    ap.add_argument("--pairs", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    missing = _missing(args.gpu)
    if missing:
        print("bench_dali: missing " + "; ".join(missing), file=sys.stderr)
        return 2
    print(f"# {len(os.sched_getaffinity(0))} cores; 2 threads each; batch 8; {args.pairs} pairs x {args.rounds} "
          "interleaved rounds (median)")
    print("| data | C++ loader pairs/s | DALI pairs/s | DALI / C++ |")
    print("|---|---|---|---|")
    data = h264_clips() if args.gpu else {"vp9 (-g 16)": vp9_clips()}
    for name, sources in data.items():
        r = measure(sources, "gpu" if args.gpu else "cpu", args.pairs, args.rounds)
        print(f"| {name} | {r['cpp']:.1f} | {r['dali']:.1f} | {r['dali'] / r['cpp']:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
