"""Host vs device colour augmentation: what the host CPU pays per CVRL pair in each mode, and what the
colour stage costs when it moves into the train step.

Loader part (no TensorFlow): `cvrl_fast.PairLoader` with 2 threads, full-size pairs (2 x 16 x 224 x 224 x 3),
`augment_on="host"` (every pixel op on the host) vs `augment_on="device"` (decode, crop, resize, flip on the
host; the colour parameters ride along). Both modes run in the same process, interleaved in rounds
(host, device, then device, host, ...; each loader alone while it is timed, started, warmed up by one batch
and closed), so a burst of load from elsewhere hits both; the table gives the median round. Data as in bench_loader.py: default-GOP mp4, `-g 16` mp4 and reference TFRecords.

Step part (TensorFlow, this CPU): `cvrl_fast.device_augment` on a batch of full-size views (the cost the
colour stage adds to the train step when it runs on the replica's device; on this CPU that device is the
host, so the number is an upper bound for any accelerator) next to the R3D-50 train step of
bench_train_step.py, per pair.

Run: `python benchmarks/bench_augment_on.py [--pairs N] [--rounds R] [--skip-step]` prints the tables for
benchmarks/README.md; `make bench` runs the pytest-benchmark entry points.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import platform
import statistics
import sys
import time

import numpy as np
import pytest

import cvrl_fast

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from bench_loader import bench_data  # noqa: E402

BATCH = 8
MODES = ("host", "device")


def _time_mode(sources, mode: str, num_pairs: int, num_threads: int = 2) -> tuple[float, float]:
    """(pairs per wall-second, host CPU ms per pair) of one loader alone in the process: started, warmed up by
    one batch, timed over num_pairs, closed (so no other loader's threads refill a prefetch meanwhile)."""
    with cvrl_fast.PairLoader(sources, batch_size=BATCH, seed=0, num_threads=num_threads, prefetch_batches=2,
                              augment_on=mode) as loader:
        next(loader)
        wall, cpu = time.perf_counter(), time.process_time()
        done = 0
        while done < num_pairs:
            done += len(next(loader)["index"])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return done / wall, 1000 * cpu / done


def measure_loaders(sources, num_pairs: int, rounds: int) -> dict:
    results = {m: [] for m in MODES}
    for r in range(rounds):
        for m in (MODES if r % 2 == 0 else MODES[::-1]):  # alternate which mode goes first
            results[m].append(_time_mode(sources, m, num_pairs))
    out = {}
    for m, runs in results.items():
        out[m] = {"pairs_per_s": statistics.median(r[0] for r in runs),
                  "cpu_ms_per_pair": statistics.median(r[1] for r in runs)}
    out["ratios"] = sorted(d[0] / h[0] for h, d in zip(results["host"], results["device"]))
    return out


def measure_step(batch_pairs: int = 2, steps: int = 5) -> dict:
    """ms per pair of device_augment (both views of batch_pairs pairs, one call) and of the R3D-50 step."""
    import tensorflow as tf

    from cvrl_fast import device_augment, sample_pair
    import bench_train_step as bts

    source = bench_data()["g16"][0]
    views, colours = [], []
    for i in range(batch_pairs):
        v1, v2, c1, c2 = sample_pair(source, 0, index=i, augment_on="device")
        views += [v1, v2]
        colours += [c1, c2]
    views, colours = tf.constant(np.stack(views)), tf.constant(np.stack(colours))
    out = {}
    for name, jit in (("device_augment", False), ("device_augment_xla", True)):
        fn = tf.function(device_augment, jit_compile=jit)
        fn(views, colours).numpy()  # trace / compile
        t = time.perf_counter()
        for _ in range(steps):
            fn(views, colours).numpy()
        out[name] = 1000 * (time.perf_counter() - t) / steps / batch_pairs
    step = bts.measure_step(*bts.MODELS["r3d50"], steps=steps)
    out["r3d50_step_ms_per_pair"] = 1000 / step["steps_per_s"] / 2  # its batch is 2 pairs at 8x112x112
    out["r3d50_step_shape"] = "8x112x112, 2 pairs"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=48, help="pairs per mode per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-step", action="store_true")
    args = ap.parse_args(argv)
    print(f"# {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
          f"PairLoader 2 threads, batch {BATCH}, {args.pairs} pairs x {args.rounds} interleaved rounds")
    print("| data | host mode pairs/s | device mode pairs/s | device / host (median, range) | "
          "host CPU ms/pair host, device |")
    print("|---|---|---|---|---|")
    for kind, sources in bench_data().items():
        r = measure_loaders(sources, args.pairs, args.rounds)
        ratios = r["ratios"]
        print(f"| {kind} | {r['host']['pairs_per_s']:.1f} | {r['device']['pairs_per_s']:.1f} | "
              f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f}) | "
              f"{r['host']['cpu_ms_per_pair']:.0f}, {r['device']['cpu_ms_per_pair']:.0f} |", flush=True)
    if not args.skip_step:
        s = measure_step()
        print()
        print("| per pair (2 x 16 x 224 x 224 x 3) on this CPU | ms |")
        print("|---|---|")
        print(f"| device_augment, eager graph | {s['device_augment']:.0f} |")
        print(f"| device_augment, XLA | {s['device_augment_xla']:.0f} |")
        print(f"| R3D-50 train step ({s['r3d50_step_shape']}), per pair | {s['r3d50_step_ms_per_pair']:.0f} |")
    return 0


# ------------------------------------------------------------------ pytest-benchmark entry points

@pytest.mark.benchmark(group="augment_on")
@pytest.mark.parametrize("mode", MODES)
def test_bench_augment_on_tfrecord(benchmark, mode):
    sources = bench_data()["tfrecord"]
    with cvrl_fast.PairLoader(sources, batch_size=BATCH, seed=0, num_threads=2, augment_on=mode) as loader:
        next(loader)
        benchmark.pedantic(lambda: next(loader), rounds=6, iterations=1)


if __name__ == "__main__":
    sys.exit(main())
