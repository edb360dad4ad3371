"""Graph engine vs PairLoader: CVRL pairs per second of the two input engines of
`cvrl_fast.data.pretrain_dataset`, 2 threads each, full-size pairs (2 x 16 x 224 x 224 x 3), host mode.

  loader  `cvrl_fast.PairLoader`, 2 C++ threads (what `engine="loader"` wraps in from_generator).
  graph   `pretrain_dataset(..., engine="graph", num_threads=2)`: the CvrlSlotPair op mapped over the
          slots with num_parallel_calls=AUTOTUNE on a private tf.data thread pool of 2 threads, batch,
          prefetch; read with a plain tf.data iterator (as the trainer's input pipeline does).

Both run in the same process, interleaved in rounds (loader, graph, loader, graph, ...), so a burst of load
from elsewhere hits both; each timed window starts after draining what the pipeline prefetched while the
other one ran. The table gives the median round and the graph / loader ratio per round. Data as in
bench_loader.py: default-GOP mp4, `-g 16` mp4 and reference TFRecords. Both engines make the same bytes
(tests/test_graph_input.py), so the comparison is of the machinery only.

Run: `python benchmarks/bench_graph_engine.py [--pairs N] [--rounds R]` prints the table for
benchmarks/README.md (`--tiny` makes 4 x 32 x 32 pairs, a seconds-long smoke run whose numbers mean nothing).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import platform
import statistics
import sys
import time

import cvrl_fast
from cvrl_fast import AugmentConfig

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from bench_loader import bench_data  # noqa: E402

BATCH = 8
ENGINES = ("loader", "graph")
THREADS = 2


class _Engines:
    """One endless pipeline per engine over the same sources, both warmed up."""

    def __init__(self, sources, config: AugmentConfig, num_threads: int = THREADS):
        from cvrl_fast import data

        self.loader = cvrl_fast.PairLoader(sources, batch_size=BATCH, seed=0, num_threads=num_threads,
                                           prefetch_batches=2, config=config)
        ds = data.pretrain_dataset(sources, batch_size=BATCH, seed=0, num_threads=num_threads, prefetch_batches=2,
                                   config=config, engine="graph", include_index=True)
        self.graph = iter(ds)
        self.next = {"loader": lambda: len(next(self.loader)["index"]),
                     "graph": lambda: int(next(self.graph)["index"].shape[0])}
        for engine in ENGINES:
            self.next[engine]()

    def time(self, engine: str, num_pairs: int) -> tuple[float, float]:
        """(pairs per wall-second, CPU ms per pair: process CPU time over the pairs, all threads)."""
        step = self.next[engine]
        # The other pipeline is idle but full (its prefetch is done), so its threads use no CPU here.
        wall, cpu = time.perf_counter(), time.process_time()
        done = 0
        while done < num_pairs:
            done += step()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return done / wall, 1000 * cpu / done

    def close(self):
        self.loader.close()
        self.graph = None


def measure(sources, num_pairs: int, rounds: int, config: AugmentConfig) -> dict:
    engines = _Engines(sources, config)
    try:
        results = {e: [] for e in ENGINES}
        for _ in range(rounds):
            for e in ENGINES:
                engines.time(e, BATCH * 3)  # drain what was prefetched while the other engine ran
                results[e].append(engines.time(e, num_pairs))
    finally:
        engines.close()
    out = {e: {"pairs_per_s": statistics.median(r[0] for r in runs),
               "cpu_ms_per_pair": statistics.median(r[1] for r in runs)} for e, runs in results.items()}
    out["ratios"] = sorted(g[0] / ld[0] for ld, g in zip(results["loader"], results["graph"]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=48, help="pairs per engine per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="4 x 32 x 32 clips: a smoke run, not a measurement")
    args = ap.parse_args(argv)
    config = AugmentConfig(num_frames=4, crop_size=32) if args.tiny else AugmentConfig()
    shape = f"{config.num_frames}x{config.crop_size}x{config.crop_size}"
    print(f"# {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores, {THREADS} threads "
          f"per engine, batch {BATCH}, {shape} clips, {args.pairs} pairs x {args.rounds} interleaved rounds")
    print("| data | PairLoader pairs/s | graph engine pairs/s | graph / loader (median, range) | "
          "CPU ms/pair loader, graph |")
    print("|---|---|---|---|---|")
    for kind, sources in bench_data().items():
        r = measure(sources, args.pairs, args.rounds, config)
        ratios = r["ratios"]
        print(f"| {kind} | {r['loader']['pairs_per_s']:.1f} | {r['graph']['pairs_per_s']:.1f} | "
              f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f}) | "
              f"{r['loader']['cpu_ms_per_pair']:.0f}, {r['graph']['cpu_ms_per_pair']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
