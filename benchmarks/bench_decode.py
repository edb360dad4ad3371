"""Decode benchmark: the CVRL access pattern, cvrl_fast vs PyAV done well vs decord.

One sample = open a 10 s, 25 fps, short-side-256 clip and decode the 32 frames of two 16-frame clips at
stride 2 that start at random positions (decode only: RGB24 at the stored size). Workers: 1 or 2
threads, one reader per thread (each sample opens its own reader, as a training loader does).

Baselines:
  (a) PyAV done well: a keyframe index from demuxing, seek only when the keyframe of the next needed
      frame lies beyond what is already decoded, convert only the needed frames.
  (b) decord `VideoReader(...).get_batch(indices)`.
Every implementation's output is checked against the others before anything is timed.

Run: `make bench` (pytest-benchmark), or `python benchmarks/bench_decode.py` for a table with ratios.
"""
from __future__ import annotations

import bisect
import pathlib
import sys
import threading
import time

import numpy as np
import pytest

import cvrl_fast

CLIP_FRAMES = 16
FRAME_STRIDE = 2
NUM_SAMPLES = 32
SEED = 0


# ------------------------------------------------------------------ the workload


def make_samples(paths: list[pathlib.Path], num_samples: int = NUM_SAMPLES, seed: int = SEED):
    """(path, indices) pairs: two clips of CLIP_FRAMES frames at FRAME_STRIDE, random starts."""
    rng = np.random.default_rng(seed)
    counts = {p: cvrl_fast.VideoReader(p).num_frames for p in paths}
    span = (CLIP_FRAMES - 1) * FRAME_STRIDE + 1
    samples = []
    for _ in range(num_samples):
        path = paths[int(rng.integers(len(paths)))]
        starts = rng.integers(0, counts[path] - span + 1, size=2)
        indices = np.concatenate([s + FRAME_STRIDE * np.arange(CLIP_FRAMES) for s in starts]).tolist()
        samples.append((path, indices))
    return samples


# ------------------------------------------------------------------ the three decoders


def decode_cvrl(path, indices) -> np.ndarray:
    return cvrl_fast.VideoReader(path).get_frames(indices)


def decode_pyav(path, indices) -> np.ndarray:
    """PyAV done well: keyframe index, seek only when needed, convert only the needed frames."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.pts is not None and p.size]
        frame_pts = sorted(pts for pts, _ in packets)
        key_pts = sorted(pts for pts, key in packets if key)
        wanted = {frame_pts[i] for i in indices}
        out: dict[int, np.ndarray] = {}
        frames = None
        decoded_pts = None  # pts of the last frame decoded
        for target in sorted(wanted):
            if target in out:
                continue
            k = bisect.bisect_right(key_pts, target) - 1
            for attempt in range(len(key_pts) + 1):
                keyframe = key_pts[max(k - attempt, 0)]
                if frames is None or decoded_pts is None or keyframe > decoded_pts or attempt:
                    container.seek(keyframe, stream=stream, backward=True)
                    frames = container.decode(stream)
                    decoded_pts = None
                for frame in frames:
                    decoded_pts = frame.pts
                    if frame.pts in wanted and frame.pts not in out:
                        out[frame.pts] = frame.to_ndarray(format="rgb24")
                    if frame.pts >= target:
                        break
                if target in out:
                    break
        return np.stack([out[frame_pts[i]] for i in indices])


def decode_decord(path, indices) -> np.ndarray:
    import decord

    return decord.VideoReader(str(path), num_threads=1).get_batch(indices).asnumpy()


DECODERS = {"cvrl_fast": decode_cvrl, "pyav": decode_pyav, "decord": decode_decord}


# ------------------------------------------------------------------ verification and timing


def verify(samples, max_mean_diff: float = 1.0) -> dict[str, float]:
    """Every decoder's frames against cvrl_fast's: mean |diff| per frame, and the same frame (closest)."""
    worst = {}
    for name, fn in DECODERS.items():
        worst[name] = 0.0
        for path, indices in samples:
            ours = decode_cvrl(path, indices).astype(np.int16)
            theirs = fn(path, indices).astype(np.int16)
            assert theirs.shape == ours.shape, f"{name} {path.name}: shape {theirs.shape} vs {ours.shape}"
            diffs = np.abs(theirs - ours).mean(axis=(1, 2, 3))
            worst[name] = max(worst[name], float(diffs.max()))
            assert diffs.max() <= max_mean_diff, (
                f"{name} disagrees with cvrl_fast on {path.name} frames {indices}: mean diffs {diffs.round(2)}")
    return worst


def run_threads(fn, samples, num_threads: int, cpu: list | None = None) -> float:
    """Decodes all samples with `num_threads` workers; returns wall seconds (appends CPU seconds of the
    whole process, all threads, to `cpu` if given)."""
    shards = [samples[k::num_threads] for k in range(num_threads)]
    errors = []

    def work(shard):
        try:
            for path, indices in shard:
                fn(path, indices)
        except Exception as err:  # noqa: BLE001 - re-raised below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(shard,)) for shard in shards]
    cpu_start = time.process_time()
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if cpu is not None:
        cpu.append(time.process_time() - cpu_start)
    if errors:
        raise errors[0]
    return elapsed


# ------------------------------------------------------------------ pytest-benchmark entry points

_verified: set[str] = set()


@pytest.fixture(scope="module")
def workloads(bench_clips):
    return {gop: make_samples(paths) for gop, paths in bench_clips.items()}


@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("decoder", list(DECODERS))
@pytest.mark.parametrize("gop", ["default_gop", "g16"])
def test_bench_decode(benchmark, workloads, gop, decoder, num_threads):
    samples = workloads[gop]
    if gop not in _verified:
        verify(samples[:6])
        _verified.add(gop)
    fn = DECODERS[decoder]
    benchmark.group = f"decode {gop} x{num_threads} threads"
    benchmark.extra_info.update(samples=len(samples), frames_per_sample=2 * CLIP_FRAMES, threads=num_threads)
    seconds = benchmark.pedantic(run_threads, args=(fn, samples, num_threads), rounds=3, iterations=1,
                                 warmup_rounds=1)
    benchmark.extra_info["samples_per_s"] = round(len(samples) / seconds, 1)


# ------------------------------------------------------------------ table for benchmarks/README.md


def main(rounds: int = 5) -> None:
    """Prints the README table. Rounds are interleaved (cvrl_fast, PyAV, decord, cvrl_fast, ...) so that
    load from other processes hits every decoder alike; medians over rounds. Besides wall-clock
    samples/s it reports CPU milliseconds per sample (process CPU time, all threads), which is far less
    sensitive to a busy machine."""
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    from conftest import make_bench_clips

    clips = make_bench_clips()
    print("| clips | worker threads | cvrl_fast samples/s | PyAV samples/s | decord samples/s | "
          "cvrl_fast / PyAV (wall) | cvrl_fast / decord (wall) | CPU ms/sample cvrl_fast, PyAV, decord | "
          "cvrl_fast / PyAV (CPU) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for gop, paths in clips.items():
        samples = make_samples(paths)
        worst = verify(samples[:8])
        for num_threads in (1, 2):
            wall = {name: [] for name in DECODERS}
            cpu = {name: [] for name in DECODERS}
            for name, fn in DECODERS.items():
                run_threads(fn, samples[:4], num_threads)  # warm-up
            for _ in range(rounds):
                for name, fn in DECODERS.items():
                    wall[name].append(run_threads(fn, samples, num_threads, cpu[name]))
            rate = {name: len(samples) / float(np.median(v)) for name, v in wall.items()}
            cpu_ms = {name: 1000 * float(np.median(v)) / len(samples) for name, v in cpu.items()}
            print(f"| {gop} | {num_threads} | {rate['cvrl_fast']:.1f} | {rate['pyav']:.1f} | {rate['decord']:.1f} | "
                  f"{rate['cvrl_fast'] / rate['pyav']:.2f}x | {rate['cvrl_fast'] / rate['decord']:.2f}x | "
                  f"{cpu_ms['cvrl_fast']:.0f}, {cpu_ms['pyav']:.0f}, {cpu_ms['decord']:.0f} | "
                  f"{cpu_ms['pyav'] / cpu_ms['cvrl_fast']:.2f}x |", flush=True)
        print(f"<!-- {gop}: worst per-frame mean |diff| vs cvrl_fast: {worst} -->", flush=True)


if __name__ == "__main__":
    main()
